"""Requests on ``<base>/bridge/request/<op>`` answered on ``<base>/bridge/response/<op>``."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping

from pydantic import JsonValue

from bridge.mqtt.topics import TopicMap
from bridge.pipeline.outbox import Outbox

log = logging.getLogger(__name__)

Operation = Callable[[JsonValue], JsonValue]


class RequestHandler:
    """Dispatches bridge requests to operations and queues their answers."""

    def __init__(self, topics: TopicMap, outbox: Outbox, ops: Mapping[str, Operation]) -> None:
        self.topics = topics
        self.outbox = outbox
        self.ops = ops

    def handle(self, op: str, payload: bytes) -> None:
        """Answer one request; every failure becomes an ``error`` answer, never silence."""
        transaction: JsonValue = None
        try:
            try:
                request: JsonValue = json.loads(payload) if payload.strip() else {}
            except ValueError as exc:
                raise ValueError(f"request is not valid JSON: {exc}") from exc
            if isinstance(request, dict):
                transaction = request.get("transaction")
            if op not in self.ops:
                known = ", ".join(sorted(self.ops))
                raise ValueError(f"unknown request '{op}' (known: {known})")
            answer = {"status": "ok", "data": self.ops[op](request), "error": None}
        except ValueError as exc:
            answer = {"status": "error", "data": None, "error": str(exc)}
        except Exception as exc:
            log.exception("request %s failed", op)
            answer = {"status": "error", "data": None, "error": f"{type(exc).__name__}: {exc}"}
        answer["transaction"] = transaction
        body = json.dumps(answer, separators=(",", ":"), default=str).encode()
        self.outbox.put_event(self.topics.response(op), body, qos=1)

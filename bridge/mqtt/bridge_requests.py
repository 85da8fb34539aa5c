"""Requests on ``<base>/bridge/request/<op>`` answered on ``<base>/bridge/response/<op>``.

An operation answers at once (it returns JSON data) or later (it returns an awaitable, run in
a task of the handler's TaskGroup so the MQTT receive loop never waits for it). Either way every
request gets exactly one answer: ``ok`` with the data, or ``error`` with a reason.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from pydantic import JsonValue

from bridge.model.errors import BridgeError
from bridge.mqtt.topics import TopicMap
from bridge.pipeline.outbox import Outbox

log = logging.getLogger(__name__)

Operation = Callable[[JsonValue], JsonValue | Awaitable[JsonValue]]
"""Raise ``ValueError`` (or a ``BridgeError``) for an error answer that is the exception's text."""

MAX_RUNNING = 64
"""Deferred answers (running actions) at one time; more requests are answered as errors."""


class RequestHandler:
    """Dispatches bridge requests to operations and queues their answers."""

    def __init__(
        self,
        topics: TopicMap,
        outbox: Outbox,
        ops: Mapping[str, Operation],
        *,
        max_running: int = MAX_RUNNING,
    ) -> None:
        self.topics = topics
        self.outbox = outbox
        self.ops = ops
        self.max_running = max_running
        self._group: asyncio.TaskGroup | None = None
        self._running = 0

    async def run(self) -> None:
        """Own the tasks of deferred answers until cancelled (which cancels them)."""
        async with asyncio.TaskGroup() as group:
            self._group = group
            try:
                await asyncio.Event().wait()
            finally:
                self._group = None

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
            result = self.ops[op](request)
        except Exception as exc:  # noqa: BLE001 - answered, never raised into the receive loop
            self._answer(op, transaction, error=_reason(op, exc))
            return
        if not inspect.isawaitable(result):
            self._answer(op, transaction, data=result)
            return
        if self._group is None or self._running >= self.max_running:
            _discard(result)
            why = "shutting down" if self._group is None else f"{self._running} requests running"
            self._answer(op, transaction, error=f"busy ({why}); try again later")
            return
        self._running += 1
        self._group.create_task(self._finish(op, transaction, result), name=f"request-{op}")

    async def _finish(self, op: str, transaction: JsonValue, pending: Awaitable[JsonValue]) -> None:
        try:
            data = await pending
        except Exception as exc:  # noqa: BLE001 - every failure is an answer
            self._answer(op, transaction, error=_reason(op, exc))
        else:
            self._answer(op, transaction, data=data)
        finally:
            self._running -= 1

    def _answer(
        self, op: str, transaction: JsonValue, *, data: JsonValue = None, error: str | None = None
    ) -> None:
        answer: dict[str, Any] = {
            "schema": 1,
            "status": "ok" if error is None else "error",
            "data": data,
            "error": error,
            "transaction": transaction,
        }
        body = json.dumps(answer, separators=(",", ":"), default=str).encode()
        self.outbox.put_event(self.topics.response(op), body, qos=1)


def _reason(op: str, exc: Exception) -> str:
    """The error answer's text: the message of an expected failure, else type and message."""
    if isinstance(exc, (ValueError, BridgeError)):
        return str(exc) or type(exc).__name__
    log.error("request %s failed", op, exc_info=exc)
    return f"{type(exc).__name__}: {exc}"


def _discard(pending: Awaitable[JsonValue]) -> None:
    """Close a coroutine that will never run (no "never awaited" warning)."""
    if inspect.iscoroutine(pending):
        pending.close()

"""The ``action`` bridge request: runs the actions provider instances declare.

Request (``<base>/bridge/request/action``)::

    {"instance": "vezgo", "action": "sync", "account": "main", "params": {}, "transaction": 1}

Answer (``<base>/bridge/response/action``): ``data`` is ``{"instance", "action", "account",
"result"}`` with what the action returned; errors name the instance and the action.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Sequence
from typing import Any

from pydantic import JsonValue

from bridge.model.errors import ActionFailed, BridgeError
from bridge.plugin.actions import Action, ActionRequest

log = logging.getLogger(__name__)


class ActionRegistry:
    """Every instance's actions; turns one request into one bounded run."""

    def __init__(self) -> None:
        self._actions: dict[str, dict[str, Action]] = {}
        self._running: set[tuple[str, str, str | None]] = set()

    def register(self, instance: str, actions: Sequence[Action]) -> None:
        """Declare the actions of one provider instance."""
        named: dict[str, Action] = {}
        for action in actions:
            if action.name in named:
                raise ValueError(f"{instance}: two actions are named {action.name!r}")
            named[action.name] = action
        self._actions[instance] = named

    def actions(self, instance: str) -> tuple[Action, ...]:
        """The actions of ``instance``."""
        return tuple(self._actions.get(instance, {}).values())

    def request(self, payload: JsonValue) -> Awaitable[JsonValue]:
        """Check a request (``ValueError`` saying what is wrong) and return its run."""
        if not isinstance(payload, dict):
            raise ValueError('an action request is a JSON object: {"instance", "action", …}')
        instance = _text(payload, "instance")
        name = _text(payload, "action")
        if instance not in self._actions:
            known = ", ".join(sorted(self._actions)) or "none"
            raise ValueError(f"unknown instance '{instance}' (known: {known})")
        actions = self._actions[instance]
        action = actions.get(name)
        if action is None:
            known = ", ".join(sorted(actions)) or "none"
            raise ValueError(f"{instance} has no action '{name}' (known: {known})")
        account = payload.get("account")
        if action.per_account:
            if not isinstance(account, str) or not account:
                choices = ", ".join(action.accounts) or "none configured"
                raise ValueError(f"{instance} {name}: give an account ({choices})")
            if account not in action.accounts:
                choices = ", ".join(action.accounts) or "none configured"
                raise ValueError(f"{instance} {name}: unknown account '{account}' ({choices})")
        elif account is not None:
            raise ValueError(f"{instance} {name} is not per account: leave out 'account'")
        params = payload.get("params", {})
        if not isinstance(params, dict):
            raise ValueError("'params' must be a JSON object")
        request = ActionRequest(instance=instance, action=name, account=account, params=params)
        return self._run(action, request)

    async def _run(self, action: Action, request: ActionRequest) -> JsonValue:
        key = (request.instance, request.action, request.account)
        where = f"{request.instance} {request.action}"
        where += f" ({request.account})" if request.account else ""
        if key in self._running:
            raise ActionFailed(f"{where} is already running")
        self._running.add(key)
        try:
            async with asyncio.timeout(action.timeout):
                result = await action.run(request)
        except TimeoutError:
            raise ActionFailed(f"{where}: no result within {action.timeout:g} s") from None
        except BridgeError as exc:  # ActionFailed, LinkFailure: expected, their text says why
            raise ActionFailed(f"{where}: {exc}") from exc
        except Exception as exc:
            log.error("%s failed", where, exc_info=exc)
            raise ActionFailed(f"{where}: {type(exc).__name__}: {exc}") from exc
        finally:
            self._running.discard(key)
        answer: dict[str, Any] = {
            "instance": request.instance,
            "action": request.action,
            "account": request.account,
            "result": result,
        }
        return answer


def _text(payload: dict[str, JsonValue], key: str) -> str:
    value = payload.get(key)
    if not isinstance(value, str) or not value:
        raise ValueError(f"'{key}' is missing (a string)")
    return value

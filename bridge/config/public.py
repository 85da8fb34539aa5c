"""The configuration as it may be shown (``bridge/info``, ``fin2mqtt check``), and its secrets.

A value is shown only in its public form: secrets (``SecretStr``) and commands (``*_command``:
they often carry a password) as ``**********``, URLs without user info and query, Safe-like
addresses shortened, and any known secret value masked wherever it appears.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, JsonValue, SecretStr

from bridge.model.redaction import MASK, SECRETS, public_text

COMMAND_SUFFIX = "_command"
"""Settings holding a command line: shown masked, every argument a secret."""


def register_secrets(model: BaseModel) -> None:
    """Add every secret value of a settings model (recursively) to ``SECRETS``."""
    for name, value in _fields(model):
        _register(name, value)


def _register(name: str, value: Any) -> None:
    if isinstance(value, SecretStr):
        SECRETS.add(value.get_secret_value())
    elif isinstance(value, BaseModel):
        register_secrets(value)
    elif name.endswith(COMMAND_SUFFIX) and isinstance(value, list | tuple):
        SECRETS.add_command(str(v) for v in value)
    elif isinstance(value, str) and "://" in value:
        SECRETS.add_url(value)
    elif isinstance(value, list | tuple):
        for item in value:
            _register(name, item)
    elif isinstance(value, dict):
        for item in value.values():
            _register(name, item)


def public_view(model: BaseModel) -> dict[str, JsonValue]:
    """A settings model as JSON data fit for publishing (see the module docstring)."""
    return {name: _public(name, value) for name, value in _fields(model)}


def _public(name: str, value: Any) -> JsonValue:
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, SecretStr) or name.endswith(COMMAND_SUFFIX):
        return MASK
    if isinstance(value, BaseModel):
        return public_view(value)
    if isinstance(value, list | tuple | set | frozenset):
        return [_public(name, v) for v in value]
    if isinstance(value, dict):
        return {public_text(str(k)): _public(name, v) for k, v in value.items()}
    if isinstance(value, Path):
        return SECRETS.scrub(str(value))
    return public_text(str(value))


def _fields(model: BaseModel) -> list[tuple[str, Any]]:
    return [(name, getattr(model, name)) for name in type(model).model_fields]


SECRET_KEY_WORDS = ("password", "secret", "token", "key", "jwt", "credential")
"""Key names whose values are treated as secrets before the models have said so (a
configuration that does not validate is still reported without them)."""


def register_raw_secrets(data: Any, name: str = "") -> None:
    """Add secret-looking values of raw configuration data (TOML tables, env) to ``SECRETS``."""
    lowered = name.lower()
    if isinstance(data, dict):
        for key, value in data.items():
            register_raw_secrets(value, str(key))
    elif isinstance(data, list | tuple):
        if lowered.endswith(COMMAND_SUFFIX):
            SECRETS.add_command(str(v) for v in data)
        else:
            for item in data:
                register_raw_secrets(item, name)
    elif isinstance(data, str):
        if "://" in data:
            SECRETS.add_url(data)
        if any(w in lowered for w in SECRET_KEY_WORDS) and not lowered.endswith(
            ("_file", "_dir", "_path")
        ):
            SECRETS.add(data)

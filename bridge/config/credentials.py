"""Secrets from files: ``<key>_file`` settings and systemd credentials."""

from __future__ import annotations

import os
import types
import typing
from pathlib import Path
from typing import Any

from pydantic import BaseModel, SecretStr


def credentials_dir() -> Path | None:
    """The directory systemd's ``LoadCredential=`` fills, when running under systemd."""
    value = os.environ.get("CREDENTIALS_DIRECTORY")
    return Path(value) if value else None


def is_secret_annotation(annotation: Any) -> bool:
    """True for ``SecretStr`` and ``SecretStr | None``."""
    if annotation is SecretStr:
        return True
    origin = typing.get_origin(annotation)
    if origin is typing.Union or origin is types.UnionType:
        return any(arg is SecretStr for arg in typing.get_args(annotation))
    return False


def secret_fields(model: type[BaseModel]) -> list[str]:
    """Names of the model's fields that hold secrets."""
    return [name for name, f in model.model_fields.items() if is_secret_annotation(f.annotation)]


def read_secret_file(path: Path) -> str:
    """Read a secret file, dropping the trailing newline editors add."""
    return path.read_text(encoding="utf-8").rstrip("\r\n")


def resolve_secret_files(model: type[BaseModel], data: Any) -> Any:
    """Replace ``<name>_file = "path"`` by ``<name> = <file content>`` for secret fields.

    Used as a ``mode="before"`` validator, so it works whatever source the value came from.
    The file wins over a value given as well (precedence: credential, file, value; a systemd
    credential arrives as a ``_file`` pointing into ``$CREDENTIALS_DIRECTORY``).
    """
    if not isinstance(data, dict):
        return data
    out = dict(data)
    for name in secret_fields(model):
        file_key = f"{name}_file"
        if file_key not in out or file_key in model.model_fields:
            continue  # a declared <name>_file field is the model's own (e.g. re-read on connect)
        raw_path = out.pop(file_key)
        path = Path(str(raw_path)).expanduser()
        try:
            out[name] = read_secret_file(path)
        except OSError as exc:
            raise ValueError(f"{file_key}: cannot read {path}: {exc.strerror}") from exc
    return out


class CredentialFiles:
    """Secret fields of the daemon's own settings given as systemd credentials.

    ``mqtt__password`` becomes ``{"mqtt": {"password_file": "$CREDENTIALS_DIRECTORY/…"}}``: as a
    ``_file`` it wins over a ``password`` or ``password_file`` from the TOML file or the
    environment (``resolve_secret_files``), instead of conflicting with them.
    """

    def __init__(self, directory: Path, model: type[BaseModel]) -> None:
        self.directory = directory
        self.model = model

    def __call__(self) -> dict[str, Any]:
        """The credential files that name a secret field, as nested ``_file`` keys."""
        out: dict[str, Any] = {}
        try:
            names = sorted(p.name for p in self.directory.iterdir() if p.is_file())
        except OSError:
            return out
        for name in names:
            *path, field = name.split("__")
            model: type[BaseModel] | None = self.model
            for part in path:
                info = model.model_fields.get(part) if model is not None else None
                annotation = info.annotation if info is not None else None
                model = (
                    annotation
                    if isinstance(annotation, type) and issubclass(annotation, BaseModel)
                    else None
                )
            if path and model is not None and field in secret_fields(model):
                node = out
                for part in path:
                    node = node.setdefault(part, {})
                node[f"{field}_file"] = str(self.directory / name)
        return out

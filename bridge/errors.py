"""Errors raised by fin2mqtt.

BridgeError
 ├── ConfigError      the configuration or a plugin cannot be used (exit code 2)
 └── ProviderError    a provider instance failed at run time (it is restarted)
"""

from __future__ import annotations


class BridgeError(Exception):
    """Root of every error fin2mqtt raises on purpose."""


class ConfigError(BridgeError):
    """The configuration cannot be used; carries one message per problem."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


class ProviderError(BridgeError):
    """A provider instance failed; the supervisor logs it and restarts the instance."""

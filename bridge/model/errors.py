"""Errors raised by fin2mqtt.

BridgeError
 ├── ConfigError                  the configuration or a plugin cannot be used (exit code 2)
 ├── ActionFailed                 a provider action could not do its work (answered as an error)
 └── ProviderError                a provider instance failed at run time (it is restarted)
      └── LinkFailure             an upstream connection ended; the link decides what follows
           ├── TransportFailure       retry with capped, jittered backoff
           ├── AuthFailure            ``auth_failed``; re-read the secret; retry slowly
           ├── UpstreamConfigFailure  the upstream rejects our settings; retry rarely
           └── DoNotReconnect         e.g. a duplicate session; hold off for a long time
"""

from __future__ import annotations


class BridgeError(Exception):
    """Root of every error fin2mqtt raises on purpose."""


class ConfigError(BridgeError):
    """The configuration cannot be used; carries one message per problem."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


class ActionFailed(BridgeError):
    """A provider action failed for a reason its caller should read (the error answer's text)."""


class ProviderError(BridgeError):
    """A provider instance failed; the supervisor logs it and restarts the instance."""


class LinkFailure(ProviderError):
    """Why an upstream connection ended; the link's reconnect loop decides what follows."""


class TransportFailure(LinkFailure):
    """Network trouble, server error, missed keepalive: retry with backoff."""


class AuthFailure(LinkFailure):
    """Credentials rejected: report ``auth_failed``, read the secret again, retry slowly."""


class UpstreamConfigFailure(LinkFailure):
    """The upstream says our settings are wrong (unknown account, bad URL): retry rarely."""


class DoNotReconnect(LinkFailure):
    """Reconnecting now would make things worse (e.g. a duplicate session): hold off long."""

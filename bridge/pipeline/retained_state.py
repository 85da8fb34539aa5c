"""The retained-state store: every retained topic this bridge owns, and what it holds now.

State is published when its content changes, re-sent after a broker reconnect or Home
Assistant's birth, and cleared (an empty retained payload) when it goes. The topics a provider
instance owns are remembered across restarts (in the journal): what the previous run owned and
this run does not re-establish is cleared, once the owning link has been up for a while, or at
once when its instance is gone from the configuration. Memory is bounded by the live topics.
"""

from __future__ import annotations

from dataclasses import dataclass

from bridge.pipeline.journal import OwnerRow

Owner = tuple[str, str | None]
"""Provider instance and account."""


@dataclass(slots=True)
class _Topic:
    payload: bytes
    """What the topic holds (or is about to): empty while being cleared."""
    content: bytes
    """What counts as a change (the payload without bookkeeping fields, or a digest of it)."""
    owner: Owner | None
    notice: bytes = b""
    """While being cleared: the JSON published (not retained) on the topic before the clear."""


class RetainedState:
    """Retained topics, their current payloads, and which ones wait to be sent."""

    def __init__(self) -> None:
        self._topics: dict[str, _Topic] = {}
        self._dirty: dict[str, None] = {}
        self._stale: dict[str, Owner] = {}
        """Owned by the previous run and not (yet) re-established by this one."""
        self._owned: dict[str, Owner] = {}
        self._unsaved_owned: dict[str, Owner] = {}
        self._unsaved_payloads: dict[str, bytes] = {}
        """Payloads to keep across restarts (instances in ``_kept`` only)."""
        self._unsaved_disowned: set[str] = set()
        self._link_accounts: dict[str, set[str | None]] = {}
        """Per instance, the accounts whose link topic this run publishes."""
        self._sweeps: dict[Owner, float] = {}
        """When the stale topics of an owner may be cleared (its link came up + a delay)."""
        self._swept: set[Owner] = set()
        self._kept: set[str] = set()
        """Instances whose previous topics are kept (their provider does not restore state)."""
        self.persistent = False
        """True when ownership is written to the journal."""

    # previous run

    def load(self, rows: list[OwnerRow]) -> None:
        """Topics the previous run owned: stale until re-established, or (for instances whose
        provider restores nothing, see ``keep_stale``) live again with their kept payload."""
        for topic, instance, account, payload in rows:
            self._owned[topic] = (instance, account)
            if instance in self._kept and payload:
                # adopted: re-sent after a broker reconnect; the first change is published
                self._topics[topic] = _Topic(payload, b"", (instance, account))
            else:
                self._stale[topic] = (instance, account)

    def kept_payloads(self, instance: str) -> dict[str, bytes]:
        """What an instance that restores nothing published before the restart, by topic."""
        return {
            t: e.payload
            for t, e in self._topics.items()
            if e.owner is not None and e.owner[0] == instance and e.payload
        }

    def gone_instances(self, configured: set[str]) -> list[str]:
        """Stale topics of provider instances no longer configured."""
        return [t for t, (instance, _) in self._stale.items() if instance not in configured]

    def keep_stale(self, instance: str) -> None:
        """Never sweep ``instance``'s previous topics: nothing would re-establish them."""
        self._kept.add(instance)

    def link_seen(self, instance: str, account: str | None) -> None:
        """This run publishes the link state of ``account``."""
        self._link_accounts.setdefault(instance, set()).add(account)

    def link_up(self, instance: str, account: str | None, at: float) -> None:
        """A link of ``instance`` is up: its stale topics may be cleared from ``at`` on."""
        key = (instance, account)
        if instance in self._kept:
            return
        if key not in self._swept and key not in self._sweeps:
            self._sweeps[key] = at

    def due_stale(self, now: float) -> list[str]:
        """Stale topics whose owner's link has been up long enough; each sweep runs once."""
        due = [key for key, at in self._sweeps.items() if at <= now]
        topics: list[str] = []
        for instance, account in due:
            del self._sweeps[(instance, account)]
            self._swept.add((instance, account))
            linked = self._link_accounts.get(instance, set())
            for topic, (i, a) in self._stale.items():
                if i == instance and (account is None or a == account or a not in linked):
                    topics.append(topic)
        return topics

    # producer side

    def unchanged(self, topic: str, content: bytes) -> bool:
        """True when ``topic`` already holds ``content`` (so publishing it would repeat it)."""
        entry = self._topics.get(topic)
        return entry is not None and entry.content == content and bool(entry.payload)

    def set(
        self, topic: str, payload: bytes, *, content: bytes | None = None, owner: Owner | None
    ) -> bool:
        """Make ``payload`` the state of ``topic``; False when nothing changed."""
        content = payload if content is None else content
        entry = self._topics.get(topic)
        if entry is not None:
            if entry.content == content and entry.payload:
                return False
            entry.payload, entry.content, entry.notice = payload, content, b""
        else:
            self._topics[topic] = _Topic(payload, content, owner)
            self._stale.pop(topic, None)
            if owner is not None and self._owned.get(topic) != owner:
                self._owned[topic] = owner
                self._unsaved_owned[topic] = owner
                self._unsaved_disowned.discard(topic)
        if owner is not None and owner[0] in self._kept and self.persistent:
            self._unsaved_owned[topic] = owner
            self._unsaved_payloads[topic] = payload
        self._dirty[topic] = None
        return True

    def has_unsaved(self) -> bool:
        """True when kept payloads (or ownership) wait to be written."""
        return bool(self._unsaved_owned or self._unsaved_disowned)

    def clear(self, topic: str, notice: bytes = b"") -> bool:
        """Clear ``topic``, after publishing ``notice`` on it (not retained) when given; False
        when it holds nothing (or its clear is already on its way)."""
        entry = self._topics.get(topic)
        if entry is None:
            owner = self._stale.pop(topic, None)
            if owner is None:
                return False
            self._topics[topic] = _Topic(b"", b"", owner, notice)
        elif not entry.payload:
            return False
        else:
            entry.payload, entry.content, entry.notice = b"", b"", notice
        self._dirty[topic] = None
        return True

    def payload(self, topic: str) -> bytes | None:
        """What ``topic`` holds now (None when nothing)."""
        entry = self._topics.get(topic)
        return entry.payload if entry is not None and entry.payload else None

    def topics(self, prefixes: tuple[str, ...]) -> list[str]:
        """Topics with content (this run's or the previous run's) under any of ``prefixes``."""
        live = [t for t, e in self._topics.items() if e.payload and t.startswith(prefixes)]
        return live + [t for t in self._stale if t.startswith(prefixes)]

    def republish(self) -> None:
        """Send every topic again (after a reconnect, or Home Assistant's birth)."""
        for topic in self._topics:
            self._dirty[topic] = None

    # publisher side

    def has_dirty(self) -> bool:
        """True when a topic waits to be sent."""
        return bool(self._dirty)

    def take(self) -> tuple[str, bytes, bytes]:
        """The next topic to send, its payload, and (for a clear) the notice to send first."""
        topic = next(iter(self._dirty))
        del self._dirty[topic]
        entry = self._topics[topic]
        return topic, entry.payload, entry.notice

    def sent(self, topic: str, payload: bytes) -> None:
        """The broker acknowledged ``payload`` on ``topic``."""
        if payload or topic in self._dirty:
            return
        entry = self._topics.get(topic)
        if entry is not None and not entry.payload:
            del self._topics[topic]  # the clear is delivered and nothing newer waits
            if self._owned.pop(topic, None) is not None:
                self._unsaved_owned.pop(topic, None)
                self._unsaved_payloads.pop(topic, None)
                self._unsaved_disowned.add(topic)

    def unsent(self, topic: str) -> None:
        """A send of ``topic`` was not acknowledged: send its current payload again."""
        if topic in self._topics:
            self._dirty[topic] = None

    @property
    def pending(self) -> int:
        """Topics waiting to be sent."""
        return len(self._dirty)

    def __len__(self) -> int:
        return len(self._topics)

    # journal side

    def take_unsaved(self) -> tuple[list[OwnerRow], list[str]]:
        """Ownership gained and lost since the last call."""
        if not self.persistent:
            return [], []
        payloads = self._unsaved_payloads
        owned = [(t, i, a, payloads.get(t)) for t, (i, a) in self._unsaved_owned.items()]
        payloads.clear()
        disowned = list(self._unsaved_disowned)
        self._unsaved_owned.clear()
        self._unsaved_disowned.clear()
        return owned, disowned

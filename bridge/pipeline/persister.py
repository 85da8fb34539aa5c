"""Writes what changed in the outbox, the delivered ids and retained ownership to the journal.

Whatever changed (events not yet acknowledged, delivered ids, retained ownership) is written
every ``interval`` (at once when someone waits in ``Outbox.sync``), in one transaction in a
worker thread; while the broker keeps up, events are acknowledged before that and never
written, only their ids. So a SIGKILL forgets at most the last ``interval`` of acknowledgements
(those events come once more after the restart). A write that fails (disk full, read-only
directory) is said once, kept and retried with the next batch; the bridge goes on publishing
from memory meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3

from bridge.pipeline.journal import Batch, Journal
from bridge.pipeline.outbox import NotDurable, Outbox

log = logging.getLogger(__name__)

WRITE_INTERVAL = 0.05


class Persister:
    """The one writer of the journal while the daemon runs."""

    def __init__(
        self,
        journal: Journal,
        outbox: Outbox,
        interval: float = WRITE_INTERVAL,
    ) -> None:
        self.journal = journal
        self.outbox = outbox
        self.interval = interval
        self.failing: str | None = None
        """Why the last write failed (None while writes succeed)."""
        self.writes = 0
        self._failed = Batch()
        self._writing: asyncio.Future[bool] | None = None
        """The write running in the worker thread (it runs on when its awaiter is cancelled)."""

    async def run(self) -> None:
        """Write batches until cancelled; a last write on the way out."""
        try:
            while True:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.interval):  # not wait_for: see Outbox.room
                        await self.outbox.flush_wanted.wait()
                await self.write_once()
        finally:
            # cancelled (shutdown): save what is left, after the write still running in its
            # thread (written after it, its deletes would come before that write's puts)
            if self._writing is not None and not self._writing.done():
                await asyncio.wait([self._writing])
            self._write(self._take())

    def _take(self) -> Batch:
        outbox = self.outbox
        events, gone = outbox.take_unsaved()
        owned, disowned = outbox.retained.take_unsaved()
        batch = Batch(events, gone, outbox.seen.take_unsaved(), owned, disowned)
        if self._failed:
            batch, self._failed = self._failed.merge(batch), Batch()
        return batch

    async def write_once(self) -> None:
        """Write what changed since the last write."""
        waiters = self.outbox.take_sync_waiters()
        batch = self._take()
        ok = True
        if batch:
            self._writing = asyncio.ensure_future(asyncio.to_thread(self._write, batch))
            ok = await asyncio.shield(self._writing)
        for waiter in waiters:
            if waiter.done():
                continue
            if ok:
                waiter.set_result(None)
            else:
                waiter.set_exception(NotDurable(self.failing or "state not written"))

    def _write(self, batch: Batch) -> bool:
        if not batch:
            return True
        try:
            self.journal.write(batch)
        except (sqlite3.Error, OSError) as exc:
            self._failed = batch
            if self.failing is None:
                log.error(
                    "cannot write the state file %s: %s; events are kept in memory only (retrying)",
                    self.journal.path,
                    exc,
                )
            self.failing = str(exc)
            return False
        self.writes += 1
        if self.failing is not None:
            log.warning("state file %s writable again", self.journal.path)
            self.failing = None
        return True

"""Runs one provider instance's link forever: a crash is logged and restarted with backoff."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from bridge.api import Link, Provider
from bridge.backoff import Backoff
from bridge.config import SupervisorSettings
from bridge.context import InstanceContext
from bridge.faults import SeenFaults, describe


class ProviderRunner:
    """Keeps one provider instance's link running; isolated from every other instance."""

    def __init__(
        self, provider: Provider[Any], ctx: InstanceContext, settings: SupervisorSettings
    ) -> None:
        self.provider = provider
        self.ctx = ctx
        self.settings = settings
        self.backoff = Backoff(settings.restart_min, settings.restart_max)
        self.restarts = 0
        self._stopping = False
        self.faults = SeenFaults()
        self._link: Link | None = None
        self._log = logging.getLogger(f"fin2mqtt.supervisor.{provider.name}")

    async def run(self) -> None:
        """Run the link; restart it whenever it ends or raises, until ``close`` or cancelled."""
        while not self._stopping:
            started = time.monotonic()
            reason = await self._run_once()
            if self._stopping:
                return
            if time.monotonic() - started >= self.settings.healthy_after:
                self.backoff.reset()
            delay = self.backoff.next()
            self.restarts += 1
            self.ctx.set_link_state("disconnected", error=reason)
            self._log.warning("%s; restarting in %.1f s", reason, delay)
            await asyncio.sleep(delay)

    async def _run_once(self) -> str:
        """One life of the link; returns why it ended."""
        try:
            self._link = self.provider.create_link(self.ctx)
            await self._link.run()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - isolation: no plugin error stops the daemon
            reason = describe(exc)
            if self.faults.first(exc):  # a bug: show where, once per kind and place
                self._log.error("provider crashed", exc_info=exc)
            return reason
        finally:
            self._link = None
        return "link ended"

    async def close(self) -> None:
        """Ask the running link for a clean stop (the caller bounds the time and cancels)."""
        self._stopping = True
        link = self._link
        if link is None:
            return
        try:
            await link.close()
        except Exception:  # noqa: BLE001 - a failed goodbye must not block the shutdown
            self._log.warning("clean stop failed", exc_info=True)

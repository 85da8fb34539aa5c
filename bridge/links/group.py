"""Several links run as one (e.g. one WebSocket per account of a provider instance)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from bridge.api import Link


class LinkGroup(Link):
    """Runs its links side by side; closes them together."""

    def __init__(self, links: Sequence[Link]) -> None:
        self.links = list(links)

    async def run(self) -> None:
        """Run every link until all end (a bug in one stops the group and the supervisor acts)."""
        async with asyncio.TaskGroup() as tg:
            for n, link in enumerate(self.links):
                tg.create_task(link.run(), name=f"link-{n}")

    async def close(self) -> None:
        """Ask every link for a clean stop at once."""
        async with asyncio.TaskGroup() as tg:
            for link in self.links:
                tg.create_task(link.close())

"""A scripted provider for fin2mqtt's own tests: its "upstream" is a timer inside the link.

It emits a snapshot (balances, positions) on every start, then one ``tick`` frame per interval:
a transaction event and a new balance. It can crash on purpose, replay old ticks after a restart
(duplicates the hub must drop), send garbage, and records its clean-stop hook in a file.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from pydantic import Field, JsonValue, SecretStr

from bridge.api import (
    Action,
    ActionFailed,
    ActionRequest,
    AnyEvent,
    AuthFailure,
    BalanceEvent,
    Connection,
    ConnectionSpec,
    CustomSpec,
    Link,
    LinkHost,
    Money,
    ParseContext,
    PositionEvent,
    Provider,
    ProviderContext,
    ProviderSettings,
    RawEvent,
    TransactionEvent,
)


class TestProviderSettings(ProviderSettings):
    """Knobs of the scripted upstream."""

    account: str = "acc-1"
    accounts: list[str] = Field(default_factory=list)
    """One connection per account (each ticking for its own), instead of one for ``account``."""
    auth_fails: bool = False
    """The upstream refuses the credentials (the link raises AuthFailure on every start)."""
    asset: str = "USD"
    balance: Money = Decimal("100")
    amount: Money = Decimal("1.25")
    positions: dict[str, Money] = Field(default_factory=dict)
    interval: float = 0.05
    ticks: int | None = None
    """Stop ticking after this many (the link then stays connected and quiet)."""
    crash_after: int | None = None
    """Raise after this many ticks in each of the first ``crashes`` runs."""
    crashes: int = 1
    replay: int = 0
    """After a restart, send this many already-sent ticks again."""
    close_positions_at: int | None = None
    """Close every position at this tick number."""
    garbage_at: int | None = None
    """Send an unparsable frame instead of this tick number."""
    api_key: SecretStr | None = None
    client_secret: SecretStr | None = None
    url: str | None = None
    """Not dialled: a URL setting (with user info, a query key) for the redaction tests."""
    restores_state: bool = True
    """False: behave like a webhook provider, whose previous retained topics are kept."""
    stop_marker: Path | None = None
    """File the clean-stop hook writes to."""
    actions: bool = False
    """Offer the test actions (echo, refresh per account, fail, crash, slow, hang)."""
    action_timeout: float = 0.5


class TestProvider(Provider[TestProviderSettings]):
    """The scripted provider."""

    settings_model = TestProviderSettings

    def __init__(self, name: str, settings: TestProviderSettings) -> None:
        super().__init__(name, settings)
        self.restores_state = settings.restores_state  # type: ignore[misc]
        self.cursor = 0
        self.crashed = 0

    def connections(self, ctx: ProviderContext) -> Sequence[ConnectionSpec]:
        """One custom link (a new timer for each run), or one per account of ``accounts``."""
        if self.settings.accounts:
            return [
                CustomSpec(link=lambda host: TickLink(self, host), account=account)
                for account in self.settings.accounts
            ]
        return [CustomSpec(link=lambda host: TickLink(self, host))]

    def actions(self) -> Sequence[Action]:
        """Actions that succeed, fail, crash, take a while, or never end."""
        if not self.settings.actions:
            return ()
        timeout = self.settings.action_timeout
        return (
            Action(name="echo", title="Echo", run=self._echo, icon="mdi:message"),
            Action(
                name="refresh",
                title="Refresh",
                run=self._refresh,
                per_account=True,
                accounts=(self.settings.account,),
            ),
            Action(name="fail", title="Fail", run=self._fail),
            Action(name="crash", title="Crash", run=self._crash),
            Action(name="slow", title="Slow", run=self._slow, timeout=timeout * 4),
            Action(name="hang", title="Hang", run=self._slow, timeout=timeout),
        )

    async def _echo(self, request: ActionRequest) -> JsonValue:
        return {"params": dict(request.params)}

    async def _refresh(self, request: ActionRequest) -> JsonValue:
        return {"account": request.account, "ticks": self.cursor}

    async def _fail(self, request: ActionRequest) -> JsonValue:
        raise ActionFailed("the upstream said no")

    async def _crash(self, request: ActionRequest) -> JsonValue:
        raise RuntimeError("a bug in the plugin")

    async def _slow(self, request: ActionRequest) -> JsonValue:
        await asyncio.sleep(self.settings.action_timeout * 2)
        return "done"

    def parse(self, frame: Any, ctx: ParseContext) -> Sequence[AnyEvent]:
        """Snapshot and tick frames to events; anything else is an error (→ raw event)."""
        s = self.settings
        data = json.loads(frame)
        common = ctx.for_account(ctx.account or s.account).common
        tx = f"tx-{ctx.account}-" if s.accounts else "tx-"  # ids unique per account
        if data["type"] == "snapshot":
            events: list[AnyEvent] = [
                BalanceEvent(
                    id=f"bal-{data['seq']}", asset=s.asset, total=data["balance"], **common
                )
            ]
            for symbol, qty in data["positions"].items():
                direction = "closed" if Decimal(qty) == 0 else "long"
                events.append(
                    PositionEvent(
                        id=f"pos-{symbol}-{data['seq']}",
                        symbol=symbol,
                        direction=direction,
                        quantity=qty,
                        **common,
                    )
                )
            return events
        if data["type"] == "tick":
            seq = data["seq"]
            source_time = datetime.fromtimestamp(data["ts"], UTC)
            closed: list[AnyEvent] = [
                PositionEvent(
                    id=f"pos-{symbol}-{seq}",
                    symbol=symbol,
                    direction="closed",
                    quantity=0,
                    **common,
                )
                for symbol in data.get("closed", [])
            ]
            return [
                *closed,
                TransactionEvent(
                    id=f"{tx}{seq}",
                    type="deposit",
                    direction="in",
                    asset=s.asset,
                    amount=data["amount"],
                    source_time=source_time,
                    details={"seq": seq},
                    **common,
                ),
                BalanceEvent(id=f"bal-{seq}", asset=s.asset, total=data["balance"], **common),
            ]
        return [RawEvent(id=f"raw-{data.get('seq')}", name=str(data["type"]), data=data, **common)]

    async def on_stop(self, conn: Connection) -> None:
        """Record the clean stop, as a real plugin would send its unsubscribe."""
        if self.settings.stop_marker is not None:
            self.settings.stop_marker.write_text(f"stopped at {self.cursor}\n")


class TickLink(Link):
    """The scripted upstream: snapshot, then ticks on a timer."""

    def __init__(self, provider: TestProvider, ctx: LinkHost) -> None:
        self.provider = provider
        self.ctx = ctx
        self.account: str | None = None
        self.data: dict[str, Any] = {}

    async def send(self, message: JsonValue) -> None:
        """Nothing listens upstream."""

    async def request(
        self,
        message: dict[str, JsonValue],
        *,
        timeout: float | None = None,
        deliver_reply: bool = False,
    ) -> Any:
        """Every request succeeds."""
        return {"status": 200}

    async def expect(
        self, match: Callable[[Any], bool], *, timeout: float, what: str = "reply"
    ) -> Any:
        """Nothing is ever awaited from this upstream."""
        raise NotImplementedError("the scripted upstream sends no replies")

    async def run(self) -> None:
        """Connect, snapshot, tick."""
        p, s, ctx = self.provider, self.provider.settings, self.ctx
        if s.auth_fails:
            raise AuthFailure("invalid API key")
        await p.on_connect(self)
        ctx.connected()
        ctx.deliver(self._snapshot())
        start = 0 if s.accounts else max(0, p.cursor - s.replay)  # accounts: each from 0
        seq = start
        while s.ticks is None or seq < s.ticks:
            await asyncio.sleep(s.interval)
            if s.crash_after is not None and p.crashed < s.crashes and seq - start >= s.crash_after:
                p.crashed += 1
                raise RuntimeError(f"simulated crash {p.crashed} at tick {seq}")
            if seq == s.garbage_at:
                ctx.deliver(b"\x00not json{")
            else:
                ctx.deliver(self._tick(seq))
            seq += 1
            p.cursor = max(p.cursor, seq)
        await asyncio.Event().wait()  # quiet, like an account stream with nothing to say

    async def close(self) -> None:
        """Run the provider's clean-stop hook."""
        await self.provider.on_stop(self)

    def _balance(self, seq: int) -> Decimal:
        s = self.provider.settings
        return s.balance + s.amount * seq

    def _snapshot(self) -> str:
        s = self.provider.settings
        return json.dumps(
            {
                "type": "snapshot",
                "seq": self.provider.cursor,
                "balance": str(self._balance(self.provider.cursor)),
                "positions": {k: str(v) for k, v in s.positions.items()},
            }
        )

    def _tick(self, seq: int) -> str:
        s = self.provider.settings
        return json.dumps(
            {
                "type": "tick",
                "seq": seq,
                "ts": 1_700_000_000 + seq,
                "amount": str(s.amount),
                "balance": str(self._balance(seq + 1)),
                "closed": list(s.positions) if seq == s.close_positions_at else [],
            }
        )

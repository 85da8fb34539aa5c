"""Token faults with the IBEX simulator and the real plugin: a refused token fixed by rewriting
its file, and a token expiring mid-session. Transactions made while the link is down come back
in the burst after the reconnect (IBEX's ``transaction_data``); the ones already published are
not published again. Counted by transaction hash, known in advance.
"""

from __future__ import annotations

import asyncio
import time
from decimal import Decimal
from pathlib import Path

import jwt
from fin2mqtt_ibex.simulator import MAIN_SAFE, IbexSimulator

from bridge.testing.broker import Broker
from bridge.testing.daemon import DaemonProcess

from .conftest import Subscriber, no_crash, record, stop_cleanly, tally

LINK, TX = "fin2mqtt/ibex/link", "fin2mqtt/ibex/main/transaction"


def providers(sim: IbexSimulator, token_file: Path) -> str:
    return f"""
[[providers]]
type = "ibex"
name = "ibex"
api_url = "http://127.0.0.1:{sim.port}"
token_file = "{token_file}"
safes = [{{address = "{MAIN_SAFE}", alias = "main"}}]
fallback_after = 0.3
poll_interval = 0.12
rate_limits = [[100, 6.0], [20, 1.0]]
token_poll = 0.05
retry_min = 0.02
retry_max = 0.1
auth_retry = 0.3
duplicate_retry = 30
http_timeout = 2
auth_timeout = 2
"""


def hashes(sim: IbexSimulator) -> list[str]:
    return [tx["hash"] for tx in sim.safes[MAIN_SAFE].transactions]


def published(sub: Subscriber) -> list[str]:
    return [m.json()["tx_hash"] for m in sub.on(TX)]


async def test_auth_rejected_then_fixed(
    broker: Broker, subscriber: Subscriber, daemon_config, tmp_path
):
    async with IbexSimulator(seed=7, rate_limits=((100, 6.0), (20, 1.0))) as sim:
        path = tmp_path / "ibex.jwt"
        forged = jwt.encode({"sub": "u", "iss": "127.0.0.1", "exp": time.time() + 3600}, "x" * 32)
        path.write_text(forged + "\n")
        async with DaemonProcess(daemon_config(providers(sim, path)), tmp_path / "d") as daemon:
            await daemon.wait_ready()
            await subscriber.wait_link(LINK, "auth_failed")
            for n in range(3):  # made while the bridge cannot see them
                sim.add_transaction(MAIN_SAFE, Decimal(n + 1), push=False)
            await asyncio.sleep(0.5)
            attempts = len(sim.auth_failures)
            assert 1 <= attempts <= 4, sim.auth_failures  # retried, not in a loop
            fixed = time.monotonic()
            path.write_text(sim.mint() + "\n")
            up = await subscriber.wait_link(LINK, "connected")
            for n in range(5):
                await sim.push_transaction(MAIN_SAFE, Decimal(10 + n))
            expected = hashes(sim)
            await subscriber.wait_for(lambda _: set(expected) <= set(published(subscriber)))
            await asyncio.sleep(0.3)
            lost, dup = tally(published(subscriber), expected)
            assert set(sim.auth_failures) == {"INVALID_TOKEN"}
            assert subscriber.links(LINK)[-1] == ("connected", None)
            assert forged not in daemon.log()
            no_crash(daemon)
            await stop_cleanly(daemon)
    record(
        "auth_rejected_then_fixed", "token refused (bad signature) until its file is rewritten",
        len(expected), lost, dup, up - fixed, "token file rewritten → link topic connected",
    )  # fmt: skip


async def test_token_expired_mid_session(
    broker: Broker, subscriber: Subscriber, daemon_config, tmp_path
):
    async with IbexSimulator(seed=7, rate_limits=((100, 6.0), (20, 1.0))) as sim:
        sim.enforce_expiry = True
        path = tmp_path / "ibex.jwt"
        # long enough to outlive a slow start (a machine without bytecode caches took over 2 s
        # from exec to connected, and the token expired before the session began)
        path.write_text(sim.mint(expires_in=3.5) + "\n")
        async with DaemonProcess(daemon_config(providers(sim, path)), tmp_path / "d") as daemon:
            await daemon.wait_ready()
            await subscriber.wait_link(LINK, "connected")
            for n in range(5):
                await sim.push_transaction(MAIN_SAFE, Decimal(n + 1))
            await sim.wait_until(lambda: "TOKEN_EXPIRED" in sim.auth_failures, timeout=8)
            await subscriber.wait_link(LINK, "auth_failed")
            for n in range(3):
                sim.add_transaction(MAIN_SAFE, Decimal(20 + n), push=False)
            fixed = time.monotonic()
            path.write_text(sim.mint() + "\n")
            up = await subscriber.wait_link(LINK, "connected")
            await sim.push_transaction(MAIN_SAFE, Decimal(99))
            expected = hashes(sim)
            await subscriber.wait_for(lambda _: set(expected) <= set(published(subscriber)))
            await asyncio.sleep(0.3)
            lost, dup = tally(published(subscriber), expected)
            error = next(e for s, e in subscriber.links(LINK) if s == "auth_failed")
            assert error and "expired" in error.lower(), error
            no_crash(daemon)
            await stop_cleanly(daemon)
    record(
        "token_expired_mid_session", "JWT expired while connected, replaced in its file",
        len(expected), lost, dup, up - fixed, "token file rewritten → link topic connected",
    )  # fmt: skip

"""Health topic, /metrics, ``fin2mqtt status`` and sharding, against a real daemon and broker."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp
import jsonschema
from prometheus_client.parser import text_string_to_metric_families

from bridge.runtime.health import health_schema
from bridge.runtime.shard import ShardFilter, shard_of
from bridge.testing.daemon import DaemonProcess
from bridge.testing.ports import free_port
from bridge.testing.recorder import MqttRecorder

HEALTH = "fin2mqtt/bridge/health"


def status(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``fin2mqtt status`` as a user runs it."""
    return subprocess.run(
        [sys.executable, "-m", "bridge", "status", "-c", str(config), *args],
        check=False,
        capture_output=True,
        text=True,
        timeout=30,
    )


async def health_where(recorder: MqttRecorder, topic: str, predicate: Any) -> dict[str, Any]:
    """The first health payload on ``topic`` for which ``predicate`` holds."""
    found: list[dict[str, Any]] = []

    def check(messages: list[Any]) -> bool:
        for m in messages:
            if m.topic == topic and predicate(data := json.loads(m.payload)):
                found.append(data)
                return True
        return False

    try:
        await recorder.wait_for(check, timeout=15, what=f"health on {topic}")
    except AssertionError as exc:
        last = recorder.on(topic)[-1:] if recorder.on(topic) else None
        raise AssertionError(f"{exc}; last: {last and last[0].payload!r}") from None
    return found[0]


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of an exposition text, by name and labels."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


async def test_health_metrics_and_status_of_a_healthy_daemon(
    broker, recorder, daemon_config, tmp_path
):
    port = free_port()
    providers = """
[[providers]]
type = "testprov"
name = "alpha"
ticks = 6
crash_after = 2
"""
    extra = f"[health]\ninterval = 0.3\n[metrics]\nenabled = true\n[webhooks]\nport = {port}\n"
    config = daemon_config(providers, extra=extra)
    async with DaemonProcess(config, tmp_path / "d") as daemon:
        await daemon.wait_ready()
        # a crash (a fault) and the restart are counted; every tick goes in and out
        health = await health_where(
            recorder,
            HEALTH,
            lambda h: (
                h["providers"]["alpha"]["events_out"] == 6  # the transactions
                and [c["state"] for c in h["providers"]["alpha"]["connections"]] == ["connected"]
            ),
        )
        jsonschema.validate(health, health_schema())
        assert health["schema"] == 1
        assert health["node_id"] is None
        alpha = health["providers"]["alpha"]
        assert alpha["type"] == "testprov"
        (conn,) = alpha["connections"]
        assert conn["account"] is None
        assert conn["restarts"] == 1
        assert conn["reconnects"] == 1
        assert conn["events_in"] == 14  # 2 snapshots (a balance each), 6 ticks (2 events each)
        assert conn["last_event"] is not None
        assert health["broker"]["connected"] is True
        assert health["outbox"]["dropped"] == 0
        assert health["state_file"] == {"persistent": True, "failing": None}
        assert health["memory_rss_bytes"] > 10_000_000
        assert health["dedup"]["size"] >= 6

        async with (
            aiohttp.ClientSession() as http,
            http.get(f"http://127.0.0.1:{port}/metrics") as response,
        ):
            assert response.status == 200
            assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
            text = await response.text()
        metrics = samples(text)
        labels = (("instance", "alpha"), ("provider", "testprov"))
        assert metrics[("fin2mqtt_events_received_total", labels)] == 14
        assert metrics[("fin2mqtt_events_published_total", labels)] == 6
        assert metrics[("fin2mqtt_link_restarts_total", labels)] == 1
        assert metrics[("fin2mqtt_link_auth_failures_total", labels)] == 0
        assert metrics[("fin2mqtt_links", (*labels, ("state", "connected")))] == 1
        assert metrics[("fin2mqtt_broker_connected", ())] == 1
        assert metrics[("fin2mqtt_outbox_dropped_events_total", ())] == 0
        latency = (("instance", "alpha"),)
        assert metrics[("fin2mqtt_delivery_latency_seconds_count", latency)] == 6
        assert metrics[("fin2mqtt_delivery_latency_seconds_sum", latency)] > 0
        assert metrics[("process_resident_memory_bytes", ())] > 0
        assert "account" not in text  # no account labels unless asked for

        result = status(daemon.config_path)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "fin2mqtt: online, healthy" in result.stdout
        assert "alpha (testprov)" in result.stdout
        await daemon.terminate()

    result = status(daemon.config_path)
    assert result.returncode == 1
    assert "problem: bridge offline" in result.stdout


async def test_status_names_the_link_whose_credentials_are_refused(
    broker, recorder, daemon_config, tmp_path
):
    providers = """
[[providers]]
type = "testprov"
name = "good"
ticks = 1

[[providers]]
type = "testprov"
name = "refused"
auth_fails = true
"""
    logging = '[logging]\nformat = "json"\nlevels = {"fin2mqtt.provider.good" = "warning"}\n'
    config = daemon_config(providers, extra=f"[health]\ninterval = 0.3\n{logging}")
    async with DaemonProcess(config, tmp_path / "d") as daemon:
        await daemon.wait_ready()
        health = await health_where(
            recorder,
            HEALTH,
            lambda h: any(
                c["auth_failures"] >= 2 for c in h["providers"]["refused"]["connections"]
            ),
        )
        (conn,) = health["providers"]["refused"]["connections"]
        assert conn["state"] == "auth_failed"
        assert conn["error"] == "AuthFailure: invalid API key"
        result = status(daemon.config_path)
        assert result.returncode == 1, result.stdout
        assert (
            "problem: refused: credentials refused (auth_failed): AuthFailure: invalid API key"
            in (result.stdout)
        )
        assert "good" not in "".join(
            line for line in result.stdout.splitlines() if "problem" in line
        )
        await daemon.terminate()
    # JSON lines; one for the refusal, not one per retry; "good" quiet below warning
    records = [json.loads(line) for line in daemon.log().splitlines() if line.startswith("{")]
    assert len(records) == len(daemon.log().splitlines())
    refusals = [r for r in records if "auth_failed: AuthFailure: invalid API key" in r["message"]]
    assert [(r["logger"], r["level"]) for r in refusals] == [
        ("fin2mqtt.provider.refused", "warning")
    ]
    assert not [r for r in records if r["logger"] == "fin2mqtt.provider.good"]
    assert "Traceback" not in daemon.log()


ACCOUNTS = [f"acct-{n}" for n in range(8)]


def test_shards_split_the_accounts_stably():
    # the same slices in every process and run (a stable hash, not Python's seeded one)
    assert [shard_of("alpha", a, 2) for a in ACCOUNTS] == [0, 1, 0, 0, 1, 1, 1, 1]
    assert shard_of("alpha", None, 2) == shard_of("alpha", None, 2)
    for count in (1, 2, 3, 5):
        filters = [ShardFilter(i, count) for i in range(count)]
        for account in [*ACCOUNTS, None]:
            assert sum(f.owns("alpha", account) for f in filters) == 1


async def test_two_shards_stream_every_account_exactly_once(
    broker, recorder, daemon_config, tmp_path
):
    accounts = json.dumps(ACCOUNTS)
    providers = f"""
[[providers]]
type = "testprov"
name = "alpha"
ticks = 3
accounts = {accounts}
"""
    daemons = []
    for index in range(2):
        config = daemon_config(
            providers,
            extra=f'node_id = "n{index}"\nshard = "{index}/2"\n[health]\ninterval = 0.3\n',
        ).replace(str(tmp_path / "state"), str(tmp_path / f"state{index}"))
        daemons.append(DaemonProcess(config, tmp_path / f"d{index}"))
    async with daemons[0], daemons[1]:
        for daemon in daemons:
            await daemon.wait_ready()
        streamed: dict[str, set[str]] = {}
        for index in range(2):
            health = await health_where(
                recorder,
                f"fin2mqtt/bridge/n{index}/health",
                lambda h: (
                    bool(conns := h["providers"]["alpha"]["connections"])
                    and all(c["state"] == "connected" and c["events_in"] >= 7 for c in conns)
                ),
            )
            assert health["node_id"] == f"n{index}"
            assert health["shard"] == f"{index}/2"
            streamed[f"n{index}"] = {
                c["account"] for c in health["providers"]["alpha"]["connections"]
            }
        assert streamed["n0"] | streamed["n1"] == set(ACCOUNTS)
        assert not streamed["n0"] & streamed["n1"]
        assert streamed["n0"] and streamed["n1"]
        # on the broker: every account's transactions, each from one daemon only (no doubles)
        for account in ACCOUNTS:
            topic = f"fin2mqtt/alpha/{account}/transaction"
            await recorder.wait_topic(topic, count=3)
            assert len(recorder.on(topic)) == 3
        # each node has its own bridge topics; the single-node ones stay unused
        for index in range(2):
            state = recorder.on(f"fin2mqtt/bridge/n{index}/state")
            assert state and json.loads(state[-1].payload) == {"schema": 1, "state": "online"}
        assert not recorder.on("fin2mqtt/bridge/state")
        assert not recorder.on(HEALTH)

        result = status(daemons[0].config_path)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "node 'n0': online, healthy" in result.stdout
        assert "node 'n1': online, healthy" in result.stdout
        for daemon in daemons:
            await daemon.terminate()
    result = status(daemons[0].config_path)
    assert result.returncode == 1
    assert result.stdout.count("bridge offline") == 2

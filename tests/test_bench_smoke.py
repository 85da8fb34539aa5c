"""Keeps the benchmark harness from rotting: a tiny run of each part."""

from __future__ import annotations

import pytest

from bench import publisher, ready


async def test_publisher_benchmark_runs(tmp_path):
    result = await publisher.run(tmp_path, n=300, rounds=1)
    assert result["publisher_vs_awaiting"] > 0
    assert len(result["publisher_rates"]["publisher"]) == 1
    assert result["durable_vs_memory"] > 0


async def test_ready_benchmark_runs(tmp_path):
    result = await ready.run(tmp_path, rounds=1, instances=2)
    assert 0 < result["ready_s"] < 15


async def test_link_benchmark_runs():
    from bench import link

    result = await link.run(n=200, rounds=1)
    assert result["link_vs_plain"] > 0


async def test_scale_benchmark_runs(tmp_path):
    from bench import scale

    result = await scale.run(tmp_path, accounts=3, idle=0.5)
    assert result["rss_mb_3_accounts"] > 0


async def test_end_to_end_and_recovery_benchmarks_run(tmp_path):
    from bench import e2e, recovery
    from bridge.testing.broker import make_broker

    broker = make_broker(tmp_path / "broker")
    broker.start()
    try:
        tp = await e2e.throughput(tmp_path, broker, n=200, rounds=1, qos=1)
        assert tp["lost"] == 0
        assert tp["ratio"] > 0
        assert tp["cpu_us"] > 0 and tp["cpu_us_ideal"] > 0
        assert tp["rss_mb"] > 0 and tp["rss_mb_ideal"] > 0
        first = await e2e.first_event(tmp_path / "first", broker, rounds=1)
        assert 0 < first["fin2mqtt"][0] < 15 and 0 < first["ideal"][0] < 15
        lat = await e2e.latency(tmp_path, broker, rate=200, seconds=0.5)
        assert lat["lost"] == 0
        assert lat["p50_ms"] > 0
        cpu = await e2e.cpu_per_event(tmp_path, broker, rate=200, seconds=0.5, qos=1)
        assert cpu["lost"] == 0
        assert cpu["fin2mqtt_us"] > 0 and cpu["ideal_us"] > 0
        rec = await recovery.run(tmp_path, broker)
        assert rec["broker_recovery_s"] > 0
        assert rec["upstream_recovery_s"] > 0
    finally:
        broker.stop()


async def test_soak_runs_with_faults_and_loses_nothing(tmp_path):
    from bench import soak
    from bridge.testing.broker import make_broker

    if not make_broker(tmp_path / "probe").supports_persistence:
        pytest.skip("the soak restarts the broker: needs one that keeps sessions (mosquitto)")

    result = await soak.soak(
        minutes=0.05, rate=40, fault_every=1.0, workdir=tmp_path, sample_every=1.0
    )
    assert result["lost"] == 0
    assert result["faults"]  # at least one fault was injected
    assert result["exit_code"] == 0
    assert result["fds_end"] is not None

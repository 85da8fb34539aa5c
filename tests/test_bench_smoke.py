"""Keeps the benchmark harness from rotting: a tiny run of each part."""

from __future__ import annotations

from bench import publisher, ready


async def test_publisher_benchmark_runs(tmp_path):
    result = await publisher.run(tmp_path, n=300, rounds=1)
    assert result["publisher_vs_awaiting"] > 0
    assert len(result["publisher_rates"]["publisher"]) == 1


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

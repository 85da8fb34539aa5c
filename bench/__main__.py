"""``uv run python -m bench [--quick]``: every benchmark, as ratios against same-run baselines.

Writes ``bench/results/latest.json`` and ``bench/results/latest.md`` and prints the table.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from bench import e2e, link, publisher, ready, recovery, scale
from bench.stats import summary
from bridge.testing.broker import make_broker

RESULTS = Path(__file__).parent / "results"


def machine() -> dict[str, str]:
    """What the figures were measured on."""
    broker = "unknown"
    try:
        out = subprocess.run(["mosquitto", "-h"], capture_output=True, text=True, check=False)
        broker = out.stdout.splitlines()[0]
    except (OSError, IndexError):
        pass
    return {
        "cpus": str(os.cpu_count()),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "broker": broker,
    }


async def main(quick: bool) -> dict[str, Any]:
    """Run every benchmark in turn; returns the results."""
    n_tp, rounds = (20_000, 3) if quick else (100_000, 5)
    lat_seconds = 5.0 if quick else 30.0
    cpu_seconds = 5.0 if quick else 20.0
    idle = 10.0 if quick else 60.0
    results: dict[str, Any] = {"quick": quick, "machine": machine()}
    with tempfile.TemporaryDirectory(prefix="f2m-bench-") as tmp:
        work = Path(tmp)
        broker = make_broker(work / "broker")
        broker.start()
        try:
            qos1 = await e2e.throughput(work, broker, n_tp, rounds, 1)
            qos0 = await e2e.throughput(work, broker, n_tp, rounds, 0)
            lat = await e2e.latency(work, broker, 1000, lat_seconds)
            cpu = [
                await e2e.cpu_per_event(work / f"cpu-{r}", broker, 1000, cpu_seconds, 1)
                for r in range(rounds)
            ]
            rec = await recovery.run(work, broker)
        finally:
            broker.stop()
        pub = await publisher.run(work / "publisher", n_tp // 4, rounds)
        lnk = await link.run(n_tp // 4, rounds)
        start = await ready.run(work / "ready", rounds)
        broker = make_broker(work / "broker-first")
        broker.start()
        try:
            first = await e2e.first_event(work / "first", broker, rounds)
        finally:
            broker.stop()
        s100 = await scale.run(work / "scale100", 100, idle)
        s1000 = await scale.run(work / "scale1000", 1000, idle)
    results.update(
        {
            "events": n_tp,
            "rounds": rounds,
            "qos1_ratio": round(qos1["ratio"], 3),
            "qos1_events_per_s": round(statistics.median(qos1["fin2mqtt"])),
            "qos1_ideal_events_per_s": round(statistics.median(qos1["ideal"])),
            "qos0_ratio": round(qos0["ratio"], 3),
            "qos0_events_per_s": round(statistics.median(qos0["fin2mqtt"])),
            "qos0_ideal_events_per_s": round(statistics.median(qos0["ideal"])),
            "qos1_cpu_us": round(qos1["cpu_us"]),
            "qos1_cpu_us_ideal": round(qos1["cpu_us_ideal"]),
            "qos1_cpu_ratio": round(qos1["cpu_ratio"], 2),
            "qos1_cpu_ratios": [round(x, 2) for x in qos1["cpu_ratios"]],
            "qos0_cpu_us": round(qos0["cpu_us"]),
            "qos0_cpu_us_ideal": round(qos0["cpu_us_ideal"]),
            "qos0_cpu_ratio": round(qos0["cpu_ratio"], 2),
            "qos0_cpu_ratios": [round(x, 2) for x in qos0["cpu_ratios"]],
            "rss_mb_under_load": round(max(qos1["rss_mb"], qos0["rss_mb"]), 1),
            "rss_mb_ideal_under_load": round(max(qos1["rss_mb_ideal"], qos0["rss_mb_ideal"]), 1),
            "first_event_s": round(statistics.median(first["fin2mqtt"]), 3),
            "first_event_s_ideal": round(statistics.median(first["ideal"]), 3),
            "first_event_s_all": [round(x, 3) for x in first["fin2mqtt"]],
            "lost": qos1["lost"]
            + qos0["lost"]
            + int(lat["lost"])
            + int(sum(c["lost"] for c in cpu)),
            "p50_ms_at_1000": round(lat["p50_ms"], 2),
            "p99_ms_at_1000": round(lat["p99_ms"], 2),
            "max_ms_at_1000": round(lat["max_ms"], 2),
            "cpu_us_per_event_at_1000": round(statistics.median(c["fin2mqtt_us"] for c in cpu)),
            "cpu_us_ideal_at_1000": round(statistics.median(c["ideal_us"] for c in cpu)),
            "cpu_ratio_at_1000": round(statistics.median(c["ratio"] for c in cpu), 2),
            "cpu_ratios_at_1000": [round(c["ratio"], 2) for c in cpu],
            "durable_vs_memory": round(float(pub["durable_vs_memory"]), 2),
            "publisher_vs_awaiting": round(float(pub["publisher_vs_awaiting"]), 2),
            "publisher_vs_window50": round(float(pub["publisher_vs_window50"]), 2),
            "link_vs_plain": round(float(lnk["link_vs_plain"]), 2),
            "ready_s": round(float(start["ready_s"]), 3),
            "stop_s": round(float(start["stop_s"]), 3),
            **rec,
            **s100,
            **s1000,
        }
    )
    results["rss_mb_1000_accounts"] = s1000["rss_mb_1000_accounts"]
    results["cpu_pct_1000_accounts"] = s1000["cpu_pct_1000_accounts"]
    results["table"] = table(results, qos1, qos0)
    return results


def table(r: dict[str, Any], qos1: dict[str, Any], qos0: dict[str, Any]) -> str:
    """The results as a markdown table with the targets beside them."""
    q1, q0 = summary(qos1["ratios"], "{:.2f}"), summary(qos0["ratios"], "{:.2f}")
    rates1 = f"{r['qos1_events_per_s']:,} vs {r['qos1_ideal_events_per_s']:,} events/s"
    rates0 = f"{r['qos0_events_per_s']:,} vs {r['qos0_ideal_events_per_s']:,} events/s"
    lat = f"{r['p50_ms_at_1000']} / {r['p99_ms_at_1000']} / {r['max_ms_at_1000']} ms"
    big = (
        f"{r['connect_s_1000_accounts']} s / {r['rss_mb_1000_accounts']} MB / "
        f"{r['cpu_pct_1000_accounts']} %"
    )
    small = (
        f"{r['connect_s_100_accounts']} s / {r['rss_mb_100_accounts']} MB / "
        f"{r['cpu_pct_100_accounts']} %"
    )
    pub = f"{r['publisher_vs_awaiting']}x / {r['publisher_vs_window50']}x"
    c1, c0 = summary(r["qos1_cpu_ratios"], "{:.2f}"), summary(r["qos0_cpu_ratios"], "{:.2f}")
    first = summary(r["first_event_s_all"], "{:.2f}")
    first = f"{first} s (ideal bridge {r['first_event_s_ideal']} s)"
    rss = f"{r['rss_mb_under_load']} MB (ideal bridge {r['rss_mb_ideal_under_load']} MB)"
    rows = [
        ("QoS 1 saturation vs the ideal bridge", f"{q1}x ({rates1})", ">= 1.3x"),
        ("QoS 0 saturation vs the ideal bridge", f"{q0}x ({rates0})", ">= 1.3x"),
        ("CPU per event at saturation, QoS 1, vs the ideal bridge",
         f"{c1}x ({r['qos1_cpu_us']} vs {r['qos1_cpu_us_ideal']} µs)", "<= 0.8x"),
        ("CPU per event at saturation, QoS 0, vs the ideal bridge",
         f"{c0}x ({r['qos0_cpu_us']} vs {r['qos0_cpu_us_ideal']} µs)", "<= 0.8x"),
        ("peak RSS under load (one account)", rss, "<= 60 MB"),
        ("exec -> first event at a subscriber", first, "<= 1.0 s"),
        ("events lost", str(r["lost"]), "0"),
        ("latency at 1,000 events/s: p50 / p99 / max", lat, "p99 <= 5 ms"),
        ("CPU per event at 1,000 events/s QoS 1, vs the ideal bridge",
         f"{summary(r['cpu_ratios_at_1000'], '{:.2f}')}x ({r['cpu_us_per_event_at_1000']} vs "
         f"{r['cpu_us_ideal_at_1000']} µs)", "<= 1.0x"),
        ("1,000 accounts: all streaming / RSS / idle CPU", big, "<= 150 MB, <= 25 %"),
        ("100 accounts: all streaming / RSS / idle CPU", small, ""),
        ("start to READY (5 providers) / SIGTERM to exit",
         f"{r['ready_s']} s / {r['stop_s']} s", "READY <= 1 s"),
        ("broker restarted -> retained state back", f"{r['broker_recovery_s']} s", "<= 2 s"),
        ("upstream dropped -> link connected again", f"{r['upstream_recovery_s']} s", ""),
        ("publisher alone vs aiomqtt awaiting / 50 in flight", pub, ""),
        ("durable outbox vs memory only (a 'burst' written to disk while it drains)",
         f"{r['durable_vs_memory']}x", ""),
        ("WebSocket link -> hub vs bare recv + json.loads", f"{r['link_vs_plain']}x", ""),
    ]  # fmt: skip
    m = r["machine"]
    head = (
        f"Measured {'(quick) ' if r['quick'] else ''}on {m['cpus']} cores, Python {m['python']}, "
        f"{m['broker']}; median [min-max] of {r['rounds']} interleaved rounds, "
        f"{r['events']:,} events per round.\n\n"
    )
    lines = ["| what | result | target |", "|---|---|---|"]
    lines += [f"| {a} | {b} | {c} |" for a, b, c in rows]
    return head + "\n".join(lines) + "\n"


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller runs (about 3 minutes)")
    out = asyncio.run(main(parser.parse_args().quick))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "latest.json").write_text(json.dumps(out, indent=1) + "\n")
    (RESULTS / "latest.md").write_text(out["table"])
    print()
    print(out["table"])

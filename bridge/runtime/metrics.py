"""Prometheus ``/metrics`` (``[metrics] enabled = true``) on the daemon's HTTP server.

The counters are read from the health payload at scrape time (one source of truth), into a
registry of our own; only the upstream-to-broker latency is a histogram kept here. Labels:
``instance`` (the provider instance's name) and ``provider`` (its plugin type); ``account``
only with ``account_labels = true`` (account ids can be personal and many).

prometheus-client is imported when metrics are enabled, not before.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric

    from bridge.pipeline.outbox import Message
    from bridge.runtime.health import Health

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
LINK_STATES = ("connected", "connecting", "disconnected", "auth_failed", "fallback")
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class Metrics:
    """The registry behind ``/metrics``."""

    def __init__(self, health: Health, *, account_labels: bool = False) -> None:
        from prometheus_client import CollectorRegistry, Histogram
        from prometheus_client.process_collector import ProcessCollector

        self.health = health
        self.account_labels = account_labels
        self.registry = CollectorRegistry(auto_describe=True)
        self.latency = Histogram(
            "fin2mqtt_delivery_latency_seconds",
            "Seconds from an event's arrival from upstream to the broker's acknowledgement",
            ["instance"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        ProcessCollector(registry=self.registry)  # process_resident_memory_bytes, cpu, fds
        self.registry.register(_HealthCollector(self))
        health.observe_deliveries(self.delivered)

    def delivered(self, instance: str, msg: Message) -> None:
        """An event acknowledged by the broker: observe how long it took since it arrived."""
        if msg.received > 0:
            self.latency.labels(instance).observe(max(0.0, time.time() - msg.received))

    def render(self) -> bytes:
        """The exposition text."""
        from prometheus_client import generate_latest

        return generate_latest(self.registry)


class _HealthCollector:
    """Metric families built from the health payload at each scrape."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def describe(self) -> list[Metric]:
        """Nothing to describe ahead (names are fixed, label values are not)."""
        return []

    def collect(self) -> Iterator[Metric]:  # noqa: PLR0915 - one family after the other
        """Every family, from one health payload."""
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        h = self.metrics.health.payload()
        per_account = self.metrics.account_labels

        def gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
            return GaugeMetricFamily(name, doc, value=value)

        def counter(name: str, doc: str, value: float) -> CounterMetricFamily:
            return CounterMetricFamily(name, doc, value=value)

        yield gauge("fin2mqtt_uptime_seconds", "Seconds since the daemon started", h.uptime_s)
        yield gauge("fin2mqtt_broker_connected", "1 while connected", h.broker.connected)
        yield counter("fin2mqtt_broker_connects", "Connections to the broker", h.broker.connects)
        yield gauge("fin2mqtt_outbox_events", "Events waiting for the broker", h.outbox.events)
        yield gauge("fin2mqtt_outbox_bytes", "Payload bytes waiting for the broker", h.outbox.bytes)
        yield gauge("fin2mqtt_outbox_inflight", "Publishes awaiting PUBACK", h.outbox.inflight)
        yield counter(
            "fin2mqtt_outbox_dropped_events", "Events dropped, outbox full", h.outbox.dropped
        )
        yield counter(
            "fin2mqtt_published_messages", "Messages the broker acknowledged", h.outbox.published
        )
        yield gauge("fin2mqtt_dedup_ids", "Event ids remembered for deduplication", h.dedup.size)
        yield counter(
            "fin2mqtt_duplicate_events", "Events dropped as duplicates", h.dedup.duplicates
        )
        yield gauge(
            "fin2mqtt_state_file_failing",
            "1 while the state file cannot be written",
            h.state_file.failing is not None,
        )
        yield gauge(
            "fin2mqtt_event_loop_lag_seconds", "Largest event-loop delay lately", h.loop_lag_s
        )

        base = ["instance", "provider"]
        conn_labels = [*base, "account"] if per_account else base
        received = CounterMetricFamily(
            "fin2mqtt_events_received", "Events received from upstream", labels=conn_labels
        )
        published = CounterMetricFamily(
            "fin2mqtt_events_published", "Events the broker acknowledged", labels=base
        )
        parse_errors = CounterMetricFamily(
            "fin2mqtt_parse_errors", "Upstream frames that could not be parsed", labels=base
        )
        reconnects = CounterMetricFamily(
            "fin2mqtt_link_reconnects", "Times a link came back after being up", labels=conn_labels
        )
        restarts = CounterMetricFamily(
            "fin2mqtt_link_restarts", "Restarts of links that ended or crashed", labels=conn_labels
        )
        auth = CounterMetricFamily(
            "fin2mqtt_link_auth_failures", "Credentials refused by the upstream", labels=conn_labels
        )
        links = GaugeMetricFamily(
            "fin2mqtt_links", "Connections per link state", labels=[*base, "state"]
        )
        last_event = GaugeMetricFamily(
            "fin2mqtt_last_event_timestamp_seconds",
            "Unix time of the last event received",
            labels=conn_labels,
        )
        for name, inst in h.providers.items():
            labels = [name, inst.type]
            published.add_metric(labels, inst.events_out)
            parse_errors.add_metric(labels, inst.parse_errors)
            states = dict.fromkeys(LINK_STATES, 0)
            sums: dict[tuple[str, ...], list[float]] = {}
            for conn in inst.connections:
                if conn.state is not None:
                    states[conn.state] = states.get(conn.state, 0) + 1
                key = (*labels, conn.account or "") if per_account else tuple(labels)
                row = sums.setdefault(key, [0, 0, 0, 0, 0])
                row[0] += conn.events_in
                row[1] += conn.reconnects
                row[2] += conn.restarts
                row[3] += conn.auth_failures
                if conn.last_event is not None:
                    row[4] = max(row[4], conn.last_event.timestamp())
            for state, count in states.items():
                links.add_metric([*labels, state], count)
            for key, (n_in, n_re, n_rs, n_auth, last) in sums.items():
                received.add_metric(list(key), n_in)
                reconnects.add_metric(list(key), n_re)
                restarts.add_metric(list(key), n_rs)
                auth.add_metric(list(key), n_auth)
                if last:
                    last_event.add_metric(list(key), last)
        yield from (received, published, parse_errors, reconnects, restarts, auth)
        yield from (links, last_event)

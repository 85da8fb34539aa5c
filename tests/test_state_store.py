"""The retained-state store, the outbox's journal, and webhooks answered only once durable."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from datetime import UTC, datetime

import aiohttp
import pytest

from bridge.config.settings import WebhookSettings
from bridge.links.webhook_server import WebhookRoute, WebhookServer
from bridge.model.events import AccountStatusEvent, BalanceEvent, PositionEvent
from bridge.mqtt.topics import TopicMap
from bridge.pipeline.hub import Hub
from bridge.pipeline.journal import Batch, Journal
from bridge.pipeline.outbox import Outbox
from bridge.pipeline.persister import Persister

NOW = datetime(2026, 1, 1, tzinfo=UTC)


async def drain(outbox: Outbox) -> list[tuple[str, bytes]]:
    """Publish everything waiting, acknowledging each message; what was sent."""
    sent = []
    while outbox.pending_state or outbox.pending_events:
        msg = await outbox.get()
        outbox.done(msg)
        sent.append((msg.topic, msg.payload))
    return sent


async def test_a_second_clear_while_the_first_is_in_flight_does_not_crash():
    outbox = Outbox(100)
    outbox.set_state("t/pos", b'{"q":"1"}')
    outbox.done(await outbox.get())
    assert outbox.clear_state("t/pos")
    first_clear = await outbox.get()  # in flight
    assert not outbox.clear_state("t/pos")  # nothing more to clear: no second publish
    outbox.republish_state()  # Home Assistant's birth meanwhile
    outbox.done(first_clear)
    assert await drain(outbox) == [("t/pos", b"")]  # the re-send of the cleared topic
    assert outbox.state("t/pos") is None
    assert len(outbox.retained) == 0
    assert await outbox.wait_idle(0.1)


async def test_a_topic_set_again_while_its_clear_is_in_flight_keeps_its_new_state():
    outbox = Outbox(100)
    outbox.set_state("t/pos", b"1")
    outbox.done(await outbox.get())
    outbox.clear_state("t/pos")
    clear = await outbox.get()
    outbox.set_state("t/pos", b"2")
    outbox.done(clear)  # the PUBACK of the old clear must not forget the new state
    assert await drain(outbox) == [("t/pos", b"2")]
    assert outbox.state("t/pos") == b"2"


async def test_a_topic_that_never_held_anything_is_never_cleared():
    outbox = Outbox(100)
    hub = Hub(TopicMap("b"), outbox, None, 1)
    closed = PositionEvent(
        provider="h", account="a", id="p", received_at=NOW, symbol="BTC", direction="closed",
        quantity="0",
    )  # fmt: skip
    hub.submit([closed, closed])
    assert await drain(outbox) == []


async def test_a_repeated_state_is_published_once_whatever_its_id_and_times():
    outbox = Outbox(100)
    hub = Hub(TopicMap("b"), outbox, None, 1)

    def kyc(n: int, status: str = "verified") -> AccountStatusEvent:
        return AccountStatusEvent(
            provider="i", account="u", id=f"kyc-{n}", received_at=NOW.replace(second=n),
            source_time=NOW.replace(second=n), topic="kyc", status=status,
        )  # fmt: skip

    hub.submit([kyc(1)])
    first = await drain(outbox)
    hub.submit([kyc(2)])  # the same snapshot again, a moment later
    assert await drain(outbox) == []
    hub.submit([kyc(3, "pending")])
    changed = await drain(outbox)
    assert [t for t, _ in first] == [t for t, _ in changed] == ["b/i/u/status/kyc"]
    outbox.republish_state()  # after a reconnect: sent again, even though unchanged
    assert [t for t, _ in await drain(outbox)] == ["b/i/u/status/kyc"]


async def test_events_are_written_to_the_journal_and_removed_on_puback(tmp_path):
    journal = Journal(tmp_path, 1000)
    journal.open()
    outbox = Outbox(100)
    outbox.persistent = outbox.seen.persistent = True
    persister = Persister(journal, outbox)
    for n in range(3):
        outbox.put_event("t/tx", b"%d" % n, 1, key=f"k{n}")
    assert Journal(tmp_path, 1000).open().events == []  # nothing written yet
    async with asyncio.TaskGroup() as tg:
        task = tg.create_task(persister.run())
        outbox.put_event("t/tx", b"3", 1, key="k3")
        await outbox.sync()
        loaded = Journal(tmp_path, 1000).open()
        assert [(seq, key) for seq, key, *_ in loaded.events] == [
            (1, "k0"), (2, "k1"), (3, "k2"), (4, "k3"),
        ]  # fmt: skip
        outbox.done(await outbox.get())
        outbox.done(await outbox.get())
        await persister.write_once()
        task.cancel()
    loaded = Journal(tmp_path, 1000).open()
    assert [key for _, key, *_ in loaded.events] == ["k2", "k3"]
    assert loaded.delivered == ["k0", "k1"]
    journal.close()


def durable_outbox(journal: Journal, interval: float) -> tuple[Outbox, Persister]:
    """An outbox kept in ``journal`` (opened here) by a persister writing every ``interval``."""
    journal.open()
    outbox = Outbox(100)
    outbox.persistent = outbox.seen.persistent = True
    return outbox, Persister(journal, outbox, interval=interval)


async def test_an_acknowledged_id_reaches_the_file_within_one_write_interval(tmp_path):
    """What a SIGKILL can forget: only the acknowledgements of the last interval, also when
    the broker keeps up and no event is ever written (the case that used to wait 1 s)."""
    journal = Journal(tmp_path, 1000)
    outbox, persister = durable_outbox(journal, interval=0.02)
    async with asyncio.TaskGroup() as tg:
        task = tg.create_task(persister.run())
        await asyncio.sleep(0.05)  # the loop is in its steady state
        outbox.put_event("t/tx", b"0", 1, key="k0")
        outbox.done(await outbox.get())  # acknowledged before any write: the event never is
        await asyncio.sleep(0.1)  # five intervals
        loaded = Journal(tmp_path, 1000).open()
        task.cancel()
    assert loaded.events == []
    assert loaded.delivered == ["k0"]
    journal.close()


class SlowJournal(Journal):
    """A disk that takes its time: each write waits before it commits."""

    started = threading.Event()

    def write(self, batch: Batch) -> None:
        self.started.set()
        time.sleep(0.2)
        super().write(batch)


async def test_a_stop_during_a_write_keeps_the_order_of_puts_and_deletes(tmp_path):
    """The last write on the way out waits for the one still running in its thread: written
    first, its delete of an acknowledged event would precede that event's insert, and the next
    start would send the event again."""
    journal = SlowJournal(tmp_path, 1000)
    outbox, persister = durable_outbox(journal, interval=0.01)
    async with asyncio.TaskGroup() as tg:
        task = tg.create_task(persister.run())
        outbox.put_event("t/tx", b"0", 1, key="k0")
        while not journal.started.is_set():
            await asyncio.sleep(0.005)  # the insert of k0 is on its way to the disk
        outbox.done(await outbox.get())  # then the broker acknowledges k0
        task.cancel()  # and the daemon stops
    loaded = Journal(tmp_path, 1000).open()
    assert loaded.events == []  # nothing to send again
    assert loaded.delivered == ["k0"]
    journal.close()


async def test_a_webhook_is_answered_only_once_its_event_is_durable_and_503_when_full(tmp_path):
    journal = Journal(tmp_path, 1000)
    journal.open()
    outbox = Outbox(100)
    outbox.persistent = outbox.seen.persistent = True
    hub = Hub(TopicMap("b"), outbox, None, 1)
    persister = Persister(journal, outbox, interval=10.0)  # only a waiting webhook writes
    server = WebhookServer(
        WebhookSettings(port=0), durable=outbox.sync, overloaded=lambda: outbox.above(0.9)
    )

    def deliver(body: dict[str, str]) -> None:
        hub.submit([
            BalanceEvent(provider="v", id=body["id"], received_at=NOW, asset="EUR", total="1"),
        ])  # fmt: skip
        outbox.put_event("b/v/sync", body["id"].encode(), 1, key=body["id"])

    server.add(WebhookRoute("/hook"), deliver)
    async with asyncio.TaskGroup() as tg:
        tasks = [tg.create_task(server.run()), tg.create_task(persister.run())]
        await asyncio.wait_for(server.listening.wait(), 5)
        url = f"http://127.0.0.1:{server.port}/hook"
        async with aiohttp.ClientSession() as http:
            async with http.post(url, json={"id": "h1"}) as response:
                assert response.status == 200
                # the 2xx came after the event was written
                assert [k for _, k, *_ in Journal(tmp_path, 1000).open().events] == ["h1"]
            for n in range(2, 92):
                outbox.put_event("b/v/sync", b"x", 1, key=f"fill-{n}")
            async with http.post(url, json={"id": "h2"}) as response:
                assert response.status == 503
                assert response.headers["Retry-After"] == "30"
                assert (await response.json())["error"].startswith("the outbox is nearly full")
        assert not outbox.waiting("h2")  # refused: nothing was accepted
        for task in tasks:
            task.cancel()
    journal.close()


def test_acknowledgements_out_of_order_delete_exactly_their_events(tmp_path):
    journal = Journal(tmp_path, 1000)
    journal.open()
    rows = [(seq, f"k{seq}", "t/tx", b"%d" % seq, 1) for seq in range(1, 9)]
    journal.write(Batch(events=rows))
    journal.write(Batch(gone=[7, 2, 3, 1, 5, 3], delivered=["k7", "k2", "k3", "k1", "k5"]))
    loaded = Journal(tmp_path, 1000).open()
    assert [seq for seq, *_ in loaded.events] == [4, 6, 8]
    assert loaded.delivered == ["k7", "k2", "k3", "k1", "k5"]  # in the order acknowledged
    journal.close()


def rows_of(seqs, topic: str = "t/tx"):
    return [(seq, f"k{seq}", topic, b'{"n":%d}' % seq, 1) for seq in seqs]


def table_rows(tmp_path, table: str) -> int:
    db = sqlite3.connect(tmp_path / "state.sqlite3")
    try:
        return int(db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])
    finally:
        db.close()


def test_events_are_written_one_row_per_write_and_a_row_goes_with_its_last_event(tmp_path):
    """Two writes (two rows); acknowledgements across both, out of order and repeated: a start
    reads exactly the events still waiting, with their topic, payload and QoS, and a row is
    deleted once none of its events waits (the gone ranges of deleted rows with it)."""
    journal = Journal(tmp_path, 1000)
    journal.open()
    journal.write(Batch(events=rows_of(range(1, 6))))
    journal.write(Batch(events=[*rows_of([7, 9, 10], topic="t/€/x"), (11, None, "t/r", b"", 0)]))
    assert table_rows(tmp_path, "outbox_runs") == 2
    journal.write(Batch(gone=[4, 2, 9, 2]))
    loaded = Journal(tmp_path, 1000).open()
    assert loaded.events == rows_of([1, 3, 5]) + rows_of([7, 10], topic="t/€/x") + [
        (11, None, "t/r", b"", 0)
    ]
    journal.write(Batch(gone=[1, 5, 3]))  # the first write's last events
    assert table_rows(tmp_path, "outbox_runs") == 1
    assert table_rows(tmp_path, "outbox_gone") == 1  # 9, of the row still there
    assert [seq for seq, *_ in Journal(tmp_path, 1000).open().events] == [7, 10, 11]
    journal.write(Batch(gone=[10, 11, 7], events=rows_of([12])))
    assert (table_rows(tmp_path, "outbox_runs"), table_rows(tmp_path, "outbox_gone")) == (1, 0)
    assert Journal(tmp_path, 1000).open().events == rows_of([12])
    journal.close()


def test_a_restart_goes_on_deleting_the_events_it_read(tmp_path):
    """The rows read at start are tracked like the ones written: delivered after a restart,
    they go; a write after the restart adds its own row."""
    journal = Journal(tmp_path, 1000)
    journal.open()
    journal.write(Batch(events=rows_of(range(1, 5))))
    journal.write(Batch(gone=[2]))
    journal.close()
    again = Journal(tmp_path, 1000)
    assert [seq for seq, *_ in again.open().events] == [1, 3, 4]
    again.write(Batch(events=rows_of([5]), gone=[1, 3]))
    again.write(Batch(gone=[4]))
    assert Journal(tmp_path, 1000).open().events == rows_of([5])
    assert (table_rows(tmp_path, "outbox_runs"), table_rows(tmp_path, "outbox_gone")) == (1, 0)
    again.close()


def test_a_row_whose_events_are_all_gone_is_read_as_nothing_and_deleted(tmp_path):
    """Defensive: should a row outlive its events (its ranges cover them all), a start reads
    none of them and the next deleting write removes it."""
    journal = Journal(tmp_path, 1000)
    journal.open()
    journal.write(Batch(events=rows_of([1, 2])))
    journal.write(Batch(events=rows_of([3])))
    journal.close()
    db = sqlite3.connect(tmp_path / "state.sqlite3")
    db.execute("INSERT INTO outbox_gone (first, last) VALUES (1, 2)")
    db.commit()
    db.close()
    again = Journal(tmp_path, 1000)
    assert again.open().events == rows_of([3])
    again.write(Batch(gone=[3]))
    assert (table_rows(tmp_path, "outbox_runs"), table_rows(tmp_path, "outbox_gone")) == (0, 0)
    again.close()


def test_waiting_events_of_an_earlier_version_are_read_first_and_deleted_as_they_go(tmp_path):
    """A state file written one event per row keeps its events: before the new ones, and gone
    from the file once delivered."""
    db = sqlite3.connect(tmp_path / "state.sqlite3")
    db.execute(
        "CREATE TABLE outbox (seq INTEGER PRIMARY KEY, key TEXT, topic TEXT NOT NULL,"
        " payload BLOB NOT NULL, qos INTEGER NOT NULL)"
    )
    db.executemany("INSERT INTO outbox VALUES (?, ?, ?, ?, ?)", rows_of([3, 4, 6]))
    db.commit()
    db.close()
    journal = Journal(tmp_path, 1000)
    assert journal.open().events == rows_of([3, 4, 6])
    journal.write(Batch(events=rows_of([7, 8]), gone=[4]))
    assert Journal(tmp_path, 1000).open().events == rows_of([3, 6, 7, 8])
    journal.write(Batch(gone=[3, 7, 6]))
    assert Journal(tmp_path, 1000).open().events == rows_of([8])
    assert table_rows(tmp_path, "outbox") == 0
    journal.close()


def test_a_failed_write_of_events_leaves_the_file_and_the_next_writes_in_agreement(tmp_path):
    """A write that rolls back (here a bad retained row) forgets its events and deletes;
    the same batch again, as the persister retries it, writes and deletes exactly once."""
    journal = Journal(tmp_path, 1000)
    journal.open()
    journal.write(Batch(events=rows_of([1, 2, 3])))
    bad = Batch(events=rows_of([4, 5]), gone=[1, 2, 3, 4], owned=[("t", None, None, None)])  # type: ignore[list-item]
    with pytest.raises(sqlite3.IntegrityError):
        journal.write(bad)
    assert [seq for seq, *_ in Journal(tmp_path, 1000).open().events] == [1, 2, 3]
    journal.write(Batch(events=rows_of([4, 5]), gone=[1, 2, 3, 4]))
    assert Journal(tmp_path, 1000).open().events == rows_of([5])
    assert (table_rows(tmp_path, "outbox_runs"), table_rows(tmp_path, "outbox_gone")) == (1, 1)
    journal.close()


def test_delivered_ids_are_kept_up_to_the_capacity_in_runs(tmp_path):
    """One row per write; the newest ``capacity`` ids survive, in the order acknowledged."""
    journal = Journal(tmp_path, 5)
    journal.open()
    for run in range(4):
        journal.write(Batch(delivered=[f"k{run * 3 + i}" for i in range(3)]))
    assert Journal(tmp_path, 5).open().delivered == ["k7", "k8", "k9", "k10", "k11"]
    journal.close()
    db = sqlite3.connect(tmp_path / "state.sqlite3")
    assert db.execute("SELECT COUNT(*) FROM delivered_runs").fetchone()[0] == 2  # 6 keys >= 5
    db.close()


def test_delivered_ids_of_an_earlier_version_are_read_and_then_forgotten_in_turn(tmp_path):
    """A state file written one id per row (with the old UNIQUE index) keeps its ids: older
    than every new one, and dropped as the new ones fill the capacity."""
    db = sqlite3.connect(tmp_path / "state.sqlite3")
    db.execute("CREATE TABLE delivered (seq INTEGER PRIMARY KEY, key TEXT NOT NULL UNIQUE)")
    db.executemany("INSERT INTO delivered (key) VALUES (?)", [(f"old{n}",) for n in range(4)])
    db.commit()
    db.close()
    journal = Journal(tmp_path, 6)
    assert journal.open().delivered == ["old0", "old1", "old2", "old3"]
    journal.write(Batch(delivered=["new0", "new1", "new2"]))
    assert Journal(tmp_path, 6).open().delivered == ["old1", "old2", "old3", "new0", "new1", "new2"]
    journal.write(Batch(delivered=["new3", "new4", "new5"]))
    assert Journal(tmp_path, 6).open().delivered == [f"new{n}" for n in range(6)]
    journal.close()


def test_a_failed_write_leaves_no_trace_of_its_delivered_ids(tmp_path):
    """The transaction rolls back whole; the next write and the next start agree with the file."""
    journal = Journal(tmp_path, 4)
    journal.open()
    journal.write(Batch(delivered=["a", "b"]))
    with pytest.raises(sqlite3.IntegrityError):  # a retained row without its instance
        journal.write(Batch(delivered=["c", "d"], owned=[("t", None, None, None)]))  # type: ignore[list-item]
    journal.write(Batch(delivered=["e", "f", "g"]))
    assert Journal(tmp_path, 4).open().delivered == ["b", "e", "f", "g"]
    journal.close()

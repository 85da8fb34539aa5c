"""paho's socket behind a buffer: small reads served from one ``recv``, nothing lost or held."""

from __future__ import annotations

import socket

import pytest

from bridge.mqtt.socket_reads import BufferedSocket

PUBACKS = b"".join(bytes([0x40, 0x02, 0x00, n]) for n in range(1, 6))
"""Five PUBACK packets (mids 1-5), as the broker sends them in one segment under load."""


@pytest.fixture
def pair():
    ours, theirs = socket.socketpair()
    ours.setblocking(False)
    yield BufferedSocket(ours), theirs
    ours.close()
    theirs.close()


def read_packet(sock: BufferedSocket) -> bytes:
    """The way paho reads one packet: the command, the remaining length, then the body."""
    command = sock.recv(1)
    length = sock.recv(1)
    return command + length + sock.recv(length[0])


def test_packets_in_one_segment_are_read_one_by_one_from_the_buffer(pair):
    sock, peer = pair
    peer.sendall(PUBACKS)
    assert read_packet(sock) == PUBACKS[:4]
    assert sock.pending() == 16  # what aiomqtt's read callback checks to call loop_read again
    assert [read_packet(sock) for _ in range(4)] == [PUBACKS[i : i + 4] for i in (4, 8, 12, 16)]
    assert sock.pending() == 0
    with pytest.raises(BlockingIOError):  # empty: paho's "try again later"
        sock.recv(1)


def test_a_packet_split_across_segments_is_completed_by_the_next_read(pair):
    sock, peer = pair
    peer.sendall(PUBACKS[:6])  # one PUBACK and half of the next
    assert read_packet(sock) == PUBACKS[:4]
    assert sock.recv(1) + sock.recv(1) == PUBACKS[4:6]
    with pytest.raises(BlockingIOError):
        sock.recv(2)
    peer.sendall(PUBACKS[6:8])
    assert sock.recv(2) == PUBACKS[6:8]


def test_a_message_larger_than_a_chunk_arrives_whole_in_short_reads(pair):
    sock, peer = pair
    body = bytes(range(256)) * 400  # 100 kB: more than one buffer's worth
    peer.sendall(b"\x30" + body)
    assert sock.recv(1) == b"\x30"
    got = b""
    while len(got) < len(body):  # paho's loop over a body: short reads are normal
        got += sock.recv(len(body) - len(got))
    assert got == body
    assert sock.pending() == 0


def test_a_closed_connection_reads_empty(pair):
    sock, peer = pair
    peer.sendall(PUBACKS[:4])
    peer.close()
    assert read_packet(sock) == PUBACKS[:4]
    assert sock.recv(1) == b""


def test_everything_else_is_the_socket(pair):
    sock, _ = pair
    assert sock.fileno() == sock._sock.fileno()
    assert sock.send(b"x") == 1


def test_the_pubacks_whole_at_the_head_are_taken_at_once_and_the_rest_left(pair):
    """A run of PUBACKs, then a PINGRESP, PUBACKs again and a PUBACK cut in two by the segment:
    ``take_pubacks`` takes exactly the whole PUBACKs before the first other byte."""
    sock, peer = pair
    big = bytes([0x40, 0x02, 0x12, 0x34])  # mid 0x1234: both bytes of the id
    peer.sendall(PUBACKS + b"\xd0\x00" + big + PUBACKS[:2])
    assert sock.recv(1) == b"\x40"  # paho's read of the first command fills the buffer
    assert sock.recv(1) == b"\x02"
    assert sock.recv(2) == b"\x00\x01"
    assert sock.take_pubacks() == [2, 3, 4, 5]
    assert sock.take_pubacks() == []  # the PINGRESP is paho's
    assert read_packet(sock)[:1] == b"\xd0"
    assert sock.take_pubacks() == [0x1234]
    assert sock.take_pubacks() == []  # half a PUBACK waits for its rest
    peer.sendall(PUBACKS[2:4])
    assert read_packet(sock) == PUBACKS[:4]  # read by paho's way, from both segments
    assert sock.pending() == 0

"""The agent's side of the channel: a shell's noise, then the sync marker, then frames.

Whatever the network does to the bytes (any split, any piece size), the channel gives
the same typed events, and keeps what came before the marker for the error message.
"""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from oneoff.client.channel import BEFORE_SYNC_KEPT, AgentChannel
from oneoff.client.events import AgentEvent, Event, Output
from oneoff.remote.protocol import ALIVE, EVENT, STDERR, STDOUT, SYNC, encode_event, encode_frame

NOISE = b"Welcome to web1\nlast login: yesterday\n"
FRAMES = (
    encode_event("started", pid=42, run_id="r1")
    + encode_frame(STDERR, b"warning: slow\n")
    + encode_frame(ALIVE)
    + encode_frame(STDOUT, b"\x1b[1mpty bytes\r\n")
    + encode_event("exit", status=3, signal=None, timed_out=False)
)
EXPECTED: list[Event] = [
    AgentEvent("started", {"pid": 42, "run_id": "r1"}),
    Output("stderr", b"warning: slow\n"),
    Output("stdout", b"\x1b[1mpty bytes\r\n"),
    AgentEvent("exit", {"status": 3, "signal": None, "timed_out": False}),
]


def feed_all(channel: AgentChannel, pieces: list[bytes]) -> list[Event]:
    return [event for piece in pieces for event in channel.feed(piece)]


def cut(data: bytes, at: list[int]) -> list[bytes]:
    bounds = [0, *sorted(set(at)), len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds)]


def test_nothing_comes_out_before_the_sync_marker_and_the_noise_is_kept() -> None:
    channel = AgentChannel()
    assert channel.feed(NOISE) == []
    assert channel.feed(b"bash: warning: setlocale\n") == []
    assert not channel.synced
    assert channel.before_sync.splitlines()[-1] == "bash: warning: setlocale"


def test_frames_after_the_marker_in_the_same_feed_come_out() -> None:
    channel = AgentChannel()
    assert channel.feed(NOISE + SYNC + FRAMES) == EXPECTED
    assert channel.synced
    assert channel.before_sync == NOISE.decode().strip()


@pytest.mark.parametrize("split", range(1, len(SYNC)))
def test_a_marker_split_across_feeds_still_syncs(split: int) -> None:
    channel = AgentChannel()
    assert channel.feed(NOISE + SYNC[:split]) == []
    assert not channel.synced
    assert channel.feed(SYNC[split:] + FRAMES) == EXPECTED
    # the marker's first half is not part of what the shell printed
    assert channel.before_sync == NOISE.decode().strip()


def test_a_marker_one_byte_per_feed_syncs_after_its_last_byte() -> None:
    channel = AgentChannel()
    for byte in SYNC[:-1]:
        assert channel.feed(bytes([byte])) == []
    assert not channel.synced
    assert channel.feed(SYNC[-1:]) == []
    assert channel.synced
    assert channel.before_sync == ""


def test_noise_that_starts_like_the_marker_does_not_sync() -> None:
    channel = AgentChannel()
    assert channel.feed(b"\x00oneoff-frames-") == []
    assert channel.feed(b"2\x00 not ours\n") == []
    assert not channel.synced
    assert channel.feed(SYNC + FRAMES) == EXPECTED


def test_the_marker_inside_a_frame_after_sync_is_data() -> None:
    channel = AgentChannel()
    payload = b"before " + SYNC + b" after"
    events = channel.feed(SYNC + encode_frame(STDERR, payload))
    assert events == [Output("stderr", payload)]


@given(st.lists(st.integers(min_value=1, max_value=len(NOISE + SYNC + FRAMES) - 1), max_size=12))
def test_frames_split_anywhere_give_the_same_events(at: list[int]) -> None:
    stream = NOISE + SYNC + FRAMES
    channel = AgentChannel()
    assert feed_all(channel, cut(stream, at)) == EXPECTED
    assert channel.before_sync == NOISE.decode().strip()


def test_frames_one_byte_at_a_time_give_the_same_events() -> None:
    stream = NOISE + SYNC + FRAMES
    channel = AgentChannel()
    assert feed_all(channel, [stream[i : i + 1] for i in range(len(stream))]) == EXPECTED


def test_heartbeats_and_unknown_kinds_yield_nothing() -> None:
    channel = AgentChannel()
    assert channel.feed(SYNC + encode_frame(ALIVE) + encode_frame(b"?", b"future")) == []


def test_an_event_frame_loses_its_name_field_to_the_event() -> None:
    channel = AgentChannel()
    (event,) = channel.feed(SYNC + encode_frame(EVENT, b'{"event": "lock_wait", "lock": "m"}'))
    assert event == AgentEvent("lock_wait", {"lock": "m"})


def test_long_noise_keeps_only_its_tail_and_the_last_line() -> None:
    channel = AgentChannel()
    for _ in range(10):
        channel.feed(b"x" * 1000 + b"\n")
    channel.feed(b"python3: not found\n")
    kept = channel.before_sync
    assert len(kept) <= BEFORE_SYNC_KEPT
    assert kept.splitlines()[-1] == "python3: not found"
    assert channel.feed(SYNC + FRAMES) == EXPECTED


def test_a_marker_split_at_the_edge_of_the_kept_tail_still_syncs() -> None:
    channel = AgentChannel()
    channel.feed(b"y" * (3 * BEFORE_SYNC_KEPT) + SYNC[:5])
    assert channel.feed(SYNC[5:] + FRAMES) == EXPECTED


def test_undecodable_noise_is_replaced_not_fatal() -> None:
    channel = AgentChannel()
    channel.feed(b"\xff\xfe bad locale\n")
    assert channel.before_sync == "\ufffd\ufffd bad locale"

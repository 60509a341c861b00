"""Frames on the wire: encode_frame and FrameReader, byte by byte."""

from __future__ import annotations

import json
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from oneoff.remote.protocol import (
    EVENT,
    MAX_FRAME,
    STDERR,
    STDIN,
    FrameReader,
    encode_event,
    encode_frame,
)


def test_a_frame_is_kind_then_big_endian_length_then_payload() -> None:
    assert encode_frame(b"e", b"abc") == b"e\x00\x00\x00\x03abc"


def test_an_empty_frame_is_five_bytes() -> None:
    assert encode_frame(b"h") == b"h\x00\x00\x00\x00"


def test_an_event_is_a_json_frame_with_its_name_and_sorted_keys() -> None:
    frame = encode_event("exit", status=3, client_lost=False)
    ((kind, payload),) = FrameReader().feed(frame)
    assert kind == EVENT
    assert payload == b'{"client_lost": false, "event": "exit", "status": 3}'
    assert json.loads(payload) == {"event": "exit", "status": 3, "client_lost": False}


def test_several_frames_in_one_feed_come_out_in_order() -> None:
    data = encode_frame(STDIN, b"one") + encode_frame(b"H") + encode_frame(STDERR, b"two")
    assert FrameReader().feed(data) == [(STDIN, b"one"), (b"H", b""), (STDERR, b"two")]


def test_a_frame_fed_one_byte_at_a_time_comes_out_once_whole() -> None:
    reader = FrameReader()
    data = encode_frame(STDIN, b"hello")
    got = [reader.feed(data[i : i + 1]) for i in range(len(data))]
    assert got[:-1] == [[]] * (len(data) - 1)
    assert got[-1] == [(STDIN, b"hello")]


def test_a_partial_header_waits_for_the_rest() -> None:
    reader = FrameReader()
    data = encode_frame(STDIN, b"xy")
    assert reader.feed(data[:3]) == []
    assert reader.feed(data[3:] + data[:1]) == [(STDIN, b"xy")]
    assert reader.feed(data[1:]) == [(STDIN, b"xy")]


def test_a_frame_of_exactly_max_frame_is_accepted() -> None:
    payload = b"x" * MAX_FRAME
    assert FrameReader().feed(encode_frame(STDIN, payload)) == [(STDIN, payload)]


def test_an_oversized_frame_is_refused_from_its_header_alone() -> None:
    header = struct.pack(">cI", STDIN, MAX_FRAME + 1)
    with pytest.raises(ValueError, match="frame too large"):
        FrameReader().feed(header)


def test_frames_before_an_oversized_one_are_not_returned_either() -> None:
    # the reader raises for the whole feed: the agent counts the client as lost anyway
    data = encode_frame(STDIN, b"ok") + struct.pack(">cI", STDIN, MAX_FRAME + 1)
    with pytest.raises(ValueError):
        FrameReader().feed(data)


@given(
    st.lists(st.tuples(st.binary(min_size=1, max_size=1), st.binary(max_size=300)), max_size=8),
    st.lists(st.integers(min_value=1, max_value=50), min_size=1, max_size=20),
)
def test_any_split_of_a_frame_stream_gives_back_the_same_frames(
    frames: list[tuple[bytes, bytes]], cuts: list[int]
) -> None:
    data = b"".join(encode_frame(kind, payload) for kind, payload in frames)
    reader = FrameReader()
    got: list[tuple[bytes, bytes]] = []
    pos, i = 0, 0
    while pos < len(data):
        step = cuts[i % len(cuts)]
        got += reader.feed(data[pos : pos + step])
        pos += step
        i += 1
    assert got == frames

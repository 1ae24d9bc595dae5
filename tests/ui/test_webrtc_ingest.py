"""The bounded decoder input (keyframe_skip): nothing queues without bound before aiortc's decoder."""
from __future__ import annotations

import pytest

from ui.webrtc_ingest import KeyframeGate, install, is_keyframe


class Codec:
    def __init__(self, name: str) -> None:
        self.name = name


class Encoded:
    def __init__(self, data: bytes) -> None:
        self.data = data


VP8 = Codec("VP8")
KEY, DELTA = Encoded(b"\x10\x02\x00"), Encoded(b"\x11\x02\x00")  # frame tag bit 0: 0 = key


def test_keyframes_are_recognised():
    assert is_keyframe("VP8", KEY.data) and not is_keyframe("VP8", DELTA.data)
    idr = b"\x00\x00\x00\x01\x67\x42" + b"\x00\x00\x01\x65\x88"  # SPS, IDR slice
    p_slice = b"\x00\x00\x00\x01\x41\x9a"
    assert is_keyframe("H264", idr) and not is_keyframe("H264", p_slice)
    assert not is_keyframe("VP8", b"")


def test_gate_passes_frames_while_the_decoder_keeps_up():
    gate = KeyframeGate(max_frames=3)
    for frame in (KEY, DELTA, DELTA):
        gate.put((VP8, frame))
        assert gate.get()[1] is frame
    assert gate.dropped == 0 and not gate.skipping


def test_gate_skips_to_the_next_keyframe_and_asks_for_one():
    asked = []
    gate = KeyframeGate(max_frames=3, request_keyframe=lambda: asked.append(1))
    gate.put((VP8, KEY))
    for _ in range(2):
        gate.put((VP8, DELTA))
    assert gate.qsize() == 3
    gate.put((VP8, DELTA))  # a 4th waiting: everything dropped, skip until a keyframe
    assert gate.qsize() == 0 and gate.skipping and gate.dropped == 4 and asked == [1]
    gate.put((VP8, DELTA))
    assert gate.qsize() == 0 and gate.dropped == 5 and asked == [1]  # asked once per skip
    gate.put((VP8, KEY))
    assert gate.qsize() == 1 and not gate.skipping and gate.skips == 1
    gate.put(None)  # aiortc's stop marker always passes
    assert gate.qsize() == 2


def test_a_keyframe_behind_a_full_queue_supersedes_it():
    gate = KeyframeGate(max_frames=2)
    gate.put((VP8, KEY))
    gate.put((VP8, DELTA))
    gate.put((VP8, KEY))
    assert gate.qsize() == 1 and gate.dropped == 2 and gate.get()[1] is KEY


def test_gate_checks_its_argument():
    with pytest.raises(ValueError, match="max_frames"):
        KeyframeGate(max_frames=0)


def test_install_replaces_the_queue_of_a_real_receiver_before_its_decoder_starts():
    aiortc = pytest.importorskip("aiortc")
    import asyncio

    async def go():
        pc = aiortc.RTCPeerConnection()
        transceiver = pc.addTransceiver("video", direction="recvonly")
        gate = install(transceiver.receiver, log=lambda _: None)
        queue_now = transceiver.receiver._RTCRtpReceiver__decoder_queue
        await pc.close()
        return gate, queue_now

    gate, queue_now = asyncio.run(go())
    assert isinstance(gate, KeyframeGate) and queue_now is gate

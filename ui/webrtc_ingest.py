"""A bounded input queue for aiortc's video decoder: policy ``keyframe_skip``, counted.

aiortc (1.16) hands every complete encoded frame of a remote track to a
decoder thread through an unbounded ``queue.Queue``. When that thread falls
behind (a busy machine, a GIL held by the peers' workers) the queue, and with
it the latency of everything downstream, grows without bound: measured here,
8 s behind after 30 s with four peers on two busy cores.

Encoded frames cannot simply be dropped (each one refers to the previous), so
:class:`KeyframeGate` replaces that queue with one that, once ``max_frames``
are waiting, drops them all, asks the sender for a keyframe (RTCP PLI) and
drops what arrives until that keyframe; decoding resumes from it. A keyframe
that arrives while frames are waiting behind the limit also lets the gate drop
those (they are no longer needed). Dropped frames are counted; the chain sees
them as a gap in frame indices (``dropped`` status records).

:func:`install` swaps the gate in for a receiver before its decoder thread
starts (the thread starts once DTLS connects, after the answer). It uses
aiortc's private attribute names (pinned aiortc==1.16.0) and leaves the
receiver alone, saying so, if they are not there.
"""
from __future__ import annotations

import asyncio
import queue
from typing import Callable

#: Encoded frames allowed to wait for the decoder (~0.3 s at 30 fps).
MAX_WAITING = 10
_QUEUE_ATTR = "_RTCRtpReceiver__decoder_queue"
_THREAD_ATTR = "_RTCRtpReceiver__decoder_thread"


def is_keyframe(codec_name: str, data: bytes) -> bool:
    """Whether a depayloaded encoded frame starts a new picture chain (VP8 / H.264)."""
    if not data:
        return False
    if codec_name == "VP8":
        return not data[0] & 0x01  # frame tag: bit 0 is 0 on a key frame (RFC 6386 9.1)
    if codec_name == "H264":  # Annex B: an IDR slice (5) or a sequence parameter set (7)
        i = data.find(b"\x00\x00\x01")
        while 0 <= i < len(data) - 3:
            if data[i + 3] & 0x1F in (5, 7):
                return True
            i = data.find(b"\x00\x00\x01", i + 3)
        return False
    return True  # a codec we cannot parse: never skip on it


class KeyframeGate(queue.Queue):
    """The decoder's input queue, bounded by skipping to the next keyframe.

    Args:
        max_frames: encoded frames allowed to wait; one more starts a skip.
        request_keyframe: called (on the event loop) when a skip starts.

    Attributes:
        dropped: encoded frames dropped; skips: how many skips started.
    """

    policy = "keyframe_skip"

    def __init__(self, max_frames: int = MAX_WAITING,
                 request_keyframe: Callable[[], None] = lambda: None) -> None:
        if max_frames < 1:
            raise ValueError(f"max_frames must be >= 1, got {max_frames!r}")
        super().__init__()
        self.max_frames, self._request = max_frames, request_keyframe
        self.skipping = False
        self.dropped = 0
        self.skips = 0

    def put(self, item, block: bool = True, timeout: float | None = None) -> None:
        if item is None:  # aiortc's stop marker always goes through
            return super().put(item, block, timeout)
        codec, frame = item
        key = is_keyframe(codec.name, frame.data)
        with self.mutex:
            waiting = len(self.queue)
            if key:
                if self.skipping or waiting >= self.max_frames:
                    self.dropped += waiting  # superseded by this keyframe
                    self.queue.clear()
                self.skipping = False
            elif self.skipping:
                self.dropped += 1
                return
            elif waiting >= self.max_frames:
                self.dropped += waiting + 1
                self.queue.clear()
                self.skipping = True
                self.skips += 1
                request = True
            else:
                request = False
        if not key and self.skipping:
            if request:
                self._request()
            return
        super().put(item, block, timeout)


def install(receiver, max_frames: int = MAX_WAITING,
            log: Callable[[str], None] = print) -> KeyframeGate | None:
    """Puts a :class:`KeyframeGate` in front of ``receiver``'s decoder; None when it cannot."""
    if not hasattr(receiver, _QUEUE_ATTR) or getattr(receiver, _THREAD_ATTR, None) is not None:
        log("webrtc: cannot bound the decoder queue of this aiortc version (left as is)")
        return None

    def request_keyframe() -> None:
        for source in receiver.getSynchronizationSources():
            asyncio.ensure_future(receiver._send_rtcp_pli(source.source))

    gate = KeyframeGate(max_frames, request_keyframe)
    setattr(receiver, _QUEUE_ATTR, gate)
    return gate

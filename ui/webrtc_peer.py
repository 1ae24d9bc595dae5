"""One WebRTC peer of the server: its incoming track, its stage chain, its annotated track.

::

    remote track ──reader task (event loop)──▶ LatestSlot (1 frame, drop_oldest, counted)
                                                  │
                       worker thread: StageChain.update → overlay ──▶ AnnotatedTrack ──▶ peer
                                                  └──▶ records ──▶ data channel "events"

The reader drains the remote track as fast as frames arrive (aiortc's remote
track queue is unbounded, so nothing may leave frames in it) and hands each to
a one-frame slot: when the worker is still busy the waiting frame is replaced
and counted as dropped, so latency stays at one frame however slow the
chain is. All CV and model work runs on the peer's own worker thread; the
event loop only moves frames and JSON.

aiortc / PyAV are imported lazily (inside functions), like every heavy import.
"""
from __future__ import annotations

import asyncio
import json
import threading
import time
from collections import deque
from typing import Any, Callable

from engine.contracts import Summary
from stream.handoff import Handoff
from stream.ring import Policy
from ui import frame_marker

#: Records kept for a data channel that is not open yet (older ones are dropped and counted).
PENDING_RECORDS = 256
#: Seconds the worker may take to finish its frame and flush when a peer closes.
WORKER_JOIN_S = 10.0


class LatestSlot(Handoff):
    """A one-item hand-off between the event loop and a worker: policy ``drop_oldest``, counted.

    ``put`` never blocks: an item still waiting is replaced (and counted in
    ``dropped``). ``get`` blocks until an item arrives or the slot is closed
    (then ``None``; an item still waiting at close is dropped and counted).
    """

    policy = "drop_oldest"

    def __init__(self) -> None:
        super().__init__(1, Policy.DROP_OLDEST, drain_on_close=False)


def annotated_track_class():
    """The :class:`AnnotatedTrack` class (built on first use so aiortc is imported lazily)."""
    global _ANNOTATED
    if _ANNOTATED is not None:
        return _ANNOTATED
    from aiortc import MediaStreamTrack
    from aiortc.mediastreams import MediaStreamError

    class AnnotatedTrack(MediaStreamTrack):
        """The track sent back to the peer: the latest annotated frame, pts/time_base kept.

        ``publish`` (event loop) offers a frame; ``recv`` (aiortc's sender)
        returns the newest one not yet sent. When the encoder is slower than the
        worker the frame not yet sent is replaced (counted in ``replaced``).
        """

        kind = "video"

        def __init__(self) -> None:
            super().__init__()
            self._frame = None
            self._ready = asyncio.Event()
            self.sent = 0
            self.replaced = 0

        def publish(self, frame) -> None:
            self.replaced += self._frame is not None
            self._frame = frame
            self._ready.set()

        async def recv(self):
            while self._frame is None:
                if self.readyState != "live":
                    raise MediaStreamError
                self._ready.clear()
                await self._ready.wait()
            frame, self._frame = self._frame, None
            self.sent += 1
            return frame

        def stop(self) -> None:
            super().stop()
            self._ready.set()  # wake a waiting recv so the sender stops

    _ANNOTATED = AnnotatedTrack
    return AnnotatedTrack


_ANNOTATED = None


def default_drawer() -> Callable[[Any, Any, list], Any]:
    """``draw(frame, chain, records) -> image``: the shared overlay (:mod:`ui.overlay`), per peer."""
    from ui.overlay import OverlayState, annotate

    state = OverlayState()

    def draw(frame, chain, records):
        state.update(records, chain, t=frame.t_capture, frame_index=frame.index)
        return annotate(frame.image, state)

    return draw


class Peer:
    """One connected client: reader task, latest-frame slot, worker thread with its own chain.

    Args:
        peer_id: number shown in ``/stats`` and logs.
        pc: the ``RTCPeerConnection``.
        open_chain: builds this peer's ``StageChain`` (called on the worker thread).
        engine_name: backend name for the summary.
        fps: nominal frame rate given to the chain (timestamps come from the frames' pts).
        idle_timeout_s: a connected peer that sends no frame for this long is closed.
        connect_timeout_s: a peer whose first frame does not arrive within this is closed.
        on_closed: called (event loop) once the peer is closed and its pipeline freed.
        log: one line per peer event (connect, close).
        make_drawer: ``() -> draw(frame, chain, records) -> image`` (default: :func:`default_drawer`).
        budget: shared by all peers: at most that many chains run at once (None: no limit).
            Python threads share one GIL, so more chains running than cores only slows
            the event loop (RTP, DTLS, data channels) and makes every peer late.
    """

    def __init__(self, peer_id: int, pc, open_chain: Callable[[], Any], engine_name: str,
                 fps: float, idle_timeout_s: float, connect_timeout_s: float,
                 on_closed: Callable[["Peer"], None], log: Callable[[str], None] = print,
                 make_drawer: Callable[[], Callable] = default_drawer,
                 budget: threading.Semaphore | None = None) -> None:
        self.id, self.pc, self.fps = peer_id, pc, fps
        self.engine_name = engine_name
        self._open_chain, self._make_drawer = open_chain, make_drawer
        self._budget = budget
        self.idle_timeout_s, self.connect_timeout_s = idle_timeout_s, connect_timeout_s
        self._on_closed, self._log = on_closed, log
        self.slot = LatestSlot()
        self.gate = None  # ui.webrtc_ingest.KeyframeGate on the decoder's input, when installed
        self.out = annotated_track_class()()
        self.channel = None
        self._pending: deque[str] = deque(maxlen=PENDING_RECORDS)
        self.records_lost = 0  # records that never reached a channel
        self.frames_in = 0
        self.frames_processed = 0
        self.frames_with_face = 0
        self.frames_superseded = 0  # a newer frame arrived while this one waited for the budget
        self.ingest_lag_s = 0.0  # arrival time − sender time of the last frame, from the first
        self.t_start = time.monotonic()
        self.t_first: float | None = None
        self._loop = asyncio.get_running_loop()
        self._chain = None  # built by prepare(), used and closed by the worker
        self._reader: asyncio.Task | None = None
        self._worker: threading.Thread | None = None
        self._worker_done = self._loop.create_future()
        self._closing: asyncio.Task | None = None
        self.finished = False
        self.summary: Summary | None = None
        self.error: str | None = None

    # -- wiring (event loop) ---------------------------------------------------------------
    def attach_channel(self, channel) -> None:
        """Uses ``channel`` (label ``events``) for records; flushes what waited for it."""
        self.channel = channel

        @channel.on("open")
        def _open() -> None:
            self._send_pending()

        @channel.on("message")
        def _message(message) -> None:
            if message == "finish":  # the client is done: flush, summary, then it closes
                asyncio.ensure_future(self.finish())

        if channel.readyState == "open":
            self._send_pending()

    async def prepare(self) -> None:
        """Builds this peer's chain off the event loop (before the answer, so no frame waits)."""
        self._chain = await asyncio.to_thread(self._open_chain)

    def start(self, track) -> None:
        """Starts the reader on the remote video ``track`` and the worker thread (after prepare)."""
        self._reader = asyncio.ensure_future(self._read(track))
        self._worker = threading.Thread(target=self._work, name=f"webrtc-peer-{self.id}",
                                        daemon=True)
        self._worker.start()

    async def _read(self, track) -> None:
        from aiortc.mediastreams import MediaStreamError

        t0 = None
        last = -1
        reason = "track ended"
        try:
            while True:
                timeout = self.idle_timeout_s if self.t_first else self.connect_timeout_s
                try:
                    frame = await asyncio.wait_for(track.recv(), timeout)
                except asyncio.TimeoutError:
                    reason = f"no frame for {timeout:g} s"
                    break
                now = time.monotonic()
                if self.t_first is None:
                    self.t_first = now
                pts_s = float(frame.pts * frame.time_base) if frame.pts is not None else now
                t0 = pts_s if t0 is None else t0
                # The index is the frame's place on the nominal fps grid of the sender's clock,
                # so frames the sender skipped or the network lost leave gaps (reported as
                # drops) and a clip's frame numbers survive; strictly increasing on jitter.
                index = max(last + 1, round((pts_s - t0) * self.fps))
                last = index
                # how far arrivals trail the sender's clock (network + decoding backlog)
                self.ingest_lag_s = (now - self.t_first) - (pts_s - t0)
                self.slot.put((frame, index, pts_s - t0, now))
                self.frames_in += 1
        except MediaStreamError:
            pass
        except asyncio.CancelledError:
            return
        asyncio.ensure_future(self.close(reason))

    # -- the worker thread -----------------------------------------------------------------
    def _work(self) -> None:
        from engine.contracts import Frame
        from stream.chain import run_frames

        chain, self._chain = self._chain, None
        batch: list = []  # records of the frame in flight (then the tail: finish, summary)
        images: dict[int, Any] = {}

        held = [False]  # this worker holds a slot of the shared CPU budget

        def frames():
            while (item := self.slot.get()) is not None:
                if self._budget is not None:  # wait for a CPU slot, then take the newest frame
                    self._budget.acquire()
                    held[0] = True
                    while (newer := self.slot.get(timeout=0)) is not None:
                        self.frames_superseded += 1
                        item = newer
                av_frame, index, t_capture, t_arrival = item
                images[index] = av_frame
                yield Frame(index, t_capture, av_frame.to_ndarray(format="bgr24"), t_arrival)

        def release() -> None:
            if held[0]:
                held[0] = False
                self._budget.release()

        def on_frame(frame) -> None:
            records = batch[:]
            batch.clear()
            self.frames_processed += 1
            self.frames_with_face = chain.frames_with_face
            out = frame_marker.keep_strip(draw(frame, chain, records), frame.image)
            release()
            self._post(records, self._video_frame(out, images.pop(frame.index)))

        try:
            if chain is None:
                chain = self._open_chain()
            draw = self._make_drawer()
            # the one run loop: dropped statuses on index gaps, finish, source_ended, summary
            summary = run_frames(frames(), chain, batch.append, source=f"webrtc:peer-{self.id}",
                                 policy=LatestSlot.policy, on_frame=on_frame,
                                 frames_read=lambda: self.frames_in + self.gate_dropped,
                                 frames_dropped=lambda: self.frames_dropped)
            self.summary = summary
            self._post(batch[:], None)
            self._log(f"peer {self.id}: {summary.frames_processed} of {summary.frames_read} "
                      f"frames processed, {summary.frames_dropped} dropped, {summary.fps:.1f} fps")
        except Exception as exc:  # a broken chain ends this peer only, with a reason
            self.error = f"{type(exc).__name__}: {exc}"
            self._log(f"peer {self.id}: pipeline failed: {self.error}")
            self._call(lambda: asyncio.ensure_future(self.close("pipeline failed")))
        finally:
            release()
            if chain is not None:
                chain.close()
            self._call(lambda: self._worker_done.done() or self._worker_done.set_result(None))

    @staticmethod
    def _video_frame(image, like):
        import av

        out = av.VideoFrame.from_ndarray(image, format="bgr24")
        out.pts, out.time_base = like.pts, like.time_base  # the returned frame keeps its timing
        return out

    def _call(self, fn: Callable[[], Any]) -> None:
        try:
            self._loop.call_soon_threadsafe(fn)
        except RuntimeError:  # the loop is gone (process shutting down)
            pass

    def _post(self, records: list, video_frame) -> None:
        if records or video_frame is not None:
            self._call(lambda: self._deliver(records, video_frame))

    # -- back on the event loop ------------------------------------------------------------
    def _deliver(self, records: list, video_frame) -> None:
        from stream.events import to_json

        for record in records:
            self._send(json.dumps(to_json(record), separators=(",", ":")))
        if video_frame is not None and self.out.readyState == "live":
            self.out.publish(video_frame)

    def _send(self, line: str) -> None:
        channel = self.channel
        if channel is not None and channel.readyState == "open":
            channel.send(line)
        else:
            if len(self._pending) == self._pending.maxlen:
                self.records_lost += 1
            self._pending.append(line)

    def _send_pending(self) -> None:
        while self._pending and self.channel is not None and self.channel.readyState == "open":
            self.channel.send(self._pending.popleft())

    async def finish(self) -> None:
        """Ends this peer's stream: flushes what is under way and sends the summary."""
        if self.finished:
            return
        self.finished = True
        self.slot.close()  # the worker drains, finishes the chain and posts the tail + summary
        if self._worker is None:  # never got a track: nothing ran
            self._deliver([Summary(f"webrtc:peer-{self.id}", self.engine_name,
                                   LatestSlot.policy)], None)
            return
        await self._wait_worker()
        for _ in range(50):  # let SCTP take the last records before anyone closes
            if self.channel is None or getattr(self.channel, "bufferedAmount", 0) == 0:
                break
            await asyncio.sleep(0.02)

    async def _wait_worker(self) -> None:
        try:
            await asyncio.wait_for(asyncio.shield(self._worker_done), WORKER_JOIN_S)
        except asyncio.TimeoutError:
            self._log(f"peer {self.id}: worker still busy after {WORKER_JOIN_S:g} s")

    async def close(self, reason: str = "closed") -> None:
        """Frees everything of this peer (idempotent): reader, worker, chain, tracks, connection."""
        if self._closing is None:
            self._closing = asyncio.ensure_future(self._close(reason))
        await asyncio.shield(self._closing)

    async def _close(self, reason: str) -> None:
        self.slot.close()
        if self._reader is not None and self._reader is not asyncio.current_task():
            self._reader.cancel()
        self.out.stop()
        if self._worker is not None:
            await self._wait_worker()
        elif self._chain is not None:  # prepared but never started
            self._chain.close()
            self._chain = None
        await self.pc.close()
        self._log(f"peer {self.id} closed ({reason})")
        self._on_closed(self)

    @property
    def frames_dropped(self) -> int:
        """Frames never processed: replaced in the slot, superseded while waiting for the CPU
        budget, or skipped at the decoder's gate."""
        return self.slot.dropped + self.frames_superseded + self.gate_dropped

    @property
    def gate_dropped(self) -> int:
        """Encoded frames the decoder gate skipped (never decoded)."""
        return self.gate.dropped if self.gate is not None else 0

    def stats(self) -> dict:
        """This peer's counters for ``GET /stats``.

        ``frames_dropped`` counts every drop: in the latest-frame slot and while
        waiting for the CPU budget (decoded, not processed), and at the decoder's
        gate (skipped to a keyframe).
        """
        age = time.monotonic() - self.t_start
        run = time.monotonic() - self.t_first if self.t_first else 0.0
        return {"id": self.id, "state": self.pc.connectionState, "age_s": round(age, 2),
                "frames_in": self.frames_in, "frames_processed": self.frames_processed,
                "frames_dropped": self.frames_dropped,
                "dropped_at_decoder": self.gate_dropped,
                "decoder_waiting": self.gate.qsize() if self.gate is not None else None,
                "frames_sent": self.out.sent,
                "fps_in": round(self.frames_in / run, 2) if run > 0 else 0.0,
                "fps_processed": round(self.frames_processed / run, 2) if run > 0 else 0.0,
                "ingest_lag_ms": round(1e3 * self.ingest_lag_s, 1),
                "records_lost": self.records_lost, "finished": self.finished,
                "error": self.error}

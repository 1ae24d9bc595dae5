"""The WebRTC front end (design §6): a page, ``POST /offer``, ``GET /stats``; aiortc + aiohttp.

    python -m ui.webrtc_server --port 8080            # or: run_live.py --ui webrtc
    open http://127.0.0.1:8080/                       # camera → server → annotated video + events

It follows aiortc's ``examples/server``: the page makes an offer (video track
plus a data channel named ``events``), ``POST /offer`` answers it. Each peer
gets its own stage chain on its own worker thread, fed from a latest-frame
slot (:mod:`ui.webrtc_peer`); one loaded engine is shared by all peers.
aiortc's decoder input is bounded too (:mod:`ui.webrtc_ingest`: skip to the
next keyframe when it falls behind), so no queue grows with load. The
returned track carries the overlay (:mod:`ui.overlay`) with the incoming
frame's ``pts`` / ``time_base``; the ``events`` channel carries one JSON
record per message in the JSONL schema of ``--events-out``
(:func:`stream.events.to_json`); the client sends the text ``finish`` to end
its stream and get what was under way plus a ``summary``.

Limits: request bodies over :data:`MAX_BODY_BYTES` → 413; malformed JSON,
missing keys, a type other than ``offer``, an SDP aiortc cannot take or one
without a video track → 400 with a one-line reason; more than ``max_peers`` →
503. A peer whose connection fails or closes, whose track ends, or that sends
no frame for ``idle_timeout_s`` is closed at once and its pipeline freed;
stopping the server (Ctrl-C, SIGTERM) ends every peer's stream (summary sent)
and closes it.

``ice_loopback`` restricts ICE host candidates to 127.0.0.1 in this process
(aioice gathers every other interface and skips loopback otherwise); the
tests use it. No STUN server is used unless ``ice_servers`` names one (this
machine is offline; on a LAN host candidates suffice).
"""
from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import signal
import sys
import threading
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Callable, Sequence

from engine.config import TrackerConfig
from ui.webrtc_ingest import install as install_gate
from ui.webrtc_peer import Peer

STATIC = Path(__file__).resolve().parent / "static"
#: Largest accepted ``POST /offer`` body (an SDP offer is a few KiB).
MAX_BODY_BYTES = 256 * 1024
DEFAULT_MAX_PEERS = 4


@dataclass(frozen=True)
class ServerConfig:
    """Settings of one server.

    Attributes:
        max_peers: peers served at once; the next offer gets 503.
        ice_loopback: host candidates 127.0.0.1 only (tests, same-machine use).
        ice_servers: STUN/TURN URLs (none by default).
        fps: nominal frame rate given to each peer's chain (browsers send ~30).
        idle_timeout_s: a peer that sends no frame for this long is closed.
        connect_timeout_s: a peer whose first frame has not arrived after this is closed.
        max_body_bytes: larger ``POST /offer`` bodies get 413.
        max_active: chains that may run at the same moment, over all peers (None: one
            less than the CPU cores, at least 1), so the event loop keeps a core.
        tracker: interval-tracker settings of every peer's chain.
    """

    max_peers: int = DEFAULT_MAX_PEERS
    ice_loopback: bool = False
    ice_servers: tuple[str, ...] = ()
    fps: float = 30.0
    idle_timeout_s: float = 5.0
    connect_timeout_s: float = 20.0
    max_body_bytes: int = MAX_BODY_BYTES
    max_active: int | None = None
    tracker: TrackerConfig = TrackerConfig()

    def __post_init__(self) -> None:
        if self.max_active is not None and not (isinstance(self.max_active, int)
                                                and self.max_active >= 1):
            raise ValueError(f"max_active must be an integer >= 1, got {self.max_active!r}")
        if not (isinstance(self.max_peers, int) and self.max_peers >= 1):
            raise ValueError(f"max_peers must be an integer >= 1, got {self.max_peers!r}")
        if not 0 < self.fps <= 240:
            raise ValueError(f"fps must be in (0, 240], got {self.fps!r}")
        for name in ("idle_timeout_s", "connect_timeout_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)!r}")
        if not self.max_body_bytes >= 1024:
            raise ValueError(f"max_body_bytes must be >= 1024, got {self.max_body_bytes!r}")


def restrict_ice_to_loopback() -> None:
    """Makes aioice gather only 127.0.0.1 as host candidate, for every connection of this process.

    aioice 0.13 has no per-connection option for this; ``gather_candidates``
    looks up the module-level ``get_host_addresses`` at call time.
    """
    import aioice.ice

    def loopback(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        return ["127.0.0.1"] if use_ipv4 else []

    aioice.ice.get_host_addresses = loopback


class OfferError(ValueError):
    """A bad ``POST /offer``: the message is the one-line reason sent with HTTP 400."""


def parse_offer(body: bytes) -> tuple[str, str]:
    """(sdp, type) of an offer body, or :class:`OfferError` saying what is wrong."""
    try:
        obj = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise OfferError(f"body is not JSON ({getattr(exc, 'msg', exc)}); send "
                         '{"sdp": ..., "type": "offer"}') from None
    if not isinstance(obj, dict):
        raise OfferError('body must be a JSON object {"sdp": ..., "type": "offer"}')
    for key in ("sdp", "type"):
        if not isinstance(obj.get(key), str):
            raise OfferError(f'"{key}" is missing or not a string')
    if obj["type"] != "offer":
        raise OfferError(f'"type" must be "offer", got {obj["type"]!r}')
    if not obj["sdp"].strip():
        raise OfferError('"sdp" is empty')
    return obj["sdp"], obj["type"]


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


class WebRTCServer:
    """The aiohttp app and its peers.

    Args:
        engine: a loaded ``engine.runtime.Engine``, shared by every peer's chain.
        config: limits and ICE settings.
        open_chain: ``(engine, fps) -> StageChain`` (default: :class:`stream.chain.StageChain`
            with ``config.tracker``).
        log: one line per server / peer event.
    """

    def __init__(self, engine, config: ServerConfig = ServerConfig(),
                 open_chain: Callable[[Any, float], Any] | None = None,
                 log: Callable[[str], None] = print) -> None:
        self.engine, self.config, self.log = engine, config, log
        self._open_chain = open_chain or partial(_default_chain, tracker_cfg=config.tracker)
        self.peers: dict[int, Peer] = {}
        self._ids = itertools.count(1)
        self._pending = 0  # offers being answered (count against max_peers)
        self.counters = {"offers": 0, "refused_busy": 0, "refused_bad": 0, "closed": 0}
        active = config.max_active or max(1, (os.cpu_count() or 2) - 1)
        self.budget = threading.BoundedSemaphore(active)
        self.max_active = active
        self.loop_lag_ms = 0.0  # how late the event loop runs a 100 ms timer (recent max)
        self._lag_task: asyncio.Task | None = None
        if config.ice_loopback:
            restrict_ice_to_loopback()

    # -- the app ---------------------------------------------------------------------------
    def app(self):
        """The ``aiohttp.web.Application`` (routes, body limit, shutdown hook)."""
        from aiohttp import web

        app = web.Application(client_max_size=self.config.max_body_bytes)
        app.router.add_get("/", self._index)
        app.router.add_post("/offer", self._offer)
        app.router.add_get("/stats", self._stats)
        app.router.add_static("/static/", STATIC)
        app.on_shutdown.append(self._on_shutdown)
        return app

    async def _index(self, request):
        from aiohttp import web

        return web.FileResponse(STATIC / "index.html")

    async def _stats(self, request):
        from aiohttp import web

        return web.json_response({
            "peers": len(self.peers), "max_peers": self.config.max_peers,
            "max_active": self.max_active, "loop_lag_ms": round(self.loop_lag_ms, 1),
            "engine": getattr(self.engine, "name", str(self.engine)),
            **self.counters, "per_peer": [p.stats() for p in self.peers.values()]})

    def _refuse(self, status: int, reason: str):
        from aiohttp import web

        key = "refused_busy" if status == 503 else "refused_bad"
        self.counters[key] += 1
        return web.Response(status=status, text=reason + "\n", content_type="text/plain")

    async def _offer(self, request):
        from aiohttp import web

        self.counters["offers"] += 1
        if len(self.peers) + self._pending >= self.config.max_peers:
            return self._refuse(503, f"server busy: all {self.config.max_peers} peer slots are "
                                     "in use (--max-peers); try again later")
        self._pending += 1  # reserved before any await, so concurrent offers cannot overshoot
        try:
            try:
                sdp, type_ = parse_offer(await request.read())  # > client_max_size: 413
            except OfferError as exc:
                return self._refuse(400, f"bad offer: {exc}")
            answer = await self._answer(sdp, type_)
            if isinstance(answer, str):
                return self._refuse(400, answer)
            return web.json_response(answer)
        finally:
            self._pending -= 1

    async def _answer(self, sdp: str, type_: str) -> dict | str:
        """Sets up a peer for the offer; the answer dict, or a one-line reason it cannot."""
        from aiohttp import web
        from aiortc import (RTCConfiguration, RTCIceServer, RTCPeerConnection,
                            RTCSessionDescription)

        pc = RTCPeerConnection(RTCConfiguration(
            iceServers=[RTCIceServer(u) for u in self.config.ice_servers]))
        peer = Peer(next(self._ids), pc, lambda: self._open_chain(self.engine, self.config.fps),
                    getattr(self.engine, "name", str(self.engine)), self.config.fps,
                    self.config.idle_timeout_s, self.config.connect_timeout_s,
                    on_closed=self._forget, log=self.log, budget=self.budget)
        video = []
        prepared = asyncio.ensure_future(peer.prepare())  # the chain builds while SDP is handled

        @pc.on("datachannel")
        def _channel(channel) -> None:
            if channel.label == "events":
                peer.attach_channel(channel)

        @pc.on("track")
        def _track(track) -> None:
            if track.kind == "video" and not video:
                video.append(track)
                pc.addTrack(peer.out)
                receiver = next(t.receiver for t in pc.getTransceivers()
                                if t.receiver.track is track)
                peer.gate = install_gate(receiver, log=self.log)  # bounded decoder input
            else:  # audio or a second video: drained, never buffered without bound
                asyncio.ensure_future(_drain(track))

        @pc.on("connectionstatechange")
        async def _state() -> None:
            if pc.connectionState in ("failed", "closed"):
                await peer.close(f"connection {pc.connectionState}")

        reason = None
        try:
            try:
                await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type=type_))
                if not video:
                    raise OfferError("the offer has no video track (send the camera)")
                await pc.setLocalDescription(await pc.createAnswer())
            except Exception as exc:
                reason = (f"bad offer: {exc}" if isinstance(exc, OfferError)
                          else f"bad offer: SDP not accepted: {_one_line(exc)}")
            await asyncio.wait([prepared])
        except asyncio.CancelledError:  # the client went away mid-offer
            await asyncio.wait([prepared])  # so the chain it builds is closed too
            await peer.close("offer abandoned")
            raise
        if reason is None and prepared.exception() is not None:  # the server's fault
            reason = f"cannot start a pipeline: {_one_line(prepared.exception())}"
            await peer.close("pipeline failed")
            raise web.HTTPInternalServerError(text=reason + "\n")
        if reason is not None:
            await peer.close("offer refused")
            return reason
        peer.start(video[0])
        self.peers[peer.id] = peer
        self.log(f"peer {peer.id} connected ({len(self.peers)}/{self.config.max_peers})")
        return {"sdp": pc.localDescription.sdp, "type": pc.localDescription.type}

    def _forget(self, peer: Peer) -> None:
        if self.peers.pop(peer.id, None) is not None:
            self.counters["closed"] += 1

    async def close_all(self) -> None:
        """Ends every peer's stream (flush + summary on its channel), then closes it."""
        peers = list(self.peers.values())
        await asyncio.gather(*(p.finish() for p in peers), return_exceptions=True)
        await asyncio.gather(*(p.close("server shutting down") for p in peers),
                             return_exceptions=True)

    async def _on_shutdown(self, app) -> None:
        if self._lag_task is not None:
            self._lag_task.cancel()
        await self.close_all()

    async def _watch_loop(self) -> None:
        """Keeps ``loop_lag_ms``: a busy loop (or a GIL held by the workers) delays everything."""
        loop = asyncio.get_running_loop()
        recent: list[float] = []
        while True:
            t = loop.time()
            await asyncio.sleep(0.1)
            recent = (recent + [(loop.time() - t - 0.1) * 1e3])[-20:]
            self.loop_lag_ms = max(recent)

    # -- running ---------------------------------------------------------------------------
    async def start(self, host: str, port: int):
        """Serves on ``host:port`` (0: any free port); returns (runner, bound port)."""
        from aiohttp import web

        runner = web.AppRunner(self.app(), access_log=None)
        await runner.setup()
        self._lag_task = asyncio.ensure_future(self._watch_loop())
        site = web.TCPSite(runner, host, port)
        await site.start()
        bound = site._server.sockets[0].getsockname()[1]  # the port 0 picked
        return runner, bound


async def _drain(track) -> None:
    from aiortc.mediastreams import MediaStreamError

    try:
        while True:
            await track.recv()
    except (MediaStreamError, asyncio.CancelledError):
        pass


def _default_chain(engine, fps: float, tracker_cfg: TrackerConfig = TrackerConfig()):
    from stream.chain import StageChain
    from stream.latency import LatencyStats

    return StageChain(engine, fps, tracker_cfg=tracker_cfg, latency=LatencyStats())


def warm_up(engine, fps: float) -> None:
    """Builds one chain and runs a blank frame through it, so the first peer waits for nothing.

    The first chain of a process pays the imports and one-time model set-up
    (about a second here); later chains take ~0.1 s.
    """
    import numpy as np

    from engine.contracts import Frame

    with _default_chain(engine, fps) as chain:
        chain.update(Frame(0, 0.0, np.zeros((360, 640, 3), np.uint8), 0.0))


async def _serve(server: WebRTCServer, host: str, port: int, ready: Callable[[int], None]) -> None:
    runner, bound = await server.start(host, port)
    ready(bound)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        server.log(f"stopping: closing {len(server.peers)} peer(s)")
        await runner.cleanup()  # runs on_shutdown: every peer finished and closed


def serve(host: str = "127.0.0.1", port: int = 8080, engine_name: str = "auto",
          max_peers: int = DEFAULT_MAX_PEERS, ice_loopback: bool = False, *,
          fps: float = 30.0, idle_timeout_s: float = 5.0, ice_servers: Sequence[str] = (),
          max_active: int | None = None, engine=None,
          tracker_cfg: TrackerConfig = TrackerConfig(),
          log: Callable[[str], None] = print) -> int:
    """Loads the engine once and serves until SIGINT / SIGTERM; returns the exit code (0).

    Args:
        host, port: where to listen (port 0: a free port, printed).
        engine_name: ``auto`` | ``torch`` | ``onnxruntime`` | ``cuda`` | ``tensorrt``.
        max_peers: peers served at once.
        ice_loopback: ICE host candidates on 127.0.0.1 only.
        fps, idle_timeout_s, ice_servers, max_active: see :class:`ServerConfig`.
        engine: an already loaded engine to use (then ``engine_name`` is ignored).
        tracker_cfg: interval-tracker settings of every peer's chain.
        log: where status lines go.

    Raises:
        ValueError: a bad setting (one line).
        OSError: the port cannot be bound.
    """
    config = ServerConfig(max_peers=max_peers, ice_loopback=ice_loopback,
                          ice_servers=tuple(ice_servers), fps=fps, idle_timeout_s=idle_timeout_s,
                          max_active=max_active, tracker=tracker_cfg)
    _check_port(host, port)  # before the engine loads: a port in use fails at once
    owned = None
    if engine is None:
        from engine.runtime import Engine
        engine = owned = Engine.load(engine_name, log=log)
    try:
        warm_up(engine, fps)
        server = WebRTCServer(engine, config, log=log)
        ready = lambda bound: log(f"serving on http://{host}:{bound}/ "  # noqa: E731
                                  f"(max {max_peers} peers, {server.max_active} running at once"
                                  f"{', ICE loopback' if ice_loopback else ''})")
        asyncio.run(_serve(server, host, port, ready))
    finally:
        if owned is not None:
            owned.close()
    return 0


def _check_port(host: str, port: int) -> None:
    """Raises OSError when ``host:port`` cannot be bound (in use, no such address)."""
    import socket

    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as aiohttp binds
        sock.bind((host, port))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m ui.webrtc_server",
                                description="WebRTC front end: camera in, annotated video and "
                                            "events out.")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8080, help="port (0: any free port)")
    p.add_argument("--engine", default="auto",
                   help="auto | torch | onnxruntime | cuda | tensorrt")
    p.add_argument("--max-peers", type=int, default=DEFAULT_MAX_PEERS,
                   help=f"peers served at once; more get HTTP 503 (default {DEFAULT_MAX_PEERS})")
    p.add_argument("--ice-loopback", action="store_true",
                   help="ICE host candidates on 127.0.0.1 only (tests, same machine)")
    p.add_argument("--ice-server", action="append", default=[], metavar="URL",
                   help="a STUN/TURN server (repeatable; none by default)")
    p.add_argument("--fps", type=float, default=30.0, help="nominal frame rate of peers")
    p.add_argument("--idle-timeout", type=float, default=5.0,
                   help="close a peer that sends no frame for this many seconds")
    p.add_argument("--max-active", type=int, default=None, metavar="N",
                   help="chains running at the same moment over all peers "
                        "(default: CPU cores - 1, at least 1)")
    p.add_argument("--tracker", nargs="+", default=[], metavar="FIELD=VALUE",
                   help="interval tracker settings of every peer (engine.config.TrackerConfig)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: exit 0 after a clean stop, 2 on bad arguments or an unusable port."""
    from engine.config import tracker_settings

    args = build_parser().parse_args(argv)
    try:
        tracker_cfg = tracker_settings(args.tracker)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not 0 <= args.port <= 65535:
        print(f"error: --port must be in 0..65535, got {args.port}", file=sys.stderr)
        return 2
    try:
        ServerConfig(max_peers=args.max_peers, fps=args.fps, idle_timeout_s=args.idle_timeout,
                     max_active=args.max_active)
    except ValueError as exc:
        flag = {"max_peers": "--max-peers", "fps": "--fps", "idle_timeout_s": "--idle-timeout",
                "max_active": "--max-active"}
        name = str(exc).split(" ", 1)[0]
        print(f"error: {flag.get(name, name)} {str(exc).split(' ', 1)[1]}", file=sys.stderr)
        return 2
    try:
        return serve(args.host, args.port, args.engine, args.max_peers, args.ice_loopback,
                     fps=args.fps, idle_timeout_s=args.idle_timeout, ice_servers=args.ice_server,
                     max_active=args.max_active, tracker_cfg=tracker_cfg)
    except OSError as exc:
        print(f"error: cannot listen on {args.host}:{args.port}: {exc.strerror or exc}",
              file=sys.stderr)
        return 2
    except ValueError as exc:  # e.g. an engine that cannot run here
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

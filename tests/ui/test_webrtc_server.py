"""The WebRTC server, really started (a subprocess on 127.0.0.1, ICE on loopback), spoken to by
real aiortc peers: events of the demo clip over the ``events`` channel, annotated frames back,
bad offers, the peer limit, peers that vanish, and shutdown."""
from __future__ import annotations

import asyncio
import json
import signal
import time
import urllib.error
import urllib.request

import cv2
import numpy as np
import pytest

from tests.ui.conftest import DEMO_CLIP, ROOT, run_webrtc_server
from ui import frame_marker
from ui.webrtc_peer import LatestSlot
from ui.webrtc_server import OfferError, ServerConfig, main, parse_offer

pytest.importorskip("aiortc", reason="the `ui` extra (aiortc) is not installed")

DEMO_LABELS = ROOT / "stream" / "demo" / "demo_labels.csv"
#: Seconds of the demo clip the events test streams (4 labelled expressions end before 12 s).
STREAM_S = 13.0


# --- pieces that need no server --------------------------------------------------------------
def test_marker_round_trip_survives_compression_and_scaling():
    rng = np.random.default_rng(0)
    for n in (0, 1, 4097, 65535, 70000):
        image = rng.integers(0, 256, (360, 640, 3), np.uint8)
        frame_marker.stamp(image, n)
        ok, jpg = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 25])
        blurred = cv2.imdecode(jpg, cv2.IMREAD_COLOR)
        assert frame_marker.read(blurred) == n % 65536
        half = cv2.resize(blurred, (320, 180), interpolation=cv2.INTER_AREA)
        assert frame_marker.read(half) == n % 65536
    assert frame_marker.read(rng.integers(0, 256, (360, 640, 3), np.uint8)) is None
    for grey in (0, 128, 255):  # a plain corner is not a number
        assert frame_marker.read(np.full((360, 640, 3), grey, np.uint8)) is None


def test_marker_strip_is_kept_over_an_overlay():
    original = frame_marker.stamp(np.zeros((360, 640, 3), np.uint8), 1234)
    drawn = np.full_like(original, 200)  # an overlay that covered everything
    assert frame_marker.read(drawn) is None
    assert frame_marker.read(frame_marker.keep_strip(drawn, original)) == 1234
    plain = np.zeros((360, 640, 3), np.uint8)  # no marker: the overlay stays everywhere
    assert (frame_marker.keep_strip(np.full_like(plain, 200), plain) == 200).all()
    with pytest.raises(ValueError, match="too small"):
        frame_marker.stamp(np.zeros((10, 30, 3), np.uint8), 1)


def test_latest_slot_keeps_the_newest_and_counts_drops():
    slot = LatestSlot()
    assert slot.put(1) is False and slot.put(2) is True and slot.put(3) is True
    assert slot.get(0) == 3 and slot.dropped == 2 and slot.got == 1
    assert slot.get(0.01) is None  # nothing waiting
    slot.put(4)
    slot.close()
    assert slot.get(0) is None and slot.dropped == 3  # the one waiting at close is counted
    assert slot.put(5) is True and slot.dropped == 4


@pytest.mark.parametrize("body, reason", [
    (b"{not json", "not JSON"),
    (b"[1, 2]", "JSON object"),
    (b'{"type": "offer"}', '"sdp" is missing'),
    (b'{"sdp": "v=0", "type": 3}', '"type" is missing or not a string'),
    (b'{"sdp": "v=0", "type": "answer"}', 'must be "offer"'),
    (b'{"sdp": "  ", "type": "offer"}', "empty"),
])
def test_parse_offer_names_what_is_wrong(body, reason):
    with pytest.raises(OfferError, match=reason):
        parse_offer(body)


@pytest.mark.parametrize("kwargs, name", [({"max_peers": 0}, "max_peers"),
                                          ({"fps": 0}, "fps"),
                                          ({"idle_timeout_s": 0}, "idle_timeout_s"),
                                          ({"max_body_bytes": 10}, "max_body_bytes"),
                                          ({"max_active": 0}, "max_active")])
def test_server_config_checks_arguments(kwargs, name):
    with pytest.raises(ValueError, match=name):
        ServerConfig(**kwargs)


@pytest.mark.parametrize("argv, message", [(["--max-peers", "0"], "max-peers"),
                                           (["--port", "70000"], "--port"),
                                           (["--idle-timeout", "-1"], "--idle-timeout"),
                                           (["--max-active", "0"], "--max-active")])
def test_cli_bad_arguments_exit_2_with_one_line(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err


def test_cli_port_in_use_exits_2_before_loading_the_engine(capsys):
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        t0 = time.monotonic()
        assert main(["--port", str(busy.getsockname()[1])]) == 2
    err = capsys.readouterr().err.strip()
    assert "cannot listen on 127.0.0.1" in err and "\n" not in err
    assert time.monotonic() - t0 < 2


# --- one server for the rest of the module ---------------------------------------------------
@pytest.fixture(scope="module")
def server():
    with run_webrtc_server("--max-peers", "2", "--idle-timeout", "2") as srv:
        yield srv


def wait_for_peers(server, n: int, timeout_s: float) -> float:
    """Seconds until ``/stats`` shows ``n`` peers (AssertionError after ``timeout_s``)."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout_s:
        if server.stats()["peers"] == n:
            return time.monotonic() - t0
        time.sleep(0.1)
    raise AssertionError(f"/stats still shows {server.stats()['peers']} peers, want {n}:\n"
                         f"{server.output()[-2000:]}")


def post(url: str, body: bytes) -> tuple[int, str]:
    req = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


async def make_offer(*kinds: str) -> tuple[object, dict]:
    """An aiortc peer connection with tracks of ``kinds`` and its offer (to post by hand)."""
    from aiortc import AudioStreamTrack, RTCConfiguration, RTCPeerConnection, VideoStreamTrack

    from ui.webrtc_client import restrict_ice_to_loopback

    restrict_ice_to_loopback()
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pc.createDataChannel("events")
    for kind in kinds:
        pc.addTrack(AudioStreamTrack() if kind == "audio" else VideoStreamTrack())
    await pc.setLocalDescription(await pc.createOffer())
    return pc, {"sdp": pc.localDescription.sdp, "type": pc.localDescription.type}


def clip(**kwargs):
    from ui.webrtc_client import ClipTrack

    return ClipTrack(DEMO_CLIP, **kwargs)


@pytest.mark.parametrize("body, status, reason", [
    (b"this is not json", 400, "not JSON"),
    (b'{"sdp": "x"}', 400, '"type" is missing'),
    (json.dumps({"sdp": "v=0\r\n", "type": "answer"}).encode(), 400, 'must be "offer"'),
    (json.dumps({"sdp": "hello, I am not SDP", "type": "offer"}).encode(), 400, "bad offer"),
    (json.dumps({"sdp": "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\nbroken",
                 "type": "offer"}).encode(), 400, "bad offer"),
    (b'{"sdp": "' + b"v" * (300 * 1024) + b'", "type": "offer"}', 413, ""),
])
def test_bad_offers_are_refused_with_a_one_line_reason(server, body, status, reason):
    code, text = post(server.url + "/offer", body)
    assert code == status, text
    assert reason in text and len(text.strip().splitlines()) == 1
    assert server.stats()["peers"] == 0


def test_an_offer_without_video_is_refused_and_audio_beside_video_is_drained(server):
    from aiortc import AudioStreamTrack

    from ui.webrtc_client import ClientPeer

    async def go():
        pc, offer = await make_offer("audio")
        code, text = await asyncio.to_thread(post, server.url + "/offer",
                                             json.dumps(offer).encode())
        await pc.close()
        assert code == 400 and "no video track" in text, text
        peer = ClientPeer(server.url, clip(max_frames=60), extra_tracks=(AudioStreamTrack(),))
        await peer.connect()
        await peer.wait_sent(20)
        await asyncio.sleep(0.5)
        summary = await peer.finish()
        await peer.close()
        return peer, summary

    peer, summary = asyncio.run(go())
    assert len(peer.returned) > 0 and summary["frames_read"] > 0
    wait_for_peers(server, 0, 10)


@pytest.mark.parametrize("seconds", [STREAM_S, pytest.param(25.0, marks=pytest.mark.slow)])
def test_demo_clip_over_webrtc_gives_the_labelled_events_and_annotated_frames(server, seconds):
    from stream.events import from_json
    from stream.megc_csv import Spot, read_megc_csv
    from stream.metrics import match
    from ui.webrtc_client import ClientPeer

    n_frames = int(seconds * 30)

    async def go():
        track = clip(fps=30, max_frames=n_frames)
        peer = ClientPeer(server.url, track, keep_every=15)
        await peer.connect()
        await peer.wait_sent(seconds + 20)
        await asyncio.sleep(0.3)
        summary = await peer.finish()
        await peer.close()
        return track, peer, summary

    track, peer, summary = asyncio.run(go())
    records = [from_json(r) for r in peer.records]  # every message is a JSONL record
    assert peer.records[-1]["type"] == "summary" and summary["source"].startswith("webrtc:")
    # every frame the client sent reached the server (a late client skips frames, as a camera)
    assert summary["frames_read"] + track.skipped >= 0.95 * n_frames, (summary, track.skipped)
    events = [r for r in peer.records if r["type"] == "event"]
    starts = [r for r in peer.records if r["type"] == "event_start"]
    assert starts, "no provisional event_start record came over the channel"
    truth = [s for s in read_megc_csv(DEMO_LABELS) if s.offset < n_frames - 5]
    pred = [Spot("s", "demo", e["onset_frame"], e["offset_frame"], e["emotion"], e["kind"],
                 score=e["score"]) for e in events]
    truth = [Spot("s", "demo", t.onset, t.offset, t.emotion, t.kind) for t in truth]
    pairs, fps, fns = match(truth, pred, 0.5)
    tp = len(pairs)
    f1 = 2 * tp / (2 * tp + len(fps) + len(fns))
    assert f1 >= 0.8, (f"spotting F1 {f1:.2f} (TP {tp} FP {len(fps)} FN {len(fns)}); "
                       f"events {[(e['onset_frame'], e['offset_frame']) for e in events]}; "
                       f"summary {summary}")
    assert len(records) == len(peer.records)
    # annotated frames came back, matched to the frames sent by their marker
    matched = [(n, t) for n, t in peer.returned if n is not None and n in track.sent_at]
    assert len(matched) >= 0.3 * n_frames, f"{len(matched)} frames came back of {n_frames}"
    assert all(t > track.sent_at[n] for n, t in matched)
    cap = cv2.VideoCapture(str(DEMO_CLIP))
    originals = {}
    for i in range(n_frames):
        ok, img = cap.read()
        originals[i] = img
    diffs = []
    for n, img in peer.images:
        if n is None or n not in originals:
            continue
        # the overlay changes many pixels strongly; two VP8 passes alone change few
        diffs.append(float((np.abs(img.astype(int) - originals[n].astype(int)).max(axis=2)
                            > 60).mean()))
    assert diffs and np.median(diffs) > 0.01, f"returned frames look unannotated: {diffs}"


def test_peer_limit_refuses_extra_offers_while_the_served_keep_their_rate(server):
    from ui.webrtc_client import ClientPeer

    async def returned_rate(peers, seconds: float) -> list[float]:
        before = [len(p.returned) for p in peers]
        await asyncio.sleep(seconds)
        return [(len(p.returned) - b) / seconds for p, b in zip(peers, before)]

    async def go():
        peers = [ClientPeer(server.url, clip(max_frames=600, loop=True)) for _ in range(2)]
        for p in peers:
            await p.connect()
        await asyncio.sleep(1.5)  # past start-up
        rate_a = await returned_rate(peers, 2.0)
        offers = [await make_offer("video") for _ in range(20)]  # 20 at once against 2 busy
        bodies = [json.dumps(o).encode() for _, o in offers]
        t0 = time.monotonic()
        answers = await asyncio.gather(*(asyncio.to_thread(post, server.url + "/offer", b)
                                         for b in bodies))
        refuse_s = time.monotonic() - t0
        rate_b = await returned_rate(peers, 2.0)
        stats = await asyncio.to_thread(server.stats)
        for pc, _ in offers:
            await pc.close()
        for p in peers:
            await p.close()
        return rate_a, rate_b, answers, refuse_s, stats

    rate_a, rate_b, answers, refuse_s, stats = asyncio.run(go())
    assert [code for code, _ in answers] == [503] * 20, answers
    assert all("--max-peers" in text and len(text.strip().splitlines()) == 1
               for _, text in answers)
    assert refuse_s < 5, f"refusing 20 offers took {refuse_s:.1f} s"
    assert stats["peers"] == 2 and stats["refused_busy"] >= 20
    assert min(rate_a) > 3, f"served peers returned {rate_a} fps"
    for a, b in zip(rate_a, rate_b):
        assert b >= 0.7 * a, f"returned frame rate fell from {rate_a} to {rate_b} fps"
    wait_for_peers(server, 0, 10)


def test_concurrent_offers_never_exceed_the_limit(server):
    from aiortc import RTCSessionDescription

    async def go():
        offers = [await make_offer("video") for _ in range(20)]  # 20 at once, limit 2
        answers = await asyncio.gather(*(asyncio.to_thread(
            post, server.url + "/offer", json.dumps(o).encode()) for _, o in offers))
        peak = (await asyncio.to_thread(server.stats))["peers"]
        served = [pc for (pc, _), (code, text) in zip(offers, answers) if code == 200]
        for pc, (code, text) in zip(served, [a for a in answers if a[0] == 200]):
            await pc.setRemoteDescription(RTCSessionDescription(**json.loads(text)))
        for _ in range(100):  # connected, so that closing them is a clean goodbye
            if all(pc.connectionState == "connected" for pc in served):
                break
            await asyncio.sleep(0.1)
        for pc, _ in offers:
            await pc.close()
        return [code for code, _ in answers], peak

    codes, peak = asyncio.run(go())
    assert sorted(codes) == [200] * 2 + [503] * 18 and peak <= 2
    wait_for_peers(server, 0, 6)


#: A client in its own process that connects, streams, and is then killed (SIGKILL) by the test.
KILLED_CLIENT = """
import asyncio, sys
from ui.webrtc_client import ClientPeer, ClipTrack
async def go():
    peer = ClientPeer(sys.argv[1], ClipTrack(sys.argv[2], max_frames=100000, loop=True))
    await peer.connect()
    print("connected", flush=True)
    await asyncio.sleep(600)
asyncio.run(go())
"""


@pytest.mark.parametrize("how", ["close_without_finish", "stop_sending", "process_killed"])
def test_a_peer_that_vanishes_frees_its_pipeline(server, how):
    import subprocess
    import sys

    from ui.webrtc_client import ClientPeer

    async def go() -> float:
        peer = ClientPeer(server.url, clip(max_frames=60 if how == "stop_sending" else 900))
        await peer.connect()
        await asyncio.sleep(1.0)
        assert (await asyncio.to_thread(server.stats))["peers"] == 1
        if how == "close_without_finish":  # no "finish", just gone
            await peer.close()
            return await asyncio.to_thread(wait_for_peers, server, 0, 6)
        await peer.wait_sent(10)  # then nothing more is sent while the connection stays up
        t = await asyncio.to_thread(wait_for_peers, server, 0, 6)
        await peer.close()
        return t

    if how == "process_killed":
        client = subprocess.Popen([sys.executable, "-c", KILLED_CLIENT, server.url,
                                   str(DEMO_CLIP)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
        try:
            assert client.stdout.readline().strip() == "connected"
            time.sleep(1.0)
            assert server.stats()["peers"] == 1
        finally:
            client.kill()
            client.wait(10)
        freed_s = wait_for_peers(server, 0, 6)
    else:
        freed_s = asyncio.run(go())
    # closed: at once (RTCP BYE / DTLS close); silent or killed: after --idle-timeout 2 s
    assert freed_s < (1.5 if how == "close_without_finish" else 5), freed_s
    last = [line for line in server.lines if "closed (" in line][-1]
    want = ("track ended", "connection closed") if how == "close_without_finish" else (
        "no frame for 2 s",)
    assert any(w in last for w in want), last


def test_shutdown_ends_every_peer_with_a_summary():
    from ui.webrtc_client import ClientPeer

    with run_webrtc_server("--max-peers", "2") as srv:
        async def go():
            peer = ClientPeer(srv.url, clip(max_frames=900))
            await peer.connect()
            await asyncio.sleep(1.5)
            srv.proc.send_signal(signal.SIGTERM)
            await asyncio.wait_for(peer._got_summary.wait(), 15)
            await peer.close()
            return peer

        peer = asyncio.run(go())
        assert srv.proc.wait(20) == 0
    types = [r["type"] for r in peer.records]
    assert types[-1] == "summary" and "status" in types
    # the client closes once it has its summary, so the peer may go either way first
    assert "closing 1 peer(s)" in srv.output()
    assert "peer 1 closed (" in srv.output()


def test_cli_bad_tracker_setting_exits_2_with_one_line(capsys):
    assert main(["--tracker", "no_such_field=1"]) == 2
    err = capsys.readouterr().err.strip()
    assert "--tracker" in err and "no_such_field" in err and "\n" not in err


def test_every_peer_chain_runs_the_server_tracker_settings():
    """``ServerConfig.tracker`` reaches each peer's chain: with the hold off, the chain of a
    flow-only model runs no appearance stage."""
    from engine.config import TrackerConfig
    from engine.runtime import Engine
    from ui.webrtc_server import WebRTCServer

    with Engine.load("onnxruntime", log=lambda _: None) as engine:
        for cfg, appears in ((TrackerConfig(appearance_hold=False), False),
                             (TrackerConfig(), True)):
            srv = WebRTCServer(engine, ServerConfig(tracker=cfg), log=lambda _: None)
            with srv._open_chain(engine, 30.0) as chain:
                assert chain.spotter.tracker_cfg == cfg
                assert (chain.appearance is not None) == appears

"""Glass-to-glass latency of the WebRTC server over loopback (``make bench-webrtc``).

For 1, 2 and 4 concurrent peers, aiortc clients each send the demo clip at 30
fps to a server started as a subprocess (``--ice-loopback``). Every frame sent
carries its number in a marker strip (:mod:`ui.frame_marker`); the server keeps
the strip in the annotated frame it returns, so each returned frame is matched
to its send time: latency = received annotated frame − frame handed to the
encoder (encode, network, decode, chain, overlay, encode, network, decode).
Each final event's delay is the time its record arrived on the ``events``
channel after its offset frame was sent (frames are numbered alike on both
sides while no frame is lost in transit on loopback).

    python -m bench.webrtc [--peers 1 2 4] [--seconds 25] [--out bench/webrtc.json]

Writes the JSON and a figure next to it (``.png``). Each client runs in its
own process (like separate browsers); clients and server share the machine,
so the numbers include the clients' own encoding and decoding. A client that
falls behind skips frames like a camera (``frames_skipped_by_sender``).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "stream" / "demo" / "demo.mp4"
FPS = 30.0
#: Frames of the first seconds are also reported apart (start-up: encoders ramp, caches fill).
WARMUP_S = 3.0


def percentiles(values) -> dict:
    v = np.asarray(list(values), float)
    if not v.size:
        return {"n": 0}
    return {"p50": round(float(np.percentile(v, 50)), 1), "p95": round(float(np.percentile(v, 95)), 1),
            "p99": round(float(np.percentile(v, 99)), 1), "mean": round(float(v.mean()), 1),
            "max": round(float(v.max()), 1), "n": int(v.size)}


async def run_peer(url: str, n_frames: int, go: Path | None = None) -> dict:
    """One client sending ``n_frames`` of the demo; its latencies, events and the server summary.

    With ``go``, the client connects, then waits for that file to exist before sending.
    """
    from ui.webrtc_client import ClientPeer, ClipTrack

    start = asyncio.Event()
    peer = ClientPeer(url, ClipTrack(DEMO, fps=FPS, max_frames=n_frames, start=start))
    await peer.connect()
    while go is not None and not go.exists():
        await asyncio.sleep(0.05)
    start.set()
    await peer.wait_sent(n_frames / FPS + 60)
    await asyncio.sleep(1.0)  # the last frames come back
    summary = await peer.finish()
    await peer.close()
    sent = peer.track.sent_at
    matched = [(n, (t - sent[n]) * 1e3) for n, t in peer.returned if n is not None and n in sent]
    lat = [x for _, x in matched]
    steady = [x for n, x in matched if n >= WARMUP_S * FPS]
    delays = []
    for record, t in zip(peer.records, peer.record_times):
        if record["type"] == "event" and record["offset_frame"] in sent:
            delays.append({"onset_frame": record["onset_frame"],
                           "offset_frame": record["offset_frame"], "kind": record["kind"],
                           "delay_ms": round((t - sent[record["offset_frame"]]) * 1e3, 1),
                           "server_latency_ms": record["latency_ms"]})
    span = (peer.returned[-1][1] - peer.returned[0][1]) if len(peer.returned) > 1 else 0
    return {"frames_sent": len(sent), "frames_skipped_by_sender": peer.track.skipped,
            "frames_returned": len(peer.returned),
            "returned_unreadable_marker": sum(n is None for n, _ in peer.returned),
            "returned_fps": round((len(peer.returned) - 1) / span, 2) if span > 0 else 0.0,
            "latency_ms": percentiles(lat),
            "latency_after_warmup_ms": percentiles(steady),
            "latency_samples_ms": [round(x, 1) for x in lat],
            "steady_samples_ms": [round(x, 1) for x in steady],
            "events": delays, "server_summary": summary}


def run_peers(url: str, n_peers: int, n_frames: int, tmp: Path) -> list[dict]:
    """``n_peers`` clients at once, each in its own process (as separate browsers would be:
    one Python process for all of them is bound by its own GIL before the server is).

    Returns the clients' results and ``/stats`` sampled every second while they run.
    """
    import subprocess

    outs = [tmp / f"peer{i}.json" for i in range(n_peers)]
    go = tmp / "go"
    procs = [subprocess.Popen([sys.executable, "-m", "bench.webrtc", "--client", url,
                               "--frames", str(n_frames), "--result", str(out), "--go", str(go)],
                              cwd=ROOT) for out in outs]
    # every client connects first; then all start sending at once
    import urllib.request
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and any(p.poll() is None for p in procs):
        with urllib.request.urlopen(url + "/stats", timeout=10) as resp:
            stats = json.loads(resp.read())
        if sum(q["state"] == "connected" for q in stats["per_peer"]) >= n_peers:
            break
        time.sleep(0.2)
    time.sleep(1.0)
    go.touch()
    t_go = time.monotonic()
    samples = []  # the server's view every second: ingest lag, frames in / processed per peer
    while any(p.poll() is None for p in procs) and time.monotonic() - t_go < n_frames / FPS + 120:
        try:
            with urllib.request.urlopen(url + "/stats", timeout=10) as resp:
                stats = json.loads(resp.read())
            samples.append({"t_s": round(time.monotonic() - t_go, 1),
                            "loop_lag_ms": stats.get("loop_lag_ms"), "per_peer": [
                {k: q.get(k) for k in ("id", "frames_in", "frames_processed", "frames_dropped",
                                       "dropped_at_decoder", "decoder_waiting", "frames_sent",
                                       "ingest_lag_ms")} for q in stats["per_peer"]]})
        except OSError:
            pass
        time.sleep(1.0)
    for proc in procs:
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
    failed = [i for i, p in enumerate(procs) if p.returncode != 0]
    if failed:
        raise RuntimeError(f"client process(es) {failed} of {n_peers} failed")
    return [json.loads(out.read_text()) for out in outs], samples


def draw(report: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = report["runs"]
    fig, axes = plt.subplots(1, 3, figsize=(14, 4.2))
    ax = axes[0]
    for run in runs:
        lat = np.sort(np.concatenate([p["latency_samples_ms"] for p in run["peers"]]))
        if lat.size:
            ax.plot(lat, np.arange(1, lat.size + 1) / lat.size, label=f"{run['n_peers']} peer(s)")
    ax.set_xlabel("glass-to-glass latency per frame (ms)")
    ax.set_ylabel("fraction of returned frames")
    ax.set_title("per-frame latency (CDF)")
    ax.grid(alpha=.3)
    ax.legend()
    ax = axes[1]
    xs = [r["n_peers"] for r in runs]
    for key in ("p50", "p95", "p99"):
        ax.plot(xs, [r["latency_ms"].get(key, np.nan) for r in runs], "o-", label=f"frame {key}")
    for r in runs:  # each final event: its record's arrival after its offset frame was sent
        d = [e["delay_ms"] for p in r["peers"] for e in p["events"]]
        ax.scatter([r["n_peers"]] * len(d), d, marker="x", color="0.3",
                   label="event delay" if r is runs[0] else None)
    ax.set_xticks(xs)
    ax.set_xlabel("concurrent peers")
    ax.set_ylabel("ms")
    ax.set_title("frame latency and event delay after offset")
    ax.grid(alpha=.3)
    ax.legend()
    ax = axes[2]
    ax.bar([x - 0.15 for x in xs], [r["returned_fps_mean"] for r in runs], 0.3,
           label="returned fps / peer")
    ax.bar([x + 0.15 for x in xs], [30 * r["dropped_fraction"] for r in runs], 0.3,
           label="dropped (fps equivalent)")
    ax.axhline(30, color="0.5", ls="--", lw=1)
    ax.set_xticks(xs)
    ax.set_xlabel("concurrent peers")
    ax.set_title("frame rate per peer (sent: 30 fps)")
    ax.legend()
    fig.suptitle(f"WebRTC loopback, demo clip 640x360 @ 30 fps, {report['machine']['cpus']} CPUs, "
                 f"engine {report['engine']}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.webrtc", description=__doc__.split("\n")[0])
    p.add_argument("--peers", type=int, nargs="+", default=[1, 2, 4])
    p.add_argument("--seconds", type=float, default=25.0, help="of the demo clip, per peer")
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "webrtc.json")
    p.add_argument("--max-active", type=int, default=None,
                   help="the server's --max-active (default: its own, cores - 1)")
    p.add_argument("--client", metavar="URL", help=argparse.SUPPRESS)  # one client process
    p.add_argument("--frames", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--go", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.client:
        from ui.webrtc_client import restrict_ice_to_loopback

        restrict_ice_to_loopback()
        args.result.write_text(json.dumps(asyncio.run(run_peer(args.client, args.frames, args.go))))
        return 0
    if any(n < 1 for n in args.peers) or not 0 < args.seconds <= 25:
        print("error: --peers must be >= 1 and --seconds in (0, 25]", file=sys.stderr)
        return 2
    import tempfile

    from ui.webrtc_client import run_server

    n_frames = int(args.seconds * FPS)
    report = {"clip": "stream/demo/demo.mp4", "fps": FPS, "frames_per_peer": n_frames,
              "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                          "python": platform.python_version()},
              "runs": []}
    extra = ["--max-active", str(args.max_active)] if args.max_active else []
    with run_server("--max-peers", str(max(args.peers)), *extra) as server:
        report["engine"] = server.stats()["engine"]
        report["max_active"] = server.stats()["max_active"]
        for n in args.peers:
            load = os.getloadavg()[0]
            t0 = time.monotonic()
            with tempfile.TemporaryDirectory() as tmp:
                peers, samples = run_peers(server.url, n, n_frames, Path(tmp))
            lat = np.concatenate([p["latency_samples_ms"] for p in peers])
            sums = [p["server_summary"] for p in peers]
            run = {"n_peers": n, "load_avg_1min_before": round(load, 2),
                   "load_avg_1min_after": round(os.getloadavg()[0], 2),
                   "wall_s": round(time.monotonic() - t0, 1), "latency_ms": percentiles(lat),
                   "latency_after_warmup_ms": percentiles(
                       np.concatenate([p["steady_samples_ms"] for p in peers])),
                   "returned_fps_mean": round(float(np.mean([p["returned_fps"] for p in peers])), 2),
                   "dropped_fraction": round(sum(s["frames_dropped"] for s in sums)
                                             / max(1, sum(s["frames_read"] for s in sums)), 3),
                   "event_delay_ms": percentiles(e["delay_ms"] for p in peers for e in p["events"]),
                   "peers": peers, "server_samples": samples}
            report["runs"].append(run)
            ev = run["event_delay_ms"]
            lw = run["latency_after_warmup_ms"]
            print(f"{n} peer(s): latency p50 {run['latency_ms'].get('p50')} / p95 "
                  f"{run['latency_ms'].get('p95')} / p99 {run['latency_ms'].get('p99')} ms "
                  f"(after {WARMUP_S:g} s: {lw.get('p50')} / {lw.get('p95')} / {lw.get('p99')}); "
                  f"returned {run['returned_fps_mean']} fps/peer, dropped "
                  f"{100 * run['dropped_fraction']:.0f} %; event delay p50 {ev.get('p50')} ms "
                  f"(n {ev['n']}); load {load:.1f}", flush=True)
            deadline = time.monotonic() + 15
            while server.stats()["peers"] and time.monotonic() < deadline:
                time.sleep(0.2)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1))
    draw(report, args.out.with_suffix(".png"))
    print(f"wrote {args.out} and {args.out.with_suffix('.png')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

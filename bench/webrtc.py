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

Writes the JSON and a figure next to it (``.png``). Clients and server share
the machine, so the numbers include the clients' own encoding and decoding.
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


def percentiles(values) -> dict:
    v = np.asarray(list(values), float)
    if not v.size:
        return {"n": 0}
    return {"p50": round(float(np.percentile(v, 50)), 1), "p95": round(float(np.percentile(v, 95)), 1),
            "p99": round(float(np.percentile(v, 99)), 1), "mean": round(float(v.mean()), 1),
            "max": round(float(v.max()), 1), "n": int(v.size)}


async def run_peers(url: str, n_peers: int, n_frames: int) -> list[dict]:
    """``n_peers`` clients sending ``n_frames`` of the demo at once; one result per peer."""
    from ui.webrtc_client import ClientPeer, ClipTrack

    peers = [ClientPeer(url, ClipTrack(DEMO, fps=FPS, max_frames=n_frames))
             for _ in range(n_peers)]
    await asyncio.gather(*(p.connect() for p in peers))
    await asyncio.gather(*(p.wait_sent(n_frames / FPS + 60) for p in peers))
    await asyncio.sleep(1.0)  # the last frames come back
    summaries = await asyncio.gather(*(p.finish() for p in peers))
    await asyncio.gather(*(p.close() for p in peers))
    results = []
    for peer, summary in zip(peers, summaries):
        sent = peer.track.sent_at
        lat = [(t - sent[n]) * 1e3 for n, t in peer.returned if n is not None and n in sent]
        unread = sum(n is None for n, _ in peer.returned)
        delays = []
        for record, t in zip(peer.records, peer.record_times):
            if record["type"] == "event" and record["offset_frame"] in sent:
                delays.append({"onset_frame": record["onset_frame"],
                               "offset_frame": record["offset_frame"], "kind": record["kind"],
                               "delay_ms": round((t - sent[record["offset_frame"]]) * 1e3, 1),
                               "server_latency_ms": record["latency_ms"]})
        span = (peer.returned[-1][1] - peer.returned[0][1]) if len(peer.returned) > 1 else 0
        results.append({
            "frames_sent": len(sent), "frames_returned": len(peer.returned),
            "returned_unreadable_marker": unread,
            "returned_fps": round((len(peer.returned) - 1) / span, 2) if span > 0 else 0.0,
            "latency_ms": percentiles(lat), "latency_samples_ms": [round(x, 1) for x in lat],
            "events": delays, "server_summary": summary})
    return results


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
    for key, label in (("p50", "p50"), ("p95", "p95"), ("p99", "p99")):
        ax.plot(xs, [r["latency_ms"].get(key, np.nan) for r in runs], "o-", label=label)
    ax.set_xticks(xs)
    ax.set_xlabel("concurrent peers")
    ax.set_ylabel("latency (ms)")
    ax.set_title("latency percentiles")
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
    args = p.parse_args(argv)
    if any(n < 1 for n in args.peers) or not 0 < args.seconds <= 25:
        print("error: --peers must be >= 1 and --seconds in (0, 25]", file=sys.stderr)
        return 2
    from ui.webrtc_client import run_server

    n_frames = int(args.seconds * FPS)
    report = {"clip": "stream/demo/demo.mp4", "fps": FPS, "frames_per_peer": n_frames,
              "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                          "python": platform.python_version()},
              "runs": []}
    with run_server("--max-peers", str(max(args.peers))) as server:
        report["engine"] = server.stats()["engine"]
        for n in args.peers:
            load = os.getloadavg()[0]
            t0 = time.monotonic()
            peers = asyncio.run(run_peers(server.url, n, n_frames))
            lat = np.concatenate([p["latency_samples_ms"] for p in peers])
            sums = [p["server_summary"] for p in peers]
            run = {"n_peers": n, "load_avg_1min_before": round(load, 2),
                   "wall_s": round(time.monotonic() - t0, 1), "latency_ms": percentiles(lat),
                   "returned_fps_mean": round(float(np.mean([p["returned_fps"] for p in peers])), 2),
                   "dropped_fraction": round(sum(s["frames_dropped"] for s in sums)
                                             / max(1, sum(s["frames_read"] for s in sums)), 3),
                   "event_delay_ms": percentiles(e["delay_ms"] for p in peers for e in p["events"]),
                   "peers": peers}
            report["runs"].append(run)
            ev = run["event_delay_ms"]
            print(f"{n} peer(s): latency p50 {run['latency_ms'].get('p50')} / p95 "
                  f"{run['latency_ms'].get('p95')} / p99 {run['latency_ms'].get('p99')} ms; "
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

"""Soak test (``make soak``, not in the test suite): memory stays flat over a long live run.

Two parts, each ``--minutes`` long (10 by default), run one after the other:

* **pipeline** — the demo clip looped through the live pipeline (capture thread,
  ring, stage chain) with ``--realtime`` pacing, in this process;
* **webrtc** — one aiortc peer sending the looped demo clip to the WebRTC server
  (``python -m ui.webrtc_server --ice-loopback``, a subprocess) on 127.0.0.1.

RSS (of this process for the pipeline, of the server process for WebRTC) is
sampled every ``--every`` seconds (10). Growth is measured against the first
sample after ``--warmup`` seconds (60: graphs built, caches filled); a part
passes when no later sample is more than ``--limit-mb`` (50) above it and no
unexpected exception occurred (in any thread of this process; a ``Traceback``
in the server's output). Results go to ``--out`` (``bench/soak.json``) and a
figure next to it (``.png``)::

    python -m bench.soak [--minutes 10] [--part both|pipeline|webrtc] [--out bench/soak.json]

Exit code 0 when every part passed, 1 otherwise.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import threading
import time
import traceback
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "stream" / "demo" / "demo.mp4"
FPS = 30.0


class Sampler:
    """Samples a process's RSS every ``every`` seconds on a daemon thread."""

    def __init__(self, pid: int, every: float) -> None:
        import psutil

        self.proc, self.every = psutil.Process(pid), every
        self.samples: list[tuple[float, float]] = []  # (seconds since start, RSS MB)
        self._stop = threading.Event()
        self._t0 = time.monotonic()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def _run(self) -> None:
        while True:
            try:
                rss = self.proc.memory_info().rss / 2**20
            except Exception:  # noqa: BLE001 - the process ended
                return
            self.samples.append((round(time.monotonic() - self._t0, 1), round(rss, 1)))
            if self._stop.wait(self.every):
                return

    def __enter__(self) -> "Sampler":
        self._t0 = time.monotonic()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(5)


def growth(samples: list[tuple[float, float]], warmup_s: float, limit_mb: float) -> dict:
    """RSS growth after the warm-up: against the first sample at or after ``warmup_s``."""
    after = [(t, m) for t, m in samples if t >= warmup_s]
    if len(after) < 2:
        return {"ok": False, "why": f"fewer than 2 samples after the {warmup_s:g} s warm-up"}
    base = after[0][1]
    t, m = np.array(after).T
    slope = float(np.polyfit(t / 60.0, m, 1)[0]) if len(after) > 2 else 0.0
    out = {"warmup_s": warmup_s, "rss_at_warmup_mb": base, "rss_end_mb": after[-1][1],
           "rss_max_mb": float(m.max()), "growth_mb": round(after[-1][1] - base, 1),
           "max_growth_mb": round(float(m.max()) - base, 1),
           "slope_mb_per_min": round(slope, 2), "limit_mb": limit_mb}
    out["ok"] = out["max_growth_mb"] <= limit_mb
    return out


def loop_source(seconds: float):
    """The demo clip, played over and over for ``seconds`` of media time (a FrameSource)."""
    from engine.contracts import Frame
    from stream.sources import VideoFileSource

    class LoopSource(VideoFileSource):
        """``VideoFileSource`` that starts over at the end; indices and times run on."""

        def __init__(self) -> None:
            super().__init__(DEMO)
            self.name, self.loops = f"{DEMO.name} looped {seconds:g} s", 0
            self._offset_i, self._offset_t, self._n = 0, 0.0, 0

        def read(self):
            frame = super().read()
            if frame is None:  # end of the clip: open it again, count on
                self.loops += 1
                self._offset_i = self._n
                self._offset_t = self._n / self.fps
                self.take_statuses()  # nothing is lost between loops
                super().close()
                super().open()
                frame = super().read()
            t = self._offset_t + frame.t_capture
            if t >= seconds:
                return None
            self._n = self._offset_i + frame.index + 1
            return Frame(self._offset_i + frame.index, t, frame.image)

        @property
        def frames_promised(self):
            return None  # a loop promises nothing

    return LoopSource()


def soak_pipeline(seconds: float, every: float, warmup: float, limit: float) -> dict:
    """The looped demo through the live pipeline with ``--realtime`` pacing."""
    from engine.contracts import Event, Status
    from engine.runtime import Engine
    from stream.pipeline import Pipeline

    errors: list[str] = []
    old_hook = threading.excepthook
    threading.excepthook = lambda a: errors.append(  # exceptions of any thread
        "".join(traceback.format_exception(a.exc_type, a.exc_value, a.exc_traceback)))
    counts = {"events": 0, "statuses": {}}

    def sink(record) -> None:
        if isinstance(record, Event):
            counts["events"] += 1
        elif isinstance(record, Status):
            counts["statuses"][record.status] = counts["statuses"].get(record.status, 0) + 1

    summary = None
    try:
        with Engine.load("auto", log=lambda _: None) as engine, \
                Sampler(os.getpid(), every) as sampler:
            source = loop_source(seconds)
            summary = Pipeline(source, sink, engine, realtime=True).run()
    except Exception:  # noqa: BLE001 - recorded, the report is still written
        errors.append(traceback.format_exc())
    finally:
        threading.excepthook = old_hook
    return {"part": "pipeline", "seconds": seconds, "rss_mb": sampler.samples,
            "memory": growth(sampler.samples, warmup, limit), "exceptions": errors,
            "loops": getattr(source, "loops", None), **counts,
            "summary": None if summary is None else {
                k: getattr(summary, k) for k in ("engine", "policy", "frames_read",
                                                 "frames_processed", "frames_dropped",
                                                 "frames_with_face", "fps", "wall_s")}}


def soak_webrtc(seconds: float, every: float, warmup: float, limit: float) -> dict:
    """One aiortc peer sending the looped demo to the WebRTC server for ``seconds``."""
    from ui.webrtc_client import ClientPeer, ClipTrack, run_server

    errors: list[str] = []
    result: dict = {}
    with run_server("--max-peers", "1") as server:
        with Sampler(server.proc.pid, every) as sampler:
            async def session() -> None:
                n = int(seconds * FPS)
                peer = ClientPeer(server.url, ClipTrack(DEMO, fps=FPS, max_frames=n, loop=True))
                await peer.connect()
                await peer.wait_sent(seconds + 120)
                await asyncio.sleep(1.0)
                result["server_summary"] = await peer.finish(timeout=60)
                await peer.close()
                result.update(frames_sent=len(peer.track.sent_at),
                              frames_skipped_by_sender=getattr(peer.track, "skipped", None),
                              frames_returned=len(peer.returned),
                              events=sum(r.get("type") == "event" for r in peer.records))
            try:
                asyncio.run(session())
            except Exception:  # noqa: BLE001 - recorded, the report is still written
                errors.append(traceback.format_exc())
        output = server.output()
    errors += [block for block in output.split("Traceback")[1:]]
    return {"part": "webrtc", "seconds": seconds, "rss_mb": sampler.samples,
            "memory": growth(sampler.samples, warmup, limit), "exceptions": errors,
            **result}


def draw(report: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    parts = report["parts"]
    fig, axes = plt.subplots(1, len(parts), figsize=(6 * len(parts), 3.6), squeeze=False)
    for ax, part in zip(axes[0], parts):
        t, m = np.array(part["rss_mb"]).T if part["rss_mb"] else ([], [])
        ax.plot(np.asarray(t) / 60, m, marker=".", lw=1)
        mem = part["memory"]
        if "rss_at_warmup_mb" in mem:
            base = mem["rss_at_warmup_mb"]
            ax.axvline(mem["warmup_s"] / 60, color="grey", ls=":", lw=1)
            ax.axhline(base + mem["limit_mb"], color="red", ls="--", lw=1,
                       label=f"limit (+{mem['limit_mb']:g} MB)")
            ax.set_title(f"{part['part']}: {mem['max_growth_mb']:+.1f} MB after warm-up "
                         f"({'ok' if mem['ok'] else 'FAIL'})")
            ax.legend(loc="lower right")
        ax.set_xlabel("minutes")
        ax.set_ylabel("RSS, MB")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__.split("\n")[0])
    p.add_argument("--minutes", type=float, default=10.0, help="length of each part")
    p.add_argument("--part", choices=("both", "pipeline", "webrtc"), default="both")
    p.add_argument("--every", type=float, default=10.0, help="RSS sample period, seconds")
    p.add_argument("--warmup", type=float, default=60.0, help="seconds before growth counts")
    p.add_argument("--limit-mb", type=float, default=50.0, help="allowed growth after warm-up")
    p.add_argument("--out", default=str(ROOT / "bench" / "soak.json"))
    args = p.parse_args(argv)
    if not (args.minutes > 0 and args.every > 0 and args.warmup >= 0):
        print("soak: error: --minutes and --every must be > 0, --warmup >= 0", file=sys.stderr)
        return 2
    seconds = args.minutes * 60
    parts = []
    if args.part in ("both", "pipeline"):
        parts.append(soak_pipeline(seconds, args.every, args.warmup, args.limit_mb))
    if args.part in ("both", "webrtc"):
        parts.append(soak_webrtc(seconds, args.every, args.warmup, args.limit_mb))
    report = {"machine": {"python": platform.python_version(), "cpus": os.cpu_count(),
                          "platform": platform.platform()},
              "minutes": args.minutes, "parts": parts,
              "ok": all(q["memory"]["ok"] and not q["exceptions"] for q in parts)}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1) + "\n")
    draw(report, out.with_suffix(".png"))
    for q in parts:
        mem = q["memory"]
        verdict = "ok" if mem["ok"] and not q["exceptions"] else "FAIL"
        print(f"soak {q['part']}: {mem.get('max_growth_mb', '?')} MB max growth after warm-up "
              f"(limit {args.limit_mb:g}), slope {mem.get('slope_mb_per_min', '?')} MB/min, "
              f"{len(q['exceptions'])} exceptions -> {verdict}")
    print(f"wrote {out} and {out.with_suffix('.png')}")
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())

"""Batch analysis of video archives on Ray: one task per video, results as tasks finish.

    python -m stream.batch INPUTS... --out DIR [--address auto|ray://HOST:PORT|HOST:PORT] \\
        [--num-cpus N] [--cpus-per-task C] [--engine auto] [--labels LABELS] [--gt LABELS] \\
        [--fps F] [--csv PATH] [--retry-failed] [--no-progress]

INPUTS are video files, frame folders, folders (searched recursively for both)
or dataset roots: a folder under which the videos of ``--labels`` (a SynthME,
CAS(ME)^2, SAMM-LV or CAS(ME)^3 label file) are found through the dataset
layouts of :mod:`training.datasets.layout` (their subject, video, frame rate and
first frame number come from there; a SynthME root also runs the unlabelled videos
of its ``videos.csv``).

Each video is one Ray task (local Ray by default, a cluster with ``--address``)
that runs :func:`stream.analyze.analyze_video` — the one stage chain, so a
video's events equal ``python -m stream.analyze`` on it — with an Engine loaded
once per worker process. The driver takes results as they finish
(``ray.wait``; at most 2 tasks per cluster CPU in flight) and writes per video
``OUT/<name>.jsonl`` and then, last, its completion marker
``OUT/<name>.done.json``; a re-run skips every video whose marker matches its
source (size, mtime) and engine, so a killed run redoes only what was under
way. A video that cannot be read is recorded in ``OUT/<name>.failed.json`` with
its reason and never stops the rest (a re-run skips it until the file changes
or ``--retry-failed``). At the end: one MEGC CSV of every complete video
(``OUT/megc.csv``), the scores against ``--gt`` when given, and the summary
(printed and in ``OUT/batch_summary.json``).

Exit codes (as ``run_live.py`` and ``stream.analyze``): 0 every video done; 2 bad
arguments or inputs (one line, nothing run), or a video could not be read (each one
listed with its reason, the rest done); 130 interrupted (the summary is still written);
1 a video that was never run (an internal error, e.g. a worker that kept crashing).
"""
from __future__ import annotations

import argparse
import csv
import importlib
import json
import logging
import os
import re
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".m4v", ".webm")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
SUMMARY_FILE = "batch_summary.json"
CSV_FILE = "megc.csv"
#: In-flight tasks per cluster CPU: enough to keep every worker busy while the
#: driver writes results, bounded so a 100k-video archive is not one huge queue.
IN_FLIGHT_PER_CPU = 2


@dataclass(frozen=True)
class Job:
    """One video of a batch.

    Attributes:
        path: video file or frame folder.
        name: output name under ``--out`` (``name.jsonl``, ``name.done.json``), unique in the batch.
        subject, video: its key in the MEGC CSV (and in ``--gt``).
        fps: frame rate of a frame folder; None for files (the container's).
        first_frame: label number of stream index 0 (CSV frames = index + first_frame).
    """

    path: Path
    name: str
    subject: str
    video: str
    fps: float | None = None
    first_frame: int = 0


def import_ray():
    """``ray``, or a one-line ValueError saying which extra installs it."""
    try:
        import ray
    except ImportError:
        raise ValueError("ray is not installed: pip install -e .[scale]  "
                         "(the `scale` extra, ray[data]==2.60.0)") from None
    return ray


# --- inputs ----------------------------------------------------------------------------------
def read_labels(path: str | Path) -> list:
    """Records of a label file: Annotations (SynthME CSV or sheet, real label sheets) or,
    for a MEGC CSV without a ``type`` column, Spots (subjects only, no dataset layout)."""
    from training.datasets import readers
    from stream.megc_csv import read_megc_csv

    path = Path(path)
    if not path.is_file():
        raise ValueError(f"--labels file not found: {path} (check the path)")
    if path.suffix.lower() == ".csv":
        try:
            return readers.read_synthme(path)
        except ValueError:
            return read_megc_csv(path)
    if path.suffix.lower() not in (".xlsx", ".xls"):
        raise ValueError(f"--labels must be a MEGC CSV or a label sheet (.xlsx/.xls), got {path}")
    if path.name.lower().startswith("synthme"):
        return readers.read_synthme(path)
    import pandas as pd

    try:
        sheets = set(pd.ExcelFile(path).sheet_names)
    except Exception as exc:  # noqa: BLE001 - not an Excel file
        raise ValueError(f"--labels {path}: cannot read as Excel ({type(exc).__name__})") from None
    for names, reader in (((readers.CASME2_SHEET, readers.CASME2_SUBJECTS_SHEET),
                           readers.read_casme2),
                          ((readers.SAMMLV_SHEET,), readers.read_sammlv),
                          ((readers.CASME3_SHEET,), readers.read_casme3)):
        if sheets & set(names):
            return [a for a in reader(path) if a.kind != "blink"]
    raise ValueError(f"--labels {path}: sheets {sorted(sheets)} match no known label file")


def _images(names: Sequence[str]) -> list[str]:
    return [n for n in names if Path(n).suffix.lower() in IMAGE_SUFFIXES]


def _first_number(names: Sequence[str]) -> int:
    """Smallest frame number in image names (CAS(ME)^2 ``img1.jpg`` → 1), 0 when none."""
    numbers = [int(m[-1]) for n in _images(names) if (m := re.findall(r"\d+", Path(n).stem))]
    return min(numbers) if numbers else 0


def _walk(folder: Path) -> list[Path]:
    """Video files and frame folders under ``folder``, sorted (frame folders are not entered)."""
    found = []
    for top, dirs, files in os.walk(folder):
        dirs.sort()
        if _images(files):
            found.append(Path(top))
            dirs.clear()
            continue
        found += [Path(top) / f for f in sorted(files) if Path(f).suffix.lower() in VIDEO_SUFFIXES]
    return found


def _synthme_listing(root: Path) -> list[tuple[str, str]]:
    """(subject, video) of every video of a SynthME folder (its ``videos.csv``), or []."""
    table = root / "videos.csv"
    if not table.is_file():
        return []
    with open(table, newline="", encoding="utf-8") as f:
        return [(r["subject"], r["video"]) for r in csv.DictReader(f)
                if r.get("subject") and r.get("video")]


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "video"


def output_names(items: Sequence[tuple[Path, str]]) -> list[str]:
    """One output name per (path, base name): the base where it is unique in the batch, else
    base + a short hash of the resolved path, so same-named videos of different folders
    never share an output file. The same inputs always give the same names."""
    from stream.analyze import unique_names

    return unique_names([(p, _safe(b)) for p, b in items])


def plan(inputs: Sequence[str], labels: str | Path | None = None, fps: float | None = None
         ) -> tuple[list[Job], list[str]]:
    """The jobs of INPUTS, in input order (a path named twice runs once).

    Returns:
        (jobs, labelled videos of a dataset root whose frames were not found there).

    Raises:
        ValueError: an input does not exist, a folder holds no video, a frame folder has no
            frame rate (``--fps``), or ``--labels`` is unreadable.
    """
    from training.datasets.layout import resolve
    from training.datasets.layout import videos as dataset_videos
    from training.datasets.records import Video

    records = read_labels(labels) if labels else []
    subjects: dict[str, set[str]] = {}
    for r in records:
        subjects.setdefault(r.video, set()).add(r.subject)
    annotations = [r for r in records if hasattr(r, "dataset")]
    label_fps = {r.video: r.fps for r in annotations}
    rows: list[tuple[Path, str, str, str, float | None, int]] = []  # path, base, subj, video..
    missing: list[str] = []

    def plain(p: Path) -> None:
        names = [q.name for q in p.iterdir()] if p.is_dir() else []
        stem = p.name if p.is_dir() else p.stem
        known = subjects.get(stem, set())
        subject = next(iter(known)) if len(known) == 1 else p.parent.name
        rate = (fps or label_fps.get(stem)) if names else None
        if names and rate is None:
            raise ValueError(f"{p} is a folder of frames: give its frame rate with --fps "
                             "(30 for CAS(ME)^2 / CAS(ME)^3, 200 for SAMM-LV)")
        rows.append((p, stem, subject, stem, rate, _first_number(names)))

    for spec in inputs:
        p = Path(spec)
        if not p.exists():
            raise ValueError(f"input not found: {p} (check the path)")
        if p.is_file() or _images([q.name for q in p.iterdir()]):
            plain(p)
            continue
        found = dataset_videos(annotations, p) if annotations else []
        if any(v.path is not None for v in found):  # a dataset root: its layout names the videos
            labelled = {v.key for v in found}
            for subject, video in _synthme_listing(p):  # SynthME's videos without any label
                if (subject, video) not in labelled:
                    path, first = resolve("synthme", p, subject, video)
                    found.append(Video("synthme", subject, video, fps or found[0].fps, path,
                                       first))
            for v in found:
                if v.path is None:
                    missing.append(f"{v.subject}/{v.video}")
                else:
                    base = v.video if v.video.startswith(v.subject) else f"{v.subject}_{v.video}"
                    rows.append((Path(v.path), base, v.subject, v.video,
                                 None if Path(v.path).is_file() else fps or v.fps,
                                 v.first_frame))
            continue
        walked = _walk(p)
        if not walked:
            raise ValueError(f"no video files ({'/'.join(VIDEO_SUFFIXES)}) or frame folders "
                             f"under {p} (for a dataset root, give its label file with --labels)")
        for q in walked:
            plain(q)
    unique: dict[Path, tuple] = {}
    for r in rows:
        unique.setdefault(r[0].resolve(), r)  # a path named twice: its first mention
    rows = list(unique.values())
    names = output_names([(r[0], r[1]) for r in rows])
    keys = [(r[2], r[3]) for r in rows]
    jobs = []
    for r, name, key in zip(rows, names, keys):
        # two videos with one (subject, video) key would merge in the CSV: the name tells them apart
        video = r[3] if keys.count(key) == 1 else name
        jobs.append(Job(r[0], name, r[2], video, r[4], r[5]))
    return jobs, missing


# --- completion markers ----------------------------------------------------------------------
def _stamp(path: Path) -> dict:
    st = path.stat()
    size = st.st_size if path.is_file() else sum(1 for _ in path.iterdir())
    return {"source": str(path.resolve()), "size": size, "mtime_ns": st.st_mtime_ns}


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)  # a reader (or a killed run) sees the old file or the new one


def previous(out: Path, job: Job, engine: str) -> tuple[str, dict | None]:
    """("done" | "failed" | "todo", marker) of a job from an earlier run into ``out``."""
    # size + mtime, as make and rsync do; not the path, so a moved archive is not redone
    stamp = {**_stamp(job.path), "engine_request": engine}
    del stamp["source"]
    done = _read_json(out / f"{job.name}.done.json")
    if done and (out / f"{job.name}.jsonl").is_file() and all(done.get(k) == v
                                                             for k, v in stamp.items()):
        return "done", done
    failed = _read_json(out / f"{job.name}.failed.json")
    if failed and all(failed.get(k) == v for k, v in stamp.items()):
        return "failed", failed
    return "todo", None


def record(out: Path, job: Job, result: dict, engine: str) -> dict:
    """Write one finished task: JSONL then the done marker (last), or the failed marker."""
    for suffix in (".done.json", ".failed.json"):
        (out / f"{job.name}{suffix}").unlink(missing_ok=True)
    marker = {**_stamp(job.path), "engine_request": engine,
              **{k: v for k, v in result.items() if k != "jsonl"}}
    if result["ok"]:
        _write_atomic(out / f"{job.name}.jsonl", result["jsonl"])
        _write_atomic(out / f"{job.name}.done.json", json.dumps(marker, indent=1))
    else:
        (out / f"{job.name}.jsonl").unlink(missing_ok=True)  # a stale one from an older source
        _write_atomic(out / f"{job.name}.failed.json", json.dumps(marker, indent=1))
    return marker


# --- the task (runs in a Ray worker) ---------------------------------------------------------
#: Engines of this worker process, loaded on its first task and reused by every later one.
_ENGINES: dict[tuple[str, int], Any] = {}


def _worker_engine(choice: str, threads: int):
    if (choice, threads) not in _ENGINES:
        import cv2

        from engine.runtime import Engine

        cv2.setNumThreads(threads)  # the task's CPUs, not the machine's
        _ENGINES[(choice, threads)] = Engine.load(choice, threads=threads, log=lambda _: None)
    return _ENGINES[(choice, threads)]


def _reason(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0][:300] if lines else ''}".rstrip(": ")


def analyze_task(job: Job, engine: str, threads: int) -> dict:
    """Analyse one video in this process: its JSONL text and counts, or why it failed.

    Never raises for a bad video: the reason is returned, so one file cannot stop a batch.
    """
    import tempfile

    worker = f"{socket.gethostname()}:{os.getpid()}"
    t0 = time.perf_counter()
    try:
        fresh = (engine, threads) not in _ENGINES
        eng = _worker_engine(engine, threads)
        load_s = time.perf_counter() - t0 if fresh else 0.0
        from stream.analyze import analyze_video

        with tempfile.TemporaryDirectory(prefix="fedn-batch-") as tmp:
            jsonl = Path(tmp) / f"{job.name}.jsonl"
            events, summary = analyze_video(job.path, jsonl, eng, fps=job.fps, progress=False)
            text = jsonl.read_text(encoding="utf-8")
        if summary.frames_read == 0:
            raise ValueError(f"no frame could be decoded from {job.path}")
    except Exception as exc:  # noqa: BLE001 - recorded with its reason, the batch goes on
        return {"ok": False, "reason": _reason(exc), "worker": worker,
                "task_s": round(time.perf_counter() - t0, 3)}
    return {"ok": True, "jsonl": text, "worker": worker, "engine": eng.name,
            "frames": summary.frames_processed, "events": len(events),
            "wall_s": summary.wall_s, "fps": summary.fps, "load_s": round(load_s, 3),
            "task_s": round(time.perf_counter() - t0, 3)}


# --- the driver ------------------------------------------------------------------------------
def run_batch(jobs: Sequence[Job], out: Path, *, engine: str = "auto",
              address: str | None = None, num_cpus: int | None = None,
              cpus_per_task: int = 1, retry_failed: bool = False, progress: bool = True
              ) -> dict:
    """Run every job not complete in ``out`` on Ray; returns the summary (see module doc).

    Uses the Ray instance already initialised in this process if there is one (tests);
    else starts local Ray with ``num_cpus`` (``address`` None) or connects to ``address``.
    """
    from tqdm import tqdm

    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    results: dict[str, dict] = {}
    todo = []
    for job in jobs:
        state, marker = previous(out, job, engine)
        if state == "done":
            results[job.name] = {**marker, "status": "skipped"}
        elif state == "failed" and not retry_failed:
            results[job.name] = {**marker, "status": "failed", "earlier": True}
        else:
            todo.append(job)
    ray_info: dict[str, Any] = {"address": address or "local"}
    interrupted = False
    if todo:
        ray = import_ray()
        owned = not ray.is_initialized()
        if owned:
            ray.init(address=address, num_cpus=num_cpus, include_dashboard=False,
                     log_to_driver=False, logging_level=logging.WARNING)
        try:
            cpus = int(ray.cluster_resources().get("CPU", 1))
            window = max(1, IN_FLIGHT_PER_CPU * cpus // cpus_per_task)
            ray_info.update(cpus=cpus, cpus_per_task=cpus_per_task, max_in_flight=window)
            # by reference (stream.batch, not __main__): each worker imports it and keeps _ENGINES
            fn = importlib.import_module("stream.batch").analyze_task
            task = ray.remote(num_cpus=cpus_per_task)(fn)
            pending, in_flight = list(reversed(todo)), {}
            bar = tqdm(total=len(todo), unit="video", desc="batch", disable=not progress)
            failed = 0
            try:
                while pending or in_flight:
                    while pending and len(in_flight) < window:
                        job = pending.pop()
                        in_flight[task.remote(job, engine, cpus_per_task)] = job
                    ready, _ = ray.wait(list(in_flight), num_returns=1)
                    for ref in ready:
                        job = in_flight.pop(ref)
                        try:
                            result = ray.get(ref)
                        except Exception as exc:  # noqa: BLE001 - worker died, object lost, ...
                            result = {"ok": False, "reason": _reason(exc), "worker": "?"}
                        marker = record(out, job, result, engine)
                        results[job.name] = {**marker, "status": "done" if result["ok"]
                                             else "failed"}
                        failed += not result["ok"]
                        bar.update()
                        bar.set_postfix(failed=failed)
            except KeyboardInterrupt:
                interrupted = True
                for ref in in_flight:
                    ray.cancel(ref, force=True)
            finally:
                bar.close()
        finally:
            if owned:
                ray.shutdown()
    return summarize(jobs, results, time.perf_counter() - t0, engine, ray_info, interrupted)


def summarize(jobs: Sequence[Job], results: dict[str, dict], wall_s: float, engine: str,
              ray_info: dict, interrupted: bool) -> dict:
    """The batch summary: counts, failures with reasons, frames, fps per worker, wall time."""
    per_video, workers = [], {}
    for job in jobs:
        r = results.get(job.name, {"status": "not_run"})
        if r.get("earlier"):
            r = {**r, "reason": f"{r['reason']} (earlier run; --retry-failed redoes it)"}
        per_video.append({"name": job.name, "source": str(job.path), "subject": job.subject,
                          "video": job.video, **{k: r.get(k) for k in (
                              "status", "frames", "events", "fps", "worker", "reason")}})
        if r["status"] == "done":
            w = workers.setdefault(r["worker"], {"engine": r["engine"], "videos": 0,
                                                 "frames": 0, "busy_s": 0.0, "load_s": 0.0})
            w["videos"] += 1
            w["frames"] += r["frames"]
            w["busy_s"] = round(w["busy_s"] + r["wall_s"], 3)
            w["load_s"] = round(w["load_s"] + r.get("load_s", 0.0), 3)
    for w in workers.values():
        w["fps"] = round(w["frames"] / w["busy_s"], 2) if w["busy_s"] else 0.0
    count = {s: sum(v["status"] == s for v in per_video) for s in ("done", "skipped", "failed")}
    frames = sum(v["frames"] or 0 for v in per_video if v["status"] == "done")
    return {"videos": len(jobs), **count,
            "failures": [{"name": v["name"], "source": v["source"], "reason": v["reason"]}
                         for v in per_video if v["status"] == "failed"],
            "not_run": [v["name"] for v in per_video if v["status"] == "not_run"],
            "frames": frames, "wall_s": round(wall_s, 3),
            "fps": round(frames / wall_s, 2) if wall_s > 0 else 0.0,
            "workers": workers, "engine": engine, "ray": ray_info,
            "interrupted": interrupted, "per_video": per_video}


def merged_spots(jobs: Sequence[Job], out: Path, summary: dict) -> list:
    """MEGC spots of every complete video (done now or earlier), frames in label numbering."""
    from stream.megc_csv import read_jsonl_events

    complete = {v["name"] for v in summary["per_video"] if v["status"] in ("done", "skipped")}
    spots = []
    for job in jobs:
        if job.name in complete:
            spots += read_jsonl_events(out / f"{job.name}.jsonl", job.subject, job.video,
                                       job.first_frame)
    return spots


def load_gt_for(path: str | Path, jobs: Sequence[Job]) -> tuple[list, int]:
    """(ground truth of this batch's videos, intervals in the whole label file)."""
    from training.evaluate import load_gt

    gt = load_gt(path)
    keys = {(j.subject, j.video) for j in jobs}
    mine = [g for g in gt if g.key in keys]
    if not mine:
        raise ValueError(f"--gt {path}: no interval of it belongs to a video of this batch "
                         f"(batch keys like {sorted(keys)[:3]}; give --labels for subjects)")
    return mine, len(gt)


def format_summary(s: dict) -> str:
    """The human lines of a summary."""
    lines = [f"batch: {s['videos']} videos: {s['done']} done, {s['skipped']} skipped "
             f"(complete earlier), {s['failed']} failed; {s['frames']} frames analysed in "
             f"{s['wall_s']:.1f} s ({s['fps']:.1f} fps overall)"]
    for name, w in sorted(s["workers"].items()):
        lines.append(f"  worker {name}: {w['videos']} videos, {w['frames']} frames, "
                     f"{w['fps']:.1f} fps (engine load {w['load_s']:.1f} s)")
    lines += [f"  FAILED {f['name']} ({f['source']}): {f['reason']}" for f in s["failures"]]
    if s["not_run"]:
        lines.append(f"  not run (interrupted): {len(s['not_run'])} videos")
    return "\n".join(lines)


def _check_reachable(address: str, timeout_s: float = 5.0) -> None:
    """One-line error unless HOST:PORT of ``address`` accepts a TCP connection (Ray itself
    retries an unreachable address for minutes before it gives up)."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=timeout_s).close()
    except OSError as exc:
        raise ValueError(f"cannot reach Ray at {address}: {exc.strerror or exc} (is the cluster "
                         f"up, and is this its head node's address?)") from None


def main(argv: Sequence[str] | None = None, log: Callable[[str], None] = print) -> int:
    from engine.runtime import ENGINE_CHOICES

    ap = argparse.ArgumentParser(prog="python -m stream.batch", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("inputs", nargs="+", help="video files, frame folders, folders, dataset roots")
    ap.add_argument("--out", required=True, help="output folder (JSONL per video, CSV, summary)")
    ap.add_argument("--address", default=None,
                    help="Ray cluster: auto, ray://HOST:PORT or HOST:PORT (default: local Ray)")
    ap.add_argument("--num-cpus", type=int, default=None, help="CPUs of local Ray (default: all)")
    ap.add_argument("--cpus-per-task", type=int, default=1,
                    help="CPUs (and ONNX Runtime / OpenCV threads) per video task")
    ap.add_argument("--engine", default="auto", choices=ENGINE_CHOICES)
    ap.add_argument("--labels", default=None,
                    help="label file: subjects of the videos; with a folder, its dataset layout")
    ap.add_argument("--gt", default=None, help="score the merged CSV against these labels")
    ap.add_argument("--fps", type=float, default=None, help="frame rate of frame folders")
    ap.add_argument("--csv", default=None, help=f"merged MEGC CSV (default OUT/{CSV_FILE})")
    ap.add_argument("--retry-failed", action="store_true",
                    help="redo videos that failed in an earlier run (default: skip them)")
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args(argv)
    try:
        if args.num_cpus is not None and args.num_cpus < 1:
            raise ValueError(f"--num-cpus must be >= 1, got {args.num_cpus}")
        if args.num_cpus is not None and args.address:
            raise ValueError("--num-cpus sizes local Ray only; a cluster (--address) has its own")
        if args.cpus_per_task < 1:
            raise ValueError(f"--cpus-per-task must be >= 1, got {args.cpus_per_task}")
        if args.fps is not None and not args.fps > 0:
            raise ValueError(f"--fps must be > 0, got {args.fps}")
        if args.address and not re.fullmatch(r"auto|ray://[^\s:]+:\d+|[^\s:/]+:\d+",
                                             args.address):
            raise ValueError(f"--address must be auto, ray://HOST:PORT or HOST:PORT, "
                             f"got {args.address!r}")
        from engine.checkpoint import shipped_weights
        from engine.runtime import select_backend

        if shipped_weights() is None:
            raise ValueError("no trained weights in engine/weights/: nothing to analyze with")
        if not args.address:  # a cluster's workers may have backends (GPUs) this machine lacks
            select_backend(args.engine, log=None)
        jobs, unfound = plan(args.inputs, args.labels, args.fps)
        gt = load_gt_for(args.gt, jobs) if args.gt else None
        import_ray()
        if args.address and args.address != "auto":
            _check_reachable(args.address)
        out = Path(args.out)
        summary = run_batch(jobs, out, engine=args.engine, address=args.address,
                            num_cpus=args.num_cpus, cpus_per_task=args.cpus_per_task,
                            retry_failed=args.retry_failed, progress=not args.no_progress)
    except ConnectionError as exc:
        print(f"batch: error: cannot reach Ray at {args.address}: {_reason(exc)}", file=sys.stderr)
        return 2
    except ValueError as exc:
        print(f"batch: error: {exc}", file=sys.stderr)
        return 2
    return finish(summary, jobs, out, Path(args.csv) if args.csv else out / CSV_FILE,
                  unfound, gt, args.gt, log)


def finish(summary: dict, jobs: Sequence[Job], out: Path, csv_path: Path, unfound: list[str],
           gt: tuple[list, int] | None, gt_path: str | None, log: Callable[[str], None]) -> int:
    """Merged CSV, scores, summary file and lines; the exit code (module doc)."""
    from stream.megc_csv import write_megc_csv

    spots = merged_spots(jobs, out, summary)
    write_megc_csv(spots, csv_path)
    summary.update(csv=str(csv_path), csv_rows=len(spots), labelled_not_found=unfound)
    log(format_summary(summary))
    if unfound:
        log(f"  labelled videos not found under the dataset root: {len(unfound)} "
            f"(e.g. {', '.join(unfound[:3])})")
    code = (130 if summary["interrupted"] else 2 if summary["failed"]
            else 1 if summary["not_run"] else 0)
    if gt is not None:
        from training.evaluate import evaluate, format_table

        try:
            summary["score"] = evaluate(gt[0], spots)
        except ValueError as exc:  # e.g. only videos without ground truth have events
            summary["score"] = None
            print(f"batch: error: cannot score against {gt_path}: {exc}", file=sys.stderr)
            code = 2
        else:
            log(f"scores of {csv_path} against {gt_path} ({len(gt[0])} of its {gt[1]} "
                f"intervals are in videos of this batch):")
            log(format_table(summary["score"]))
    _write_atomic(out / SUMMARY_FILE, json.dumps(summary, indent=1))
    log(f"wrote {csv_path} ({len(spots)} rows) and {out / SUMMARY_FILE}; JSONL of "
        f"{summary['done'] + summary['skipped']} complete videos in {out}")
    return code


if __name__ == "__main__":
    sys.exit(main())

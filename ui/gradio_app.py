"""The Gradio page: Live (browser webcam), Analyze (a file), About (model and engine).

    python run_live.py --ui gradio [--host 127.0.0.1] [--port 7860] [--engine auto]

    from ui.gradio_app import build_app, serve
    app = build_app(engine)                      # a loaded engine.runtime.Engine, shared
    serve(app, "127.0.0.1", 7860)                # blocks; prevent_thread_lock=True returns

* **Live**: each browser session gets its own :class:`~stream.chain.StageChain`
  (created on its first frame, closed when the tab goes, the recording stops
  or restarts: :class:`LiveSessions`). The returned frame carries the overlay
  (:mod:`ui.overlay`); the table lists final events as they are finalized,
  provisional ones as "under way" and withdrawn ones struck through.
  Frames that arrive while the session's previous frame is still being
  processed are dropped and counted (a latest-frame policy; nothing queues).
* **Analyze**: :func:`ui.file_analysis.analyze_file` with a progress bar; the
  timeline plot, MEGC scores (when a labels CSV is given), the events table,
  the events as JSON, and JSONL / MEGC CSV / annotated MP4 downloads. Exposed
  to ``gradio_client`` as ``api_name="analyze"``.
* **About**: the engine in use and why, versions, the model card.

gradio is imported inside the functions that build and serve the page.
"""
from __future__ import annotations

import logging
import shutil
import socket
import sys
import tempfile
import time
import weakref
from importlib import metadata
from pathlib import Path

from engine.config import TrackerConfig

ROOT = Path(__file__).resolve().parents[1]
DEMO_CLIP = ROOT / "stream" / "demo" / "demo.mp4"
DEMO_LABELS = ROOT / "stream" / "demo" / "demo_labels.csv"
MODEL_CARD = ROOT / "engine" / "weights" / "MODEL_CARD.md"
log = logging.getLogger("fedn.gradio")

#: Packages whose versions the About tab lists.
VERSIONED = ("fedn-live", "gradio", "onnxruntime", "torch", "opencv-python-headless",
             "mediapipe", "numpy", "av")

CSS = """
.fedn-hero h1 {margin: 0; font-size: 1.6em;}
.fedn-hero p {margin: 2px 0 0 0; opacity: .75;}
#live-out img {border-radius: 8px;}
.fedn-status {font-variant-numeric: tabular-nums; font-size: .95em; padding: 6px 2px;}
.fedn-status b {font-size: 1.15em;}
table.fedn-events {width: 100%; border-collapse: collapse; font-size: .92em;
  font-variant-numeric: tabular-nums;}
table.fedn-events th {text-align: left; opacity: .7; font-weight: 600;
  border-bottom: 1px solid var(--border-color-primary); padding: 4px 6px;}
table.fedn-events td {padding: 4px 6px; border-bottom: 1px solid var(--border-color-primary);}
table.fedn-events .sw {display: inline-block; width: .8em; height: .8em; border-radius: 2px;
  margin-right: .4em; vertical-align: -1px;}
table.fedn-events .badge {border-radius: 9px; padding: 1px 8px; font-size: .85em;
  font-weight: 600; white-space: nowrap;}
tr.final .badge {background: #2ca02c22; color: #2ca02c;}
tr.under-way .badge {background: #ff7f0e22; color: #ff7f0e; animation: fedn-pulse 1s infinite;}
tr.withdrawn td {text-decoration: line-through; opacity: .5;}
tr.withdrawn .badge {background: #7f7f7f22; color: #7f7f7f;}
@keyframes fedn-pulse {50% {opacity: .45;}}
.fedn-empty {opacity: .6; padding: 8px 2px;}
"""


# --- Analyze ------------------------------------------------------------------------------
def _file_path(value) -> str | None:
    """A gr.File value (a path string, or an object with ``.name``) as a path."""
    if value is None:
        return None
    return str(getattr(value, "name", value))


def _scores_md(scores: dict) -> str:
    if not scores:
        return "*Add a MEGC labels CSV to score the events against the ground truth.*"
    lines = ["| | TP | FP | FN | precision | recall | F1 |", "|---|---|---|---|---|---|---|"]
    for k in ("micro", "macro", "overall"):
        if k in scores:
            c = scores[k]
            lines.append(f"| **{k}** | {c['tp']} | {c['fp']} | {c['fn']} | "
                         f"{c['precision']:.3f} | {c['recall']:.3f} | {c['f1']:.3f} |")
    s = scores.get("strs")
    if s:
        lines.append(f"\nMEGC matching per kind at tIoU ≥ 0.5. STRS **{s['strs']:.3f}** "
                     f"(official metric: kinds pooled; spotting F1 {s['spotting']['f1']:.3f} × "
                     f"analysis F1 {s['analysis']['f1']:.3f}).")
    return "\n".join(lines)


def _events_table(events: list):
    import pandas as pd

    # Event field -> a short column title (the JSON keeps the field names).
    cols = {"id": "id", "kind": "kind", "emotion": "emotion", "onset_s": "onset s",
            "offset_s": "offset s", "onset_frame": "onset", "apex_frame": "apex",
            "offset_frame": "offset", "score": "score", "latency_ms": "latency ms",
            "truncated": "truncated"}
    rows = [{t: (round(v, 3) if isinstance(v := getattr(e, c), float) else v)
             for c, t in cols.items()} for e in events]
    return pd.DataFrame(rows, columns=list(cols.values()))


def _fresh_dir(root: Path, keep_s: float = 3600.0) -> Path:
    """A new folder under ``root`` for one analysis; folders older than ``keep_s`` go.

    Gradio copies returned files into its own cache, so ours are only needed
    until the page has them; pruning here keeps a long-running page bounded.
    """
    now = time.time()
    for old in root.glob("run-*"):
        if now - old.stat().st_mtime > keep_s:
            shutil.rmtree(old, ignore_errors=True)
    return Path(tempfile.mkdtemp(prefix="run-", dir=root))


def make_analyze(engine, work: Path, tracker_cfg: TrackerConfig = TrackerConfig()):
    """The Analyze handler: (video, labels CSV, make MP4, progress) → the tab's outputs.

    Each call writes its files in a new folder under ``work``; its chain runs
    ``tracker_cfg``.
    """
    import gradio as gr

    from stream.events import to_json
    from ui.file_analysis import AnalysisError, analyze_file, timeline_figure

    def analyze(video, labels=None, mp4=True, progress=gr.Progress()):
        path = _file_path(video)
        if path is None:
            raise gr.Error("Upload a video first (or press “Use the demo clip”).")
        out = _fresh_dir(work)
        name = Path(path).name

        def tick(done: int, total: int) -> None:
            if total:
                progress((min(done, total), total), desc=f"analysing {name}", unit="frames")
            else:
                progress(0.0, desc=f"analysing {name}: {done} frames")

        try:
            result = analyze_file(path, engine, out, labels=_file_path(labels), video=bool(mp4),
                                  progress=tick, tracker_cfg=tracker_cfg)
        except AnalysisError as exc:
            raise gr.Error(str(exc), print_exception=False) from None
        except Exception as exc:  # a readable line in the page; the trace goes to the log
            log.exception("analysis of %s failed", name)
            raise gr.Error(f"internal error while analysing {name}: {type(exc).__name__}: "
                           f"{exc} (details in the server log)", print_exception=False) from None
        s = result.summary
        summary = (f"**{result.name}** — {len(result.events)} events in {s.frames_processed} "
                   f"frames ({s.frames_processed / result.fps:.1f} s of video, "
                   f"{s.frames_with_face} with a face), analysed in {result.wall_s:.1f} s "
                   f"({s.fps:.0f} frames/s, engine {s.engine}).")
        if s.events:  # what the run said on the way (the summary record's counts)
            e = s.events
            summary += (f" On the way: {e['event_start']} started, {e['event_cancel']} "
                        f"withdrawn, {e['held']} held open while the face showed them, "
                        f"{e['truncated']} cut off by the end or a face leaving"
                        + (f", {e['appearance_withdrawn']} withdrawn as the face did not "
                           "show them" if e.get("appearance_withdrawn") else "")
                        + (f", {e['joined']} not sent again as they continued an event "
                           "already sent" if e.get("joined") else "") + ".")
        files = [str(p) for p in result.downloads.values()]
        return (summary, timeline_figure(result), _events_table(result.events),
                _scores_md(result.scores), [to_json(e) for e in result.events], files,
                str(result.downloads["mp4"]) if "mp4" in result.downloads else None)

    return analyze


def demo_inputs() -> tuple[str, str]:
    """Copies of the demo clip and its labels in a temp folder (served without allowed_paths)."""
    d = Path(tempfile.mkdtemp(prefix="fedn-demo-"))
    return (str(shutil.copy(DEMO_CLIP, d / DEMO_CLIP.name)),
            str(shutil.copy(DEMO_LABELS, d / "demo.csv")))


# --- About --------------------------------------------------------------------------------
def about_md(engine, selection=None) -> str:
    """Engine in use and why, versions, and the model card."""
    if selection is None:
        from engine.runtime import select_backend
        try:
            selection = select_backend(engine.name, log=None)
        except Exception as exc:  # the engine runs; only the reason is unknown
            selection = type("S", (), {"name": engine.name, "reason": f"({exc})"})()
    versions = []
    for pkg in VERSIONED:
        try:
            versions.append(f"| {pkg} | {metadata.version(pkg)} |")
        except metadata.PackageNotFoundError:
            versions.append(f"| {pkg} | not installed |")
    card = MODEL_CARD.read_text(encoding="utf-8") if MODEL_CARD.is_file() else "*no model card*"
    return (f"### Engine\n**{selection.name}** — {selection.reason}\n\n"
            f"Model: window {engine.cfg.window} frames, hop {engine.cfg.hop}, "
            f"labels {', '.join(engine.cfg.kinds)} × {', '.join(engine.cfg.emotions)}.\n\n"
            f"### Versions\n| package | version |\n|---|---|\n" + "\n".join(versions)
            + f"\n| python | {sys.version.split()[0]} |\n\n---\n\n{card}")


# --- the page -----------------------------------------------------------------------------
def build_app(engine, *, selection=None, live_fps: float = 30.0, time_limit: int = 900,
              tracker_cfg: TrackerConfig = TrackerConfig()):
    """The page (a ``gr.Blocks``) running ``engine``.

    Args:
        engine: a loaded ``engine.runtime.Engine``, shared by every session (not closed here).
        selection: ``engine.runtime.Selection`` that chose it (About tab); computed if None.
        live_fps: frames per second the browser sends on the Live tab.
        time_limit: seconds a live stream runs before it stops (press record again).
        tracker_cfg: interval-tracker settings of every chain (live and analysis).
    """
    import gradio as gr

    if not live_fps > 0:
        raise ValueError(f"live_fps must be > 0, got {live_fps!r}")
    if not time_limit >= 1:
        raise ValueError(f"time_limit must be >= 1, got {time_limit!r}")
    from ui.live import LiveSessions, events_html

    registry = LiveSessions(engine, live_fps, tracker_cfg=tracker_cfg)
    work = Path(tempfile.mkdtemp(prefix="fedn-gradio-"))  # this page's analysis outputs

    def live(image, request: gr.Request):
        if image is None:
            return gr.skip(), gr.skip(), gr.skip()
        out = registry.step(request.session_hash, image)
        if out is None:  # dropped: still busy with this session's previous frame
            return gr.skip(), gr.skip(), gr.skip()
        return out

    def gone(request: gr.Request):
        registry.close(request.session_hash)

    # Gradio finds the request parameter by its annotation; with postponed annotations
    # the string "gr.Request" cannot be resolved (gradio is imported here, not globally).
    for fn in (live, gone):
        fn.__annotations__["request"] = gr.Request

    # delete_cache: Gradio's copies of uploads and outputs go after an hour, checked every 30 min.
    with gr.Blocks(title="fedn-live", delete_cache=(1800, 3600)) as app:
        gr.HTML('<div class="fedn-hero"><h1>fedn-live</h1><p>Facial micro- and macro-'
                "expression spotting, live and causal (FEDN, arXiv 2504.07660)</p></div>")
        with gr.Tab("Live", id="live"):
            with gr.Row():
                with gr.Column(scale=3):
                    # No label or buttons: they would sit on the overlay's own panels.
                    out = gr.Image(label="annotated stream", show_label=False, buttons=[],
                                   elem_id="live-out", format="jpeg", interactive=False,
                                   placeholder="Press Record on the camera to start.")
                    status = gr.HTML('<div class="fedn-status" id="live-status">'
                                     "Press Record on the camera to start.</div>")
                with gr.Column(scale=2):
                    cam = gr.Image(label="camera", sources=["webcam"], streaming=True,
                                   elem_id="live-cam", height=260,
                                   webcam_options=gr.WebcamOptions(mirror=False))
                    table = gr.HTML(events_html({}), label="events")
            cam.stream(live, [cam], [out, table, status],
                       stream_every=1.0 / live_fps, time_limit=time_limit,
                       concurrency_limit=4, concurrency_id="live", api_visibility="private",
                       show_progress="hidden")
        with gr.Tab("Analyze", id="analyze"):
            with gr.Row():
                with gr.Column(scale=1, min_width=260):
                    video = gr.File(label="video", elem_id="an-video")
                    labels = gr.File(label="MEGC labels CSV (optional)", file_types=[".csv"],
                                     elem_id="an-labels")
                    mp4 = gr.Checkbox(True, label="annotated MP4")
                    with gr.Row():
                        demo_btn = gr.Button("Use the demo clip", elem_id="an-demo")
                        run_btn = gr.Button("Analyze", variant="primary", elem_id="an-run")
                with gr.Column(scale=3):
                    summary = gr.Markdown("Upload a video, or try the demo clip.",
                                          elem_id="an-summary")
                    plot = gr.Plot(label="timeline", show_label=False, elem_id="an-plot")
            with gr.Row():
                with gr.Column(scale=3):
                    events = gr.Dataframe(label="events", elem_id="an-events", wrap=True)
                with gr.Column(scale=2):
                    scores = gr.Markdown(_scores_md({}), elem_id="an-scores")
                    files = gr.File(label="downloads: JSONL · MEGC CSV · annotated MP4",
                                    file_count="multiple", interactive=False)
            with gr.Row():
                annotated = gr.Video(label="annotated video", interactive=False)
                with gr.Accordion("events as JSON", open=False):
                    as_json = gr.JSON(label="events")
            outputs = [summary, plot, events, scores, as_json, files, annotated]
            analyze = make_analyze(engine, work, tracker_cfg)
            run_btn.click(analyze, [video, labels, mp4], outputs, api_name="analyze",
                          concurrency_limit=1, concurrency_id="analyze")
            demo_btn.click(demo_inputs, None, [video, labels], api_visibility="private").then(
                analyze, [video, labels, mp4], outputs, api_visibility="private",
                concurrency_limit=1, concurrency_id="analyze")
        with gr.Tab("About", id="about"):
            gr.Markdown(about_md(engine, selection))
        app.unload(gone)
    app.live_sessions = registry  # type: ignore[attr-defined]
    weakref.finalize(app, shutil.rmtree, work, True)
    weakref.finalize(app, registry.close_all)
    return app


def serve(app, host: str = "127.0.0.1", port: int = 7860, *, prevent_thread_lock: bool = False,
          quiet: bool = False):
    """Launch ``app`` on ``host:port`` with the page's theme and CSS."""
    import gradio as gr

    theme = gr.themes.Soft(primary_hue="orange", neutral_hue="slate")
    return app.launch(server_name=host, server_port=port, prevent_thread_lock=prevent_thread_lock,
                      theme=theme, css=CSS, quiet=quiet, show_error=True,
                      footer_links=["api", "settings"])


def _check_port(host: str, port: int) -> None:
    """Raises OSError when ``host:port`` cannot be listened on (taken, or not this machine)."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn: TIME_WAIT is fine
        s.bind((host, port))


def launch(host: str = "127.0.0.1", port: int = 7860, engine_name: str = "auto",
           tracker_cfg: TrackerConfig = TrackerConfig()) -> int:
    """Load the engine, build the page and serve it until Ctrl-C (``--ui gradio``); returns 0.
    Every chain of the page runs ``tracker_cfg``.

    Raises:
        ValueError / engine.backends.BackendError: ``engine_name`` cannot run here.
        OSError: ``host:port`` cannot be listened on.
    """
    from engine.runtime import Engine, select_backend

    _check_port(host, port)  # before the engine loads: a busy port fails in a moment
    selection = select_backend(engine_name, log=None)
    with Engine.load(engine_name) as engine:
        app = build_app(engine, selection=selection, tracker_cfg=tracker_cfg)
        print(f"fedn-live: Gradio page on http://{host}:{port} (Ctrl-C stops)", flush=True)
        serve(app, host, port)  # blocks until Ctrl-C, then closes the server
    return 0

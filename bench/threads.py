"""Where the cores go: CPU time per thread of this process while a block runs, by stage.

    with ThreadCPU() as cpu:
        run_pipeline(...)
    cpu.groups()  # {"face": s, "chain": s, "capture": s, "other": s}

Linux only (``/proc/self/task``): a sampler thread reads every thread's user +
system time every ``interval`` seconds, so a thread that ends before the block
does (the face and capture threads end with the stream) keeps what it had used
up to its last sample; what no sample saw (those last few ms, threads too short
to be sampled) is the process total less the sum, reported as ``other`` with the
native threads we do not name. The sampler's own time is left out.

The thread that opens the block is ``chain`` (the pipeline runs the rest of the
chain on its caller's thread); the others are grouped by name, Python threads by
their ``threading`` name and native ones by their OS name (MediaPipe's graph
threads ``mediapipe/…``, PyAV's decoder threads ``av:…``): :data:`GROUPS`.
"""
from __future__ import annotations

import os
import resource
import threading
import time
from pathlib import Path

#: Stage of a thread, by the start of its name: the face stage (the pipeline's face thread
#: and MediaPipe's graph threads), capture and decoding (the capture thread and PyAV's
#: decoder threads).
GROUPS: tuple[tuple[str, str], ...] = (("face-ahead", "face"), ("mediapipe/", "face"),
                                       ("capture", "capture"), ("av:", "capture"))

_TASKS = Path("/proc/self/task")
_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def available() -> bool:
    """Whether per-thread CPU times can be read here (Linux ``/proc``)."""
    return _TASKS.is_dir()


def group_of(name: str) -> str:
    """The stage :data:`GROUPS` gives a thread name, else ``"other"``."""
    for prefix, group in GROUPS:
        if name.startswith(prefix):
            return group
    return "other"


def _process_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


class ThreadCPU:
    """CPU seconds per thread of this process over a ``with`` block (see the module doc).

    Attributes:
        wall_s: the block's wall-clock seconds.
        total_s: the process's CPU seconds over the block (all threads, ended ones too;
            the sampler's own left out).
        threads: {tid: (name, CPU seconds over the block)} for every thread sampled.
        owner: the native id of the thread that opened the block (group ``chain``).
    """

    def __init__(self, interval: float = 0.02) -> None:
        if not available():
            raise RuntimeError("bench.threads: /proc/self/task is not readable here "
                               "(per-thread CPU times need Linux)")
        self.interval = interval
        self.wall_s = self.total_s = 0.0
        self.threads: dict[int, tuple[str, float]] = {}
        self.owner = threading.get_native_id()
        self._start: dict[int, float] = {}
        self._last: dict[int, tuple[str, float]] = {}
        self._stop = threading.Event()
        self._sampler = threading.Thread(target=self._run, name="bench-thread-cpu", daemon=True)

    def _sample(self) -> dict[int, tuple[str, float]]:
        py_names = {t.native_id: t.name for t in threading.enumerate()}
        out: dict[int, tuple[str, float]] = {}
        for entry in _TASKS.iterdir():
            try:
                stat = (entry / "stat").read_text()
            except OSError:  # the thread ended meanwhile
                continue
            tid = int(entry.name)
            os_name = stat[stat.index("(") + 1:stat.rindex(")")]
            fields = stat[stat.rindex(")") + 2:].split()
            out[tid] = (py_names.get(tid, os_name), (int(fields[11]) + int(fields[12])) / _TICK)
        return out

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._last.update(self._sample())

    def __enter__(self) -> "ThreadCPU":
        self.owner = threading.get_native_id()
        self._start = {tid: cpu for tid, (_, cpu) in self._sample().items()}
        self._cpu0, self._wall0 = _process_cpu(), time.perf_counter()
        self._sampler.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._last.update(self._sample())
        self.wall_s = time.perf_counter() - self._wall0
        total = _process_cpu() - self._cpu0
        self._stop.set()
        self._sampler.join()
        me = self._sampler.native_id
        spent = {tid: (name, cpu - self._start.get(tid, 0.0))
                 for tid, (name, cpu) in self._last.items()}
        self.total_s = total - spent.pop(me, ("", 0.0))[1]
        self.threads = spent

    def groups(self) -> dict[str, float]:
        """CPU seconds by stage; ``other`` also takes what no sample attributed."""
        out = {"face": 0.0, "chain": 0.0, "capture": 0.0, "other": 0.0}
        for tid, (name, cpu) in self.threads.items():
            out["chain" if tid == self.owner else group_of(name)] += cpu
        out["other"] += max(0.0, self.total_s - sum(out.values()))
        return out

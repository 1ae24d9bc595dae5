"""Timing statistics of the real label files -> ``training/synth/stats.json``.

    python -m training.synth.stats [--annotations DIR] [--out training/synth/stats.json]

Everything the generator samples (durations, onset->apex fraction, kind mix,
emotion mix, gaps, blink timing) is derived here from the real label files
through the dataset readers; nothing is typed in. Distributions are stored as
101 quantiles (q = 0, 0.01, ..., 1), so sampling is inverse-CDF interpolation.

Assumptions (also in README.md):

* Video lengths are not in the label files. ``events_per_min_upper`` divides
  the event count by the sum over videos of the last labelled frame: an upper
  bound (videos run on past their last label, and unlabelled videos are not
  listed at all). The generator does not use it: it spaces events with the
  real gaps between consecutive labels of one video (``gaps_s``), which need
  no video length.
* Durations use rows whose offset is marked (the CAS(ME)^2 rows with offset 0
  are left out); the apex fraction needs a marked apex too.
* The ``generator`` block pools what fits the SynthME definitions: micro =
  CAS(ME)^2 + SAMM-LV micro rows truncated to (0, MICRO_MAX_S]; macro =
  CAS(ME)^2 + SAMM-LV macro rows truncated to [MICRO_MAX_S, MACRO_MAX_S]
  (CAS(ME)^3 "micro" rows have a different duration profile, DESIGN.md §4);
  emotion mix: CAS(ME)^2 (both kinds) + CAS(ME)^3 micro (SAMM-LV has no
  emotion column); gaps and lead-in: CAS(ME)^2 (30 fps long videos); blinks:
  CAS(ME)^3 ``eye blink`` sheet.
* Phases (``phases`` per dataset and kind, ``generator.phases``): the labels
  give onset, apex and offset frames only. Rise = onset->apex. Apex->offset
  is split into a still hold and a release under the **symmetric-motion
  assumption**: the release (back to neutral) takes as long as the rise
  (``RELEASE_RATIO`` = 1), capped by the apex->offset time; the rest of
  apex->offset is the hold. So the marked apex is taken as the first frame
  of the still apex. ``generator.phases`` pools CAS(ME)^2 + SAMM-LV +
  CAS(ME)^3 (each dataset weighted equally; micro: CAS(ME)^2 + SAMM-LV only,
  as above) with durations up to ``PHASE_MAX_S``; the generator truncates at
  ``SynthConfig.macro_max_s`` and draws the apex fraction conditioned on the
  duration bin (long labels have relatively longer apex->offset).
"""
from __future__ import annotations

import argparse
import json
from collections import Counter, defaultdict
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from engine.config import EMOTIONS, KINDS, MICRO_MAX_S

from .config import PHASE_MAX_S

STATS_PATH = Path(__file__).resolve().parent / "stats.json"
#: Longest macro-expression SynthME makes (s): DESIGN.md §4 window covers ~8 s, the
#: issue asks for 0.5-4 s.
MACRO_MAX_S: float = 4.0
#: Quantile grid every stored distribution uses.
QGRID: np.ndarray = np.linspace(0.0, 1.0, 101)
#: Minimum gap kept in the generator's gap distribution (s): labels of one video that
#: overlap or touch are merged into the "no overlap" rule of the generator.
MIN_GAP_S: float = 0.2
#: Release time / rise time assumed when splitting apex->offset into hold + release
#: (the labels mark no end of the apex; see the module doc).
RELEASE_RATIO: float = 1.0
#: Longest label kept in the phase pool: ``config.PHASE_MAX_S`` (CAS(ME)^3 has macro rows
#: of minutes, q99 52 s, that are not single expressions; ``SynthConfig.macro_max_s`` caps
#: lower).
#: Duration bin edges (s) of the conditional apex-fraction quantiles, per kind.
PHASE_BINS_S: dict[str, tuple[float, ...]] = {"micro": (0.0, MICRO_MAX_S),
                                              "macro": (MICRO_MAX_S, 1.0, 2.0, 4.0, 8.0,
                                                        PHASE_MAX_S)}


def quantiles(values: Iterable[float]) -> list[float]:
    """The 101 quantiles of ``values`` (rounded to 1e-4), or [] when empty."""
    arr = np.asarray(list(values), float)
    if arr.size == 0:
        return []
    return [round(float(v), 4) for v in np.quantile(arr, QGRID)]


def _dist(values: Sequence[float]) -> dict:
    arr = np.asarray(values, float)
    return {"n": int(arr.size), "q": quantiles(arr),
            "mean": round(float(arr.mean()), 4) if arr.size else None}


def durations_s(anns: Iterable) -> list[float]:
    """Seconds (inclusive frames / fps) of the rows whose offset is marked."""
    return [a.seconds for a in anns if a.offset_marked]


def apex_fractions(anns: Iterable) -> list[float]:
    """(apex - onset) / (offset - onset), rows with marked apex and offset, offset > onset."""
    out = []
    for a in anns:
        if a.offset_marked and a.apex is not None and a.offset > a.onset:
            out.append(float(np.clip((a.apex - a.onset) / (a.offset - a.onset), 0.0, 1.0)))
    return out


def phases_s(anns: Iterable) -> list[tuple[float, float, float]]:
    """(rise, hold, release) seconds of the rows with marked apex and offset, offset > onset.

    Rise = apex - onset; apex -> offset is split as release = min(apex -> offset,
    RELEASE_RATIO * rise), hold = the rest (module doc: the labels mark no end of the apex).
    """
    out = []
    for a in anns:
        if a.offset_marked and a.apex is not None and a.offset > a.onset:
            apex = min(max(a.apex, a.onset), a.offset)
            rise, fall = (apex - a.onset) / a.fps, (a.offset - apex) / a.fps
            release = min(fall, RELEASE_RATIO * rise)
            out.append((rise, fall - release, release))
    return out


def weighted_quantiles(values: Sequence[float], weights: Sequence[float]) -> list[float]:
    """The 101 quantiles of a weighted sample (midpoint CDF, rounded to 1e-4); [] if empty."""
    v, w = np.asarray(values, float), np.asarray(weights, float)
    if v.size == 0:
        return []
    order = np.argsort(v, kind="stable")
    v, w = v[order], w[order]
    cdf = (np.cumsum(w) - 0.5 * w) / w.sum()
    return [round(float(x), 4) for x in np.interp(QGRID, cdf, v)]


def _phase_dists(anns: Sequence) -> dict:
    ph = np.asarray(phases_s(anns), float).reshape(-1, 3)
    return {name: _dist(ph[:, i]) for i, name in enumerate(("rise_s", "hold_s", "release_s"))}


def phase_pool_rows(groups: Sequence[Sequence], kind: str) -> tuple[list, np.ndarray]:
    """The rows of one kind pooled from ``groups`` (marked apex and offset, duration in
    the kind's PHASE_BINS_S range) and their weights (each group sums to 1)."""
    lo, hi = PHASE_BINS_S[kind][0], PHASE_BINS_S[kind][-1]
    rows, wts = [], []
    for group in groups:
        sel = [a for a in group if a.kind == kind and a.offset_marked and a.apex is not None
               and a.offset > a.onset and lo <= a.seconds <= hi]
        rows += sel
        wts += [1.0 / len(sel)] * len(sel)
    return rows, np.asarray(wts, float)


def _phase_pool(groups: Sequence[Sequence], kind: str) -> dict:
    """Weighted pool of ``groups`` (one weight per group: equal totals) of one kind:
    duration quantiles and, per duration bin, apex-fraction quantiles."""
    rows, w_a = phase_pool_rows(groups, kind)
    dur_a = np.array([a.seconds for a in rows], float)
    frac_a = np.array([float(np.clip((a.apex - a.onset) / (a.offset - a.onset), 0.0, 1.0))
                       for a in rows], float)
    edges = PHASE_BINS_S[kind]
    bins = []
    for b0, b1 in zip(edges, edges[1:]):
        m = (dur_a >= b0) & ((dur_a < b1) | (b1 == edges[-1]))
        bins.append({"lo": b0, "hi": b1, "n": int(m.sum()),
                     "apex_fraction_q": weighted_quantiles(frac_a[m], w_a[m])})
    return {"n": int(dur_a.size), "duration_q": weighted_quantiles(dur_a, w_a), "bins": bins}


def _by_video(anns: Iterable) -> dict[tuple[str, str], list]:
    groups: dict[tuple[str, str], list] = defaultdict(list)
    for a in anns:
        groups[a.key].append(a)
    return {k: sorted(v, key=lambda a: a.onset) for k, v in groups.items()}


def gaps_s(anns: Iterable) -> list[float]:
    """Seconds from each label's offset to the next label's onset in the same video."""
    out = []
    for rows in _by_video(anns).values():
        for prev, nxt in zip(rows, rows[1:]):
            out.append((nxt.onset - prev.offset) / prev.fps)
    return out


def lead_in_s(anns: Iterable) -> list[float]:
    """Seconds from the video's first frame to its first label's onset."""
    return [rows[0].onset / rows[0].fps for rows in _by_video(anns).values()]


def per_minute_upper(anns: Sequence, extra_ends: dict | None = None) -> float:
    """Labels per minute with each video's length taken as its last labelled frame
    (an upper bound, see the module doc). ``extra_ends``: other labels' last frames."""
    groups = _by_video(anns)
    minutes = 0.0
    for key, rows in groups.items():
        end = max(max(a.offset for a in rows), (extra_ends or {}).get(key, 0))
        minutes += end / rows[0].fps / 60.0
    return round(len(anns) / minutes, 4) if minutes else 0.0


def summarize_dataset(anns: Sequence) -> dict:
    """Per-kind durations, apex fraction, emotion mix; pooled gaps and rates."""
    out: dict = {"events": len(anns), "videos": len({a.key for a in anns}),
                 "subjects": len({a.subject for a in anns}),
                 "fps": anns[0].fps if anns else None, "kinds": {}}
    for kind in KINDS:
        sel = [a for a in anns if a.kind == kind]
        out["kinds"][kind] = {
            "events": len(sel),
            "duration_s": _dist(durations_s(sel)),
            "apex_fraction": _dist(apex_fractions(sel)),
            "phases": _phase_dists(sel),
            "emotions": {e: sum(a.emotion == e for a in sel) for e in EMOTIONS},
            "events_per_min_upper": per_minute_upper(sel, _ends(anns)),
        }
    gaps = gaps_s(anns)
    out["gaps_s"] = _dist(gaps)
    out["gaps_overlapping"] = int(sum(g < 0 for g in gaps))
    out["lead_in_s"] = _dist(lead_in_s(anns))
    out["events_per_min_upper"] = per_minute_upper(anns)
    return out


def _ends(anns: Iterable) -> dict[tuple[str, str], int]:
    ends: dict[tuple[str, str], int] = {}
    for a in anns:
        ends[a.key] = max(ends.get(a.key, 0), a.offset)
    return ends


def summarize_blinks(blinks: Sequence, events: Sequence) -> dict:
    """Blink durations, gaps between blinks of one video, rate (upper bound)."""
    return {"blinks": len(blinks), "videos": len({b.key for b in blinks}),
            "duration_s": _dist(durations_s(blinks)), "gaps_s": _dist(gaps_s(blinks)),
            "per_min_upper": per_minute_upper(blinks, _ends(events))}


def _truncate(values: Iterable[float], lo: float, hi: float) -> list[float]:
    return [v for v in values if lo <= v <= hi]


def generator_block(real: dict[str, list], blinks: Sequence) -> dict:
    """What the generator samples, pooled as the module doc says."""
    c2, samm = real["casme2"], real["sammlv"]
    pooled = c2 + samm
    micro = [a for a in pooled if a.kind == "micro"]
    macro = [a for a in pooled if a.kind == "macro"]
    emo_src = c2 + [a for a in real["casme3"] if a.kind == "micro"]
    emotions = {}
    for kind in KINDS:
        counts = Counter(a.emotion for a in emo_src if a.kind == kind and a.emotion)
        total = sum(counts.values())
        emotions[kind] = {e: round(counts[e] / total, 4) for e in EMOTIONS}
    gaps = [g for g in gaps_s(c2) if g >= MIN_GAP_S]
    return {
        "sources": {"duration": "casme2+sammlv", "apex_fraction": "casme2+sammlv",
                    "kind_mix": "casme2+sammlv", "emotions": "casme2+casme3_micro",
                    "gaps": "casme2", "lead_in": "casme2", "blinks": "casme3 eye blink"},
        "p_micro": round(len(micro) / (len(micro) + len(macro)), 4),
        "duration_s": {"micro": _dist(_truncate(durations_s(micro), 0.0, MICRO_MAX_S)),
                       "macro": _dist(_truncate(durations_s(macro), MICRO_MAX_S, MACRO_MAX_S))},
        "duration_bounds_s": {"micro": [0.0, MICRO_MAX_S], "macro": [MICRO_MAX_S, MACRO_MAX_S]},
        "apex_fraction": {"micro": _dist(apex_fractions(micro)),
                          "macro": _dist(apex_fractions(macro))},
        "emotions": emotions,
        "gaps_s": _dist(gaps),
        "min_gap_s": MIN_GAP_S,
        "lead_in_s": _dist(lead_in_s(c2)),
        "blink_duration_s": _dist(durations_s(blinks)),
        "blink_gaps_s": _dist([g for g in gaps_s(blinks) if g > 0]),
        "phases": {"sources": {"micro": "casme2+sammlv", "macro": "casme2+sammlv+casme3"},
                   "weighting": "each dataset equally", "release_ratio": RELEASE_RATIO,
                   "micro": _phase_pool([c2, samm], "micro"),
                   "macro": _phase_pool([c2, samm, real["casme3"]], "macro")},
    }


def compute(folder: str | Path | None = None) -> dict:
    """The whole stats document from the real label files in ``folder``."""
    from training.datasets.readers import annotations_dir, load_real

    folder = Path(folder or annotations_dir())
    real = {name: load_real(name, folder) for name in ("casme2", "sammlv", "casme3")}
    blinks = load_real("casme3_blinks", folder)
    return {
        "about": "Derived by `python -m training.synth.stats` from the real label files; "
                 "distributions are 101 quantiles (q=0..1). See training/synth/README.md.",
        "quantile_grid": "linspace(0, 1, 101)",
        "datasets": {name: summarize_dataset(anns) for name, anns in real.items()},
        "blinks": summarize_blinks(blinks, real["casme3"]),
        "generator": generator_block(real, blinks),
    }


def load(path: str | Path = STATS_PATH) -> dict:
    """The stats JSON (the generator's input); a missing file is a one-line error."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"stats file not found: {path} (run `python -m training.synth.stats`)")
    return json.loads(path.read_text())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Derive SynthME timing statistics from the "
                                             "real label files.")
    ap.add_argument("--annotations", type=Path, default=None,
                    help="folder of the real label files (default ../shared/annotations)")
    ap.add_argument("--out", type=Path, default=STATS_PATH)
    a = ap.parse_args(argv)
    doc = compute(a.annotations)
    a.out.write_text(json.dumps(doc, indent=1) + "\n")
    g = doc["generator"]
    print(f"wrote {a.out} ({a.out.stat().st_size // 1024} KB)")
    for name, d in doc["datasets"].items():
        k = d["kinds"]
        print(f"{name:7s} events {d['events']:5d}  micro {k['micro']['events']:4d} "
              f"(median {np.median(k['micro']['duration_s']['q'] or [0]):.2f} s)  "
              f"macro {k['macro']['events']:4d} "
              f"(median {np.median(k['macro']['duration_s']['q'] or [0]):.2f} s)  "
              f"<= {d['events_per_min_upper']:.2f}/min")
    print(f"blinks  {doc['blinks']['blinks']} (median "
          f"{doc['blinks']['duration_s']['q'][50]:.3f} s)   generator p_micro {g['p_micro']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Readers of the real label files (and SynthME's) into :class:`Annotation` lists.

Every reader takes the label file and, optionally, the dataset root; the
label file alone is enough for statistics and evaluation (the root is only
needed to find frames, see :func:`training.datasets.layout.videos`).

Conventions (documented in training/datasets/README.md, tested in
tests/training/test_datasets.py):

* Missing offset (CAS(ME)^2: 44 rows with offset 0) -> offset = apex, the
  rule of the MEGC spotting baseline SOFTNet (genbing99/SoftNet-SpotME,
  ``load_label.py``: "Take apex if offset is 0"), also used by MEAN.
* Kind always from the dataset's own type column, never from duration.
* SAMM-LV fractional frame numbers (e.g. 566.4) are truncated to int, as
  SOFTNet's ``int(row['onset'] - 1)`` does (it then shifts to 0-based; we
  keep the file's 1-based numbering).
"""
from __future__ import annotations

import csv
import math
import os
from functools import lru_cache
from pathlib import Path

from stream.megc_csv import read_megc_csv

from .records import DATASET_FPS, Annotation, annotation_from_spot, emotion4

#: Sheet names in the real files.
CASME2_SHEET, CASME2_SUBJECTS_SHEET, CASME2_VIDEOS_SHEET = (
    "CASFEcode_final", "naming rule1", "naming rule2")
SAMMLV_SHEET, SAMMLV_HEADER_ROW = "FACS_Movement_Only", 9  # 0-based row of the header
CASME3_SHEET, CASME3_BLINK_SHEET, CASME3_MICRO_SHEET = "AU+Emotion", "eye blink", "label"
#: File names inside the annotations folder (see /work/shared/annotations/README.md).
REAL_FILES: dict[str, str] = {
    "casme2": "casme2/CASME_sq_gt.xlsx",
    "sammlv": "sammlv/SAMMLV_gt.xlsx",
    "casme3": "casme3/CAS(ME)3_part_A_v2.xls",
    "casme3_micro": "casme3/cas(me)3_part_A_ME_label_JpgIndex_v2.xlsx",
}
#: CAS(ME)^3 objective classes (Davison et al. 2018, AU-based) -> 4 classes. Approximate:
#: only used with read_casme3(..., macro_emotion="objective").
OBJECTIVE_TO_EMOTION4: dict[str, str] = {"I": "positive", "II": "surprise", "III": "negative",
                                         "IV": "negative", "V": "negative", "VI": "negative",
                                         "VII": "others"}


def _excel(path: str | Path, sheet: str | int | None, header: int | None = None):
    """One sheet (or all with sheet=None) of an Excel file, errors as one-line ValueErrors."""
    import pandas as pd  # lazy: heavy

    path = Path(path)
    if not path.is_file():
        raise ValueError(f"label file not found: {path} (check the path)")
    try:
        return pd.read_excel(path, sheet_name=sheet, header=header)
    except ValueError as exc:  # missing sheet
        raise ValueError(f"{path}: {str(exc).splitlines()[0]}") from None
    except Exception as exc:  # noqa: BLE001 - corrupt / not Excel
        raise ValueError(f"{path}: cannot read as Excel ({type(exc).__name__}: "
                         f"{str(exc).splitlines()[0] if str(exc) else ''})") from None


def parse_kind(value: object, where: str) -> str:
    """``micro`` / ``macro`` from a dataset type label (``Micro - 1/2``, ``macro-expression``)."""
    text = str(value).strip().lower()
    if text.startswith("micro"):
        return "micro"
    if text.startswith("macro"):
        return "macro"
    raise ValueError(f"{where}: expression type {value!r} is neither micro nor macro")


def _int(value: object, where: str, name: str) -> int:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{where}: {name} {value!r} is not a number") from None
    if math.isnan(number):
        raise ValueError(f"{where}: {name} is empty")
    if math.isinf(number):  # int() would overflow with a traceback
        raise ValueError(f"{where}: {name} {value!r} is not a finite frame number")
    return int(number)  # truncation, as SOFTNet's int()


def _text(value: object) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return str(value).strip()


def _interval(onset: int, apex: int, offset: int) -> tuple[int, int | None, int, bool]:
    """Apply the missing-apex/offset conventions; returns (onset, apex, offset, offset_marked)."""
    apex_or_none = apex if apex > 0 else None
    if offset == 0:  # MEGC/SOFTNet: "Take apex if offset is 0"
        return onset, apex_or_none, (apex if apex > 0 else onset), False
    return onset, apex_or_none, offset, True


def read_casme2(label_file: str | Path, root: str | Path | None = None, *,
                dataset: str = "casme2", fps: float | None = None) -> list[Annotation]:
    """CAS(ME)^2 ``CASME_sq_gt.xlsx`` (or a sheet with its 9 columns) -> annotations.

    Columns (no header): subject number, name (``anger1_1``), onset, apex,
    offset (0 = not marked), AUs, expert emotion (4 classes), type, self-report.
    With the ``naming rule1/2`` sheets, subject becomes the folder code
    (``s15``) and video ``<num>_<code>`` (``15_0101``, the prefix of the frame
    folder ``rawpic/s15/15_0101disgustingteeth``); without them (SynthME),
    subject is column 1 as text and video the name before its last ``_``.

    Args:
        label_file: .xlsx/.xls, or .csv with the same 9 columns and no header.
        root: dataset root (unused here; accepted for a uniform signature).
        dataset: dataset key written into the records.
        fps: frame rate (default 30).
    """
    del root
    label_file = Path(label_file)
    fps = fps or DATASET_FPS.get(dataset, 30.0)
    if label_file.suffix.lower() == ".csv":
        rows, subjects, codes = _csv_rows(label_file), None, None
    else:
        sheets = _excel(label_file, None)
        first = CASME2_SHEET if CASME2_SHEET in sheets else next(iter(sheets))
        rows = sheets[first].values.tolist()
        subjects = codes = None
        if CASME2_SUBJECTS_SHEET in sheets and CASME2_VIDEOS_SHEET in sheets:
            rule1 = sheets[CASME2_SUBJECTS_SHEET].values.tolist()
            subjects = {int(r[2]): (str(r[1]).strip(), int(r[0])) for r in rule1}
            codes = {str(r[1]).strip(): int(r[0])
                     for r in sheets[CASME2_VIDEOS_SHEET].values.tolist()}
    out = []
    for number, r in enumerate(rows, 1):
        where = f"{label_file.name} row {number}"
        if len(r) < 8:
            raise ValueError(f"{where}: expected the 9 CAS(ME)^2 columns, got {len(r)}")
        name = _text(r[1])
        base = name.rsplit("_", 1)[0]
        if subjects is not None:
            key = _int(r[0], where, "subject")
            if key not in subjects or base not in codes:
                raise ValueError(f"{where}: subject {key} / video {base!r} missing from the "
                                 f"naming rule sheets")
            subject, num = subjects[key]
            video = f"{num}_{codes[base]:04d}"
        else:
            subject, video = _text(r[0]), base
        onset, apex, offset, marked = _interval(_int(r[2], where, "onset"),
                                                _int(r[3], where, "apex"),
                                                _int(r[4], where, "offset"))
        raw = _text(r[6])
        out.append(Annotation(
            dataset=dataset, subject=subject, video=video, onset=onset, apex=apex,
            offset=offset, kind=parse_kind(r[7], where), emotion=emotion4(raw, where) if raw
            else "", raw_emotion=raw, aus=_text(r[5]), fps=fps, offset_marked=marked,
            label_id=name, self_report=_text(r[8]) if len(r) > 8 else "", row=number))
    return out


def _csv_rows(path: Path) -> list[list[str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return [row for row in csv.reader(f) if row]


def read_sammlv(label_file: str | Path, root: str | Path | None = None, *,
                emotion_file: str | Path | None = None) -> list[Annotation]:
    """SAMM-LV ``SAMMLV_gt.xlsx`` (sheet ``FACS_Movement_Only``, header on row 10).

    Subject ``006``, video ``006_1`` (``Filename`` without its last ``_N``).
    The file has no emotion column: ``emotion`` is ``""`` unless
    ``emotion_file`` (the SAMM micro sheet ``SAMM_..._Micro_FACS_Codes_v2.xlsx``,
    header on row 1, columns ``Filename``, ``Type``, ``Estimated Emotion``) is
    given; rows are then joined on (Filename, Type), as MEAN does.
    Apex -1 ("not annotated", 6 rows) becomes None.
    """
    del root
    table = _excel(label_file, SAMMLV_SHEET, header=SAMMLV_HEADER_ROW)
    need = ["Subject", "Filename", "Onset", "Apex", "Offset", "Type", "Action Units"]
    missing = [c for c in need if c not in table.columns]
    if missing:
        raise ValueError(f"{label_file}: SAMM-LV columns {missing} not found on row "
                         f"{SAMMLV_HEADER_ROW + 1}")
    emotions = _samm_emotions(emotion_file) if emotion_file else {}
    out = []
    for i, r in enumerate(table.to_dict("records")):
        number = SAMMLV_HEADER_ROW + 2 + i
        where = f"{Path(label_file).name} row {number}"
        name = _text(r["Filename"])
        subject = name.split("_")[0]
        onset, apex = _int(r["Onset"], where, "onset"), _int(r["Apex"], where, "apex")
        onset, apex, offset, marked = _interval(onset, apex, _int(r["Offset"], where, "offset"))
        kind = parse_kind(r["Type"], where)
        raw = emotions.get((name, _text(r["Type"])), "")
        out.append(Annotation(
            dataset="sammlv", subject=subject, video=name.rsplit("_", 1)[0], onset=onset,
            apex=apex, offset=offset, kind=kind, emotion=emotion4(raw, where) if raw else "",
            raw_emotion=raw, aus=_text(r["Action Units"]), fps=DATASET_FPS["sammlv"],
            offset_marked=marked, label_id=name, row=number))
    return out


def _samm_emotions(path: str | Path) -> dict[tuple[str, str], str]:
    table = _excel(path, 0, header=0)
    emo = next((c for c in table.columns if "emotion" in str(c).lower()), None)
    if emo is None or "Filename" not in table.columns or "Type" not in table.columns:
        raise ValueError(f"{path}: need columns Filename, Type and an emotion column")
    return {(_text(r["Filename"]), _text(r["Type"])): _text(r[emo])
            for r in table.to_dict("records")}


def read_casme3(label_file: str | Path, root: str | Path | None = None, *,
                micro_file: str | Path | None = "auto",
                macro_emotion: str = "none") -> list[Annotation]:
    """CAS(ME)^3 part A ``CAS(ME)3_part_A_v2.xls``, sheet ``AU+Emotion`` (4206 rows).

    Subject ``spNO.1``, video ``a`` (case kept: ``J`` occurs). Only objective
    classes are in this sheet; micro rows take their 7-way emotion from the
    micro-only file (same row order; the pairing is checked on subject and
    filename). ``micro_file="auto"`` looks for it next to ``label_file``;
    None skips it.

    Args:
        macro_emotion: ``"none"`` (macro emotion ``""``: no emotion label
            exists) or ``"objective"`` (approximate 4-class emotion from the
            objective class, :data:`OBJECTIVE_TO_EMOTION4`).
    """
    del root
    if macro_emotion not in ("none", "objective"):
        raise ValueError(f"macro_emotion must be 'none' or 'objective', got {macro_emotion!r}")
    table = _excel(label_file, CASME3_SHEET, header=0)
    micro_emotions: list[Annotation] = []
    if micro_file == "auto":
        guess = Path(label_file).with_name(Path(REAL_FILES["casme3_micro"]).name)
        micro_file = guess if guess.is_file() else None
    if micro_file is not None:
        micro_emotions = read_casme3_micro(micro_file)
    out, m = [], 0
    for i, r in enumerate(table.to_dict("records")):
        number, where = i + 2, f"{Path(label_file).name} row {i + 2}"
        kind = parse_kind(r["Expression type"], where)
        objective = _text(r["Objective class"])
        raw, emo = objective, ""
        if kind == "macro" and macro_emotion == "objective":
            emo = OBJECTIVE_TO_EMOTION4.get(objective, "")
        if kind == "micro" and micro_emotions:
            if m >= len(micro_emotions):
                raise ValueError(f"{where}: more micro rows than in the micro-only file")
            partner = micro_emotions[m]
            if (partner.subject, partner.video) != (_text(r["Subject"]), _text(r["Filename"])):
                raise ValueError(f"{where}: micro row {m + 1} does not pair with the micro-only "
                                 f"file ({partner.subject}/{partner.video})")
            raw, emo, m = partner.raw_emotion, partner.emotion, m + 1
        onset, apex, offset, marked = _interval(_int(r["Onset"], where, "onset"),
                                                _int(r["Apex"], where, "apex"),
                                                _int(r["Offset"], where, "offset"))
        if apex is None and _int(r["Apex"], where, "apex") == 0:
            apex = 0  # CAS(ME)^3 numbers frames from 0: apex 0 is a frame, not "unmarked"
        out.append(Annotation(
            dataset="casme3", subject=_text(r["Subject"]), video=_text(r["Filename"]),
            onset=onset, apex=apex, offset=offset, kind=kind, emotion=emo, raw_emotion=raw,
            aus=_text(r["AU"]), fps=DATASET_FPS["casme3"], offset_marked=marked,
            label_id=f"{_text(r['Subject'])}_{_text(r['Filename'])}_{onset}", row=number))
    return out


def read_casme3_micro(label_file: str | Path, root: str | Path | None = None) -> list[Annotation]:
    """CAS(ME)^3 part A micro-only file (sheet ``label``, 860 rows, 7-way ``emotion``)."""
    del root
    table = _excel(label_file, CASME3_MICRO_SHEET, header=0)
    out = []
    for i, r in enumerate(table.to_dict("records")):
        number, where = i + 2, f"{Path(label_file).name} row {i + 2}"
        raw = _text(r["emotion"])
        onset, apex, offset = (_int(r[c], where, c) for c in ("Onset", "Apex", "Offset"))
        marked = offset != 0
        out.append(Annotation(
            dataset="casme3", subject=_text(r["Subject"]), video=_text(r["Filename"]),
            onset=onset, apex=apex, offset=offset if marked else apex, kind="micro",
            emotion=emotion4(raw, where), raw_emotion=raw, aus=_text(r["AU"]),
            fps=DATASET_FPS["casme3"], offset_marked=marked,
            label_id=f"{_text(r['Subject'])}_{_text(r['Filename'])}_{onset}", row=number))
    return out


def read_casme3_blinks(label_file: str | Path, root: str | Path | None = None) -> list[Annotation]:
    """CAS(ME)^3 part A ``eye blink`` sheet (841 blinks; kind ``blink``, no apex/emotion)."""
    del root
    table = _excel(label_file, CASME3_BLINK_SHEET, header=0)
    out = []
    for i, r in enumerate(table.to_dict("records")):
        number, where = i + 2, f"{Path(label_file).name} row {i + 2}"
        out.append(Annotation(
            dataset="casme3", subject=_text(r["Subject"]), video=_text(r["Filename"]),
            onset=_int(r["Onset"], where, "onset"), apex=None,
            offset=_int(r["Offset"], where, "offset"), kind="blink", emotion="",
            raw_emotion="", aus="", fps=DATASET_FPS["casme3"], row=number))
    return out


def read_synthme(label_file: str | Path, root: str | Path | None = None, *,
                 fps: float | None = None) -> list[Annotation]:
    """SynthME labels: a MEGC CSV (header with subject, video, onset, offset) or a
    CAS(ME)^2-style sheet (.xlsx/.xls, or .csv without header, same 9 columns).

    MEGC CSV rows need a ``type`` column (micro/macro); ``apex`` is optional.
    """
    del root
    path = Path(label_file)
    if not path.is_file():
        raise ValueError(f"label file not found: {path} (check the path)")
    if path.suffix.lower() == ".csv":
        with open(path, newline="", encoding="utf-8") as f:
            first = next(csv.reader(f), [])
        if {"subject", "video", "onset", "offset"} <= {c.strip().lower() for c in first}:
            return [annotation_from_spot(s, "synthme", fps or DATASET_FPS["synthme"])
                    for s in read_megc_csv(path)]
    return read_casme2(path, dataset="synthme", fps=fps)


#: The public MEGC ground-truth label files, shipped with the package (~0.9 MB; no videos).
SHIPPED_ANNOTATIONS = Path(__file__).resolve().parent / "annotations"


def annotations_dir() -> Path:
    """Folder of the real label files: $FEDN_ANNOTATIONS, else the copy shipped in
    ``training/datasets/annotations/``."""
    env = os.environ.get("FEDN_ANNOTATIONS")
    if env:
        return Path(env)
    return SHIPPED_ANNOTATIONS


@lru_cache(maxsize=None)
def _load_real(dataset: str, folder: str) -> tuple[Annotation, ...]:
    base = Path(folder)
    readers = {"casme2": read_casme2, "sammlv": read_sammlv, "casme3": read_casme3,
               "casme3_micro": read_casme3_micro,
               "casme3_blinks": lambda p: read_casme3_blinks(p)}
    file = REAL_FILES["casme3" if dataset == "casme3_blinks" else dataset]
    return tuple(readers[dataset](base / file))


def load_real(dataset: str, folder: str | Path | None = None) -> list[Annotation]:
    """All annotations of one real dataset (cached per process).

    Args:
        dataset: ``casme2`` | ``sammlv`` | ``casme3`` | ``casme3_micro`` | ``casme3_blinks``.
        folder: annotations folder (default :func:`annotations_dir`).
    """
    known = ("casme2", "sammlv", "casme3", "casme3_micro", "casme3_blinks")
    if dataset not in known:
        raise ValueError(f"dataset must be one of {known}, got {dataset!r}")
    return list(_load_real(dataset, str(folder or annotations_dir())))


def all_real_annotations(folder: str | Path | None = None) -> dict[str, list[Annotation]]:
    """``{"casme2": [...], "sammlv": [...], "casme3": [...]}`` from the real label files
    (cached; about 1 s the first time)."""
    return {name: load_real(name, folder) for name in ("casme2", "sammlv", "casme3")}

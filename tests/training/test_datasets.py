"""Readers on the real label files (counts, conventions, mappings), layouts and splits."""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from training.datasets import (RAW_TO_EMOTION4, Annotation, all_real_annotations,
                               annotations_dir, emotion4, fixed_split, load_real, loso_splits,
                               read_casme2, read_casme3, read_sammlv, read_synthme, videos)
from training.datasets.readers import REAL_FILES

ANN = annotations_dir()


@pytest.fixture(scope="module")
def real() -> dict[str, list[Annotation]]:
    """The real files, parsed once per module (load_real also caches per process)."""
    assert (ANN / REAL_FILES["casme2"]).is_file(), f"real label files missing from {ANN}"
    out = all_real_annotations()
    out["casme3_micro"] = load_real("casme3_micro")
    out["casme3_blinks"] = load_real("casme3_blinks")
    return out


@pytest.mark.parametrize("name,total,macro,micro,subjects,n_videos", [
    ("casme2", 357, 300, 57, 22, 95),
    ("sammlv", 502, 343, 159, 30, 147),
    ("casme3", 4206, 3346, 860, 98, 956),
    ("casme3_micro", 860, 0, 860, None, None),
])
def test_real_counts(real, name, total, macro, micro, subjects, n_videos):
    anns = real[name]
    kinds = Counter(a.kind for a in anns)
    assert len(anns) == total
    assert kinds["macro"] == macro and kinds["micro"] == micro
    if subjects is not None:
        assert len({a.subject for a in anns}) == subjects
        assert len({a.key for a in anns}) == n_videos == len(videos(anns))


def test_blinks_sheet(real):
    blinks = real["casme3_blinks"]
    assert len(blinks) == 841
    assert {a.kind for a in blinks} == {"blink"} and all(a.apex is None for a in blinks)


def test_missing_offset_convention_is_offset_equals_apex(real):
    filled = [a for a in real["casme2"] if not a.offset_marked]
    assert len(filled) == 44
    assert all(a.offset == a.apex for a in filled)
    # row 3 of the sheet: subject 1 (s15), anger2_1, onset 2155, apex 2163, offset 0
    row = next(a for a in real["casme2"] if a.row == 3)
    assert (row.subject, row.video, row.label_id) == ("s15", "15_0402", "anger2_1")
    assert (row.onset, row.apex, row.offset, row.offset_marked) == (2155, 2163, 2163, False)
    assert all(a.offset_marked for a in real["sammlv"] + real["casme3"])


def test_casme2_naming_rules_and_unmarked_apex(real):
    first = real["casme2"][0]
    assert (first.subject, first.video, first.onset, first.apex, first.offset) == (
        "s15", "15_0401", 557, 572, 608)
    assert first.self_report == "anger" and first.emotion == "negative"
    no_apex = [a for a in real["casme2"] if a.apex is None]
    assert [(a.subject, a.label_id) for a in no_apex] == [("s34", "anger1_1")]


def test_sammlv_fractional_frames_truncate_and_apex_minus_one(real):
    first = real["sammlv"][0]  # 006_1_1: 566.4 / 647.6 / 743.2
    assert (first.subject, first.video, first.onset, first.apex, first.offset) == (
        "006", "006_1", 566, 647, 743)
    assert first.fps == 200.0
    assert sum(a.apex is None for a in real["sammlv"]) == 6
    assert {a.emotion for a in real["sammlv"]} == {""}  # the file has no emotion column


def test_kind_comes_from_type_column_not_duration(real):
    long_micro = [a for a in real["casme3"] if a.kind == "micro" and a.seconds > 0.5]
    assert len(long_micro) > 300  # CAS(ME)^3 "micro" labels often exceed 0.5 s; kept as micro
    short_macro = [a for a in real["casme2"] if a.kind == "macro" and a.seconds <= 0.5]
    assert short_macro


def test_casme3_micro_emotions_joined_from_micro_file(real):
    micro = [a for a in real["casme3"] if a.kind == "micro"]
    assert Counter(a.emotion for a in micro) == {"negative": 457, "surprise": 187,
                                                 "others": 161, "positive": 55}
    assert all(a.emotion == "" for a in real["casme3"] if a.kind == "macro")
    assert Counter(a.raw_emotion for a in real["casme3_micro"])["Others"] == 3


def test_casme3_macro_objective_emotion_is_opt_in():
    anns = read_casme3(ANN / REAL_FILES["casme3"], macro_emotion="objective", micro_file=None)
    macro = [a for a in anns if a.kind == "macro"]
    assert Counter(a.emotion for a in macro)["others"] == sum(
        a.raw_emotion == "VII" for a in macro)
    with pytest.raises(ValueError, match="macro_emotion"):
        read_casme3(ANN / REAL_FILES["casme3"], macro_emotion="guess")


def test_every_raw_label_maps_and_readme_table_lists_it(real):
    raws = {a.raw_emotion.lower() for n in ("casme2", "casme3_micro") for a in real[n]}
    raws |= {a.self_report.lower() for a in real["casme2"]}
    assert raws <= set(RAW_TO_EMOTION4)
    readme = (Path(__file__).parents[2] / "training/datasets/README.md").read_text()
    for raw, emo in RAW_TO_EMOTION4.items():
        assert f"| {raw} | {emo} |" in readme


def test_emotion4_rejects_unknown_label():
    assert emotion4("Happy") == "positive"
    with pytest.raises(ValueError, match="unknown emotion label 'joy'"):
        emotion4("joy")


def test_missing_label_file_is_one_line_error(tmp_path):
    with pytest.raises(ValueError, match="label file not found") as err:
        read_sammlv(tmp_path / "nope.xlsx")
    assert "\n" not in str(err.value)


def _casme2_style_rows():
    return [[1, "happy1_1", 10, 15, 20, "12", "positive", "macro-expression", "happiness"],
            [1, "happy1_2", 40, 44, 0, "12", "positive", "micro-expression", "happiness"],
            [2, "anger1_1", 5, 7, 9, "4", "negative", "micro-expression", "anger"]]


def test_read_synthme_casme2_style_sheet_and_csv(tmp_path):
    import pandas as pd

    pd.DataFrame(_casme2_style_rows()).to_excel(tmp_path / "synth.xlsx", header=False,
                                                index=False)
    pd.DataFrame(_casme2_style_rows()).to_csv(tmp_path / "synth.csv", header=False, index=False)
    for path in (tmp_path / "synth.xlsx", tmp_path / "synth.csv"):
        anns = read_synthme(path)
        assert [a.dataset for a in anns] == ["synthme"] * 3
        assert [(a.subject, a.video, a.kind) for a in anns] == [
            ("1", "happy1", "macro"), ("1", "happy1", "micro"), ("2", "anger1", "micro")]
        assert (anns[1].offset, anns[1].offset_marked) == (44, False)


def test_read_synthme_megc_csv_needs_type(tmp_path):
    path = tmp_path / "labels.csv"
    path.write_text("subject,video,onset,offset,emotion,type,apex\n"
                    "s1,v1,10,20,positive,micro,15\n")
    (a,) = read_synthme(path)
    assert (a.subject, a.video, a.onset, a.apex, a.offset, a.kind, a.emotion) == (
        "s1", "v1", 10, 15, 20, "micro", "positive")
    path.write_text("subject,video,onset,offset,emotion\ns1,v1,10,20,positive\n")
    with pytest.raises(ValueError, match="type column"):
        read_synthme(path)


def _frames(folder: Path, names: list[str]) -> None:
    import cv2
    import numpy as np

    folder.mkdir(parents=True)
    for name in names:
        cv2.imwrite(str(folder / name), np.zeros((8, 8, 3), np.uint8))


def test_videos_resolve_casme2_and_sammlv_layouts(tmp_path):
    _frames(tmp_path / "rawpic/s15/15_0401girlcrashing", ["img1.jpg", "img2.jpg", "img10.jpg"])
    _frames(tmp_path / "SAMM_longvideos/006_1", ["006_1_0001.jpg", "006_1_0002.jpg"])
    base = dict(apex=None, emotion="", raw_emotion="", aus="")
    anns = [Annotation("casme2", "s15", "15_0401", 1, offset=2, kind="micro", fps=30.0, **base),
            Annotation("casme2", "s15", "15_0402", 1, offset=2, kind="micro", fps=30.0, **base),
            Annotation("sammlv", "006", "006_1", 1, offset=2, kind="macro", fps=200.0, **base)]
    found, missing, samm = videos(anns, tmp_path)
    assert found.path == tmp_path / "rawpic/s15/15_0401girlcrashing" and found.first_frame == 1
    assert found.to_index(10) == 9 and found.to_frame(0) == 1
    assert missing.path is None
    assert samm.path == tmp_path / "SAMM_longvideos/006_1" and samm.fps == 200.0
    with pytest.raises(ValueError, match="not found under the dataset root"):
        missing.source()
    sources = pytest.importorskip("stream.sources")
    with found.source() as src:
        assert isinstance(src, sources.ImageSequenceSource)
        assert src.frame_count == 3 and src.numbers == [1, 2, 10]
    with pytest.raises(ValueError, match="dataset root not found"):
        videos(anns, tmp_path / "absent")


def test_loso_and_fixed_splits_are_subject_wise_and_deterministic(real):
    anns = real["casme2"]
    folds = loso_splits(anns)
    assert len(folds) == 22 and {f.test for f in folds} == {(s,) for s in {a.subject for a in anns}}
    for f in folds:
        assert f.test[0] not in f.train and len(f.train) == 21
    split = fixed_split(anns)
    assert split == fixed_split(list(reversed(anns)))  # order of input does not matter
    parts = [set(split.train), set(split.val), set(split.test)]
    assert sum(map(len, parts)) == 22 and set().union(*parts) == {a.subject for a in anns}
    assert (len(split.val), len(split.test)) == (3, 3)
    assert fixed_split(anns, seed=1) != split
    assert len(split.select(anns, "test")) == sum(a.subject in split.test for a in anns)


def test_split_argument_checks():
    base = dict(apex=None, emotion="", raw_emotion="", aus="", kind="micro", fps=30.0)
    anns = [Annotation("x", f"s{i}", "v", 0, offset=1, **base) for i in range(5)]
    with pytest.raises(ValueError, match="val must be in"):
        fixed_split(anns, val=1.5)
    with pytest.raises(ValueError, match="val \\+ test"):
        fixed_split(anns, val=0.5, test=0.5)
    with pytest.raises(ValueError, match="at least 3 subjects"):
        fixed_split(anns[:2])
    with pytest.raises(ValueError, match="part must be"):
        fixed_split(anns).select(anns, "dev")
    with pytest.raises(ValueError, match="empty"):
        loso_splits([])


def test_annotation_checks():
    base = dict(apex=None, emotion="", raw_emotion="", aus="", fps=30.0)
    with pytest.raises(ValueError, match="kind"):
        Annotation("x", "s", "v", 0, offset=1, kind="mega", **base)
    with pytest.raises(ValueError, match="emotion"):
        Annotation("x", "s", "v", 0, offset=1, kind="micro", **{**base, "emotion": "joy"})
    with pytest.raises(ValueError, match="dataset must be one of"):
        load_real("smic")


def test_read_casme2_without_naming_sheets_rejects_short_rows(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("1,happy1_1,10,15\n")
    with pytest.raises(ValueError, match="expected the 9 CAS\\(ME\\)\\^2 columns"):
        read_casme2(path)


def test_videos_resolve_synthme_mp4_and_folder(tmp_path):
    (tmp_path / "clip_a.mp4").write_bytes(b"\x00")
    _frames(tmp_path / "p1" / "clip_b", ["img1.jpg", "img2.jpg"])
    base = dict(apex=None, emotion="", raw_emotion="", aus="", kind="micro", fps=30.0)
    anns = [Annotation("synthme", "p1", "clip_a", 0, offset=5, **base),
            Annotation("synthme", "p1", "clip_b", 1, offset=2, **base),
            Annotation("synthme", "p1", "clip_b", 1, offset=2, **base)]
    mp4, folder = videos(anns, tmp_path)
    assert mp4.path == tmp_path / "clip_a.mp4" and mp4.first_frame == 0
    assert folder.path == tmp_path / "p1" / "clip_b" and folder.first_frame == 1
    assert folder.n_annotations == 2

"""The records every dataset reader returns, and the label mappings they share.

One :class:`Annotation` per labelled interval, whatever the dataset; one
:class:`Video` per long video, resolving its frames on disk. Frame numbers stay
in each label file's own numbering (CAS(ME)^2 and SAMM-LV count from 1, the
number in the image file name); :attr:`Video.first_frame` converts them to
stream indices (``Frame.index``, from 0).
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from engine.config import EMOTIONS, KINDS
from stream.megc_csv import Spot

#: Dataset keys, in report order.
DATASETS: tuple[str, ...] = ("casme2", "sammlv", "casme3", "synthme")
#: Nominal frame rate of each dataset's videos (frames per second).
DATASET_FPS: dict[str, float] = {"casme2": 30.0, "sammlv": 200.0, "casme3": 30.0,
                                 "synthme": 30.0}
#: Kinds an Annotation may carry: the model's kinds plus CAS(ME)^3 eye blinks.
ANNOTATION_KINDS: tuple[str, ...] = KINDS + ("blink",)

#: Every raw emotion label found in the label files (and the SAMM sheet MEAN
#: merges in), lower-cased, -> the 4 MEGC analysis classes. The table in
#: training/datasets/README.md is this dict.
RAW_TO_EMOTION4: dict[str, str] = {
    # CAS(ME)^2 column 7 "expert emotion" is already 4-class.
    "negative": "negative", "positive": "positive", "surprise": "surprise",
    "others": "others",
    # CAS(ME)^3 part A micro-only file, column "emotion" (7-way).
    "happy": "positive", "disgust": "negative", "anger": "negative", "fear": "negative",
    "sad": "negative",
    # CAS(ME)^2 column 9 "self-reported emotion" (kept in Annotation.self_report only).
    "happiness": "positive", "happyiness": "positive", "sadness": "negative",
    "helpless": "negative", "pain": "negative", "confused": "others", "sympathy": "others",
    # SAMM "Estimated Emotion" (MEAN's mapping: anger/contempt/disgust/fear/sadness negative).
    "contempt": "negative", "other": "others",
}


def emotion4(raw: str, where: str = "") -> str:
    """The MEGC class of a raw emotion label (case-insensitive); unknown labels are errors."""
    key = str(raw).strip().lower()
    if key not in RAW_TO_EMOTION4:
        raise ValueError(f"unknown emotion label {raw!r}{' in ' + where if where else ''}; "
                         f"known: {sorted(RAW_TO_EMOTION4)} (add it to RAW_TO_EMOTION4)")
    return RAW_TO_EMOTION4[key]


@dataclass(frozen=True)
class Annotation:
    """One labelled interval of a long video (frames inclusive, label-file numbering).

    Attributes:
        dataset: one of :data:`DATASETS` (or another name for external CSVs).
        subject: subject id as the dataset's folders name it (``s15``, ``006``, ``spNO.1``).
        video: video id, unique within the subject (``15_0101``, ``006_1``, ``a``).
        onset: first frame of the interval.
        apex: apex frame, or None where the file marks none (0 in CAS(ME)^2, -1 in SAMM-LV).
        offset: last frame. Where the file has no offset (0), the MEGC convention
            (offset = apex) is applied and :attr:`offset_marked` is False.
        kind: ``micro`` | ``macro`` (from the dataset's own type label) | ``blink``.
        emotion: one of the 4 MEGC classes, or ``""`` where the file carries no
            emotion (SAMM-LV without the SAMM sheet, CAS(ME)^3 macro, blinks).
        raw_emotion: the emotion label as written in the file (``""`` if none;
            CAS(ME)^3 macro rows keep their objective class, e.g. ``"VII"``).
        aus: action units as written (``"4+10+14"``).
        fps: frame rate of the video.
        offset_marked: False where the offset was filled by the convention.
        label_id: the row's own name in the file (``anger1_1``, ``006_1_1``), for traceability.
        self_report: CAS(ME)^2 self-reported emotion (``""`` elsewhere).
        row: 1-based row number in the sheet (header rows counted), for error messages.
    """

    dataset: str
    subject: str
    video: str
    onset: int
    apex: int | None
    offset: int
    kind: str
    emotion: str
    raw_emotion: str
    aus: str
    fps: float
    offset_marked: bool = True
    label_id: str = ""
    self_report: str = ""
    row: int = 0

    def __post_init__(self) -> None:
        if self.kind not in ANNOTATION_KINDS:
            raise ValueError(f"Annotation.kind must be one of {ANNOTATION_KINDS}, "
                             f"got {self.kind!r} ({self.where})")
        if self.emotion not in EMOTIONS + ("",):
            raise ValueError(f"Annotation.emotion must be one of {EMOTIONS} or '', "
                             f"got {self.emotion!r} ({self.where})")
        if not self.fps > 0:
            raise ValueError(f"Annotation.fps must be > 0, got {self.fps!r} ({self.where})")

    @property
    def where(self) -> str:
        """Human pointer to the source row."""
        return f"{self.dataset} {self.subject}/{self.video} row {self.row}"

    @property
    def key(self) -> tuple[str, str]:
        """``(subject, video)``: the video this interval belongs to."""
        return (self.subject, self.video)

    @property
    def frames(self) -> int:
        """Length in frames, inclusive (offset − onset + 1)."""
        return self.offset - self.onset + 1

    @property
    def seconds(self) -> float:
        """Length in seconds (frames / fps)."""
        return self.frames / self.fps

    def with_(self, **changes) -> "Annotation":
        """A copy with ``changes`` applied (frozen dataclass helper)."""
        return replace(self, **changes)


@dataclass(frozen=True)
class Video:
    """One long video of a dataset and where its frames are.

    Attributes:
        dataset: dataset key.
        subject: subject id (as in :class:`Annotation`).
        video: video id (as in :class:`Annotation`).
        fps: frame rate.
        path: the frame folder (or video file), or None when not found under the root.
        first_frame: label-file number of the first frame, so stream index =
            label frame − first_frame (1 for CAS(ME)^2 ``img1.jpg``, SAMM-LV ``_0001``).
        n_annotations: labelled intervals in this video.
    """

    dataset: str
    subject: str
    video: str
    fps: float
    path: Path | None
    first_frame: int
    n_annotations: int = 0

    @property
    def key(self) -> tuple[str, str]:
        return (self.subject, self.video)

    def to_index(self, frame: int) -> int:
        """Stream index (``Frame.index``) of a label-file frame number."""
        return int(frame) - self.first_frame

    def to_frame(self, index: int) -> int:
        """Label-file frame number of a stream index."""
        return int(index) + self.first_frame

    def source(self):
        """A FrameSource over this video (ImageSequenceSource, or VideoFileSource for files).

        Raises:
            ValueError: the frames were not found under the dataset root.
        """
        if self.path is None:
            raise ValueError(f"frames of {self.dataset} {self.subject}/{self.video} not found "
                             f"under the dataset root (pass root= the dataset folder)")
        from stream.sources import ImageSequenceSource, VideoFileSource  # lazy: cv2

        if self.path.is_file():
            return VideoFileSource(self.path)
        return ImageSequenceSource(self.path, self.fps)


def annotation_from_spot(spot: Spot, dataset: str, fps: float) -> Annotation:
    """A MEGC CSV row as an :class:`Annotation` (the row needs a type column: micro/macro)."""
    if not spot.kind:
        raise ValueError(f"{spot.subject}/{spot.video} onset {spot.onset}: a type column "
                         f"(micro/macro) is needed to make an Annotation")
    return Annotation(dataset=dataset, subject=spot.subject, video=spot.video,
                      onset=spot.onset, apex=spot.apex, offset=spot.offset, kind=spot.kind,
                      emotion=spot.emotion if spot.emotion in EMOTIONS else "",
                      raw_emotion=spot.emotion, aus="", fps=fps)


def spot_from_annotation(a: Annotation) -> Spot:
    """The :class:`Spot` of an Annotation (its 4-class emotion)."""
    return Spot(subject=a.subject, video=a.video, onset=a.onset, offset=a.offset,
                emotion=a.emotion, kind=a.kind if a.kind in KINDS else "", apex=a.apex)

"""A folder of frames in a dataset layout (CAS(ME)^2, SAMM-LV, any numbered names)."""
from __future__ import annotations

import re
from pathlib import Path

import cv2
import numpy as np

from engine.contracts import Frame
from stream.source_base import SourceError, _SourceBase, check_fps

#: Image extensions an image-sequence folder may hold.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")
#: Naming schemes of the datasets' frame folders: name -> regex whose group 1 is the number.
SEQUENCE_SCHEMES: dict[str, str] = {
    "casme2": r"^img(\d+)$",  # CAS(ME)^2 rawpic: img1.jpg, img2.jpg, ... (1-based)
    "samm": r"^.+_(\d+)$",  # SAMM-LV: 006_1_0001.jpg
    "numeric": r"^\D*(\d+)\D*$",  # anything with one number in it: 000001.png, frame12.jpg
}


def _jpeg_complete(data: bytes) -> bool:
    """Whether JPEG bytes start with SOI and end with EOI (trailing padding allowed)."""
    return data[:2] == b"\xff\xd8" and data.rstrip(b"\x00")[-2:] == b"\xff\xd9"


def read_image(path: Path) -> np.ndarray | None:
    """A frame image as H×W×3 uint8 BGR, or None when it does not decode.

    JPEGs are checked first for a missing end (a truncated file would decode to a
    frame whose lower part is flat grey — a false motion edge for the flow stage —
    and make libjpeg print "Premature end of JPEG file" on stderr).
    Gray, 16-bit and RGBA images become 8-bit BGR (as ``cv2.IMREAD_COLOR`` does).
    """
    try:
        data = path.read_bytes()
    except OSError:
        return None
    if path.suffix.lower() in (".jpg", ".jpeg") and not _jpeg_complete(data):
        return None
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    return image if image is not None and image.size else None


class ImageSequenceSource(_SourceBase):
    """A folder of frames in a dataset layout, read in numeric (not lexical) order.

    Args:
        folder: the frame folder.
        fps: frame rate of the sequence (image files carry none), e.g. 30 for
            CAS(ME)^2, 200 for SAMM-LV.
        scheme: one of :data:`SEQUENCE_SCHEMES` or ``"auto"`` (the first
            scheme that matches every image name).

    ``Frame.index`` is the file number minus the first file's number, and
    ``t_capture = index / fps``: a gap in the numbering stays a gap (said as
    ``source_short``, ``reason: missing``), so indices and times keep matching
    the file numbers (CAS(ME)^2 labels are 1-based file numbers: label frame =
    index + :attr:`first_number`). An image that does not decode (or a
    truncated JPEG) is skipped and counted (``reason: undecodable``, with its
    file name). :attr:`numbers` keeps the number in each file name;
    :attr:`frame_count` counts the files, :attr:`frames_promised` the span of
    their numbers.
    """

    def __init__(self, folder: str | Path, fps: float, scheme: str = "auto") -> None:
        super().__init__()
        fps = check_fps(fps, "fps of an image sequence")
        if scheme != "auto" and scheme not in SEQUENCE_SCHEMES:
            raise ValueError(f"scheme must be 'auto' or one of {sorted(SEQUENCE_SCHEMES)}, "
                             f"got {scheme!r}")
        self.folder, self.name = Path(folder), str(folder)
        self._fps, self.scheme = float(fps), scheme
        self.files: list[Path] = []
        self.numbers: list[int] = []
        self._size = (0, 0)
        self._first: tuple[int, np.ndarray] | None = None  # (position, image) decoded by open()
        self.frames_undecodable = 0
        self.frames_missing = 0

    @property
    def first_number(self) -> int:
        """The number in the first file's name (the file of index 0)."""
        return self.numbers[0] if self.numbers else 0

    @property
    def frames_promised(self) -> int | None:
        return (self.numbers[-1] - self.numbers[0] + 1) if self.numbers else None

    def open(self) -> "ImageSequenceSource":
        if not self.folder.is_dir():
            raise SourceError(f"frame folder not found: {self.folder} (check the path)")
        images = [p for p in self.folder.iterdir()
                  if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS]
        if not images:
            raise SourceError(f"no images ({'/'.join(IMAGE_EXTENSIONS)}) in folder {self.folder}")
        self.scheme, numbered = self._match_scheme(images)
        numbered.sort()
        for (a, pa), (b, pb) in zip(numbered, numbered[1:]):
            if a == b:
                raise SourceError(f"two frames numbered {a} in {self.folder}: {pa.name} and "
                                  f"{pb.name} (keep one)")
        self.numbers = [n for n, _ in numbered]
        self.files = [p for _, p in numbered]
        # The size comes from the first image that decodes (kept for the first read).
        for position, path in enumerate(self.files):
            image = read_image(path)
            if image is not None:
                self._first = (position, image)
                break
        else:
            raise SourceError(f"no image in {self.folder} decodes ({len(self.files)} files; "
                              "corrupt or not images)")
        self._size, self._count = (image.shape[1], image.shape[0]), len(self.files)
        self._opened, self._next_index, self._read = True, 0, 0
        self._position = 0  # next file to read
        self.frames_undecodable = self.frames_missing = 0
        return self

    def _match_scheme(self, images: list[Path]) -> tuple[str, list[tuple[int, Path]]]:
        candidates = SEQUENCE_SCHEMES if self.scheme == "auto" else {
            self.scheme: SEQUENCE_SCHEMES[self.scheme]}
        for name, pattern in candidates.items():
            regex = re.compile(pattern)
            matches = [regex.match(p.stem) for p in images]
            if all(matches):
                return name, [(int(m.group(1)), p) for m, p in zip(matches, images)]
        bad = next(p.name for p in images if not re.match(list(candidates.values())[-1], p.stem))
        raise SourceError(f"image {bad} in {self.folder} does not follow the naming scheme "
                          f"{sorted(candidates)} (frames must be numbered)")

    def read(self) -> Frame | None:
        self._require_open()
        while self._position < len(self.files):
            position = self._position
            self._position += 1
            path = self.files[position]
            index = self.numbers[position] - self.numbers[0]
            if self._first is not None and self._first[0] == position:
                image, self._first = self._first[1], None
            else:
                image = read_image(path)
            gap = index - self._next_index
            if gap > 0:  # files missing from the numbering before this one
                self.frames_missing += gap
                self._say("source_short", self._next_index, reason="missing", count=gap,
                          files=f"numbers {self.numbers[0] + self._next_index}"
                                f"..{self.numbers[position] - 1} absent")
            self._next_index = index + 1
            if image is None:
                self.frames_undecodable += 1
                self._say("source_short", index, reason="undecodable", count=1,
                          file=path.name)
                continue
            self._read += 1
            return Frame(index=index, t_capture=index / self._fps, image=image)
        return None

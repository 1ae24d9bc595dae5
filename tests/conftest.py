"""Shared fixtures: small generated videos and frames."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bench.capture import write_test_video

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def small_video(tmp_path_factory) -> Path:
    """A 40-frame 160×96 MP4 written with cv2.VideoWriter."""
    return write_test_video(tmp_path_factory.mktemp("video") / "small.mp4", 40, size=(160, 96))


def make_frames(n: int, h: int = 24, w: int = 32) -> np.ndarray:
    """n×h×w×3 uint8 frames whose first pixel encodes the frame number (mod 256)."""
    frames = np.zeros((n, h, w, 3), np.uint8)
    frames[:, 0, 0, 0] = np.arange(n) % 256
    frames[:, 0, 0, 1] = np.arange(n) // 256
    return frames


def frame_number(image: np.ndarray) -> int:
    return int(image[0, 0, 0]) + 256 * int(image[0, 0, 1])

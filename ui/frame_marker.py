"""A frame number stamped into the pixels, so a client can time each frame's round trip.

WebRTC does not carry a frame's identity end to end: the RTP timestamps the
browser sees on the returned track start from a random origin chosen by the
server's sender. So the sender (``ui/static/client.js``, the benchmark and
the tests' aiortc client) paints a frame number into a strip at the bottom
left of each frame it sends, and reads it back from the annotated frame it
receives; the server keeps that strip as it came in (:func:`keep_strip`) so
the overlay never covers it.

The strip is one row of :data:`N_CELLS` square cells, each ``width //
CELLS_PER_WIDTH`` pixels (16 px at 640 wide): :data:`N_BITS` bits of the
number, most significant first, then one parity bit per 4-bit nibble (odd
parity for the 1st and 3rd nibble, even for the others, so a plain black or
white corner never reads as a number). Cells
are near-black (0) or near-white (1) grey, large enough to survive VP8 at low
bit rates; a strip whose cells are not clearly black or white, or whose
parity does not match, reads as ``None``. Sizes scale with the frame width, so
a sender that downscales keeps a readable strip. ``client.js`` implements the
same layout (keep the two in step).
"""
from __future__ import annotations

import numpy as np

#: Bits of the frame number (it wraps at 2**N_BITS frames, 36 min at 30 fps).
N_BITS = 16
#: Cells in the strip: the number's bits, then one parity bit per nibble.
N_CELLS = N_BITS + N_BITS // 4
#: The frame width is this many cells (so a cell is 16 px at 640 wide).
CELLS_PER_WIDTH = 40
#: Grey levels painted for a 0 and a 1 bit (video range, so codecs keep them).
BLACK, WHITE = 16, 235
#: A cell whose mean grey falls between these is neither black nor white: unreadable.
LOW, HIGH = 80, 175


def cell_size(width: int) -> int:
    """Side of one cell in pixels for a frame ``width`` pixels wide."""
    return max(2, width // CELLS_PER_WIDTH)


def _bits(number: int) -> list[int]:
    bits = [(number >> (N_BITS - 1 - i)) & 1 for i in range(N_BITS)]
    # odd parity on even nibbles, even on odd ones: an all-black or all-white strip is invalid
    parity = [(sum(bits[4 * k:4 * k + 4]) + (k % 2 == 0)) & 1 for k in range(N_BITS // 4)]
    return bits + parity


def strip_box(width: int, height: int) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1) of the strip in a ``width`` × ``height`` frame (bottom left)."""
    c = cell_size(width)
    return 0, height - c, c * N_CELLS, height


def stamp(image: np.ndarray, number: int) -> np.ndarray:
    """Paints ``number`` (mod 2**N_BITS) into ``image`` (H×W×3 or H×W uint8) in place; returns it.

    Raises:
        ValueError: the frame is too small to hold the strip.
    """
    h, w = image.shape[:2]
    c = cell_size(w)
    if c * N_CELLS > w or c > h:
        raise ValueError(f"frame {w}x{h} is too small for a {N_CELLS}-cell marker strip")
    y0 = h - c
    for i, bit in enumerate(_bits(number % (1 << N_BITS))):
        image[y0:h, i * c:(i + 1) * c] = WHITE if bit else BLACK
    return image


def read(image: np.ndarray) -> int | None:
    """The number stamped in ``image`` (H×W×3 BGR or H×W grey uint8), or ``None`` when none reads."""
    h, w = image.shape[:2]
    c = cell_size(w)
    if c * N_CELLS > w or c > h:
        return None
    q = max(1, c // 4)  # sample the middle half of each cell: edges blur under a codec
    y0 = h - c
    band = image[y0 + q:h - q]
    if band.ndim == 3:
        band = band.mean(axis=2)
    bits = []
    for i in range(N_CELLS):
        m = float(band[:, i * c + q:(i + 1) * c - q].mean())
        if LOW < m < HIGH:
            return None
        bits.append(1 if m >= HIGH else 0)
    number = 0
    for b in bits[:N_BITS]:
        number = (number << 1) | b
    return number if bits == _bits(number) else None


def keep_strip(out: np.ndarray, original: np.ndarray) -> np.ndarray:
    """Copies the marker strip of ``original`` into ``out`` (same size) when one reads; returns out.

    The server calls this after drawing the overlay, so a timing client always
    finds its number in the frame it gets back; frames without a marker (a
    plain camera) keep the overlay everywhere.
    """
    if out.shape != original.shape or read(original) is None:
        return out
    x0, y0, x1, y1 = strip_box(original.shape[1], original.shape[0])
    out[y0:y1, x0:x1] = original[y0:y1, x0:x1]
    return out

"""Deterministic subject-wise splits: leave-one-subject-out and fixed train/val/test.

Splits are by subject (never by interval), so no face is seen in training and
test. The fixed split orders subjects by a SHA-1 of ``"<seed>:<subject>"``
(stable across Python versions and runs, unlike ``hash``) and cuts the list.
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Iterable, Sequence

from .records import Annotation


@dataclass(frozen=True)
class Split:
    """Subjects of one fold. ``name`` is the held-out subject for LOSO folds."""

    name: str
    train: tuple[str, ...]
    val: tuple[str, ...]
    test: tuple[str, ...]

    def select(self, annotations: Iterable[Annotation], part: str) -> list[Annotation]:
        """The annotations of ``part`` (``train`` | ``val`` | ``test``)."""
        if part not in ("train", "val", "test"):
            raise ValueError(f"part must be 'train', 'val' or 'test', got {part!r}")
        keep = set(getattr(self, part))
        return [a for a in annotations if a.subject in keep]


def _natural(names: Iterable[str]) -> list[str]:
    """Sorted so that ``s2`` comes before ``s10``."""
    return sorted(names, key=lambda s: [int(t) if t.isdigit() else t
                                        for t in re.split(r"(\d+)", s)])


def subjects(annotations: Iterable[Annotation]) -> list[str]:
    """Distinct subjects in natural order (``s2`` before ``s10``)."""
    return _natural({a.subject for a in annotations})


def loso_splits(annotations: Sequence[Annotation]) -> list[Split]:
    """One fold per subject: that subject is the test set, all others train (no val)."""
    subs = subjects(annotations)
    if not subs:
        raise ValueError("annotations is empty: no subjects to split")
    return [Split(name=s, train=tuple(x for x in subs if x != s), val=(), test=(s,))
            for s in subs]


def fixed_split(annotations: Sequence[Annotation], val: float = 0.15, test: float = 0.15,
                seed: int = 0) -> Split:
    """A fixed subject-wise train/val/test split (same input -> same split, every run).

    Args:
        val, test: fractions of subjects (each in [0, 1), together < 1); at
            least one subject each when the fraction is > 0 and subjects allow.
        seed: changes the order of subjects.
    """
    for name, value in (("val", val), ("test", test)):
        if not 0 <= value < 1:
            raise ValueError(f"{name} must be in [0, 1), got {value!r}")
    if val + test >= 1:
        raise ValueError(f"val + test must be < 1, got {val + test!r}")
    subs = subjects(annotations)
    if len(subs) < 3:
        raise ValueError(f"need at least 3 subjects for train/val/test, got {len(subs)}")
    order = sorted(subs, key=lambda s: hashlib.sha1(f"{seed}:{s}".encode()).hexdigest())
    n_test = max(1, round(test * len(subs))) if test > 0 else 0
    n_val = max(1, round(val * len(subs))) if val > 0 else 0
    return Split(name=f"fixed-seed{seed}", train=tuple(_natural(order[n_test + n_val:])),
                 val=tuple(_natural(order[n_test:n_test + n_val])),
                 test=tuple(_natural(order[:n_test])))

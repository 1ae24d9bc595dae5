"""Fixtures of the benchmark tests."""
from __future__ import annotations

from tests.engine.conftest import _one_thread  # noqa: F401 (autouse: one torch thread)

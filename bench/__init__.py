"""Benchmarks: run from the repository root, never installed.

    python -m bench [--out bench/results.json]      # `make bench`: every section below
    python -m bench.capture | bench.face | bench.engine | bench.pipeline | bench.peer

Each section module has ``run(report: dict) -> None``, which adds its section to
the report (and prints it). The benchmarks depend on ``stream`` / ``engine``;
nothing in the installed packages imports ``bench``.
"""

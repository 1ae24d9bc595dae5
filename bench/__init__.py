"""Benchmarks and the GPU check: run from the repository root, never installed.

    python -m bench [--out bench/results.json]      # `make bench`: every section below
    python -m bench.capture | bench.face | bench.engine | bench.pipeline | bench.peer
    python -m bench.gpu_check [--no-install] [--cache DIR]   # `make gpu-check`

Each section module has ``run(report: dict) -> None``, which adds its section to
the report (and prints it). The benchmarks depend on ``stream`` / ``engine``;
nothing in the installed packages imports ``bench``.
"""

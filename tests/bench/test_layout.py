"""bench/ is a leaf: run from the repository root, never installed, imported by nothing."""
from __future__ import annotations

import ast
import configparser
from pathlib import Path

import setuptools

ROOT = Path(__file__).resolve().parents[2]


def _imports(path: Path) -> set[str]:
    """Top-level names of every module ``path`` imports, at any depth of the code."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_installed_packages_do_not_import_bench():
    files = [ROOT / "run_live.py"] + [p for pkg in ("stream", "engine", "training", "ui")
                                      for p in (ROOT / pkg).rglob("*.py")]
    offenders = [str(p.relative_to(ROOT)) for p in files if "bench" in _imports(p)]
    assert not offenders


def test_gpu_check_needs_no_training_package():
    assert "training" not in _imports(ROOT / "bench" / "gpu_check.py")


def test_setup_cfg_does_not_install_bench():
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    include = [p.strip() for p in cfg.get("options.packages.find", "include").split(",")]
    found = setuptools.find_packages(str(ROOT), include=include)
    assert "engine" in found and "stream" in found
    assert not [p for p in found if p.split(".")[0] in ("bench", "tests")]


def test_no_benchmark_left_in_the_installed_packages():
    left = [str(p.relative_to(ROOT)) for pkg in ("stream", "engine")
            for p in (ROOT / pkg).rglob("*.py") if "bench" in p.stem or p.stem == "gpu_check"]
    assert not left

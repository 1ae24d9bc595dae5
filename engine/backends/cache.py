"""On-disk TensorRT engine cache.

A serialized engine is only valid for the exact graph, TensorRT version, GPU
and precision it was built for. Each entry is ``<name>-<digest>.engine`` plus a
``.json`` sidecar holding the full :class:`EngineKey` and the engine's own
sha256, so a lookup can tell four cases apart:

- **hit**: the key matches and the bytes hash to what was stored;
- **miss**: nothing cached for this name;
- **stale**: entries exist for this name but for another key (new weights,
  TensorRT upgrade, other GPU, other precision) — rebuilt, with a message
  saying what changed; the old entry is removed when the new one is stored;
- **corrupt**: the entry exists but is truncated / altered / unreadable —
  removed and rebuilt, with a message.

Pure Python (hashlib + json): tested without a GPU.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

#: Bump when the engine-building recipe changes in a way the key cannot see.
RECIPE_VERSION = 1


@dataclass(frozen=True)
class EngineKey:
    """Everything a serialized engine depends on.

    Attributes:
        name: logical graph name ("encoder", "detector"): one live entry per name.
        onnx_sha256: :func:`onnx_sha256` of the graph + its external weight files.
        trt_version: ``tensorrt.__version__``.
        gpu_name: CUDA device name (e.g. "NVIDIA H100 80GB HBM3").
        precision: "fp16" or "fp32".
        profile: optimization-profile shapes, as text (min/opt/max per input).
    """

    name: str
    onnx_sha256: str
    trt_version: str
    gpu_name: str
    precision: str
    profile: str = ""

    def digest(self) -> str:
        """16 hex chars identifying this key (plus the recipe version)."""
        text = json.dumps({**asdict(self), "recipe": RECIPE_VERSION}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def differences(self, other: "EngineKey") -> list[str]:
        """Human-readable fields where ``other`` differs from self ("precision fp32 -> fp16")."""
        out = []
        for f in fields(self):
            a, b = getattr(other, f.name), getattr(self, f.name)
            if a != b:
                short = (lambda s: s[:12]) if f.name == "onnx_sha256" else (lambda s: s)
                out.append(f"{f.name} {short(a)!s} -> {short(b)!s}")
        return out


@dataclass(frozen=True)
class Lookup:
    """Result of :meth:`EngineCache.lookup`.

    Attributes:
        status: "hit" | "miss" | "stale" | "corrupt".
        engine: the serialized engine bytes on a hit, else None.
        message: one line for the user (empty on a hit or a plain miss).
    """

    status: str
    engine: bytes | None = None
    message: str = ""


def onnx_sha256(path: str | Path) -> str:
    """sha256 over an ONNX file and, in sorted order, the external data files next to it.

    The weights of a dynamo export live in ``<name>.onnx.data``: a change of
    weights alone must change the key, so those bytes are hashed too.
    """
    path = Path(path)
    h = hashlib.sha256()
    _hash_file(h, path)
    for extra in sorted(_external_files(path)):
        h.update(extra.name.encode())
        _hash_file(h, extra)
    return h.hexdigest()


def _external_files(path: Path) -> set[Path]:
    found = {path.with_name(path.name + ".data")}  # the exporter's default location
    try:
        import onnx
        model = onnx.load(str(path), load_external_data=False)
    except Exception:  # no onnx here, or not parseable: keep the default location only
        return {p for p in found if p.is_file()}
    for tensor in model.graph.initializer:
        for entry in tensor.external_data:
            if entry.key == "location":
                found.add(path.parent / entry.value)
    return {p for p in found if p.is_file()}


def _hash_file(h, path: Path) -> None:
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)


class EngineCache:
    """A directory of serialized engines keyed by :class:`EngineKey`.

    Args:
        root: cache directory (created on first store).
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).expanduser()

    def path_for(self, key: EngineKey) -> Path:
        return self.root / f"{key.name}-{key.digest()}.engine"

    def timing_cache_path(self, trt_version: str, gpu_name: str) -> Path:
        """Where the builder's timing cache for this TensorRT + GPU lives (shared by graphs)."""
        tag = hashlib.sha256(f"{trt_version}|{gpu_name}".encode()).hexdigest()[:12]
        return self.root / f"timing-{tag}.cache"

    def lookup(self, key: EngineKey) -> Lookup:
        """Find the engine for ``key``; see the module docstring for the four outcomes."""
        path = self.path_for(key)
        meta_path = path.with_suffix(".json")
        if path.is_file() and meta_path.is_file():
            try:
                meta = json.loads(meta_path.read_text())
                data = path.read_bytes()
            except (OSError, ValueError) as exc:
                return self._corrupt(key, f"unreadable ({exc.__class__.__name__})")
            if meta.get("key") != asdict(key):
                return self._corrupt(key, "its sidecar names another key")
            if len(data) != meta.get("bytes") or hashlib.sha256(data).hexdigest() != meta.get(
                    "engine_sha256"):
                return self._corrupt(key, f"{len(data)} bytes do not match the "
                                          f"{meta.get('bytes')} bytes stored")
            return Lookup("hit", data)
        if path.is_file() or meta_path.is_file():
            return self._corrupt(key, "half an entry (engine or sidecar missing)")
        others = self._entries(key.name)
        if others:
            what = ", ".join(key.differences(others[0])) or "unknown change"
            return Lookup("stale", None, f"TensorRT engine cache: the cached {key.name} engine "
                                         f"was built for another setup ({what}); rebuilding")
        return Lookup("miss")

    def invalidate(self, key: EngineKey, reason: str) -> str:
        """Remove ``key``'s entry (e.g. TensorRT could not deserialize it); returns the message."""
        return self._corrupt(key, reason).message

    def store(self, key: EngineKey, engine: bytes) -> Path:
        """Write ``engine`` for ``key`` atomically; drop other entries of the same name."""
        self.root.mkdir(parents=True, exist_ok=True)
        path = self.path_for(key)
        meta = {"key": asdict(key), "bytes": len(engine),
                "engine_sha256": hashlib.sha256(engine).hexdigest(),
                "recipe": RECIPE_VERSION, "created": time.strftime("%Y-%m-%dT%H:%M:%S")}
        _atomic_write(path, engine)
        _atomic_write(path.with_suffix(".json"), json.dumps(meta, indent=1).encode())
        for other in self._entries(key.name):
            if other != key:
                self._remove(other)
        return path

    # --- internals ----------------------------------------------------------------------
    def _entries(self, name: str) -> list[EngineKey]:
        keys = []
        if not self.root.is_dir():
            return keys
        for meta_path in sorted(self.root.glob(f"{name}-*.json")):
            try:
                k = EngineKey(**json.loads(meta_path.read_text())["key"])
            except (OSError, ValueError, KeyError, TypeError):
                continue
            if k.name == name:
                keys.append(k)
        return keys

    def _remove(self, key: EngineKey) -> None:
        path = self.path_for(key)
        for p in (path, path.with_suffix(".json")):
            try:
                p.unlink()
            except FileNotFoundError:
                pass

    def _corrupt(self, key: EngineKey, why: str) -> Lookup:
        self._remove(key)
        return Lookup("corrupt", None, f"TensorRT engine cache: the cached {key.name} engine at "
                                       f"{self.path_for(key)} is corrupt ({why}); removed, "
                                       "rebuilding")


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, path)

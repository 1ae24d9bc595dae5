"""TensorRT engine cache: keying, hits, stale and corrupt entries, rebuild with a message —
with fake build / deserialize functions (no GPU needed)."""
from __future__ import annotations

import json
from dataclasses import replace

import pytest

from engine.backends import BackendError, BackendUnavailable
from engine.backends.cache import EngineCache, EngineKey, onnx_sha256
from engine.backends.tensorrt import TensorRTBackend, available, load_or_build, profile_text

KEY = EngineKey("detector", "ab" * 32, "11.4.0.106", "NVIDIA H100 80GB HBM3", "fp16",
                "features:1x256x128")


class FakeTRT:
    """Counts builds; 'deserializes' bytes that start with ENGINE, rejects others."""

    def __init__(self) -> None:
        self.builds = 0
        self.log: list[str] = []

    def build(self) -> bytes:
        self.builds += 1
        return b"ENGINE" + bytes(range(200)) * 5

    @staticmethod
    def deserialize(data: bytes):
        return ("engine", len(data)) if data.startswith(b"ENGINE") else None

    def load(self, cache: EngineCache, key: EngineKey = KEY):
        return load_or_build(cache, key, self.build, self.deserialize, self.log.append)


@pytest.mark.parametrize("field, value", [("onnx_sha256", "cd" * 32), ("trt_version", "10.13.0"),
                                          ("gpu_name", "NVIDIA L4"), ("precision", "fp32"),
                                          ("profile", "features:1x512x128")])
def test_every_key_field_changes_the_digest(field, value):
    other = replace(KEY, **{field: value})
    assert other.digest() != KEY.digest() and len(KEY.digest()) == 16
    assert KEY.digest() == replace(KEY).digest()  # deterministic
    assert any(d.startswith(field) for d in other.differences(KEY))


def test_second_start_loads_from_cache(tmp_path):
    fake = FakeTRT()
    cache = EngineCache(tmp_path)
    assert cache.lookup(KEY).status == "miss"
    engine, how = fake.load(cache)
    assert how == "built" and fake.builds == 1 and engine[0] == "engine"
    assert any("built the fp16 detector engine" in m for m in fake.log)
    engine2, how2 = fake.load(cache)
    assert how2 == "cache" and fake.builds == 1 and engine2 == engine
    assert cache.lookup(KEY).status == "hit"


@pytest.mark.parametrize("damage", ["truncate", "flip", "sidecar", "no_sidecar", "no_engine"])
def test_corrupt_entry_is_rebuilt_with_message(tmp_path, damage):
    fake = FakeTRT()
    cache = EngineCache(tmp_path)
    fake.load(cache)
    path = cache.path_for(KEY)
    meta = path.with_suffix(".json")
    if damage == "truncate":
        path.write_bytes(path.read_bytes()[:100])
    elif damage == "flip":
        data = bytearray(path.read_bytes())
        data[50] ^= 0xFF
        path.write_bytes(bytes(data))
    elif damage == "sidecar":
        meta.write_text("{not json")
    elif damage == "no_sidecar":
        meta.unlink()
    else:
        path.unlink()
    found = cache.lookup(KEY)
    assert found.status == "corrupt"
    assert "corrupt" in found.message and "rebuilding" in found.message
    assert not path.exists() and not meta.exists()  # removed
    _, how = fake.load(cache)
    assert how == "built" and fake.builds == 2
    assert cache.lookup(KEY).status == "hit"


def test_engine_tensorrt_rejects_is_invalidated_and_rebuilt(tmp_path):
    fake = FakeTRT()
    cache = EngineCache(tmp_path)
    cache.store(KEY, b"OLD-FORMAT-ENGINE")  # intact on disk, but TensorRT cannot load it
    engine, how = fake.load(cache)
    assert how == "built" and fake.builds == 1 and engine is not None
    assert any("could not deserialize" in m for m in fake.log)


@pytest.mark.parametrize("field, value", [("trt_version", "10.13.0"), ("precision", "fp32"),
                                          ("onnx_sha256", "cd" * 32)])
def test_stale_entry_says_what_changed_and_is_replaced(tmp_path, field, value):
    fake = FakeTRT()
    cache = EngineCache(tmp_path)
    old = replace(KEY, **{field: value})
    fake.load(cache, old)
    found = cache.lookup(KEY)
    assert found.status == "stale" and field in found.message and "rebuilding" in found.message
    fake.load(cache, KEY)
    assert not cache.path_for(old).exists()  # the superseded engine is gone
    assert cache.lookup(KEY).status == "hit"
    names = sorted(p.name for p in tmp_path.iterdir())
    entry = cache.path_for(KEY)
    assert names == sorted([entry.name, entry.with_suffix(".json").name])


def test_other_graphs_are_kept(tmp_path):
    fake = FakeTRT()
    cache = EngineCache(tmp_path)
    enc = replace(KEY, name="encoder")
    fake.load(cache, enc)
    fake.load(cache, KEY)
    assert cache.lookup(enc).status == "hit" and cache.lookup(KEY).status == "hit"


def test_sidecar_records_key(tmp_path):
    cache = EngineCache(tmp_path)
    path = cache.store(KEY, b"ENGINE-bytes")
    meta = json.loads(path.with_suffix(".json").read_text())
    assert meta["key"]["gpu_name"] == KEY.gpu_name and meta["bytes"] == len(b"ENGINE-bytes")


def test_timing_cache_path_depends_on_version_and_gpu(tmp_path):
    cache = EngineCache(tmp_path)
    a = cache.timing_cache_path("11.4.0", "H100")
    assert a == cache.timing_cache_path("11.4.0", "H100")
    assert a != cache.timing_cache_path("11.4.0", "L4") != cache.timing_cache_path("10.13", "H100")


def test_onnx_sha256_covers_external_weights(tmp_path):
    graph = tmp_path / "m.onnx"
    graph.write_bytes(b"graph-bytes")
    base = onnx_sha256(graph)
    data = tmp_path / "m.onnx.data"
    data.write_bytes(b"\x00" * 64)
    with_weights = onnx_sha256(graph)
    data.write_bytes(b"\x01" + b"\x00" * 63)  # new weights, same graph file
    assert len({base, with_weights, onnx_sha256(graph)}) == 3


def test_profile_text_is_canonical():
    a = profile_text({"valid": ((1,), (1,), (32,)), "flow": ((1, 3, 8, 8),) * 3})
    b = profile_text({"flow": ((1, 3, 8, 8),) * 3, "valid": ((1,), (1,), (32,))})
    assert a == b and "flow:1x3x8x8/1x3x8x8/1x3x8x8" in a


def test_tensorrt_backend_without_tensorrt(tmp_path):
    ok, why = available()
    if ok:
        pytest.skip("TensorRT and a GPU are present here")
    assert why
    onnx_file = tmp_path / "m.onnx"
    onnx_file.write_bytes(b"x")
    with pytest.raises(BackendUnavailable) as err:
        TensorRTBackend(onnx_file, tmp_path / "cache").activate()
    msg = str(err.value)
    assert "\n" not in msg and "gpu" in msg and "--engine onnxruntime" in msg
    assert isinstance(err.value, BackendError)


@pytest.mark.parametrize("kwargs, name", [({"precision": "int8"}, "precision"),
                                          ({"workspace_mb": 0}, "workspace_mb")])
def test_tensorrt_argument_checks(tmp_path, kwargs, name):
    with pytest.raises(ValueError, match=name):
        TensorRTBackend(tmp_path / "m.onnx", tmp_path, **kwargs)

"""`make gpu-check`: the prepared check to run on an NVIDIA machine.

It reports what it finds and what it would check. On a machine without an
NVIDIA GPU it prints one clear "no GPU" line and exits 0. The engine-backend
work (TensorRT build, parity, latency per backend) plugs into :data:`CHECKS`.
"""
from __future__ import annotations

import shutil
import subprocess
import sys

#: What a full GPU check covers, in order.
CHECKS = (
    "torch CUDA available, device name and capability",
    "ONNX Runtime providers (CUDA / TensorRT execution providers if installed)",
    "TensorRT Python package importable; FP16 engine build from the exported ONNX graphs",
    "parity TensorRT FP16 vs torch (<= 1e-2 on scores, same decoded events on the demo clip)",
    "latency per backend: encoder per frame, detector per hop (p50 / p99)",
)


def gpu_present() -> tuple[bool, str]:
    """Whether an NVIDIA GPU is visible, and how we know."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return False, "nvidia-smi not found"
    try:
        out = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, f"nvidia-smi failed: {exc}"
    gpus = [line for line in out.stdout.splitlines() if line.startswith("GPU")]
    return (bool(gpus), gpus[0] if gpus else "nvidia-smi lists no GPU")


def main() -> int:
    present, why = gpu_present()
    print("gpu-check would verify:")
    for item in CHECKS:
        print(f"  - {item}")
    if not present:
        print(f"gpu-check: no GPU ({why}); nothing to run here. OK.")
        return 0
    print(f"gpu-check: found {why}")
    try:
        import torch
        print(f"torch {torch.__version__}: cuda available = {torch.cuda.is_available()}")
        if torch.cuda.is_available():
            print(f"  device: {torch.cuda.get_device_name(0)}")
    except ImportError as exc:
        print(f"torch not importable: {exc}")
    print("gpu-check: backend checks are not built yet (engine backends issue).")
    return 0


if __name__ == "__main__":
    sys.exit(main())

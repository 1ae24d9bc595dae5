"""Incremental optical flow of the aligned face (design §2, issue 4).

For each new frame: OpenCV DIS flow from the aligned crop at t − Δ to the crop
at t, computed once and never again; the reference is the crop of the same
track whose **capture time** is nearest t − Δ (not "k frames ago"), so a live
camera that drops frames does not change the motion scale.

Output (``FlowFrame.flow``, 3×S'×S' float16, S' = ``cfg.flow_size``):
  0. u — horizontal motion, in pixels of the S×S aligned crop (``cfg.crop_size``),
     per Δ: the flow is multiplied by Δ / (t − t_ref), so a reference a little
     off Δ still gives the motion over exactly Δ. Positive = towards the
     right of the image.
  1. v — vertical motion, same units, positive = down.
  2. optical strain magnitude sqrt(εxx² + εyy² + 2·εxy²) of (u, v), with
     ε = ½(∇w + ∇wᵀ) taken with respect to crop pixels (dimensionless).
Head motion is compensated first: the median flow of the rigid nose-bridge
region (``stream.align.REGIONS["nose"]``) is subtracted from (u, v), which
removes what alignment left of the rigid motion.

Frames with no face, or whose track has no crop within ``flow_dt_tol``·Δ of
t − Δ yet (the first Δ of a track), give ``valid=False`` and zeros.
"""
from __future__ import annotations

from collections import deque

import cv2
import numpy as np

from engine.config import StreamConfig
from stream.align import region_slices
from engine.contracts import FaceObs, FlowFrame

_PRESETS = {"ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST,
            "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
            "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM}


def optical_strain(u: np.ndarray, v: np.ndarray, spacing: float = 1.0) -> np.ndarray:
    """Strain magnitude of a flow field.

    Args:
        u, v: H×W flow components (same units as ``spacing``).
        spacing: distance between neighbouring samples, in the units of u, v.

    Returns:
        H×W float32 sqrt(εxx² + εyy² + 2·εxy²).
    """
    du_dy, du_dx = np.gradient(u, spacing)
    dv_dy, dv_dx = np.gradient(v, spacing)
    exy = 0.5 * (du_dy + dv_dx)
    return np.sqrt(du_dx ** 2 + dv_dy ** 2 + 2 * exy ** 2).astype(np.float32)


class FlowStage:
    """Stateful flow stage: ``update(obs, index, t_capture) -> FlowFrame`` every frame.

    Keeps, per track, the crops of the last ~Δ·(1 + flow_dt_tol) seconds.

    Args:
        cfg: stream settings (crop_size, flow_size, flow_dt_s, flow_dt_tol, flow_preset).
    """

    #: Tracks not updated for this long (seconds, beyond the history span) are forgotten.
    FORGET_S = 2.0

    def __init__(self, cfg: StreamConfig | None = None) -> None:
        self.cfg = cfg or StreamConfig()
        self._dis = cv2.DISOpticalFlow_create(_PRESETS[self.cfg.flow_preset])
        self._hist: dict[int, deque[tuple[float, int, np.ndarray]]] = {}
        self._last_t: dict[int, float] = {}
        self._span = self.cfg.flow_dt_s * (1 + self.cfg.flow_dt_tol)
        s = self.cfg.crop_size
        self._nose = region_slices("nose", s)
        # Coordinates (crop pixels, from the nose-region centre) of the nose region's
        # pixels and of the S'×S' output cells, for the rigid-motion model.
        rows, cols = self._nose
        cy, cx = (rows.start + rows.stop - 1) / 2, (cols.start + cols.stop - 1) / 2
        gy, gx = np.mgrid[rows, cols].astype(np.float64)
        x, y = (gx - cx).ravel(), (gy - cy).ravel()
        one, zero = np.ones_like(x), np.zeros_like(x)
        design = np.concatenate([np.stack([one, zero, x, -y], 1),
                                 np.stack([zero, one, y, x], 1)])  # (2·h·w)×4
        self._pinv = np.linalg.pinv(design)  # 4×(2·h·w)
        n = self.cfg.flow_size
        centres = (np.arange(n) + 0.5) * (s / n) - 0.5  # S'-cell centres in crop pixels
        self._sy, self._sx = np.meshgrid(centres - cy, centres - cx, indexing="ij")  # S'×S'
        #: (index, t_capture) of the reference used by the last valid update, else None.
        self.last_reference: tuple[int, float] | None = None

    def reset(self) -> None:
        """Forget every track's history."""
        self._hist.clear()
        self._last_t.clear()
        self.last_reference = None

    def _invalid(self, index: int, t: float) -> FlowFrame:
        n = self.cfg.flow_size
        self.last_reference = None
        return FlowFrame(index=index, t_capture=t, flow=np.zeros((3, n, n), np.float16),
                         valid=False, track_id=-1)

    def update(self, obs: FaceObs, index: int, t_capture: float) -> FlowFrame:
        """Flow of ``obs``'s crop against its own track's crop nearest t − Δ.

        Args:
            obs: the face (usually the primary) at this frame; ``found=False`` is fine.
            index: frame index.
            t_capture: capture time, seconds (must not go backwards within a track).
        """
        t = float(t_capture)
        if not obs.found:
            return self._invalid(index, t)
        s = self.cfg.crop_size
        crop = obs.crop
        if crop is None or crop.shape != (s, s) or crop.dtype != np.uint8:
            raise ValueError(f"FlowStage.update: obs.crop must be {s}×{s} uint8 "
                             f"(cfg.crop_size), got {getattr(crop, 'dtype', None)} "
                             f"{getattr(crop, 'shape', None)}")
        tid = obs.track_id
        self._forget(t)
        hist = self._hist.setdefault(tid, deque())
        if hist and t < hist[-1][0]:
            raise ValueError(f"FlowStage.update: t_capture={t} goes back in time for track "
                             f"{tid} (last {hist[-1][0]})")
        while hist and hist[0][0] < t - self._span:
            hist.popleft()
        ref = None
        if hist:
            target = t - self.cfg.flow_dt_s
            ref = min(hist, key=lambda e: abs(e[0] - target))
            if abs(ref[0] - target) > self.cfg.flow_dt_tol * self.cfg.flow_dt_s or ref[0] >= t:
                ref = None
        hist.append((t, index, crop))
        self._last_t[tid] = t
        if ref is None:
            return self._invalid(index, t)
        flow = self._dis.calc(ref[2], crop, None)  # S×S×2, crop pixels, ref → now
        flow *= self.cfg.flow_dt_s / (t - ref[0])  # motion over exactly Δ
        a, b, sc, rot = self._rigid_params(flow)  # head motion left over by the alignment
        n = self.cfg.flow_size
        small = cv2.resize(flow, (n, n), interpolation=cv2.INTER_AREA)  # S'×S'×2, units kept
        # Area averaging of a linear field = the field at cell centres: subtract it there.
        u = small[..., 0] - (a + sc * self._sx - rot * self._sy)
        v = small[..., 1] - (b + rot * self._sx + sc * self._sy)
        out = np.empty((3, n, n), np.float16)
        out[0], out[1] = u, v
        out[2] = optical_strain(u, v, spacing=s / n)
        self.last_reference = (ref[1], ref[0])
        return FlowFrame(index=index, t_capture=t, flow=out, valid=True, track_id=tid)

    def _rigid_params(self, flow: np.ndarray) -> np.ndarray:
        """Similarity motion (a, b, s, r) fitted to the rigid nose region, least squares.

        A translation alone leaves the rotation/scale error of the alignment,
        which grows with distance from the nose (mouth, brows); the model
        u = a + s·x − r·y, v = b + r·x + s·y (x, y: crop pixels from the
        region centre) removes it too. The design matrix is fixed, so its
        pseudo-inverse is precomputed.
        """
        rows, cols = self._nose
        f = flow[rows, cols]  # h×w×2
        return self._pinv @ np.concatenate([f[..., 0].ravel(), f[..., 1].ravel()])

    def _forget(self, t: float) -> None:
        stale = [k for k, last in self._last_t.items() if t - last > self._span + self.FORGET_S]
        for k in stale:
            del self._hist[k], self._last_t[k]

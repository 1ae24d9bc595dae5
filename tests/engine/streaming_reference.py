"""A reference streaming loop in plain torch, for parity tests of ``engine.streaming``.

Test code only: the product's one streaming schedule is
:class:`engine.streaming.StreamingDetector`; this loop recomputes the same
thing the slow, obvious way (a torch ring shifted per frame) so the tests can
hold the two to the same outputs.
"""
from __future__ import annotations

import numpy as np
import torch

from engine.decode import OUTPUT_KEYS
from engine.gain import FlowGain
from engine.model import FEDN


class StreamingFEDN:
    """Reference streaming loop in torch: one frame in, the detector every ``hop`` frames.

    ``push(flow, valid)`` encodes the frame into the ring; when the frame ends a
    hop (``(index + 1) % hop == 0``) it runs the detector on the ring and returns
    ``(outputs, frame_offset)``: outputs of the window (numpy, batch 1) and the
    stream index of window position 0. The hop is responsible for window positions
    ``window - hop .. window - 1``. Otherwise returns None.
    """

    def __init__(self, model: FEDN) -> None:
        self.model = model.eval()
        self.cfg = model.cfg
        with torch.no_grad():
            self.ring = model.encoder.padding(self.cfg.window)  # (window, F): no face yet
        self.count = 0
        self.flow_shape: tuple[int, ...] = ()
        self.gain = FlowGain(self.cfg)  # input gain, as engine.streaming applies it

    @torch.no_grad()
    def push(self, flow: np.ndarray | torch.Tensor,
             valid: bool) -> tuple[dict[str, np.ndarray], int] | None:
        flow = self.gain.apply(np.asarray(flow, dtype=np.float32), valid)
        flow_t = torch.as_tensor(flow).unsqueeze(0)  # (3, S, S) -> (1, 3, S, S)
        self.flow_shape = tuple(flow_t.shape[1:])
        feat = self.model.encoder(flow_t, torch.tensor([float(valid)]))  # (1, F)
        self.ring = torch.cat([self.ring[1:], feat], dim=0)  # (window, F), oldest dropped
        self.count += 1
        if self.count % self.cfg.hop:
            return None
        out = self.model.detector(self.ring.unsqueeze(0))  # (window, F) -> (1, window, F)
        return ({k: out[k].numpy() for k in OUTPUT_KEYS}, self.count - self.cfg.window)

    def flush(self) -> tuple[dict[str, np.ndarray], int, int] | None:
        """End of stream: complete the last partial hop with "no face" frames.

        Returns ``(outputs, frame_offset, n_real)`` where only the first ``n_real``
        of the hop's ``hop`` responsible positions are real frames (outputs there
        are exact: the padding lies in their future), or None if the stream ended
        on a hop boundary. Call it once, at the end: ``count`` still says how many
        real frames were pushed, but the ring now holds the padding.
        """
        n_real = self.count % self.cfg.hop
        if n_real == 0:
            return None
        count, flow = self.count, np.zeros(self.flow_shape, np.float32)
        res = None
        while res is None:
            res = self.push(flow, False)
        self.count = count
        return res[0], res[1], n_real

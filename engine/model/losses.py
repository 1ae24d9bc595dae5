"""The joint objective: focal kind loss + 1D DIoU intervals + emotion CE + active-head losses.

Spotting and recognition are trained together in one sum (the paper's point
against two-stage pipelines). Point losses are normalised by the number of
positive points, active-head losses by the frames they apply to.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from engine.config import ModelConfig
from engine.model.targets import Targets


def sigmoid_focal_loss(logits: torch.Tensor, targets: torch.Tensor, alpha: float = 0.25,
                       gamma: float = 2.0) -> torch.Tensor:
    """Elementwise sigmoid focal loss (RetinaNet); same shape as ``logits``."""
    p = torch.sigmoid(logits)
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p_t = p * targets + (1 - p) * (1 - targets)
    loss = ce * (1 - p_t) ** gamma
    if alpha >= 0:
        loss = (alpha * targets + (1 - alpha) * (1 - targets)) * loss
    return loss


def diou_loss_1d(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """1D distance-IoU loss between intervals given as frames back from the same point.

    Args:
        pred, target: (N, 2) non-negative (d_onset, d_offset); the interval is
            [-d_onset, -d_offset] in inclusive frames, i.e. [-d_on, -d_off + 1).

    Returns:
        (N,) ``1 - IoU + (centre distance / enclosing length)**2``, in [0, 2).
    """
    s_p, e_p = -pred[:, 0], -pred[:, 1] + 1  # (N, 2) -> 2 × (N,)
    s_t, e_t = -target[:, 0], -target[:, 1] + 1
    inter = (torch.minimum(e_p, e_t) - torch.maximum(s_p, s_t)).clamp(min=0)
    union = (e_p - s_p) + (e_t - s_t) - inter
    iou = inter / union.clamp(min=1e-6)
    enclose = (torch.maximum(e_p, e_t) - torch.minimum(s_p, s_t)).clamp(min=1e-6)
    centre = ((s_p + e_p) - (s_t + e_t)) / 2
    return 1 - iou + (centre / enclose) ** 2


class FEDNLoss(nn.Module):
    """``loss(outputs, targets) -> (total, parts)``; parts are detached floats for logging.

    Parts: ``cls`` (focal, all points and kinds), ``reg`` (DIoU, positives),
    ``emo`` (CE, positives), ``act`` (BCE, all frames), ``act_emo`` (CE, active
    frames), ``act_since`` (|log1p(pred) - log1p(true)|, active frames).
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg

    def forward(self, outputs: dict[str, torch.Tensor],
                targets: Targets) -> tuple[torch.Tensor, dict[str, float]]:
        cfg = self.cfg
        if outputs["cls_logits"].shape != targets.cls.shape:
            raise ValueError(f"FEDNLoss: outputs['cls_logits'] {tuple(outputs['cls_logits'].shape)}"
                             f" vs targets.cls {tuple(targets.cls.shape)}: window length or "
                             f"levels differ")
        pos = targets.pos  # (B, P)
        norm = pos.sum().clamp(min=1).float()
        cls = sigmoid_focal_loss(outputs["cls_logits"], targets.cls, cfg.focal_alpha,
                                 cfg.focal_gamma).sum() / norm
        reg = diou_loss_1d(outputs["reg"][pos], targets.reg[pos]).sum() / norm  # (n_pos, 2)
        emo = F.cross_entropy(outputs["emo_logits"][pos], targets.emo[pos],
                              reduction="sum") / norm
        act = F.binary_cross_entropy_with_logits(outputs["act_logits"], targets.act)
        on = targets.act_emo >= 0  # (B, T)
        n_on = on.sum().clamp(min=1).float()
        act_emo = F.cross_entropy(outputs["act_emo_logits"][on], targets.act_emo[on],
                                  reduction="sum") / n_on
        act_since = (torch.log1p(outputs["act_since"][on])
                     - torch.log1p(targets.act_since[on])).abs().sum() / n_on
        total = (cfg.loss_cls * cls + cfg.loss_reg * reg + cfg.loss_emo * emo
                 + cfg.loss_act * (act + act_emo + act_since))
        parts = {"total": total, "cls": cls, "reg": reg, "emo": emo, "act": act,
                 "act_emo": act_emo, "act_since": act_since}
        return total, {k: float(v.detach()) for k, v in parts.items()}

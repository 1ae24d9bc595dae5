"""FEDN in PyTorch, made causal for streaming (design §4).

encoder.py (per-frame flow CNN) → attention.py (causal attention, segment fusion)
→ neck.py (temporal pyramid) → head.py (decoupled heads) → fedn.py (assembly); targets.py + losses.py train it; engine/decode.py decodes it.
"""
from engine.model.encoder import FlowEncoder
from engine.model.fedn import FEDN, DetectorOutputs, TemporalDetector
from engine.model.losses import FEDNLoss
from engine.model.targets import GTInterval, Targets, assign_targets

__all__ = ["FlowEncoder", "TemporalDetector", "DetectorOutputs", "FEDN", "FEDNLoss", "GTInterval",
           "Targets", "assign_targets"]

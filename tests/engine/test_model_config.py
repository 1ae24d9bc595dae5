"""ModelConfig validation and derived values."""
from __future__ import annotations

from dataclasses import asdict

import pytest

from engine.config import ModelConfig, override


def test_defaults_are_valid_and_derived_values():
    cfg = ModelConfig()
    assert cfg.max_stride == 2 ** (cfg.levels - 1)
    assert len(cfg.lookback) == cfg.levels
    assert list(cfg.lookback) == sorted(cfg.lookback)
    assert max(cfg.lookback) + 1 <= cfg.window - cfg.hop
    ranges = cfg.level_ranges
    assert ranges[0][0] == 0 and ranges[-1][1] == float("inf")
    assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:]))
    assert all(cfg.level_margin(l) >= 2 ** l - 1 for l in range(cfg.levels))


@pytest.mark.parametrize("values, needle", [
    ({"hop": 4}, "hop"),  # not a multiple of 2**(levels-1)
    ({"hop": 512}, "hop"),
    ({"window": 100}, "window"),
    ({"attn_window": 40}, "looks back"),
    ({"window": 64}, "looks back"),
    ({"channels": 30}, "heads"),
    ({"dropout": 1.0}, "dropout"),
    ({"focal_alpha": 1.5}, "focal_alpha"),
    ({"score_thresh": -0.1}, "score_thresh"),
    ({"nms_sigma": 0.0}, "nms_sigma"),
    ({"enc_channels": ()}, "enc_channels"),
    ({"enc_channels": (8, 0)}, "enc_channels"),
    ({"kinds": ("micro", "micro")}, "kinds"),
    ({"emotions": ()}, "emotions"),
    ({"levels": 0}, "levels"),
    ({"end_margin": -1}, "end_margin"),
    ({"loss_reg": -1.0}, "loss_reg"),
])
def test_bad_values_raise_naming_the_field(values, needle):
    with pytest.raises(ValueError, match=needle):
        override(ModelConfig(), values)


def test_yaml_lists_become_tuples_and_unknown_keys_fail():
    cfg = override(ModelConfig(), {"enc_channels": [8, 16], "kinds": ["micro", "macro"]})
    assert cfg.enc_channels == (8, 16) and isinstance(cfg.kinds, tuple)
    hash(cfg)  # frozen and hashable
    with pytest.raises(ValueError, match="unknown ModelConfig keys"):
        override(ModelConfig(), {"windw": 128})


def test_a_smaller_valid_configuration():
    cfg = ModelConfig(window=64, hop=8, segment=4, attn_window=6, levels=3)
    assert cfg.lookback == (2 * 3 + 5, 2 * 3 + 5 + 1 + 10, 2 * 3 + 5 + 1 + 10 + 2 + 20)


def test_defaults_are_the_shipped_model_key_by_key():
    import torch

    from engine.checkpoint import shipped_weights
    path = shipped_weights()
    assert path is not None and path.name == "fedn_default.pt"
    stored = torch.load(path, map_location="cpu", weights_only=True)["config"]
    defaults = asdict(ModelConfig())
    assert set(stored) == set(defaults)
    differ = {k: (v, defaults[k]) for k, v in stored.items()
              if (tuple(v) if isinstance(v, list) else v) != defaults[k]}
    assert not differ


def test_a_checkpoint_from_before_the_input_gain_loads_with_the_gain_off(tmp_path):
    """Defaults have the gain on (the shipped model); a config without gain_ref predates it."""
    import torch

    from engine.model import FEDN
    from engine.checkpoint import load_model
    cfg = ModelConfig(window=64, hop=8, segment=4, attn_window=6, levels=3, channels=32,
                      feat_dim=24, enc_channels=(8, 16), enc_grid=2, gain_ref=0.0)
    old = {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(cfg).items()
           if not k.startswith("gain_")}
    torch.save({"model": FEDN(cfg).state_dict(), "config": old}, tmp_path / "old.pt")
    assert load_model(tmp_path / "old.pt", log=lambda m: None).cfg.gain_ref == 0.0
    torch.save({"model": FEDN(cfg).state_dict(), "config": {**old, "gain_ref": 0.3}},
               tmp_path / "new.pt")
    assert load_model(tmp_path / "new.pt", log=lambda m: None).cfg.gain_ref == 0.3

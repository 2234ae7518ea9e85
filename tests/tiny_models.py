"""Tiny randomly initialised backbones built from configs, for testing model code without downloads.

These are never trained models: they exist so that loading, shapes, batching and training steps can be
tested in milliseconds.
"""

from __future__ import annotations

import json
from pathlib import Path

from worker.detectors.clip_backbone import ClipBackboneConfig

TINY_CLIP = {
    "embed_dim": 32,
    "quick_gelu": True,
    "vision_cfg": {"image_size": 224, "layers": 2, "width": 64, "patch_size": 32, "head_width": 32},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}


def tiny_clip(directory: Path, seed: int = 0, name: str = "tiny-clip-test") -> ClipBackboneConfig:
    """Write a tiny open_clip architecture config and random weights; return a backbone config for them."""
    import open_clip
    import torch

    directory.mkdir(parents=True, exist_ok=True)
    config_path = directory / f"{name}.json"
    config_path.write_text(json.dumps(TINY_CLIP))
    open_clip.add_model_config(config_path)
    torch.manual_seed(seed)
    model = open_clip.create_model(name, pretrained=None)
    weights = directory / f"{name}.pt"
    torch.save(model.state_dict(), weights)
    return ClipBackboneConfig(model=name, weights=str(weights), model_config_path=str(config_path))

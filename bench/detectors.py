"""Detector throughput on CPU: items/second, batching gain, and preprocessing vs forward share.

Backbones are the real weights of dfwnet and dfwmeso (shipped) and MesoNet, and tiny randomly initialised
CLIP / ViT models built here (the point is the serving path's overheads, not accuracy; a tiny backbone
makes preprocessing look relatively expensive, which is exactly what this measures). Prints ratios measured in
one run and writes JSON.

    python bench/detectors.py [--models ../shared/models] [--batch 32] [--out bench-detectors.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.tiny_models import tiny_clip
from worker.detectors import Detector, create_detector
from worker.detectors.base import TrainableDetector
from worker.models import ModelStore
from worker.settings import WorkerSettings


def best_of(repeats: int, action: Callable[[], Any]) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
    return min(times)


def tiny_vit(directory: Path) -> Path:
    from transformers import ViTConfig, ViTForImageClassification, ViTImageProcessor

    config = ViTConfig(
        image_size=224,
        patch_size=32,
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=128,
        num_labels=2,
        id2label={0: "real", 1: "fake"},
        label2id={"real": 0, "fake": 1},
    )
    ViTForImageClassification(config).save_pretrained(directory)
    ViTImageProcessor(size={"height": 224, "width": 224}).save_pretrained(directory)
    return directory


def build(work: Path, models: Path) -> dict[str, Detector]:
    store = ModelStore(models, allow_fetch=False)
    backbone = tiny_clip(work / "clip").model_dump()
    settings = WorkerSettings(
        model_dir=models,
        clip_linear={"backbone": backbone},
        clip_prompt={"backbone": backbone},
        hf_classifier={"model": str(tiny_vit(work / "vit"))},
    )
    detectors: dict[str, Detector] = {
        "dfwnet": create_detector("dfwnet", settings.dfwnet, store),  # the shipped weights
        "dfwmeso": create_detector("dfwmeso", settings.dfwmeso, store),  # the shipped weights
        "meso4": create_detector("meso4", settings.meso4, store),
    }
    for name in ("clip_linear", "clip_prompt"):
        detector = create_detector(name, settings.detector_config(name), store)
        assert isinstance(detector, TrainableDetector)
        detector.load_for_training(seed=0)  # tiny random backbone, fresh adapter: a speed test only
        detectors[name] = detector
    detectors["hf_classifier"] = create_detector("hf_classifier", settings.hf_classifier, store)
    for detector in detectors.values():
        detector.load()
    return detectors


def measure(detector: Detector, batch: int, repeats: int) -> dict[str, float]:
    import torch

    rng = np.random.default_rng(0)
    items = rng.integers(0, 256, (batch, detector.input_size, detector.input_size, 3), dtype=np.uint8)
    detector.predict(list(items[:2]))  # warm
    batched = best_of(repeats, lambda: detector.predict(list(items)))
    singles = best_of(repeats, lambda: [detector.predict([item]) for item in items])
    result = {
        "items_per_s_batched": batch / batched,
        "items_per_s_single": batch / singles,
        "batching_gain": singles / batched,
    }
    preprocess = getattr(detector, "preprocess", None)
    if preprocess is not None:
        with torch.inference_mode():
            pre = best_of(repeats, lambda: preprocess(items))
        result["preprocess_share"] = pre / batched
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--models", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "models"
    )
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("bench-detectors.json"))
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as work:
        detectors = build(Path(work), args.models)
        results = {name: measure(d, args.batch, args.repeats) for name, d in detectors.items()}
    print(
        f"batch {args.batch}, {args.threads} thread(s), best of {args.repeats}; tiny random CLIP/ViT"
    )
    print(
        f"{'detector':<15}{'items/s batched':>17}{'items/s single':>16}{'batching':>15}{'preprocess':>12}"
    )
    for name, r in results.items():
        share = f"{r['preprocess_share']:.1%}" if "preprocess_share" in r else "n/a"
        print(
            f"{name:<15}{r['items_per_s_batched']:>17.1f}{r['items_per_s_single']:>16.1f}"
            f"{r['batching_gain']:>14.2f}x{share:>12}"
        )
    args.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()

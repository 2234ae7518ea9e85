"""Face detector backends on dev images and video frames: faces found, images with a face, ms per image.

Both backends see the same RGB images (a seeded sample per dev source plus frames sampled from dev videos)
with the default FaceConfig (detection on frames downscaled to a 640-px long side). Prints one table
measured in one run and writes JSON.

    python bench/faces.py [--per-source 12] [--videos 4] [--out bench-faces.json]
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import sys
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from worker.faces import create_face_detector
from worker.media import probe_media, sample_frames
from worker.models import ModelStore
from worker.settings import FaceConfig, MediaLimits

SHARED = Path(__file__).resolve().parents[2] / "shared"
BACKENDS = ("yunet", "scrfd")


def load_sample(
    dev: Path, per_source: int, videos: int, frames: int, seed: int
) -> list[tuple[str, np.ndarray]]:
    with (dev / "manifest.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    rng = random.Random(seed)
    items: list[tuple[str, np.ndarray]] = []
    images: dict[str, list[dict[str, str]]] = {}
    for row in rows:
        if row["media"] == "image":
            images.setdefault(row["source"], []).append(row)
    for source in sorted(images):
        for row in rng.sample(images[source], min(per_source, len(images[source]))):
            bgr = cv2.imread(str(dev / row["path"]))
            if bgr is not None:
                items.append((source, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)))
    clips = sorted(row["path"] for row in rows if row["media"] == "video")
    limits = MediaLimits()
    for path in rng.sample(clips, min(videos, len(clips))):
        info = probe_media(dev / path, limits)
        for frame in sample_frames(dev / path, info, limits, frames).frames:
            items.append(("video_frames", frame.image))
    return items


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--shared", type=Path, default=SHARED)
    parser.add_argument("--per-source", type=int, default=12)
    parser.add_argument("--videos", type=int, default=4)
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("bench-faces.json"))
    args = parser.parse_args()
    cv2.setNumThreads(1)
    store = ModelStore(args.shared / "models", allow_fetch=False)
    items = load_sample(args.shared / "data" / "dev", args.per_source, args.videos, args.frames, args.seed)
    sources = sorted({s for s, _ in items})
    results: dict[str, dict[str, dict[str, float]]] = {}
    for backend in BACKENDS:
        detector = create_face_detector(FaceConfig(backend=backend, scrfd_threads=1), store)
        detector.load()
        detector.detect(items[0][1])  # warm
        per: dict[str, dict[str, float]] = {
            s: {"images": 0, "faces": 0, "with_face": 0, "s": 0.0} for s in sources
        }
        for source, image in items:
            start = time.perf_counter()
            faces = detector.detect(image)
            per[source]["s"] += time.perf_counter() - start
            per[source]["images"] += 1
            per[source]["faces"] += len(faces)
            per[source]["with_face"] += bool(faces)
        total = {k: sum(p[k] for p in per.values()) for k in ("images", "faces", "with_face", "s")}
        per["all"] = total
        for row in per.values():
            row["ms_per_image"] = 1000 * row.pop("s") / row["images"]
        results[backend] = per
    print(f"{len(items)} images/frames, 1 thread each, detect_long_side 640, default thresholds")
    print(
        f"{'source':<20}{'n':>5}"
        + "".join(f"{b + ' faces':>13}{b + ' >=1':>11}{b + ' ms':>10}" for b in BACKENDS)
    )
    for source in [*sources, "all"]:
        line = f"{source:<20}{results[BACKENDS[0]][source]['images']:>5.0f}"
        for backend in BACKENDS:
            r = results[backend][source]
            line += f"{r['faces']:>13.0f}{r['with_face']:>11.0f}{r['ms_per_image']:>10.1f}"
        print(line)
    speed = results["yunet"]["all"]["ms_per_image"] / results["scrfd"]["all"]["ms_per_image"]
    print(f"scrfd speed vs yunet: {speed:.2f}x")
    args.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()

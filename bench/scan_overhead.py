"""`dfw scan` end-to-end vs the sum of its raw parts, for the same files and frames (goal: <= 1.2x).

End-to-end is `Pipeline.analyze(path)` (probe, sample, faces, tracks, crops, every detector, verdict) as
`dfw scan` runs it. The raw parts are measured separately on the same frames: decode alone (the sampler
call), face detection alone (the face detector on the decoded frames), detector forward alone
(`predict` on the already cut crops, in the configured batch size). Best of --repeats for each, one
thread. Prints per-file times and the overall ratio; writes JSON.

    python bench/scan_overhead.py [--backend yunet] [--repeats 3] [--out bench-scan-overhead.json]
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.devset import bench_parser
from worker.faces.yunet import crop_face
from worker.media import sample_frames
from worker.pipeline import Pipeline
from worker.settings import FaceConfig, WorkerSettings

FILES = [
    "real/deepface_photos/deepface_couple.jpg",
    "real/deepface_photos/deepface_img1.jpg",
    "fake/sfhq_t2i_tiles",  # first file of the folder
    "real/utkface",
    "real/inthewild_video/itw_RealObama.mp4",
    "real/inthewild_video/itw_RealTaxi.mp4",
    "real/ffpp_video_transcoded",
]


def best_of(repeats: int, action: Callable[[], Any]) -> tuple[float, Any]:
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = action()
        times.append(time.perf_counter() - start)
    return min(times), result


def resolve(dev: Path, ref: str) -> Path:
    path = dev / ref
    return path if path.is_file() else sorted(p for p in path.iterdir() if p.is_file())[0]


def measure(pipeline: Pipeline, path: Path, repeats: int) -> dict[str, float]:
    settings = pipeline.settings
    end_to_end, analysis = best_of(repeats, lambda: pipeline.analyze(path))
    info = analysis.info
    decode, sample = best_of(
        repeats,
        lambda: sample_frames(
            path, info, settings.limits, settings.sampling.frames_per_video, method=settings.sampling.method
        ),
    )
    frames = sample.frames
    faces_s, found = best_of(
        repeats, lambda: [pipeline.face_detector.detect(f.image, f.index, f.timestamp_s) for f in frames]
    )
    images = {f.index: f.image for f in frames}
    forward = 0.0
    for detector in pipeline.detectors:
        crops = [
            crop_face(images[face.frame_index], face, detector.input_size, settings.faces.crop_margin)
            for faces in found
            for face in faces
        ]
        batches = [crops[i : i + settings.batch_size] for i in range(0, len(crops), settings.batch_size)]
        forward += best_of(repeats, lambda d=detector, b=batches: [d.predict(x) for x in b])[0]
    parts = decode + faces_s + forward
    return {
        "frames": len(frames),
        "faces": sum(len(f) for f in found),
        "end_to_end_s": end_to_end,
        "decode_s": decode,
        "faces_s": faces_s,
        "forward_s": forward,
        "parts_s": parts,
        "overhead": end_to_end / parts,
    }


def main() -> None:
    parser = bench_parser(__doc__, "bench-scan-overhead.json")
    parser.add_argument("--backend", choices=["yunet", "scrfd"], default="yunet")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    import cv2
    import torch

    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    settings = WorkerSettings(
        model_dir=args.shared / "models",
        model_fetch=False,
        device="cpu",
        detectors=args.detectors.split(","),
        faces=FaceConfig(backend=args.backend, scrfd_threads=1),
    )
    pipeline = Pipeline(settings)
    pipeline.load()
    dev = args.shared / "data" / "dev"
    paths = [resolve(dev, ref) for ref in FILES]
    pipeline.analyze(paths[0])  # warm
    results = {str(p.relative_to(dev)): measure(pipeline, p, args.repeats) for p in paths}
    detectors = ",".join(d.name for d in pipeline.detectors)
    print(f"detectors {detectors}, faces {args.backend}, 1 thread, best of {args.repeats}")
    print(
        f"{'file':<50}{'frames':>7}{'faces':>6}{'e2e ms':>9}{'decode':>9}{'faces':>8}{'fwd':>8}{'ratio':>8}"
    )
    for name, r in results.items():
        print(
            f"{name[-50:]:<50}{r['frames']:>7}{r['faces']:>6}{1000 * r['end_to_end_s']:>9.1f}"
            f"{1000 * r['decode_s']:>9.1f}{1000 * r['faces_s']:>8.1f}{1000 * r['forward_s']:>8.1f}"
            f"{r['overhead']:>7.2f}x"
        )
    total = sum(r["end_to_end_s"] for r in results.values()) / sum(r["parts_s"] for r in results.values())
    worst = max(r["overhead"] for r in results.values())
    print(f"overall end-to-end / sum of parts: {total:.2f}x (worst file {worst:.2f}x; goal <= 1.2x)")
    args.out.write_text(json.dumps({"files": results, "overall": total, "worst": worst}, indent=2) + "\n")


if __name__ == "__main__":
    main()

"""Face detection on every k-th dense frame with interpolation between vs on every frame (issue 6, part 2).
Not a test.

On the dev videos, `Pipeline.analyze` with `DFW_FACES__DETECT_EVERY=k` (and --within seconds between two
detections at most) against k=1, both with --frames sampled frames (dense: 48 frames of a 3-30 s clip).
Prints per file: face-detector calls, face-stage time (best of --repeats, alternating), the IoU of each
interpolated face with the best-matching face found by detecting that frame, and both verdicts. Writes JSON.

    python bench/detect_every.py [--every 3] [--within 1.0] [--frames 48] [--repeats 2] [--out FILE.json]
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.devset import bench_parser, dev_videos, one_thread
from worker.faces.tracking import box_iou
from worker.faces.types import Face
from worker.pipeline import Analysis, Pipeline
from worker.settings import FaceConfig, SamplingConfig, WorkerSettings


def counted(pipeline: Pipeline) -> list[int]:
    calls: list[int] = []
    original = pipeline.face_detector.detect

    def detect(image: np.ndarray, frame_index: int = 0, timestamp_s: float = 0.0) -> list[Face]:
        calls.append(frame_index)
        return original(image, frame_index, timestamp_s)

    pipeline.face_detector.detect = detect  # type: ignore[method-assign]
    return calls


def interpolated_ious(full: Analysis, sparse: Analysis) -> list[float]:
    found: dict[int, list[Face]] = {}
    for face in full.faces:
        found.setdefault(face.frame_index, []).append(face)
    return [
        max((box_iou(f.box_xyxy(), o.box_xyxy()) for o in found.get(f.frame_index, [])), default=0.0)
        for f in sparse.faces
        if not f.detected
    ]


def measure(
    pipelines: dict[int, Pipeline], calls: dict[int, list[int]], path: Path, repeats: int
) -> dict[str, Any]:
    best = {k: float("inf") for k in pipelines}
    answers: dict[int, Analysis] = {}
    for _ in range(repeats):
        for k, pipeline in pipelines.items():
            calls[k].clear()
            answers[k] = pipeline.analyze(path)
            best[k] = min(best[k], answers[k].timings["faces"])
    (one, k), (full, sparse) = pipelines, (answers[1], answers[max(pipelines)])
    ious = interpolated_ious(full, sparse)
    return {
        "frames": len(full.frames),
        "calls": {str(one): len(calls[one]), str(k): len(calls[k])},
        "faces_s": {str(one): best[one], str(k): best[k]},
        "interpolated": len(ious),
        "iou_min": min(ious, default=1.0),
        "iou_median": statistics.median(ious) if ious else 1.0,
        "ious": ious,
        "verdicts": {
            str(one): [full.verdict.label, full.verdict.score],
            str(k): [sparse.verdict.label, sparse.verdict.score],
        },
    }


def main() -> None:
    parser = bench_parser(__doc__, "bench-detect-every.json")
    parser.add_argument("--every", type=int, default=3)
    parser.add_argument("--within", type=float, default=1.0)
    parser.add_argument("--frames", type=int, default=48)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    one_thread()
    dev = args.shared / "data" / "dev"
    videos = list(dev_videos(args.shared))
    pipelines, calls = {}, {}
    for k in (1, args.every):
        settings = WorkerSettings(
            model_dir=args.shared / "models",
            model_fetch=False,
            device="cpu",
            detectors=args.detectors.split(","),
            sampling=SamplingConfig(frames_per_video=args.frames),
            faces=FaceConfig(detect_every=k, interpolate_within_s=args.within),
        )
        pipelines[k] = Pipeline(settings)
        pipelines[k].load()
        calls[k] = counted(pipelines[k])
    k = args.every
    results = {name: measure(pipelines, calls, dev / name, args.repeats) for name in videos}
    print(
        f"yunet + meso4, {args.frames} frames: detect every {k} (<= {args.within:g} s apart) vs every frame"
    )
    print(f"{'file':<46}{'calls':>9}{'faces ms':>14}{'interp':>7}{'IoU min/med':>13}  verdict (k=1 -> k={k})")
    for name, r in results.items():
        c, t, v = r["calls"], r["faces_s"], r["verdicts"]
        print(
            f"{name[-46:]:<46}{c['1']:>4}/{c[str(k)]:<4}{1000 * t['1']:>7.0f}/{1000 * t[str(k)]:<6.0f}"
            f"{r['interpolated']:>7}{r['iou_min']:>7.2f}/{r['iou_median']:.2f}"
            f"  {v['1'][0]} {v['1'][1] or 0:.3f} -> {v[str(k)][0]} {v[str(k)][1] or 0:.3f}"
        )
    ious = [i for r in results.values() for i in r["ious"]]
    calls_ratio = sum(r["calls"]["1"] for r in results.values()) / sum(
        r["calls"][str(k)] for r in results.values()
    )
    time_ratio = sum(r["faces_s"]["1"] for r in results.values()) / sum(
        r["faces_s"][str(k)] for r in results.values()
    )
    flips = [n for n, r in results.items() if r["verdicts"]["1"][0] != r["verdicts"][str(k)][0]]
    shift = max(abs((r["verdicts"]["1"][1] or 0) - (r["verdicts"][str(k)][1] or 0)) for r in results.values())
    print(f"face-detector calls: {calls_ratio:.2f}x fewer; face-stage time: {time_ratio:.2f}x less")
    print(
        f"interpolated faces: {len(ious)}, IoU with detection median {statistics.median(ious):.2f}, "
        f"10th percentile {np.percentile(ious, 10):.2f}, below 0.5: {sum(i < 0.5 for i in ious)}"
    )
    print(f"verdict labels changed: {len(flips)} of {len(results)} {flips}; largest score change {shift:.3f}")
    summary = {
        "calls_ratio": calls_ratio,
        "faces_time_ratio": time_ratio,
        "label_changes": flips,
        "max_score_change": shift,
    }
    args.out.write_text(
        json.dumps(
            {"settings": vars(args) | {"shared": None, "out": None}, "files": results, **summary}, indent=2
        )
        + "\n"
    )


if __name__ == "__main__":
    main()

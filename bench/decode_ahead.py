"""Decoding ahead in a background thread vs decoding on the analysing thread (issue 6, part 3). Not a test.

`Pipeline.analyze` with `DFW_SAMPLING__DECODE_AHEAD=2` (the default: a thread decodes the next frames while
faces and detectors work on the current one, at most 2 decoded frames waiting) against `=0` (the same
streaming code, every frame decoded on the analysing thread), on the dev videos. Runs alternate between the
two settings; each time is the best of --repeats. Checks that both give the same frames, faces, scores and
verdict. Prints per-file times and the overall ratio (without / with), writes JSON.

    python bench/decode_ahead.py [--repeats 3] [--frames 16] [--out bench-decode-ahead.json]
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.devset import bench_parser, dev_videos, one_thread
from worker.pipeline import Analysis, Pipeline
from worker.settings import SamplingConfig, WorkerSettings


def summary(analysis: Analysis) -> tuple[Any, ...]:
    faces = [(f.frame_index, f.face_index, f.track_id, f.box) for f in analysis.faces]
    scores = [(s.frame_index, s.face_index, s.detector, s.score) for s in analysis.scores]
    return analysis.frames, faces, scores, analysis.verdict


def main() -> None:
    parser = bench_parser(__doc__, "bench-decode-ahead.json")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--frames", type=int, default=16)
    args = parser.parse_args()
    one_thread()
    dev = args.shared / "data" / "dev"
    videos = list(dev_videos(args.shared))
    pipelines = {}
    for depth in (0, 2):
        sampling = SamplingConfig(frames_per_video=args.frames, decode_ahead=depth)
        settings = WorkerSettings(
            model_dir=args.shared / "models",
            model_fetch=False,
            device="cpu",
            detectors=args.detectors.split(","),
            sampling=sampling,
        )
        pipelines[depth] = Pipeline(settings)
        pipelines[depth].load()
        pipelines[depth].analyze(dev / videos[0])  # warm
    results: dict[str, dict[str, Any]] = {}
    for name in videos:
        best = {0: float("inf"), 2: float("inf")}
        answers = {}
        for _ in range(args.repeats):
            for depth, pipeline in pipelines.items():
                start = time.perf_counter()
                answers[depth] = pipeline.analyze(dev / name)
                best[depth] = min(best[depth], time.perf_counter() - start)
        same = summary(answers[0]) == summary(answers[2])
        results[name] = {"inline_s": best[0], "ahead_s": best[2], "ratio": best[0] / best[2], "same": same}
        results[name]["decode_s"] = answers[0].timings["decode"]
        results[name]["work_s"] = sum(v for k, v in answers[0].timings.items() if k != "decode")
    print(f"meso4 + yunet, {args.frames} frames, 1 torch/OpenCV thread, best of {args.repeats}, alternating")
    print(f"{'file':<50}{'inline ms':>10}{'ahead ms':>10}{'ratio':>8}  same")
    for name, r in results.items():
        print(
            f"{name[-50:]:<50}{1000 * r['inline_s']:>10.0f}{1000 * r['ahead_s']:>10.0f}"
            f"{r['ratio']:>7.2f}x  {r['same']}"
        )
    inline = sum(r["inline_s"] for r in results.values())
    ahead = sum(r["ahead_s"] for r in results.values())
    bound = sum(r["decode_s"] + r["work_s"] for r in results.values()) / sum(
        max(r["decode_s"], r["work_s"]) for r in results.values()
    )
    identical = all(r["same"] for r in results.values())
    print(f"overall inline / ahead: {inline / ahead:.2f}x (perfect overlap would give {bound:.2f}x)")
    print(f"identical frames, faces, scores and verdicts: {identical}")
    payload = {"files": results, "overall": inline / ahead, "overlap_bound": bound, "identical": identical}
    args.out.write_text(json.dumps(payload, indent=2) + "\n")


if __name__ == "__main__":
    main()

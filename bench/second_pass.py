"""The adaptive second pass on the dev videos: what it costs and where it moves uncertain scores. Not a test.

For each uncertain margin in --margins, `Pipeline.analyze` on every dev video without a second pass and
with `DFW_SAMPLING__SECOND_PASS_FRAMES=N` for each N in --extra. For the videos that were uncertain (so got
a second pass), prints the score before and after, the truth from the manifest, whether the score moved
towards it, and the analysis time with / without. Writes JSON.

    python bench/second_pass.py [--margins 0.1 0.3] [--extra 8 16] [--out bench-second-pass.json]
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.devset import bench_parser, dev_videos, one_thread
from worker.aggregate import resolved_threshold
from worker.pipeline import Pipeline
from worker.settings import AggregateConfig, SamplingConfig, WorkerSettings


def run(pipeline: Pipeline, path: Path) -> tuple[Any, float]:
    start = time.perf_counter()
    analysis = pipeline.analyze(path)
    return analysis, time.perf_counter() - start


def main() -> None:
    parser = bench_parser(__doc__, "bench-second-pass.json")
    parser.add_argument("--margins", type=float, nargs="+", default=[0.1, 0.3])
    parser.add_argument("--extra", type=int, nargs="+", default=[8, 16])
    args = parser.parse_args()
    one_thread()
    dev = args.shared / "data" / "dev"
    truth = dev_videos(args.shared)
    results: dict[str, Any] = {}
    for margin in args.margins:
        pipelines = {}
        for extra in [0, *args.extra]:
            settings = WorkerSettings(
                model_dir=args.shared / "models",
                model_fetch=False,
                device="cpu",
                detectors=args.detectors.split(","),
                sampling=SamplingConfig(second_pass_frames=extra),
                aggregate=AggregateConfig(uncertain_margin=margin),
            )
            pipelines[extra] = Pipeline(settings)
            pipelines[extra].load()
        rows = []
        for name, label in truth.items():
            first, first_s = run(pipelines[0], dev / name)
            if first.verdict.label != "uncertain":
                continue
            row: dict[str, Any] = {
                "file": name,
                "truth": label,
                "score": first.verdict.score,
                "seconds": first_s,
            }
            for extra in args.extra:
                second, second_s = run(pipelines[extra], dev / name)
                moved = second.verdict.score - first.verdict.score
                row[str(extra)] = {
                    "frames": second.verdict.coverage.frames_decoded,
                    "score": second.verdict.score,
                    "label": second.verdict.label,
                    "towards_truth": (moved > 0) == (label == "fake") if moved else None,
                    "seconds": second_s,
                }
            rows.append(row)
        results[str(margin)] = rows
        threshold = resolved_threshold(pipelines[0].aggregate)
        print(
            f"\nuncertain margin {margin} (band [{threshold - margin:.2f}, {threshold:.2f})): "
            f"{len(rows)} of {len(truth)} videos"
        )
        for row in rows:
            parts = [f"{row['file'][-42:]:<42} {row['truth']:<5}{row['score']:.3f}"]
            for extra in args.extra:
                r = row[str(extra)]
                parts.append(
                    f"+{extra}: {r['score']:.3f} {r['label']:<9} "
                    f"{'towards' if r['towards_truth'] else 'away':<8}"
                    f"{r['seconds'] / row['seconds']:.2f}x time"
                )
            print("  ".join(parts))
        for extra in args.extra:
            towards = sum(1 for row in rows if row[str(extra)]["towards_truth"])
            slower = sum(row[str(extra)]["seconds"] for row in rows) / max(
                sum(row["seconds"] for row in rows), 1e-9
            )
            print(
                f"  +{extra} frames: {towards} of {len(rows)} moved towards the truth; "
                f"{slower:.2f}x the time of those videos"
            )
    args.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()

"""Held-out quality of detector sets on the dev split, through `dfw eval` as an operator runs it.

For each detector set: per-source AUC, average precision and FPR/TPR at the set's threshold on the held-out
part of split dev-v1, once on the files as they are and once with every image re-encoded to one JPEG quality
and size; plus the JPEG-quality sweep on held-out real images. Prints one table per set and a comparison per
source, and writes everything as JSON.

    python bench/heldout.py --data ../shared/data/dev/manifest.csv --sets dfwnet meso4 dfwnet+meso4

The threshold of each set is the one `dfw eval` resolves (configured, calibrated, shipped, else 0.5), unless
--calibrate-fpr is given: then each set's threshold is calibrated on the held-out reals of the as-is run.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


def dfw_eval(detectors: str, data: Path, out: Path, extra: list[str], env: dict[str, str]) -> dict[str, Any]:
    command = [sys.executable, "-m", "tasks.cli", "eval", "--data", str(data), "--split", "dev-v1"]
    command += ["--detectors", detectors, "--out", str(out), *extra]
    started = time.perf_counter()
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"dfw eval failed for {detectors}:\n{done.stderr[-2000:]}")
    report: dict[str, Any] = json.loads(out.read_text())
    report["seconds"] = round(time.perf_counter() - started, 1)
    return report


def row(metrics: dict[str, Any]) -> str:
    def f(value: float | None) -> str:
        return "  —  " if value is None else f"{value:.3f}"

    return (
        f"AUC {f(metrics['auc'])}  AP {f(metrics['ap'])}  FPR {f(metrics['fpr'])}  TPR {f(metrics['tpr'])}"
        f"  (real {metrics['n_real']}, fake {metrics['n_fake']}, abstained {metrics['abstained']})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, required=True, help="the dev set's manifest.csv")
    parser.add_argument("--sets", nargs="+", default=["dfwnet", "meso4"], help="detector sets, a+b for two")
    parser.add_argument("--reencode", default="75:512", help="JPEG QUALITY:LONG_SIDE of the second run")
    parser.add_argument("--quality-sweep", default="30,50,75,95")
    parser.add_argument("--calibrate-fpr", type=float, default=None)
    parser.add_argument("--out", type=Path, default=Path("bench-heldout.json"))
    args = parser.parse_args()
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as temp:
        for detector_set in args.sets:
            names = detector_set.replace("+", ",")
            as_is_extra = ["--quality-sweep", args.quality_sweep]
            if args.calibrate_fpr is not None:
                as_is_extra += ["--calibrate-fpr", str(args.calibrate_fpr)]
            as_is = dfw_eval(names, args.data, Path(temp) / "a.json", as_is_extra, env)
            threshold = ["--threshold", str(as_is["threshold"])]
            reencoded = dfw_eval(
                names, args.data, Path(temp) / "b.json", ["--reencode", args.reencode, *threshold], env
            )
            results[detector_set] = {"as_is": as_is, "reencoded": reencoded}
            print(f"\n== {detector_set}  threshold {as_is['threshold']:.4f}  ({as_is['seconds']} s)")
            print(f"  {'overall':24s} {row(as_is['overall']['verdict'])}")
            for source, by_key in as_is["by_source"].items():
                print(f"  {source:24s} {row(by_key['verdict'])}")
            print(f"  re-encoded to JPEG {args.reencode}:")
            for source, by_key in reencoded["by_source"].items():
                print(f"  {source:24s} {row(by_key['verdict'])}")
            sweep = as_is["quality_sweep"]
            means = ", ".join(f"q{q} {v['mean']:.3f}" for q, v in sweep["qualities"].items())
            print(
                f"  real images re-encoded: mean score {means};"
                f" AUC high vs low {sweep['auc_high_vs_low']:.3f};"
                f" same image high minus low {sweep['mean_difference_high_minus_low']:+.3f}, higher at high"
                f" quality for {sweep['share_higher_at_high']:.0%}"
            )
    if len(args.sets) > 1:
        print("\nAUC per held-out source (as is / re-encoded):")
        sources = list(results[args.sets[0]]["as_is"]["by_source"])
        print(f"  {'source':24s} " + " ".join(f"{s:>22s}" for s in args.sets))
        for source in [*sources, "overall"]:
            cells = []
            for detector_set in args.sets:
                pair = []
                for run in ("as_is", "reencoded"):
                    report = results[detector_set][run]
                    metrics = report["overall"] if source == "overall" else report["by_source"].get(source)
                    auc = metrics["verdict"]["auc"] if metrics else None
                    pair.append("—" if auc is None else f"{auc:.3f}")
                cells.append(" / ".join(pair))
            print(f"  {source:24s} " + " ".join(f"{c:>22s}" for c in cells))
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nwritten to {args.out}")


if __name__ == "__main__":
    main()

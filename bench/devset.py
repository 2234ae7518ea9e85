"""What the dev-set benchmarks share: where the shared folder is, its videos, and one compute thread."""

from __future__ import annotations

import argparse
import csv
import os
from pathlib import Path

SHARED = Path(os.environ.get("DFW_SHARED_DIR", Path(__file__).resolve().parents[2] / "shared"))


def dev_videos(shared: Path) -> dict[str, str]:
    """The dev set's videos: manifest path (relative to data/dev) -> label."""
    with (shared / "data" / "dev" / "manifest.csv").open(newline="") as handle:
        return {row["path"]: row["label"] for row in csv.DictReader(handle) if row["media"] == "video"}


def one_thread() -> None:
    """One torch and one OpenCV thread, so that timings compare like with like on a shared machine."""
    import cv2
    import torch

    torch.set_num_threads(1)
    cv2.setNumThreads(1)


def bench_parser(doc: str | None, out: str) -> argparse.ArgumentParser:
    """The options every dev-set benchmark takes: --shared, --detectors and --out (its JSON report)."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared", type=Path, default=SHARED, help="folder with models/ and data/dev/")
    parser.add_argument(
        "--detectors",
        default="meso4",
        help="comma-separated detectors (the README's figures were measured with meso4)",
    )
    parser.add_argument("--out", type=Path, default=Path(out), help="JSON report")
    return parser

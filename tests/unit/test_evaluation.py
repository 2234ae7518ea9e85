from __future__ import annotations

from itertools import product
from pathlib import Path

import numpy as np
import pytest

from worker.datasets import Example, read_examples
from worker.evaluation import (
    Scored,
    average_precision,
    build_report,
    calibrate_threshold,
    read_calibration,
    roc_auc,
    write_calibration,
)


def brute_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    pos, neg = scores[labels == 1], scores[labels == 0]
    wins = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p, n in product(pos, neg))
    return wins / (len(pos) * len(neg))


@pytest.mark.parametrize("seed", range(5))
def test_auc_matches_pair_counting_with_ties(seed: int) -> None:
    rng = np.random.default_rng(seed)
    scores = rng.integers(0, 6, 40) / 5.0  # many ties
    labels = rng.integers(0, 2, 40)
    assert roc_auc(scores, labels) == pytest.approx(brute_auc(scores, labels))


def test_auc_and_ap_edges() -> None:
    assert roc_auc(np.array([0.1, 0.9]), np.array([0, 1])) == 1.0
    assert roc_auc(np.array([0.9, 0.1]), np.array([0, 1])) == 0.0
    assert roc_auc(np.array([0.5]), np.array([1])) is None
    assert average_precision(np.array([0.9, 0.8, 0.1]), np.array([1, 0, 1])) == pytest.approx((1 + 2 / 3) / 2)


@pytest.mark.parametrize("target", [0.0, 0.02, 0.1, 0.5])
def test_calibrated_threshold_keeps_fpr_at_or_below_target(target: float) -> None:
    reals = np.random.default_rng(1).random(200)
    threshold = calibrate_threshold(reals, target)
    assert (reals >= threshold).mean() <= target
    assert (reals >= np.nextafter(threshold, -np.inf) - 1e-9).mean() > target or target == 0.0


def test_report_counts_abstentions_and_ranks_fake_only_sources_against_reals(tmp_path: Path) -> None:
    def item(label: int, source: str, score: float | None) -> Scored:
        scores = {} if score is None else {"verdict": score}
        return Scored(Example(tmp_path / "x", label, source), scores, "no_face" if score is None else "real")

    items = [item(0, "r", 0.1), item(0, "r", 0.3), item(0, "r", None), item(1, "f", 0.9), item(1, "f", 0.2)]
    report = build_report(items, ["verdict"], threshold=0.5)
    assert report.overall["verdict"]["abstained"] == 1 and report.overall["verdict"]["n"] == 5
    fake_only = report.by_source["f"]["verdict"]
    assert fake_only["auc_vs"] == "all_real" and fake_only["auc"] == pytest.approx(0.75)
    assert fake_only["tpr"] == 0.5 and fake_only["fpr"] is None
    assert report.by_source["r"]["verdict"]["fpr"] == 0.0


def test_calibration_file_round_trip(tmp_path: Path) -> None:
    write_calibration(tmp_path, ["b", "a"], {"threshold": 0.7})
    write_calibration(tmp_path, ["meso4"], {"threshold": 0.6})
    assert read_calibration(tmp_path) == {"a+b": {"threshold": 0.7}, "meso4": {"threshold": 0.6}}


def test_examples_from_folder_and_manifest(tmp_path: Path) -> None:
    for relative in ("real/web/a.jpg", "real/b.jpg", "fake/gan/c.png"):
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / relative).write_bytes(b"x")
    folder = read_examples(tmp_path)
    assert sorted((e.path.name, e.label, e.source) for e in folder) == [
        ("a.jpg", 0, "web"),
        ("b.jpg", 0, tmp_path.name),
        ("c.png", 1, "gan"),
    ]
    manifest = tmp_path / "m.csv"
    manifest.write_text("path,label,source\nreal/b.jpg,real,web\nfake/gan/c.png,FAKE,gan\n")
    assert [(e.path, e.label) for e in read_examples(manifest)] == [
        (tmp_path / "real/b.jpg", 0),
        (tmp_path / "fake/gan/c.png", 1),
    ]
    manifest.write_text("path,label\nx.jpg,maybe\n")
    with pytest.raises(ValueError, match="maybe"):
        read_examples(manifest)

"""`dfw eval`: detector quality on a labelled manifest, per source and overall, with abstentions shown.

Metrics are computed here with numpy (no scikit-learn): ROC AUC by the rank-sum (Mann-Whitney U) statistic
with ties counted half; average precision as the step-wise area under the precision-recall curve
(precision at each fake, averaged over fakes); accuracy, FPR and TPR at the threshold. Items the pipeline
could not score (no face, decode errors) are abstentions: counted and shown, never scored as 0.5.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from worker.datasets import Example
from worker.models import PACKAGED_DIR


@dataclass(frozen=True)
class Scored:
    example: Example
    scores: dict[str, float]  # "verdict" and each detector -> score; empty when abstained
    outcome: str  # a verdict label, or an error code


def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float | None:
    positives, negatives = scores[labels == 1], scores[labels == 0]
    if len(positives) == 0 or len(negatives) == 0:
        return None
    order = np.argsort(np.concatenate([positives, negatives]), kind="mergesort")
    values = np.concatenate([positives, negatives])[order]
    ranks = np.empty(len(values))
    start = 0
    while start < len(values):  # average ranks over ties
        end = start
        while end + 1 < len(values) and values[end + 1] == values[start]:
            end += 1
        ranks[start : end + 1] = (start + end) / 2 + 1
        start = end + 1
    rank_of = np.empty(len(values))
    rank_of[order] = ranks
    u = rank_of[: len(positives)].sum() - len(positives) * (len(positives) + 1) / 2
    return float(u / (len(positives) * len(negatives)))


def average_precision(scores: np.ndarray, labels: np.ndarray) -> float | None:
    if labels.sum() == 0:
        return None
    order = np.argsort(-scores, kind="mergesort")
    hits = labels[order] == 1
    precision = np.cumsum(hits) / np.arange(1, len(hits) + 1)
    return float(precision[hits].mean())


def rates_at(scores: np.ndarray, labels: np.ndarray, threshold: float) -> dict[str, float | None]:
    predicted = scores >= threshold
    real, fake = labels == 0, labels == 1
    return {
        "accuracy": float((predicted == (labels == 1)).mean()) if len(labels) else None,
        "fpr": float(predicted[real].mean()) if real.any() else None,
        "tpr": float(predicted[fake].mean()) if fake.any() else None,
    }


def metrics(items: list[Scored], key: str, threshold: float) -> dict[str, Any]:
    scored = [item for item in items if key in item.scores]
    scores = np.asarray([item.scores[key] for item in scored], np.float64)
    labels = np.asarray([item.example.label for item in scored], np.int64)
    return {
        "n": len(items),
        "n_real": sum(1 for item in items if item.example.label == 0),
        "n_fake": sum(1 for item in items if item.example.label == 1),
        "abstained": len(items) - len(scored),
        "auc": roc_auc(scores, labels),
        "ap": average_precision(scores, labels),
        **rates_at(scores, labels, threshold),
    }


def calibrate_threshold(real_scores: np.ndarray, target_fpr: float) -> float:
    """The lowest threshold whose false-positive rate on these real items is at most `target_fpr`."""
    if len(real_scores) == 0:
        raise ValueError("no scored real items to calibrate on")
    ordered = np.sort(real_scores)[::-1]
    allowed = int(np.floor(target_fpr * len(ordered)))
    if allowed >= len(ordered):
        return float(ordered[-1])
    return float(np.nextafter(ordered[allowed], np.inf))


@dataclass
class Report:
    threshold: float
    keys: list[str]
    overall: dict[str, dict[str, Any]] = field(default_factory=dict)
    by_source: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    outcomes: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "threshold": self.threshold,
            "overall": self.overall,
            "by_source": self.by_source,
            "outcomes": self.outcomes,
        }


def source_metrics(group: list[Scored], reals: list[Scored], key: str, threshold: float) -> dict[str, Any]:
    """A source's metrics; a source with fakes only is ranked against every real item (`auc_vs`)."""
    result = metrics(group, key, threshold)
    result["auc_vs"] = "source"
    if result["n_real"] == 0 and reals:
        pooled = metrics(group + reals, key, threshold)
        result.update(auc=pooled["auc"], ap=pooled["ap"], auc_vs="all_real")
    return result


def build_report(items: list[Scored], keys: list[str], threshold: float) -> Report:
    report = Report(threshold, keys)
    report.overall = {key: metrics(items, key, threshold) for key in keys}
    groups: dict[str, list[Scored]] = defaultdict(list)
    for item in items:
        groups[item.example.source].append(item)
    reals = [item for item in items if item.example.label == 0]
    report.by_source = {
        source: {key: source_metrics(group, reals, key, threshold) for key in keys}
        for source, group in sorted(groups.items())
    }
    counts: dict[str, int] = defaultdict(int)
    for item in items:
        counts[item.outcome] += 1
    report.outcomes = dict(sorted(counts.items()))
    return report


CALIBRATION_FILE = "calibration.json"


def calibration_key(detectors: list[str]) -> str:
    return "+".join(sorted(detectors))


def read_calibration(model_dir: Path) -> dict[str, Any]:
    path = model_dir / CALIBRATION_FILE
    if not path.is_file():
        return {}
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def write_calibration(model_dir: Path, detectors: list[str], entry: dict[str, Any]) -> Path:
    """Store a calibrated threshold for a detector set; the pipeline uses it when no threshold is set."""
    data = read_calibration(model_dir)
    data[calibration_key(detectors)] = entry
    model_dir.mkdir(parents=True, exist_ok=True)
    path = model_dir / CALIBRATION_FILE
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    return path


def resolve_threshold(
    config: Any, model_dir: Path, detectors: list[str], versions: dict[str, str] | None = None
) -> float:
    """The configured threshold, else the one calibrated for this detector set (the deployment's own in
    `model_dir`, then the one shipped with the project's weights), else 0.5.

    A calibration records the detector versions it was measured with; when `versions` is given, an entry
    made for other weights (a retrained network, another backbone) is not used."""
    if config.threshold is not None:
        return float(config.threshold)
    key = calibration_key(detectors)
    for folder in (model_dir, PACKAGED_DIR):
        entry = read_calibration(folder).get(key)
        if entry and (versions is None or entry.get("detectors", versions) == versions):
            return float(entry["threshold"])
    return 0.5

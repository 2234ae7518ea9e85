"""`dfw train` and `dfw eval`: the command-line side of worker.training and worker.evaluation."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from worker.datasets import Example, read_examples
from worker.detectors import create_detector
from worker.detectors.base import TrainableDetector
from worker.devices import choose_device
from worker.errors import MediaError, ModelUnavailable
from worker.evaluation import Scored, build_report, calibrate_threshold, write_calibration
from worker.models import ModelStore, write_local_manifest
from worker.pipeline import Pipeline
from worker.settings import WorkerSettings
from worker.training import CropCache, collect_crops, train_adapter

EXIT_USAGE = 2
EXIT_UNAVAILABLE = 3


def progress_bar(console: Console) -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=True,
    )


def pick_examples(data: Path, limit_per_source: int | None, seed: int) -> list[Example]:
    examples = read_examples(data)
    if not limit_per_source:
        return examples
    rng = random.Random(seed)
    by_source: dict[tuple[str, int], list[Example]] = {}
    for example in examples:
        by_source.setdefault((example.source, example.label), []).append(example)
    picked = []
    for group in by_source.values():
        picked.extend(rng.sample(group, min(limit_per_source, len(group))))
    return sorted(picked, key=lambda e: str(e.path))


def run_train(
    name: str, data: Path, out: Path, options: dict[str, Any], console: Console, err: Console
) -> int:
    settings = WorkerSettings()
    store = ModelStore(settings.model_dir, allow_fetch=settings.model_fetch)
    detector = create_detector(name, settings.detector_config(name), store, choose_device(options["device"]))
    if not isinstance(detector, TrainableDetector):
        err.print(f"[red]error:[/red] detector {name} has no trainable adapter", highlight=False)
        return EXIT_USAGE
    try:
        examples = pick_examples(data, options["limit_per_source"], options["seed"])
        detector.load_for_training(options["seed"])
    except (ValueError, OSError) as exc:
        err.print(f"[red]error:[/red] {exc}", highlight=False)
        return EXIT_USAGE
    except ModelUnavailable as exc:
        err.print(f"[red]error:[/red] {exc}", highlight=False)
        return EXIT_UNAVAILABLE
    cache = CropCache(options["cache"], settings, detector.looks_at, detector.input_size)
    with progress_bar(err) as progress:
        task = progress.add_task("preparing", total=len(examples))
        data_set = collect_crops(
            examples, cache, lambda d, t, m: progress.update(task, completed=d, description=m)
        )
        train_task = progress.add_task("training", total=None)
        report = train_adapter(
            detector,
            data_set,
            epochs=options["epochs"],
            lr=options["lr"],
            batch_size=options["batch_size"],
            seed=options["seed"],
            progress=lambda d, t, m: progress.update(train_task, completed=d, total=t, description=m),
        )
    out.mkdir(parents=True, exist_ok=True)
    weights = out / (options["name"] or f"{name}-seed{options['seed']}.pt")
    detector.save_adapter(weights)
    entry = write_local_manifest(
        weights,
        f"{name} adapter trained by dfw train on {data.name}",
        "trained by this deployment; check the training data's licence",
    )
    report.weights, report.sha256 = str(weights), entry.sha256
    console.print(report.to_json(), highlight=False)
    err.print(
        f"adapter written to {weights} (sha256 {entry.sha256[:12]}…). To use it, put it and its "
        f"manifest in DFW_MODEL_DIR and set DFW_{name.upper()}__{detector.adapter_field.upper()}="
        f"{weights.name}",
        highlight=False,
    )
    return 0


def score_examples(pipeline: Pipeline, examples: list[Example], err: Console) -> list[Scored]:
    items = []
    with progress_bar(err) as progress:
        task = progress.add_task("evaluating", total=len(examples))
        for example in examples:
            progress.update(task, description=f"evaluating {example.path.name[:40]}")
            items.append(score_one(pipeline, example))
            progress.advance(task)
    return items


def score_one(pipeline: Pipeline, example: Example) -> Scored:
    if not example.path.is_file():
        return Scored(example, {}, "not_found")
    try:
        verdict = pipeline.analyze(example.path).verdict
    except MediaError as exc:
        return Scored(example, {}, exc.code.value)
    if verdict.score is None:
        return Scored(example, {}, verdict.label)
    return Scored(example, {"verdict": verdict.score, **verdict.detectors}, verdict.label)


def run_eval(pipeline: Pipeline, data: Path, options: dict[str, Any], console: Console, err: Console) -> int:
    try:
        examples = pick_examples(data, options["limit_per_source"], options["seed"])
    except (ValueError, OSError) as exc:
        err.print(f"[red]error:[/red] {exc}", highlight=False)
        return EXIT_USAGE
    items = score_examples(pipeline, examples, err)
    keys = ["verdict", *[d.name for d in pipeline.detectors]]
    threshold = float(pipeline.aggregate.threshold or 0.5)
    if options["calibrate_fpr"] is not None:
        threshold = calibrate(pipeline, items, options["calibrate_fpr"], data, err)
    report = build_report(items, keys, threshold)
    console.print(report_table(report))
    if options["out"]:
        options["out"].write_text(json.dumps(report.to_dict(), indent=2) + "\n")
        err.print(f"report written to {options['out']}", highlight=False)
    return 0


def calibrate(pipeline: Pipeline, items: list[Scored], target: float, data: Path, err: Console) -> float:
    reals = [item.scores["verdict"] for item in items if item.example.label == 0 and "verdict" in item.scores]
    import numpy as np

    threshold = calibrate_threshold(np.asarray(reals), target)
    names = [d.name for d in pipeline.detectors]
    entry = {
        "threshold": threshold,
        "target_fpr": target,
        "n_real": len(reals),
        "data": data.name,
        "detectors": {d.name: d.lineage().version for d in pipeline.detectors},
    }
    path = write_calibration(pipeline.settings.model_dir, names, entry)
    err.print(
        f"threshold {threshold:.4f} gives FPR <= {target} on {len(reals)} real items; stored in {path}",
        highlight=False,
    )
    return threshold


def report_table(report: Any) -> Table:
    table = Table(title=f"threshold {report.threshold:.4f}; outcomes {report.outcomes}")
    for column in ("source", "scorer", "n", "real", "fake", "abstained", "AUC", "AP", "acc", "FPR", "TPR"):
        table.add_column(column, overflow="fold")
    rows = [("overall", report.overall), *report.by_source.items()]
    for source, by_key in rows:
        for key, m in by_key.items():
            table.add_row(
                source,
                key,
                str(m["n"]),
                str(m["n_real"]),
                str(m["n_fake"]),
                str(m["abstained"]),
                *(fmt(m[k]) for k in ("auc", "ap", "accuracy", "fpr", "tpr")),
            )
    return table


def fmt(value: float | None) -> str:
    return "—" if value is None else f"{value:.3f}"

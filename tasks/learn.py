"""`dfw train` and `dfw eval`: the command-line side of worker.training and worker.evaluation."""

from __future__ import annotations

import json
import random
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from worker.datasets import Example, read_examples, select_part
from worker.detectors import create_detector
from worker.detectors.base import TrainableDetector
from worker.devices import choose_device
from worker.errors import MediaError, ModelUnavailable
from worker.evaluation import Scored, build_report, calibrate_threshold, roc_auc, write_calibration
from worker.media.probe import HEAD_BYTES, IMAGE_KINDS, sniff_signature
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


def pick_examples(
    data: Path, limit_per_source: int | None, seed: int, split: str | None = None, part: str = "heldout"
) -> list[Example]:
    examples = read_examples(data)
    if split:
        examples = select_part(examples, split, part)
        if not examples:
            raise ValueError(f"the {part} part of split {split} has no items in {data}")
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


TRAIN_FALLBACKS: dict[str, Any] = {
    "epochs": 3,
    "lr": 1e-3,
    "batch_size": 32,
    "sbi": 0.0,
    "augment": "standard",
    "weight_decay": 0.0,
    "schedule": "constant",
    "threads": None,
    "frames_per_video": None,  # None: the pipeline's DFW_SAMPLING__FRAMES_PER_VIDEO
}


def training_options(detector: TrainableDetector, given: dict[str, Any]) -> dict[str, Any]:
    """The operator's options, else the detector's recipe (`training_defaults`), else the general ones."""
    resolved = dict(given)
    for key, fallback in TRAIN_FALLBACKS.items():
        if resolved.get(key) is None:
            resolved[key] = detector.training_defaults.get(key, fallback)
    return resolved


def run_train(
    name: str, data: Path, out: Path, options: dict[str, Any], console: Console, err: Console
) -> int:
    settings = WorkerSettings()
    store = ModelStore(settings.model_dir, allow_fetch=settings.model_fetch)
    detector = create_detector(name, settings.detector_config(name), store, choose_device(options["device"]))
    if not isinstance(detector, TrainableDetector):
        err.print(f"[red]error:[/red] detector {name} has no trainable adapter", highlight=False)
        return EXIT_USAGE
    options = training_options(detector, options)
    if options["threads"]:
        import torch

        torch.set_num_threads(int(options["threads"]))  # the result depends on it: part of the recipe
    try:
        examples = pick_examples(
            data, options["limit_per_source"], options["seed"], options.get("split"), "train"
        )
        detector.load_for_training(options["seed"])
    except (ValueError, OSError) as exc:
        err.print(f"[red]error:[/red] {exc}", highlight=False)
        return EXIT_USAGE
    except ModelUnavailable as exc:
        err.print(f"[red]error:[/red] {exc}", highlight=False)
        return EXIT_UNAVAILABLE
    if options["frames_per_video"]:  # more frames of each training video than the service samples
        sampling = settings.sampling.model_copy(update={"frames_per_video": int(options["frames_per_video"])})
        settings = settings.model_copy(update={"sampling": sampling})
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
            sbi=options["sbi"],
            augmentation=options["augment"],
            weight_decay=options["weight_decay"],
            schedule=options["schedule"],
            progress=lambda d, t, m: progress.update(train_task, completed=d, total=t, description=m),
        )
    out.mkdir(parents=True, exist_ok=True)
    weights = out / (options["name"] or f"{name}-seed{options['seed']}{detector.adapter_suffix}")
    detector.save_adapter(weights)
    recipe = {k: options[k] for k in (*TRAIN_FALLBACKS, "seed", "split") if options.get(k) is not None}
    entry = write_local_manifest(
        weights,
        f"{name} trained by dfw train on {data.name} ({json.dumps(recipe, sort_keys=True)})",
        "trained by this deployment; check the training data's licence",
    )
    report.weights, report.sha256 = str(weights), entry.sha256
    console.print(report.to_json(), highlight=False)
    err.print(
        f"weights written to {weights} (sha256 {entry.sha256[:12]}…). To use them, put them and their "
        f"manifest in DFW_MODEL_DIR and set DFW_{name.upper()}__{detector.adapter_field.upper()}="
        f"{weights.name}",
        highlight=False,
    )
    return 0


@dataclass(frozen=True)
class Reencode:
    """Re-encode every evaluated image to one JPEG quality (and long side) before scoring it."""

    quality: int
    long_side: int | None = None

    @classmethod
    def parse(cls, text: str) -> Reencode:
        quality, _, side = text.partition(":")
        try:
            parsed = cls(int(quality), int(side) if side else None)
        except ValueError:
            raise ValueError(
                f"--reencode takes QUALITY or QUALITY:LONG_SIDE, e.g. 75:512, not {text!r}"
            ) from None
        if not 1 <= parsed.quality <= 100 or (parsed.long_side is not None and parsed.long_side < 16):
            raise ValueError(f"--reencode {text}: quality must be 1-100 and the long side at least 16")
        return parsed

    def apply(self, source: Path, folder: Path) -> Path:
        from PIL import Image, ImageOps

        with Image.open(source) as opened:
            image = ImageOps.exif_transpose(opened).convert("RGB")
        if self.long_side:
            scale = self.long_side / max(image.size)
            size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
            image = image.resize(size, Image.Resampling.LANCZOS)
        target = folder / f"{source.stem}.q{self.quality}.jpg"
        image.save(target, "JPEG", quality=self.quality)
        return target


def is_image(example: Example) -> bool:
    """The manifest's `media` column, else the file's signature (as `probe_media` reads it)."""
    if example.media:
        return example.media == "image"
    try:
        with example.path.open("rb") as handle:
            return sniff_signature(handle.read(HEAD_BYTES)) in IMAGE_KINDS
    except OSError:
        return False


def score_examples(
    pipeline: Pipeline, examples: list[Example], err: Console, reencode: Reencode | None = None
) -> list[Scored]:
    items = []
    with progress_bar(err) as progress, tempfile.TemporaryDirectory(prefix="dfw-eval-") as temp:
        task = progress.add_task("evaluating", total=len(examples))
        for example in examples:
            progress.update(task, description=f"evaluating {example.path.name[:40]}")
            items.append(score_one(pipeline, example, reencode, Path(temp)))
            progress.advance(task)
    return items


def score_one(
    pipeline: Pipeline, example: Example, reencode: Reencode | None = None, temp: Path | None = None
) -> Scored:
    if not example.path.is_file():
        return Scored(example, {}, "not_found")
    path = example.path
    try:
        if reencode is not None and temp is not None and is_image(example):
            try:
                path = reencode.apply(example.path, temp)
            except (OSError, ValueError) as exc:
                return Scored(example, {}, f"reencode_failed: {exc}")
        verdict = pipeline.analyze(path).verdict
    except MediaError as exc:
        return Scored(example, {}, exc.code.value)
    finally:
        if path != example.path:
            path.unlink(missing_ok=True)
    if verdict.score is None:
        return Scored(example, {}, verdict.label)
    return Scored(example, {"verdict": verdict.score, **verdict.detectors}, verdict.label)


def quality_sweep(
    pipeline: Pipeline, examples: list[Example], qualities: list[int], err: Console
) -> dict[str, Any]:
    """Scores of the real images re-encoded at each JPEG quality (size kept): a detector that learnt
    compression instead of manipulation moves with quality on real images alone."""
    import numpy as np

    reals = [e for e in examples if e.label == 0 and is_image(e)]
    per_quality: dict[int, list[Scored]] = {
        quality: score_examples(pipeline, reals, err, Reencode(quality)) for quality in qualities
    }
    scored = [
        index
        for index in range(len(reals))
        if all("verdict" in per_quality[q][index].scores for q in qualities)
    ]
    table = {
        q: np.asarray([per_quality[q][i].scores["verdict"] for i in scored], np.float64) for q in qualities
    }
    result: dict[str, Any] = {"n_real_images": len(scored), "qualities": {}}
    for quality, values in table.items():
        result["qualities"][str(quality)] = {
            "mean": float(values.mean()) if len(values) else None,
            "median": float(np.median(values)) if len(values) else None,
        }
    low, high = min(qualities), max(qualities)
    if len(scored) >= 2 and low != high:
        # AUC of telling the high-quality copy from the low-quality copy of the same real images by score:
        # 0.5 = the score ignores quality; near 0 or 1 = it follows quality.
        labels = np.concatenate([np.zeros(len(scored)), np.ones(len(scored))])
        result["auc_high_vs_low"] = roc_auc(np.concatenate([table[low], table[high]]), labels)
        result["high"], result["low"] = high, low
        difference = table[high] - table[low]  # the same image at both qualities
        result["mean_difference_high_minus_low"] = float(difference.mean())
        result["share_higher_at_high"] = float((difference > 0).mean())
    return result


def run_eval(pipeline: Pipeline, data: Path, options: dict[str, Any], console: Console, err: Console) -> int:
    try:
        examples = pick_examples(
            data,
            options["limit_per_source"],
            options["seed"],
            options.get("split"),
            options.get("part", "heldout"),
        )
        reencode = Reencode.parse(options["reencode"]) if options.get("reencode") else None
        qualities = parse_qualities(options.get("quality_sweep"))
    except (ValueError, OSError) as exc:
        err.print(f"[red]error:[/red] {exc}", highlight=False)
        return EXIT_USAGE
    items = score_examples(pipeline, examples, err, reencode)
    keys = ["verdict", *[d.name for d in pipeline.detectors]]
    threshold = float(pipeline.aggregate.threshold or 0.5)
    if options["calibrate_fpr"] is not None:
        threshold = calibrate(pipeline, items, options["calibrate_fpr"], data, err, options.get("split"))
    report = build_report(items, keys, threshold)
    console.print(report_table(report))
    payload = report.to_dict()
    payload["detectors"] = pipeline.detector_versions()
    if reencode is not None:
        payload["reencode"] = {"quality": reencode.quality, "long_side": reencode.long_side}
    if qualities:
        sweep = quality_sweep(pipeline, examples, qualities, err)
        payload["quality_sweep"] = sweep
        console.print(sweep_table(sweep))
    if options["out"]:
        options["out"].write_text(json.dumps(payload, indent=2) + "\n")
        err.print(f"report written to {options['out']}", highlight=False)
    return 0


def parse_qualities(text: str | None) -> list[int]:
    if not text:
        return []
    try:
        qualities = sorted({int(part) for part in text.split(",") if part.strip()})
    except ValueError:
        raise ValueError(
            f"--quality-sweep takes comma-separated JPEG qualities, e.g. 30,50,75,95, not {text!r}"
        ) from None
    if len(qualities) < 2 or not all(1 <= q <= 100 for q in qualities):
        raise ValueError("--quality-sweep needs at least two qualities between 1 and 100")
    return qualities


def sweep_table(sweep: dict[str, Any]) -> Table:
    auc = sweep.get("auc_high_vs_low")
    table = Table(
        title=f"real images re-encoded ({sweep['n_real_images']}): AUC q{sweep.get('high')} vs "
        f"q{sweep.get('low')} by score = {fmt(auc)} (0.5 = score ignores quality); same image: mean "
        f"difference {fmt(sweep.get('mean_difference_high_minus_low'))}, higher at q{sweep.get('high')} "
        f"for {fmt(sweep.get('share_higher_at_high'))}"
    )
    for column in ("JPEG quality", "mean score", "median score"):
        table.add_column(column)
    for quality, values in sweep["qualities"].items():
        table.add_row(quality, fmt(values["mean"]), fmt(values["median"]))
    return table


def calibrate(
    pipeline: Pipeline, items: list[Scored], target: float, data: Path, err: Console, split: str | None = None
) -> float:
    reals = [item.scores["verdict"] for item in items if item.example.label == 0 and "verdict" in item.scores]
    import numpy as np

    threshold = calibrate_threshold(np.asarray(reals), target)
    names = [d.name for d in pipeline.detectors]
    entry = {
        "threshold": threshold,
        "target_fpr": target,
        "n_real": len(reals),
        "data": data.name,
        "detectors": pipeline.detector_versions(),
    }
    if split:
        entry["split"] = split  # measured on its held-out part
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

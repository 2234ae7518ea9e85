"""`dfw scan`: the pipeline in process over local files, with the JSON-lines output contract.

Contract (callers' scripts depend on it): with --json, one object per input file per line:
path, media {type, width, height, duration, fps}, label, score (null for no_face), threshold,
coverage {frames, faces, tracks}, detectors {name: score}, and error {code, message} instead of a
verdict when the file cannot be analysed. Exit 0 when every file was answered.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from worker.errors import ErrorCode, MediaError, ModelUnavailable
from worker.explain import create_explainer
from worker.explain.base import Explainer
from worker.explain.selection import select_evidence
from worker.pipeline import Analysis, Pipeline
from worker.settings import WorkerSettings

logger = logging.getLogger(__name__)

EXIT_USAGE = 2
EXIT_UNAVAILABLE = 3


@dataclass(frozen=True)
class ScanOptions:
    detectors: str | None = None
    frames: int | None = None
    threshold: float | None = None
    device: str | None = None
    explain: bool = False


def scan_settings(options: ScanOptions) -> WorkerSettings:
    overrides: dict[str, Any] = {}
    if options.detectors:
        overrides["detectors"] = options.detectors
    if options.device:
        overrides["device"] = options.device
    if options.frames is not None:
        overrides["sampling"] = {"frames_per_video": options.frames}
    if options.threshold is not None:
        overrides["aggregate"] = {"threshold": options.threshold}
    base = WorkerSettings()
    merged = base.model_dump()
    for name, value in overrides.items():
        merged[name] = {**merged[name], **value} if isinstance(value, dict) else value
    return WorkerSettings.model_validate(merged)


def expand_paths(paths: list[Path]) -> Iterator[Path]:
    for path in paths:
        if path.is_dir():
            yield from sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith("."))
        else:
            yield path


def result_line(path: Path, analysis: Analysis) -> dict[str, Any]:
    info, verdict = analysis.info, analysis.verdict
    return {
        "path": str(path),
        "media": {
            "type": info.kind,
            "width": info.width,
            "height": info.height,
            "duration": info.duration_s,
            "fps": info.fps,
        },
        "label": verdict.label,
        "score": verdict.score,
        "threshold": verdict.threshold,
        "coverage": {
            "frames": verdict.coverage.frames_decoded,
            "faces": verdict.coverage.faces,
            "tracks": verdict.coverage.tracks,
        },
        "detectors": verdict.detectors,
    }


def error_line(path: Path, code: str, message: str) -> dict[str, Any]:
    return {"path": str(path), "error": {"code": code, "message": message}}


def analyse_path(pipeline: Pipeline, path: Path, explainer: Explainer | None = None) -> dict[str, Any]:
    if not path.exists():
        return error_line(path, ErrorCode.NOT_FOUND.value, "no such file")
    if not path.is_file():
        return error_line(path, ErrorCode.NOT_MEDIA.value, "not a regular file")
    try:
        analysis = pipeline.analyze(path, keep_frames=explainer is not None and explainer.needs_images)
        line = result_line(path, analysis)
        if explainer is not None:
            line["explanation"] = explain_analysis(pipeline, explainer, analysis)
        return line
    except MediaError as exc:
        return error_line(path, exc.code.value, exc.message)
    except Exception as exc:  # one bad file must not stop a scan; it is reported, not hidden
        logger.exception("unexpected error on %s", path)
        return error_line(path, ErrorCode.INTERNAL.value, f"{type(exc).__name__}: {exc}")


def explain_analysis(pipeline: Pipeline, explainer: Explainer, analysis: Analysis) -> dict[str, Any]:
    """The explainer's text for one verdict; an explainer outage is reported in the line, not raised."""
    settings = pipeline.settings
    frames = analysis.decoded_frames if explainer.needs_images else None
    evidence = select_evidence(
        frames,
        analysis.faces,
        analysis.scores,
        analysis.frame_scores,
        settings.explain.top_k,
        settings.faces.crop_margin,
    )
    try:
        explanation = explainer.explain(analysis.info, analysis.verdict, evidence)
    except Exception as exc:  # a language model server that is down must not stop a scan
        logger.warning("explainer %s failed: %s", explainer.name, exc)
        return {"explainer": explainer.name, "text": None, "agrees": None, "error": str(exc)}
    return {"explainer": explanation.explainer, "text": explanation.text, "agrees": explanation.agrees}


def load_explainer(settings: WorkerSettings, err: Console) -> Explainer | int:
    try:
        explainer = create_explainer(settings.explain)
        explainer.load()
    except ModelUnavailable as exc:
        err.print(f"[red]error:[/red] explainer unavailable: {exc}", highlight=False)
        return EXIT_UNAVAILABLE
    return explainer


def load_pipeline(settings: WorkerSettings, err: Console) -> Pipeline | int:
    try:
        pipeline = Pipeline(settings)
        statuses = pipeline.load()
    except ModelUnavailable as exc:
        err.print(
            f"[red]error:[/red] {exc}\nRun `dfw models list` to see what is missing, `dfw models fetch` "
            "to download it, or set DFW_MODEL_DIR to a folder that holds it.",
            highlight=False,
        )
        return EXIT_UNAVAILABLE
    missing = [s for s in statuses if not s.available]
    if missing:
        for status in missing:
            err.print(
                f"[red]error:[/red] detector {status.name} unavailable: {status.reason}", highlight=False
            )
        return EXIT_UNAVAILABLE
    return pipeline


def run_scan(paths: list[Path], options: ScanOptions, as_json: bool, out: Console, err: Console) -> int:
    try:
        settings = scan_settings(options)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        err.print(f"[red]error:[/red] invalid settings: {problems}", highlight=False)
        return EXIT_USAGE
    files = list(expand_paths(paths))
    pipeline = load_pipeline(settings, err)
    if isinstance(pipeline, int):
        return pipeline
    explainer = load_explainer(settings, err) if options.explain else None
    if isinstance(explainer, int):
        return explainer
    lines = []
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=err,
        transient=True,
        disable=as_json and not err.is_terminal,
    ) as progress:
        task = progress.add_task("scanning", total=len(files))
        for path in files:
            progress.update(task, description=f"scanning {path.name[:40]}")
            line = analyse_path(pipeline, path, explainer)
            if as_json:
                print(json.dumps(line), flush=True)
            lines.append(line)
            progress.advance(task)
    if not as_json:
        out.print(scan_table(lines))
    return 0


def scan_table(lines: list[dict[str, Any]]) -> Table:
    table = Table(title=f"{len(lines)} file(s)")
    table.add_column("path", overflow="fold")
    for column in ("type", "label", "score", "frames", "faces", "detail"):
        table.add_column(column)
    for line in lines:
        if "error" in line:
            table.add_row(
                line["path"],
                "",
                "[red]error[/red]",
                "",
                "",
                "",
                line["error"]["code"] + ": " + line["error"]["message"],
            )
            continue
        score = "" if line["score"] is None else f"{line['score']:.3f}"
        detail = ", ".join(f"{k}={v:.3f}" for k, v in line["detectors"].items())
        table.add_row(
            line["path"],
            line["media"]["type"],
            line["label"],
            score,
            str(line["coverage"]["frames"]),
            str(line["coverage"]["faces"]),
            detail,
        )
    return table

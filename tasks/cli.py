"""`dfw`: scan local media, enqueue objects, run workers, read results, manage models and the database."""

from __future__ import annotations

import json
import logging
import os
import re
import shlex
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

app = typer.Typer(
    help="deepfake-worker: find deepfakes in images and videos.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
models_app = typer.Typer(help="The model store: list, verify and fetch weight files.", no_args_is_help=True)
db_app = typer.Typer(help="The results database.", no_args_is_help=True)
app.add_typer(models_app, name="models")
app.add_typer(db_app, name="db")

# Off a terminal rich assumes 80 columns; tables of paths and metrics read better wider (COLUMNS wins).
out = Console(width=None if sys.stdout.isatty() or "COLUMNS" in os.environ else 160)
err = Console(stderr=True)

EXIT_USAGE = 2
EXIT_UNAVAILABLE = 3


def fail(message: str, code: int = EXIT_USAGE) -> typer.Exit:
    err.print(f"[red]error:[/red] {message}", highlight=False)
    return typer.Exit(code)


@app.callback()
def configure(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="log at INFO level")] = False,
) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


@app.command()
def scan(
    paths: Annotated[list[Path], typer.Argument(help="media files or folders (searched recursively)")],
    as_json: Annotated[bool, typer.Option("--json", help="one JSON object per file per line")] = False,
    detectors: Annotated[str | None, typer.Option(help="comma-separated detector names")] = None,
    frames: Annotated[int | None, typer.Option(min=1, max=1024, help="frames sampled per video")] = None,
    threshold: Annotated[float | None, typer.Option(min=0.0, max=1.0, help="fake threshold")] = None,
    device: Annotated[str | None, typer.Option(help="auto, cpu, cuda or cuda:N")] = None,
    explain: Annotated[
        bool, typer.Option(help="add the configured explainer's text (DFW_EXPLAIN__EXPLAINER)")
    ] = False,
) -> None:
    """Analyse local images and videos; no database, broker or object store needed."""
    from tasks.scan import ScanOptions, run_scan

    options = ScanOptions(
        detectors=detectors, frames=frames, threshold=threshold, device=device, explain=explain
    )
    raise typer.Exit(run_scan(paths, options, as_json, out, err))


@app.command()
def train(
    detector: Annotated[str, typer.Argument(help="detector to train, e.g. dfwnet or clip_linear")],
    data: Annotated[Path, typer.Option(help="folder with real/ and fake/, or a manifest CSV")],
    out_dir: Annotated[
        Path, typer.Option("--out", help="folder for the weights file and its manifest entry")
    ],
    split: Annotated[
        str | None, typer.Option(help="train on the train part of this split of the data (e.g. dev-v1)")
    ] = None,
    epochs: Annotated[int | None, typer.Option(min=1, help="default: the detector's recipe, else 3")] = None,
    lr: Annotated[
        float | None, typer.Option(min=0.0, help="default: the detector's recipe, else 1e-3")
    ] = None,
    seed: Annotated[int, typer.Option()] = 0,
    batch_size: Annotated[int | None, typer.Option(min=1, help="default: the recipe's, else 32")] = None,
    sbi: Annotated[
        float | None,
        typer.Option(min=0.0, max=1.0, help="share of real crops turned into self-blended pseudo-fakes"),
    ] = None,
    augment: Annotated[
        str | None, typer.Option(help="augmentation recipe: standard (CNNDetection's) or strong")
    ] = None,
    weight_decay: Annotated[float | None, typer.Option(min=0.0)] = None,
    schedule: Annotated[str | None, typer.Option(help="learning-rate schedule: constant or cosine")] = None,
    threads: Annotated[
        int | None, typer.Option(min=1, help="torch CPU threads (results depend on it; recipe sets it)")
    ] = None,
    frames_per_video: Annotated[
        int | None,
        typer.Option(
            min=1,
            max=1024,
            help="frames sampled from each training video (default: the recipe's, else DFW_SAMPLING__"
            "FRAMES_PER_VIDEO)",
        ),
    ] = None,
    limit_per_source: Annotated[
        int | None, typer.Option(min=1, help="at most N files per source and label")
    ] = None,
    cache: Annotated[Path, typer.Option(help="crop cache folder")] = Path(".dfw-cache/crops"),
    name: Annotated[str | None, typer.Option(help="weights file name (default DETECTOR-seedN.pt)")] = None,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N")] = "auto",
) -> None:
    """Train a detector (its adapter on a frozen backbone, or all of a small network such as dfwnet);
    writes weights, sha256 and a manifest entry. Options left unset follow the detector's recipe."""
    from tasks.learn import run_train

    if augment is not None and augment not in {"standard", "strong"}:
        raise fail(f"--augment must be standard or strong, not {augment!r}")
    if schedule is not None and schedule not in {"constant", "cosine"}:
        raise fail(f"--schedule must be constant or cosine, not {schedule!r}")
    options = {
        "epochs": epochs,
        "lr": lr,
        "seed": seed,
        "batch_size": batch_size,
        "sbi": sbi,
        "augment": augment,
        "weight_decay": weight_decay,
        "schedule": schedule,
        "threads": threads,
        "frames_per_video": frames_per_video,
        "split": split,
        "cache": cache,
        "name": name,
        "device": device,
        "limit_per_source": limit_per_source,
    }
    raise typer.Exit(run_train(detector, data, out_dir, options, out, err))


@app.command("eval")
def evaluate(
    data: Annotated[Path, typer.Option(help="manifest CSV (path, label, source) or a real/ + fake/ folder")],
    detectors: Annotated[str | None, typer.Option(help="comma-separated detector names")] = None,
    frames: Annotated[int | None, typer.Option(min=1, max=1024, help="frames sampled per video")] = None,
    threshold: Annotated[float | None, typer.Option(min=0.0, max=1.0, help="fake threshold")] = None,
    calibrate_fpr: Annotated[
        float | None,
        typer.Option(min=0.0, max=1.0, help="pick and store the threshold giving this FPR on the real items"),
    ] = None,
    limit_per_source: Annotated[
        int | None, typer.Option(min=1, help="at most N files per source and label")
    ] = None,
    seed: Annotated[int, typer.Option(help="seed of the per-source sample")] = 0,
    split: Annotated[str | None, typer.Option(help="evaluate one part of this split (e.g. dev-v1)")] = None,
    part: Annotated[str, typer.Option(help="with --split: heldout or train")] = "heldout",
    reencode: Annotated[
        str | None,
        typer.Option(help="re-encode every image to JPEG QUALITY[:LONG_SIDE] before scoring, e.g. 75:512"),
    ] = None,
    quality_sweep: Annotated[
        str | None,
        typer.Option(help="also score the real images re-encoded at these JPEG qualities, e.g. 30,50,75,95"),
    ] = None,
    out_file: Annotated[Path | None, typer.Option("--out", help="write the report as JSON")] = None,
    device: Annotated[str | None, typer.Option(help="auto, cpu, cuda or cuda:N")] = None,
) -> None:
    """AUC, AP, accuracy and FPR per source and overall; abstentions counted; optional FPR calibration."""
    from tasks.learn import run_eval
    from tasks.scan import ScanOptions, load_pipeline, scan_settings

    try:
        settings = scan_settings(
            ScanOptions(detectors=detectors, frames=frames, threshold=threshold, device=device)
        )
    except ValueError as exc:
        raise fail(str(exc)) from exc
    pipeline = load_pipeline(settings, err)
    if isinstance(pipeline, int):
        raise typer.Exit(pipeline)
    options = {
        "calibrate_fpr": calibrate_fpr,
        "limit_per_source": limit_per_source,
        "seed": seed,
        "split": split,
        "part": part,
        "reencode": reencode,
        "quality_sweep": quality_sweep,
        "out": out_file,
    }
    raise typer.Exit(run_eval(pipeline, data, options, out, err))


@app.command()
def enqueue(
    urls: Annotated[list[str], typer.Argument(help="s3://bucket/key of uploaded objects")],
    priority: Annotated[int, typer.Option(min=0, max=9, help="0 runs first, 9 last")] = 5,
    meta: Annotated[list[str] | None, typer.Option(help="caller metadata KEY=VALUE (repeatable)")] = None,
    callback: Annotated[
        str | None, typer.Option(help="POST the final verdict, signed, to this http(s) URL")
    ] = None,
) -> None:
    """Send dfw.detect_media tasks to the broker."""
    metadata = parse_metadata(meta or [])
    if callback is not None and not re.match(r"https?://[^/\s]+", callback):
        raise fail(f"--callback {callback!r} is not an http(s) URL")
    targets = [parse_s3_url(url) for url in urls]
    from tasks.producer import send_detect

    for bucket, key in targets:
        try:
            task_id = send_detect(bucket, key, priority=priority, metadata=metadata, callback_url=callback)
        except Exception as exc:  # the broker is down or refuses: say so, do not pretend
            raise fail(f"could not enqueue s3://{bucket}/{key}: {exc}", 1) from exc
        print(f"{task_id}\ts3://{bucket}/{key}", flush=True)


def parse_s3_url(url: str) -> tuple[str, str]:
    match = re.fullmatch(r"s3://([^/]+)/(.+)", url)
    if not match:
        raise fail(f"{url!r} is not of the form s3://bucket/key")
    return match.group(1), match.group(2)


def parse_metadata(items: list[str]) -> dict[str, str]:
    metadata = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise fail(f"--meta {item!r} is not KEY=VALUE")
        metadata[name] = value
    return metadata


@app.command()
def worker(
    queues: Annotated[str, typer.Option(help="comma-separated queues to consume")] = "detect",
    concurrency: Annotated[
        int, typer.Option(min=1, help="worker processes (CPU hosts; with --gpus one per GPU)")
    ] = 1,
    loglevel: Annotated[str, typer.Option(help="Celery log level")] = "info",
    hostname: Annotated[str | None, typer.Option(help="Celery node name")] = None,
    beat: Annotated[
        bool, typer.Option(help="also run the periodic reaper (one worker per deployment)")
    ] = False,
    gpus: Annotated[
        str | None,
        typer.Option(
            help="comma-separated GPU ids: one pinned worker process per GPU (CUDA_VISIBLE_DEVICES=<id>, "
            "concurrency 1, prefetch 1), supervised by this command"
        ),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="print the worker command(s) and environment; start nothing")
    ] = False,
    metrics_port: Annotated[
        int | None,
        typer.Option(min=1, max=65535, help="serve Prometheus metrics here [default: DFW_METRICS_PORT, off]"),
    ] = None,
) -> None:
    """Run a Celery worker (prefork pool, prefetch 1, models loaded once per process)."""
    if not dry_run:
        serve_worker_metrics(metrics_port)
    if gpus is not None:
        from tasks.gpus import child_commands, parse_gpus, supervise

        if concurrency != 1:
            raise fail("--concurrency cannot be combined with --gpus: each GPU gets one process")
        try:
            ids = parse_gpus(gpus)
        except ValueError as exc:
            raise fail(str(exc)) from exc
        commands = child_commands(ids, queues, loglevel, hostname, beat, dict(os.environ))
        if dry_run:
            for command in commands:
                print(command.shell(), flush=True)
            return
        raise typer.Exit(supervise(commands))
    argv = [
        "worker",
        "--pool=prefork",
        f"--concurrency={concurrency}",
        "--prefetch-multiplier=1",
        f"--queues={queues}",
        f"--loglevel={loglevel}",
        "--without-gossip",
        "--without-mingle",
        "--task-events",  # Flower's task list
    ]
    if hostname:
        argv.append(f"--hostname={hostname}")
    if beat:
        argv.append("--beat")
    if dry_run:
        print(shlex.join(["celery", *argv]), flush=True)
        return
    from tasks.app import app as celery_app

    celery_app.worker_main(argv)


def serve_worker_metrics(metrics_port: int | None) -> None:
    """Prometheus multiprocess mode, set up before the pool forks: every pool process writes its samples to
    files in PROMETHEUS_MULTIPROC_DIR (stale files removed; a new temporary folder, removed at exit, when
    unset); this process serves their sum and the queue depths. The variable must be set before
    prometheus_client is imported: it is read then. Per-GPU children (--gpus) inherit the folder and do not
    serve metrics themselves.
    """
    import atexit
    import shutil
    import tempfile

    from tasks.settings import get_service_settings

    settings = get_service_settings()
    port = metrics_port or settings.metrics_port
    if not port:
        return
    if "prometheus_client" in sys.modules:
        raise fail("internal: prometheus_client was imported before the metrics folder was set up", 1)
    configured = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if configured:
        folder = Path(configured)
        folder.mkdir(parents=True, exist_ok=True)
        for stale in folder.glob("*.db"):
            stale.unlink()
    else:
        folder = Path(tempfile.mkdtemp(prefix="dfw-metrics-"))
        atexit.register(shutil.rmtree, folder, ignore_errors=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(folder)
    os.environ.pop("DFW_METRICS_PORT", None)
    from tasks.app import app as celery_app
    from tasks.metrics import start_metrics_server

    queue_names = [queue.name for queue in celery_app.conf.task_queues or []]
    start_metrics_server(port, settings.metrics_address, settings.broker_url, queue_names)
    err.print(f"metrics on http://{settings.metrics_address}:{port}/metrics", highlight=False)


@app.command()
def flower(
    port: Annotated[int, typer.Option(min=1, max=65535, help="port of the web UI")] = 5555,
    address: Annotated[
        str, typer.Option(help="address to listen on (0.0.0.0: every interface)")
    ] = "127.0.0.1",
    basic_auth: Annotated[
        list[str] | None,
        typer.Option(help="user:password allowed in (repeatable); or FLOWER_BASIC_AUTH=user:pass,user2:pass"),
    ] = None,
    url_prefix: Annotated[str | None, typer.Option(help="serve under this path, behind a proxy")] = None,
) -> None:
    """Celery's Flower on the project's broker: workers, queues, tasks (arguments are ids and keys only).

    OAuth (--auth, FLOWER_OAUTH2_*) and every other Flower option are read from FLOWER_* variables.
    """
    from tasks.app import app as celery_app

    argv = ["flower", f"--port={port}", f"--address={address}"]
    if basic_auth:
        argv.append(f"--basic-auth={','.join(basic_auth)}")
    if url_prefix:
        argv.append(f"--url-prefix={url_prefix}")
    celery_app.start(argv)


def parse_since(text: str) -> datetime:
    match = re.fullmatch(r"(\d+)\s*([smhdw])", text.strip())
    if match:
        seconds = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}[match.group(2)]
        return datetime.now(UTC) - timedelta(seconds=int(match.group(1)) * seconds)
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise fail(f"--since {text!r}: use a duration like 30m, 24h, 7d or an ISO time") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def database_session() -> Any:
    from storage.db import session_factory
    from storage.settings import get_storage_settings

    return session_factory(get_storage_settings().database_url)()


@app.command()
def results(
    ref: Annotated[str, typer.Argument(help="job id or media sha256")],
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
    faces: Annotated[bool, typer.Option(help="include per-track and per-face rows")] = False,
) -> None:
    """Show the jobs, verdicts and scores for a job id or a media sha256."""
    from storage.queries import find_jobs, job_details

    try:
        with database_session() as session:
            jobs = find_jobs(session, ref)
            if faces:
                for job in jobs:
                    job.update(job_details(session, job["job_id"]))
    except ValueError as exc:
        raise fail(str(exc)) from exc
    if not jobs:
        raise fail(f"no job found for {ref}", 1)
    if as_json:
        out.print_json(json.dumps(jobs, default=str))
        return
    out.print(jobs_table(jobs, f"results for {ref}"))
    for job in jobs:
        if job.get("explanation"):
            out.print(Text(f"job {job['job_id']} explanation ({job['explanation']['explainer']}):"))
            out.print(Text(job["explanation"]["text"]))


@app.command()
def flagged(
    since: Annotated[str, typer.Option(help="how far back: 30m, 24h, 7d or an ISO time")] = "24h",
    limit: Annotated[int, typer.Option(min=1, max=10000)] = 100,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Media judged fake or uncertain recently, most suspicious first (a reviewer's decision overrides)."""
    from storage.queries import flagged as query_flagged

    with database_session() as session:
        jobs = query_flagged(session, parse_since(since), limit=limit)
    if as_json:
        out.print_json(json.dumps(jobs, default=str))
        return
    out.print(jobs_table(jobs, f"flagged since {since} ({len(jobs)})"))


@app.command()
def review(
    host: Annotated[
        str | None, typer.Option(help="address to listen on [default: DFW_REVIEW_HOST, 127.0.0.1]")
    ] = None,
    port: Annotated[
        int | None, typer.Option(min=1, max=65535, help="port [default: DFW_REVIEW_PORT, 8080]")
    ] = None,
) -> None:
    """Serve the reviewer page: flagged media, frames with face boxes, scores, decisions."""
    import uvicorn

    from tasks.review.app import create_app
    from tasks.review.settings import ReviewSettings

    try:
        settings = ReviewSettings()
    except ValueError as exc:  # pydantic's ValidationError: a DFW_REVIEW_* variable is wrong
        raise fail(str(exc)) from exc
    settings = settings.model_copy(update={"host": host or settings.host, "port": port or settings.port})
    out.print(f"reviewer page on http://{settings.host}:{settings.port}/", highlight=False)
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level="info")


def jobs_table(jobs: list[dict[str, Any]], title: str) -> Table:
    """Stored strings (keys, errors, explanations) are rendered as plain Text: never parsed as markup."""
    table = Table(title=title)
    columns = (
        "job",
        "status",
        "object",
        "type",
        "label",
        "score",
        "review",
        "faces",
        "frames",
        "finished",
        "error",
        "explanation",
    )
    for column in columns:
        table.add_column(column, overflow="fold")
    for job in jobs:
        verdict = job["verdict"] or {}
        coverage = verdict.get("coverage", {})
        score = verdict.get("score")
        table.add_row(
            str(job["job_id"]),
            job["status"],
            Text(f"s3://{job['bucket']}/{job['key']}"),
            (job["media"] or {}).get("type", ""),
            verdict.get("label", ""),
            "" if score is None else f"{score:.3f}",
            Text(review_summary(job.get("review"))),
            str(coverage.get("faces", "")),
            str(coverage.get("frames", "")),
            (job["finished_at"] or "")[:19],
            Text((job["error"] or {}).get("code", "") or ""),
            Text(explanation_summary(job.get("explanation"))),
        )
    return table


REVIEW_WORDS = {"fake": "confirmed fake", "real": "marked real", "unsure": "unsure"}


def review_summary(review: dict[str, Any] | None) -> str:
    """A reviewer's newest decision, which overrides the model's label (see storage/queries.py)."""
    if not review:
        return ""
    return f"{REVIEW_WORDS.get(review['decision'], review['decision'])} by {review['reviewer']}"


def explanation_summary(explanation: dict[str, Any] | None, width: int = 80) -> str:
    if not explanation:
        return ""
    text = " ".join(str(explanation["text"]).split())
    short = text if len(text) <= width else text[: width - 1] + "…"
    agrees = {True: "agrees", False: "DISAGREES", None: ""}[explanation.get("agrees")]
    return f"[{explanation['explainer']}{', ' + agrees if agrees else ''}] {short}"


def progress_callback(progress: Any, description: str) -> Any:
    task = progress.add_task(description, total=None)
    return lambda done, total: progress.update(task, completed=done, total=total)


def print_requeued(requeued: list[Any], sent: int, dry_run: bool, what: str) -> None:
    for job in requeued:
        print(f"{job.job_id}\ts3://{job.bucket}/{job.key}", flush=True)
    if dry_run:
        err.print(f"{what}: would requeue {len(requeued)} job(s)", highlight=False)
    else:
        err.print(f"{what}: requeued {len(requeued)} job(s), re-sent {sent}", highlight=False)


@app.command()
def reap(
    dry_run: Annotated[bool, typer.Option("--dry-run", help="list, change nothing")] = False,
    every: Annotated[float | None, typer.Option(min=1.0, help="repeat every N seconds until stopped")] = None,
) -> None:
    """Requeue jobs whose lease expired (a worker died) or that were never picked up by their deadline."""
    import time

    from tasks.learn import progress_bar
    from tasks.maintenance import reap as reap_jobs

    while True:
        with progress_bar(err) as progress:
            requeued, sent = reap_jobs(dry_run, progress_callback(progress, "re-sending"))
        print_requeued(requeued, sent, dry_run, "reap")
        if every is None:
            return
        time.sleep(every)


@app.command()
def retry(
    failed: Annotated[bool, typer.Option("--failed", help="retry failed jobs (required)")] = False,
    since: Annotated[
        str | None, typer.Option(help="only jobs that failed since: 30m, 24h, 7d or ISO")
    ] = None,
    code: Annotated[
        list[str] | None,
        typer.Option(help="only this error code (repeatable); default: every code that can succeed now"),
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="list, change nothing")] = False,
) -> None:
    """Re-enqueue failed jobs that can succeed now (not media that cannot be analysed, unless --code)."""
    if not failed:
        raise fail("say what to retry: --failed")
    from tasks.learn import progress_bar
    from tasks.maintenance import retry_failed

    with progress_bar(err) as progress:
        requeued, sent = retry_failed(
            parse_since(since) if since else None,
            tuple(code or ()),
            dry_run,
            progress_callback(progress, "re-sending"),
        )
    print_requeued(requeued, sent, dry_run, "retry")


@app.command()
def reaggregate(
    since: Annotated[str | None, typer.Option(help="only jobs finished since: 30m, 24h, 7d or ISO")] = None,
    policy: Annotated[
        str | None, typer.Option(help="aggregation policy (default: the configured one)")
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="list changes, write nothing")] = False,
) -> None:
    """Recompute verdicts from stored scores with the current aggregation settings; media is not touched."""
    from worker.settings import get_settings

    if policy is not None and policy != get_settings().aggregate.policy:
        raise fail(f"unknown policy {policy!r}; available: {get_settings().aggregate.policy}")
    from tasks.learn import progress_bar
    from tasks.maintenance import reaggregate as reaggregate_jobs

    with progress_bar(err) as progress:
        changed = reaggregate_jobs(
            parse_since(since) if since else None, dry_run, progress_callback(progress, "re-aggregating")
        )
    for change in changed:
        print(json.dumps(change), flush=True)
    err.print(
        f"reaggregate: {len(changed)} verdict(s) {'would change' if dry_run else 'changed'}", highlight=False
    )


@app.command()
def backfill(
    detector: Annotated[
        str, typer.Option(help="the detector to re-run where its version or weights changed")
    ],
    since: Annotated[str | None, typer.Option(help="only jobs finished since: 30m, 24h, 7d or ISO")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="list the jobs, change nothing")] = False,
) -> None:
    """Re-run one detector on stored faces (media re-fetched, faces not re-detected), then re-aggregate."""
    from tasks.learn import progress_bar
    from tasks.maintenance import backfill as backfill_jobs
    from worker.errors import ModelUnavailable

    try:
        with progress_bar(err) as progress:
            report = backfill_jobs(
                detector,
                parse_since(since) if since else None,
                dry_run,
                progress_callback(progress, f"backfilling {detector}"),
            )
    except ModelUnavailable as exc:
        raise fail(str(exc), EXIT_UNAVAILABLE) from exc
    for job_id in report.jobs:
        print(job_id, flush=True)
    for job_id, reason in report.skipped.items():
        err.print(Text(f"skipped job {job_id}: {reason}"))
    verb = "would re-run" if dry_run else "re-ran"
    err.print(
        f"backfill: {verb} {detector} ({report.version}) on {len(report.jobs)} job(s); "
        f"{len(report.skipped)} skipped",
        highlight=False,
    )


@models_app.command("list")
def models_list(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Known weight files, whether the cache has them, and which detectors use them."""
    from tasks.modelcli import list_models

    list_models(out, as_json)


@models_app.command("verify")
def models_verify() -> None:
    """Check the sha256 of every cached file; exit 1 if one is wrong."""
    from tasks.modelcli import verify_models

    raise typer.Exit(verify_models(out))


@models_app.command("fetch")
def models_fetch(
    names: Annotated[list[str] | None, typer.Argument(help="files to fetch (default: all)")] = None,
) -> None:
    """Download missing weight files from their sources into the cache."""
    from tasks.modelcli import fetch_models

    raise typer.Exit(fetch_models(out, err, names or []))


@db_app.command("upgrade")
def db_upgrade(revision: Annotated[str, typer.Argument()] = "head") -> None:
    """Apply Alembic migrations (creates the schema on an empty database)."""
    from storage.migrate import current_revision, upgrade_database
    from storage.settings import get_storage_settings

    url = get_storage_settings().database_url
    upgrade_database(url, revision)
    out.print(f"database at revision {current_revision(url)}")


@db_app.command("current")
def db_current() -> None:
    """Print the database's migration revision."""
    from storage.migrate import current_revision
    from storage.settings import get_storage_settings

    out.print(current_revision(get_storage_settings().database_url) or "empty (run `dfw db upgrade`)")


if __name__ == "__main__":
    app()

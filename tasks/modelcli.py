"""`dfw models ...`: what the model store holds and which detectors need it."""

from __future__ import annotations

import json
from typing import Any

from rich.console import Console
from rich.table import Table

from worker.detectors import DETECTOR_MODULES, create_detector
from worker.errors import ModelUnavailable
from worker.faces.yunet import YUNET_WEIGHTS
from worker.models import ModelStore
from worker.settings import WorkerSettings


def users_of_weights(settings: WorkerSettings, store: ModelStore) -> dict[str, list[str]]:
    users: dict[str, list[str]] = {YUNET_WEIGHTS: ["faces:yunet"]}
    users.setdefault(settings.faces.scrfd_weights, []).append("faces:scrfd")
    for name in DETECTOR_MODULES:
        config = settings.detector_config(name)
        for weight in create_detector(name, config, store).weight_names():
            users.setdefault(weight, []).append(name)
    return users


def detector_rows(settings: WorkerSettings, store: ModelStore) -> list[dict[str, Any]]:
    """Each registered detector: configured or not, the weight files it would load, or what is missing."""
    rows = []
    for name in DETECTOR_MODULES:
        detector = create_detector(name, settings.detector_config(name), store)
        refs = detector.weight_names()
        missing: list[str] = []
        weights: dict[str, str] = {}
        for ref in refs:
            try:
                store.resolve(ref)
                weights[ref] = store.sha256_of(ref)
            except ModelUnavailable as exc:
                missing.append(f"{ref}: {exc.reason}")
        status = "not configured" if not refs else "unavailable" if missing else "available"
        version = detector.lineage().version if status == "available" else None
        rows.append(
            {
                "detector": name,
                "status": status,
                "enabled": name in settings.detectors,
                "version": version,
                "weights": weights,
                "missing": missing,
            }
        )
    return rows


def list_models(out: Console, as_json: bool) -> None:
    settings = WorkerSettings()
    store = ModelStore(settings.model_dir, allow_fetch=False)
    users = users_of_weights(settings, store)
    detectors = detector_rows(settings, store)
    rows: list[dict[str, Any]] = [
        {
            "name": s.entry.name,
            "present": s.present,
            "verified": s.verified,
            "detail": s.detail,
            "size": s.entry.size,
            "sha256": s.entry.sha256,
            "license": s.entry.license,
            "used_by": users.get(s.entry.name, []),
            "sources": list(s.entry.sources),
        }
        for s in store.statuses()
    ]
    if as_json:
        out.print_json(json.dumps({"cache": str(store.cache_dir), "models": rows, "detectors": detectors}))
        return
    table = Table(title=f"model cache {store.cache_dir}")
    for column in ("name", "status", "used by", "size", "sha256", "license"):
        table.add_column(column)
    for row in rows:
        colour = "green" if row["verified"] else "red"  # detail: ok, ok (shipped), or what is wrong
        status = f"[{colour}]{row['detail']}[/{colour}]"
        table.add_row(
            row["name"],
            status,
            ", ".join(row["used_by"]),
            str(row["size"]),
            row["sha256"][:12],
            row["license"],
        )
    out.print(table)
    out.print(detectors_table(detectors))


def detectors_table(rows: list[dict[str, Any]]) -> Table:
    table = Table(title="detectors")
    for column in ("detector", "enabled", "status", "version", "weights loaded / missing"):
        table.add_column(column, overflow="fold")
    for row in rows:
        colour = {"available": "green", "unavailable": "red"}.get(row["status"], "yellow")
        detail = row["missing"] or [f"{ref} ({sha[:12]})" for ref, sha in row["weights"].items()]
        table.add_row(
            row["detector"],
            "yes" if row["enabled"] else "",
            f"[{colour}]{row['status']}[/{colour}]",
            row["version"] or "",
            "\n".join(detail),
        )
    return table


def verify_models(out: Console) -> int:
    store = ModelStore(WorkerSettings().model_dir, allow_fetch=False)
    bad = 0
    for status in store.statuses():
        if status.present and not status.verified:
            bad += 1
            out.print(f"[red]BAD[/red]  {status.entry.name}: {status.detail}", highlight=False)
        elif status.verified:
            out.print(f"[green]ok[/green]   {status.entry.name}", highlight=False)
        else:
            out.print(f"[yellow]--[/yellow]   {status.entry.name}: not in cache", highlight=False)
    return 1 if bad else 0


def fetch_models(out: Console, err: Console, names: list[str]) -> int:
    settings = WorkerSettings()
    store = ModelStore(settings.model_dir, allow_fetch=True)
    failed = 0
    for name in names or sorted(store.manifest):
        try:
            path = store.path(name)
        except ModelUnavailable as exc:
            failed += 1
            err.print(f"[red]failed[/red] {exc}", highlight=False)
            continue
        out.print(f"[green]ok[/green] {name} -> {path}", highlight=False)
    return 1 if failed else 0

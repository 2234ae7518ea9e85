"""Labelled media for training and evaluation: a folder with real/ and fake/, or a manifest CSV.

A manifest has at least the columns `path` (relative to the manifest's folder) and `label` (real|fake);
`source` groups items for per-source metrics (the dev set's manifest.csv has them all).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

LABELS = {"real": 0, "fake": 1}


@dataclass(frozen=True)
class Example:
    path: Path
    label: int  # 1 fake, 0 real
    source: str
    media: str = ""  # image | video, when the manifest says


def read_examples(data: Path) -> list[Example]:
    """Examples from a folder (real/ and fake/ subfolders, searched recursively) or a manifest CSV."""
    if data.is_dir():
        return read_folder(data)
    if data.is_file():
        return read_manifest(data)
    raise ValueError(f"{data} is neither a folder with real/ and fake/ nor a manifest file")


def read_folder(folder: Path) -> list[Example]:
    examples = []
    for name, label in LABELS.items():
        root = folder / name
        if not root.is_dir():
            continue
        for path in sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith(".")):
            relative = path.relative_to(root).parts
            source = relative[0] if len(relative) > 1 else folder.name
            examples.append(Example(path, label, source))
    if not examples:
        raise ValueError(f"{folder} has no files under real/ or fake/")
    return examples


def read_manifest(manifest: Path) -> list[Example]:
    with manifest.open(newline="") as handle:
        reader = csv.DictReader(handle)
        missing = {"path", "label"} - set(reader.fieldnames or [])
        if missing:
            raise ValueError(f"{manifest} lacks the column(s) {', '.join(sorted(missing))}")
        examples = []
        for number, row in enumerate(reader, start=2):
            label = row["label"].strip().lower()
            if label not in LABELS:
                raise ValueError(f"{manifest}:{number}: label {row['label']!r} is not real or fake")
            path = Path(row["path"])
            examples.append(
                Example(
                    path if path.is_absolute() else manifest.parent / path,
                    LABELS[label],
                    (row.get("source") or "").strip() or "all",
                    (row.get("media") or "").strip(),
                )
            )
    return examples

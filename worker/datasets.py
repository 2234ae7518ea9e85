"""Labelled media for training and evaluation: a folder with real/ and fake/, or a manifest CSV.

A manifest has at least the columns `path` (relative to the manifest's folder) and `label` (real|fake);
`source` groups items for per-source metrics (the dev set's manifest.csv has them all).
"""

from __future__ import annotations

import csv
import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

LABELS = {"real": 0, "fake": 1}


@dataclass(frozen=True)
class Example:
    path: Path
    label: int  # 1 fake, 0 real
    source: str
    media: str = ""  # image | video, when the manifest says
    generator: str = ""  # what made a fake (or the real material), when the manifest says


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
                    (row.get("generator") or "").strip(),
                )
            )
    return examples


# Splits: which part (train, heldout, or None = left out) each example of a known data set belongs to.
Part = str | None


def fraction_of(example: Example) -> float:
    """A stable number in [0, 1) from the file's name: the same file lands in the same part everywhere."""
    digest = hashlib.sha256(example.path.name.encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def dev_v1(example: Example) -> Part:
    """The dev set's split for the project's own detectors (README, "The project's own detectors").

    Whole sources are held out: in-the-wild videos and FF++ Deepfakes crops (CNNDetection's) are never
    trained on. Text-to-image faces are split by generator: SDXL trains, FLUX.1 and DALL-E 3 are held out
    (the tiles whose generator the data set does not name are left out of both). The real photos are split
    by file name: UTKFace's small web crops 70/30, the press photos 50/50 (the only large, sharp real faces:
    with none in training, a network learns "sharp studio portrait = generated"; a first run did, and called
    63 % of them fake). The FF++ videos and their transcoded copies (same clips) train, whole videos only.
    """
    source = example.source
    if source in {"inthewild_video", "ffpp_cnndetection"}:
        return "heldout"
    if source == "deepface_photos":
        return "train" if fraction_of(example) < 0.5 else "heldout"
    if source in {"ffpp_video", "ffpp_video_transcoded"}:
        return "train"
    if source == "sfhq_t2i_tiles":
        if example.generator == "SDXL":
            return "train"
        if example.generator.startswith(("FLUX.1", "DALL-E")):
            return "heldout"
        return None
    if source == "utkface":
        return "train" if fraction_of(example) < 0.7 else "heldout"
    return None


def dev_v1_no_t2i(example: Example) -> Part:
    """dev-v1 with every text-to-image face held out: training sees no generated face at all (real photos,
    FF++ videos and self-blended pseudo-fakes only). Measures how far blending traces carry to T2I faces."""
    if example.source == "sfhq_t2i_tiles":
        return "heldout" if dev_v1(example) is not None else None
    return dev_v1(example)


SPLITS: dict[str, Callable[[Example], Part]] = {"dev-v1": dev_v1, "dev-v1-no-t2i": dev_v1_no_t2i}


def select_part(examples: list[Example], split: str, part: str) -> list[Example]:
    """The examples of one part ("train" or "heldout") of a named split."""
    try:
        rule = SPLITS[split]
    except KeyError:
        raise ValueError(f"unknown split {split!r}; known splits: {', '.join(sorted(SPLITS))}") from None
    if part not in {"train", "heldout"}:
        raise ValueError(f"part must be train or heldout, not {part!r}")
    return [example for example in examples if rule(example) == part]

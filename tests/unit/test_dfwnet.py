"""The project's own detectors: their split, self-blended pseudo-fakes, training from scratch through
`dfw train`, and the shipped weights (found in the package, sha256 checked, fakes scored above reals on
held-out data)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import run_cli
from worker.datasets import dev_v1, read_manifest, select_part
from worker.models import MANIFEST, PACKAGED_DIR, ModelStore, sha256_file
from worker.sbi import face_mask, self_blend
from worker.settings import WorkerSettings
from worker.training import AUGMENTATIONS, augment, repeat_edges

# the project's own detectors and the weight files the package ships for them
SHIPPED_DETECTORS = {"dfwnet": "dfwnet-v1.safetensors", "dfwmeso": "dfwmeso-v1.safetensors"}
SHIPPED_FILES = sorted(SHIPPED_DETECTORS.values())


def test_dev_split_holds_out_whole_sources_and_generators(dev_dir: Path) -> None:
    examples = read_manifest(dev_dir / "manifest.csv")
    train = select_part(examples, "dev-v1", "train")
    heldout = select_part(examples, "dev-v1", "heldout")
    assert not {e.path for e in train} & {e.path for e in heldout}
    train_sources = {e.source for e in train}
    for source in ("inthewild_video", "ffpp_cnndetection"):
        assert source not in train_sources and any(e.source == source for e in heldout)
    assert {e.generator for e in train if e.source == "sfhq_t2i_tiles"} == {"SDXL"}
    held_generators = {e.generator for e in heldout if e.source == "sfhq_t2i_tiles"}
    assert held_generators and not any(g == "SDXL" or "mix" in g for g in held_generators)
    # a transcoded clip is the same video as its original: both on the same side
    stems = {e.path.stem for e in train if e.source.startswith("ffpp_video")}
    assert not stems & {e.path.stem for e in heldout}
    for source, low, high in (("utkface", 0.6, 0.8), ("deepface_photos", 0.3, 0.7)):
        group = [e for e in examples if e.source == source]
        share = sum(dev_v1(e) == "train" for e in group) / len(group)
        assert low < share < high
    no_t2i = select_part(examples, "dev-v1-no-t2i", "train")
    assert not any(e.source == "sfhq_t2i_tiles" for e in no_t2i)
    assert {e.path for e in no_t2i} == {e.path for e in train if e.source != "sfhq_t2i_tiles"}
    with pytest.raises(ValueError, match="unknown split"):
        select_part(examples, "nope", "train")


def test_self_blend_changes_the_face_region_and_is_seeded() -> None:
    rng = np.random.default_rng(1)
    crop = rng.integers(0, 256, size=(160, 160, 3), dtype=np.uint8)
    first = self_blend(crop, np.random.default_rng(7))
    again = self_blend(crop, np.random.default_rng(7))
    assert first.shape == crop.shape and first.dtype == np.uint8
    assert np.array_equal(first, again)
    masks = np.stack([face_mask(160, np.random.default_rng(seed)) for seed in range(50)])
    assert masks.min() >= 0.0 and masks.max() <= 1.0
    # the blend lives on the inner face: centre weight high, corners untouched
    assert masks[:, 80, 80].mean() > 0.5 and masks[:, :8, :8].max() < 0.01
    changed = [
        np.abs(self_blend(crop, np.random.default_rng(s)).astype(int) - crop).mean() for s in range(10)
    ]
    assert min(changed) > 0.5


def test_strong_augmentation_hides_compression_and_borders() -> None:
    rng = np.random.default_rng(0)
    crop = np.random.default_rng(2).integers(0, 256, size=(160, 160, 3), dtype=np.uint8)
    views = [augment(crop, rng, AUGMENTATIONS["strong"]) for _ in range(40)]
    assert all(v.shape == crop.shape and v.dtype == np.uint8 for v in views)
    assert sum(not np.array_equal(v, crop) for v in views) >= 35
    edged = repeat_edges(crop, np.random.default_rng(3), widest=0.25)
    repeated_rows = [np.array_equal(edged[0], edged[1]), np.array_equal(edged[-1], edged[-2])]
    repeated_cols = [np.array_equal(edged[:, 0], edged[:, 1]), np.array_equal(edged[:, -1], edged[:, -2])]
    assert any(repeated_rows + repeated_cols)


@pytest.mark.parametrize("shipped", SHIPPED_FILES)
def test_shipped_weights_are_in_the_package_and_match_the_manifest(tmp_path: Path, shipped: str) -> None:
    entry = MANIFEST[shipped]
    path = PACKAGED_DIR / shipped
    assert path.is_file() and sha256_file(path) == entry.sha256 and path.stat().st_size == entry.size
    assert entry.size is not None and entry.size < 5 * 1024**2
    store = ModelStore(tmp_path / "empty-cache", allow_fetch=False)  # nothing cached: the package serves it
    assert store.path(shipped) == path and store.status(shipped).verified


@pytest.fixture
def heldout_sample(dev_dir: Path) -> tuple[list[Path], list[Path]]:
    """Held-out images of the dev split: every source the detector never trained on, a few of each."""
    examples = select_part(read_manifest(dev_dir / "manifest.csv"), "dev-v1", "heldout")
    images = [e for e in examples if e.media == "image"]
    fakes, reals = [], []
    for source in sorted({e.source for e in images}):
        group = sorted((e for e in images if e.source == source), key=lambda e: e.path.name)
        fakes += [e.path for e in group if e.label == 1][:12]
        reals += [e.path for e in group if e.label == 0][:12]
    return fakes, reals


@pytest.mark.parametrize(("detector", "shipped"), SHIPPED_DETECTORS.items())
def test_shipped_weights_score_heldout_fakes_above_heldout_reals(
    worker_env: None,
    torch_one_thread: None,
    heldout_sample: tuple[list[Path], list[Path]],
    detector: str,
    shipped: str,
) -> None:
    from worker.pipeline import Pipeline

    fakes, reals = heldout_sample
    assert len(fakes) >= 20 and len(reals) >= 20
    pipeline = Pipeline(WorkerSettings(detectors=[detector]))
    pipeline.load()

    def scores(paths: list[Path]) -> list[float]:
        verdicts = [pipeline.analyze(p).verdict for p in paths]
        return [v.detectors[detector] for v in verdicts if v.score is not None]

    fake_scores, real_scores = scores(fakes), scores(reals)
    assert np.mean(fake_scores) > np.mean(real_scores) + 0.1
    assert pipeline.detectors[0].lineage().weights == {shipped: MANIFEST[shipped].sha256}


def test_dfw_train_dfwnet_from_scratch_is_reproducible(
    tmp_path: Path, models_dir: Path, dev_dir: Path
) -> None:
    rows = [
        r
        for r in (dev_dir / "manifest.csv").read_text().splitlines()[1:]
        if "/utkface/utk_1" in r or "/sfhq_t2i_tiles/sfhq_SDXL" in r or "ffpp_youtube_004.avi" in r
    ][:12]
    header = (dev_dir / "manifest.csv").read_text().splitlines()[0]
    manifest = tmp_path / "manifest.csv"
    manifest.write_text(
        "\n".join([header] + [r.replace(r.split(",")[0], str(dev_dir / r.split(",")[0]), 1) for r in rows])
    )
    model_dir = tmp_path / "models"
    model_dir.mkdir()
    shutil.copy(models_dir / "face_detection_yunet_2023mar.onnx", model_dir)
    env = {"DFW_MODEL_DIR": str(model_dir), "DFW_MODEL_FETCH": "false", "DFW_SAMPLING__FRAMES_PER_VIDEO": "4"}
    args = ["train", "dfwnet", "--data", str(manifest), "--split", "dev-v1", "--epochs", "2"]
    args += ["--cache", str(tmp_path / "crops"), "--device", "cpu", "--threads", "1"]
    args += ["--frames-per-video", "4"]
    first = run_cli(*args, "--out", str(model_dir), "--name", "mine.safetensors", env=env)
    assert first.returncode == 0, first.stderr
    report = json.loads(first.stdout)
    assert report["crops"] >= 10 and report["steps"] == 2 * ((report["crops"] + 31) // 32)
    recipe = json.loads((model_dir / "mine.safetensors.manifest.json").read_text())["description"]
    assert '"sbi": 0.5' in recipe and '"augment": "strong"' in recipe and '"split": "dev-v1"' in recipe
    assert '"frames_per_video": 4' in recipe  # the option overrides the recipe's 64
    second = run_cli(*args, "--out", str(tmp_path / "again"), "--name", "mine.safetensors", env=env)
    assert second.returncode == 0, second.stderr
    assert json.loads(second.stdout)["sha256"] == report["sha256"]  # same seed, same data: same bytes

    scan = run_cli(
        "scan",
        "--json",
        "--detectors",
        "dfwnet",
        str(dev_dir / "real/utkface/utk_10_0_0_20170110220403810.jpg"),
        env={**env, "DFW_DFWNET__WEIGHTS": "mine.safetensors"},
    )
    assert scan.returncode == 0, scan.stderr
    line = json.loads(scan.stdout)
    assert 0.0 <= line["detectors"]["dfwnet"] <= 1.0


def test_calibration_applies_only_to_the_weights_it_was_measured_with(tmp_path: Path) -> None:
    from worker.evaluation import resolve_threshold, write_calibration
    from worker.settings import AggregateConfig

    config = AggregateConfig()
    write_calibration(tmp_path, ["dfwnet"], {"threshold": 0.9, "detectors": {"dfwnet": "dfwnet/1@aaaa"}})
    assert resolve_threshold(config, tmp_path, ["dfwnet"], {"dfwnet": "dfwnet/1@aaaa"}) == 0.9
    other = resolve_threshold(config, tmp_path, ["dfwnet"], {"dfwnet": "dfwnet/1@bbbb"})
    assert other != 0.9
    assert resolve_threshold(AggregateConfig(threshold=0.3), tmp_path, ["dfwnet"]) == 0.3

"""`dfw train` and `dfw eval` as ML engineers run them: real processes, real dev images, a tiny random CLIP
backbone for the trainable adapter (never presented as a trained model), the real MesoNet for eval."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import run_cli
from tests.tiny_models import tiny_clip
from worker.models import sha256_file

REALS = [
    "real/utkface/utk_10_0_0_20170110220403810.jpg",
    "real/deepface_photos/deepface_img10.jpg",
    "real/ffpp_cnndetection/deepfake_102_real.png",
]
FAKES = [
    "fake/ffpp_cnndetection/deepfake_103_fake.png",
    "fake/ffpp_cnndetection/deepfake_112_fake.png",
    "fake/sfhq_t2i_tiles/sfhq_FLUX1_dev_images_with_prompts_00.jpg",
]


def dfw(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return run_cli(*args, env=env)


@pytest.fixture
def model_dir(tmp_path: Path, models_dir: Path) -> Path:
    """A writable model cache holding the real face detector and MesoNet weights."""
    target = tmp_path / "models"
    target.mkdir()
    for name in ("face_detection_yunet_2023mar.onnx", "Meso4_DF.h5"):
        shutil.copy(models_dir / name, target / name)
    return target


@pytest.fixture
def folder(tmp_path: Path, dev_dir: Path) -> Path:
    root = tmp_path / "data"
    for label, items in (("real", REALS), ("fake", FAKES)):
        for item in items:
            target = root / label / item.split("/")[1] / Path(item).name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(dev_dir / item, target)
    return root


def test_train_writes_a_loadable_reproducible_adapter(tmp_path: Path, model_dir: Path, folder: Path) -> None:
    backbone = tiny_clip(tmp_path / "backbone")
    env = {
        "DFW_MODEL_DIR": str(model_dir),
        "DFW_MODEL_FETCH": "false",
        "DFW_CLIP_LINEAR__BACKBONE__MODEL": backbone.model,
        "DFW_CLIP_LINEAR__BACKBONE__WEIGHTS": backbone.weights,
        "DFW_CLIP_LINEAR__BACKBONE__MODEL_CONFIG_PATH": str(backbone.model_config_path),
        "DFW_CLIP_LINEAR__LOOKS_AT": "face",
    }
    cache = tmp_path / "crops"
    args = [
        "train",
        "clip_linear",
        "--data",
        str(folder),
        "--epochs",
        "2",
        "--batch-size",
        "4",
        "--cache",
        str(cache),
        "--device",
        "cpu",
    ]
    first = dfw(*args, "--out", str(model_dir), "--name", "head-a.pt", env=env)
    assert first.returncode == 0, first.stderr
    report = json.loads(first.stdout)
    assert report["crops"] == 6 and report["skipped"] == 0 and report["steps"] == 4
    assert report["sha256"] == sha256_file(model_dir / "head-a.pt")
    manifest = json.loads((model_dir / "head-a.pt.manifest.json").read_text())
    assert (
        manifest["sha256"] == report["sha256"]
        and manifest["size"] == (model_dir / "head-a.pt").stat().st_size
    )
    assert len(list(cache.glob("*.npy"))) == 6  # crops cached: a second run does not detect faces again

    second = dfw(*args, "--out", str(tmp_path / "again"), "--name", "head-a.pt", env=env)
    assert second.returncode == 0, second.stderr
    assert json.loads(second.stdout)["sha256"] == report["sha256"]  # same seed, same data: same weights

    scan = dfw(
        "scan",
        "--json",
        "--detectors",
        "clip_linear",
        str(folder / "real"),
        env={**env, "DFW_CLIP_LINEAR__HEAD": "head-a.pt"},
    )
    assert scan.returncode == 0, scan.stderr
    lines = [json.loads(line) for line in scan.stdout.splitlines()]
    assert len(lines) == 3 and all(0 <= line["detectors"]["clip_linear"] <= 1 for line in lines)


def test_train_refuses_what_it_cannot_train(tmp_path: Path, model_dir: Path, folder: Path) -> None:
    env = {"DFW_MODEL_DIR": str(model_dir), "DFW_MODEL_FETCH": "false"}
    not_trainable = dfw("train", "meso4", "--data", str(folder), "--out", str(tmp_path / "o"), env=env)
    assert not_trainable.returncode == 2 and "no trainable adapter" in not_trainable.stderr
    no_backbone = dfw("train", "clip_linear", "--data", str(folder), "--out", str(tmp_path / "o"), env=env)
    assert no_backbone.returncode == 3 and "ViT-L-14.pt" in no_backbone.stderr
    assert "Traceback" not in no_backbone.stderr


def eval_manifest(tmp_path: Path, dev_dir: Path) -> Path:
    """REALS, FAKES and one real item whose file is missing, with columns path, label, source only."""
    manifest = tmp_path / "manifest.csv"
    rows = ["path,label,source"] + [f"{dev_dir / p},real,{p.split('/')[1]}" for p in REALS]
    rows += [f"{dev_dir / p},fake,{p.split('/')[1]}" for p in FAKES] + [f"{tmp_path / 'gone.jpg'},real,gone"]
    manifest.write_text("\n".join(rows) + "\n")
    return manifest


def test_eval_reports_and_calibrates(tmp_path: Path, model_dir: Path, dev_dir: Path) -> None:
    manifest = eval_manifest(tmp_path, dev_dir)
    env = {"DFW_MODEL_DIR": str(model_dir), "DFW_MODEL_FETCH": "false"}
    report_path = tmp_path / "report.json"
    done = dfw("eval", "--data", str(manifest), "--out", str(report_path), "--calibrate-fpr", "0.0", env=env)
    assert done.returncode == 0, done.stderr
    report = json.loads(report_path.read_text())
    overall = report["overall"]["verdict"]
    assert (overall["n"], overall["n_real"], overall["n_fake"], overall["abstained"]) == (7, 4, 3, 1)
    assert report["outcomes"]["not_found"] == 1 and overall["fpr"] == 0.0
    assert set(report["by_source"]) == {
        "utkface",
        "deepface_photos",
        "ffpp_cnndetection",
        "sfhq_t2i_tiles",
        "gone",
    }
    calibration = json.loads((model_dir / "calibration.json").read_text())
    entry = calibration["dfwmeso"]  # the default detector set
    threshold = entry["threshold"]
    assert threshold == report["threshold"] and entry["n_real"] == 3
    assert entry["detectors"] == report["detectors"]  # the versions it was measured with
    scan = dfw("scan", "--json", str(dev_dir / REALS[0]), env=env)
    assert json.loads(scan.stdout)["threshold"] == threshold  # the service and scan use the calibrated one


def test_eval_reencodes_images_and_sweeps_jpeg_quality(
    tmp_path: Path, model_dir: Path, dev_dir: Path
) -> None:
    manifest = eval_manifest(tmp_path, dev_dir)  # no `media` column: images are told by their signature
    env = {"DFW_MODEL_DIR": str(model_dir), "DFW_MODEL_FETCH": "false"}
    report_path = tmp_path / "report.json"
    args = ["eval", "--data", str(manifest), "--detectors", "dfwnet", "--out", str(report_path)]
    done = dfw(*args, "--reencode", "60:160", "--quality-sweep", "30,95", env=env)
    assert done.returncode == 0, done.stderr
    report = json.loads(report_path.read_text())
    assert report["reencode"] == {"quality": 60, "long_side": 160}
    assert report["overall"]["verdict"]["n"] == 7 and report["outcomes"]["not_found"] == 1
    sweep = report["quality_sweep"]
    assert sweep["n_real_images"] == 3 and set(sweep["qualities"]) == {"30", "95"}  # the missing file is not
    assert (sweep["low"], sweep["high"]) == (30, 95) and 0.0 <= sweep["auc_high_vs_low"] <= 1.0
    assert 0.0 <= sweep["share_higher_at_high"] <= 1.0
    # the copies really differ: the same real images score differently at quality 30 and 95
    assert sweep["qualities"]["30"]["mean"] != sweep["qualities"]["95"]["mean"]
    assert sweep["mean_difference_high_minus_low"] == pytest.approx(
        sweep["qualities"]["95"]["mean"] - sweep["qualities"]["30"]["mean"]
    )
    bad = dfw(*args, "--reencode", "high", env=env)
    assert bad.returncode == 2 and "--reencode takes QUALITY" in bad.stderr

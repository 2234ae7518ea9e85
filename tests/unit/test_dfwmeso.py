"""dfwmeso: Meso4 fine-tuned from the public weights. Fine-tuning starts exactly at meso4, `dfw train
dfwmeso` is reproducible, moves the weights away from the start, and says so when the start is missing;
wrong weight files are refused with the reason. (The shipped file's sha256 and held-out ranking are tested
with dfwnet's in test_dfwnet.py.)"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import run_cli
from worker.detectors.dfwmeso import DfwmesoConfig, DfwmesoDetector
from worker.detectors.meso4 import Meso4Config, Meso4Detector
from worker.errors import ModelUnavailable
from worker.models import PACKAGED_DIR, ModelStore

REAL_FACES = ("real/ffpp_cnndetection/deepfake_102_real.png", "real/utkface/utk_10_0_0_20170110220403810.jpg")


def face_crops(dev_dir: Path, size: int) -> np.ndarray:
    import cv2

    images = [cv2.cvtColor(cv2.imread(str(dev_dir / p)), cv2.COLOR_BGR2RGB) for p in REAL_FACES]
    return np.stack([cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA) for image in images])


def test_fine_tuning_starts_from_the_public_meso4_weights(
    torch_one_thread: None, models_dir: Path, dev_dir: Path
) -> None:
    store = ModelStore(models_dir, allow_fetch=False)
    start = DfwmesoDetector(DfwmesoConfig(), store)
    start.load_for_training(seed=3)
    meso4 = Meso4Detector(Meso4Config(), store)
    meso4.load()
    crops = face_crops(dev_dir, 256)
    np.testing.assert_allclose(start.predict(list(crops)), meso4.predict(list(crops)), atol=1e-6)


def tiny_manifest(dev_dir: Path, folder: Path) -> Path:
    lines = (dev_dir / "manifest.csv").read_text().splitlines()
    rows = [
        r
        for r in lines[1:]
        if "/utkface/utk_1" in r or "/sfhq_t2i_tiles/sfhq_SDXL" in r or "ffpp_youtube_004.avi" in r
    ][:10]
    manifest = folder / "manifest.csv"
    rows = [r.replace(r.split(",")[0], str(dev_dir / r.split(",")[0]), 1) for r in rows]
    manifest.write_text("\n".join([lines[0], *rows]))
    return manifest


def test_dfw_train_dfwmeso_fine_tunes_reproducibly(tmp_path: Path, models_dir: Path, dev_dir: Path) -> None:
    manifest = tiny_manifest(dev_dir, tmp_path)
    model_dir = tmp_path / "models"
    model_dir.mkdir()
    shutil.copy(models_dir / "face_detection_yunet_2023mar.onnx", model_dir)
    env = {"DFW_MODEL_DIR": str(model_dir), "DFW_MODEL_FETCH": "false"}
    args = ["train", "dfwmeso", "--data", str(manifest), "--split", "dev-v1", "--epochs", "1"]
    args += ["--cache", str(tmp_path / "crops"), "--device", "cpu", "--frames-per-video", "2"]

    missing = run_cli(*args, "--out", str(tmp_path / "none"), env=env)
    assert missing.returncode == 3 and "Meso4_DF.h5" in missing.stderr  # nothing to fine-tune from
    assert not (tmp_path / "none").exists()

    shutil.copy(models_dir / "Meso4_DF.h5", model_dir)
    first = run_cli(*args, "--out", str(model_dir), "--name", "mine.safetensors", env=env)
    assert first.returncode == 0, first.stderr
    report = json.loads(first.stdout)
    assert report["crops"] >= 8 and report["steps"] == (report["crops"] + 31) // 32
    recipe = json.loads((model_dir / "mine.safetensors.manifest.json").read_text())["description"]
    assert '"lr": 0.0001' in recipe and '"sbi": 0.5' in recipe and '"threads": 1' in recipe
    second = run_cli(*args, "--out", str(tmp_path / "again"), "--name", "mine.safetensors", env=env)
    assert second.returncode == 0, second.stderr
    assert json.loads(second.stdout)["sha256"] == report["sha256"]

    crop = str(dev_dir / REAL_FACES[1])
    scan_env = {**env, "DFW_DFWMESO__WEIGHTS": "mine.safetensors"}
    tuned = run_cli("scan", "--json", "--detectors", "dfwmeso", crop, env=scan_env)
    public = run_cli("scan", "--json", "--detectors", "meso4", crop, env=env)
    assert tuned.returncode == 0 and public.returncode == 0, tuned.stderr + public.stderr
    tuned_score = json.loads(tuned.stdout)["detectors"]["dfwmeso"]
    assert 0.0 <= tuned_score <= 1.0
    assert tuned_score != json.loads(public.stdout)["detectors"]["meso4"]  # training changed the network


def test_wrong_weight_files_are_refused_with_the_reason(tmp_path: Path, models_dir: Path) -> None:
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"not a tensor file")
    store = ModelStore(models_dir, allow_fetch=False)
    cases = {
        str(garbage): "not a dfwmeso weight file",
        str(PACKAGED_DIR / "dfwnet-v1.safetensors"): "weights do not fit dfwmeso",  # another network's
    }
    for weights, reason in cases.items():
        detector = DfwmesoDetector(DfwmesoConfig(weights=weights), store)
        with pytest.raises(ModelUnavailable, match=reason):
            detector.load()

"""Meso4 detector: the torch port against an independent numpy reference, on the real public weights.

The weights and images come from the sibling `shared` directory of the repository root (override with
DFW_SHARED_DIR); see shared/README.md.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from worker.detectors import detector_class
from worker.detectors.meso4 import Meso4Config, Meso4Detector
from worker.errors import ModelUnavailable
from worker.models import ModelStore

torch = pytest.importorskip("torch")
h5py = pytest.importorskip("h5py")

REPO = Path(__file__).resolve().parents[2]
SHARED = Path(os.environ.get("DFW_SHARED_DIR") or REPO.parent / "shared")
WEIGHTS = ("Meso4_DF.h5", "Meso4_F2F.h5")
FACES = (
    "data/dev/real/utkface/utk_100_1_0_20170110183726390.jpg",
    "data/dev/real/utkface/utk_10_0_0_20170110220403810.jpg",
    "data/dev/real/ffpp_cnndetection/deepfake_102_real.png",
    "data/dev/fake/ffpp_cnndetection/deepfake_103_fake.png",
    "data/dev/fake/ffpp_cnndetection/deepfake_112_fake.png",
)


@pytest.fixture(scope="module")
def store() -> ModelStore:
    return ModelStore(SHARED / "models", allow_fetch=False)


@pytest.fixture(scope="module")
def faces() -> np.ndarray:
    """(N, 256, 256, 3) uint8 RGB face crops."""
    crops = []
    for relative in FACES:
        with Image.open(SHARED / relative) as image:
            crops.append(np.asarray(image.convert("RGB").resize((256, 256), Image.Resampling.BILINEAR)))
    return np.stack(crops)


@pytest.fixture(scope="module", params=WEIGHTS)
def detector(request: pytest.FixtureRequest, store: ModelStore) -> Meso4Detector:
    loaded = Meso4Detector(Meso4Config(weights=request.param), store)
    loaded.load()
    return loaded


# ---- independent numpy reference (NHWC, float64, Keras semantics) ----


def keras_layers(path: Path) -> dict[str, list[dict[str, np.ndarray]]]:
    """Weighted layers by kind, ordered by the number Keras appended to each layer name."""
    found: dict[str, list[tuple[int, dict[str, np.ndarray]]]] = {}
    with h5py.File(path, "r") as handle:
        for name in handle:
            kind, _, number = name.rpartition("_")
            found.setdefault(kind, []).append((int(number), layer_arrays(handle[name])))
    return {
        kind: [arrays for _, arrays in sorted(layers, key=lambda item: item[0])]
        for kind, layers in found.items()
    }


def layer_arrays(group: Any) -> dict[str, np.ndarray]:
    """Every dataset under a layer group, by its last name component ('kernel:0', 'gamma:0', ...)."""
    arrays: dict[str, np.ndarray] = {}

    def collect(key: str, obj: object) -> None:
        if isinstance(obj, h5py.Dataset):
            arrays[key.rsplit("/", 1)[-1]] = obj[()]

    group.visititems(collect)
    return arrays


def conv_same(x: np.ndarray, kernel: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """Keras Conv2D(padding='same'), stride 1, odd square kernel HWIO, as a sum over kernel taps."""
    size = kernel.shape[0]
    pad = size // 2
    padded = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    height, width = x.shape[1:3]
    out = np.zeros((*x.shape[:3], kernel.shape[3]))
    for dy in range(size):
        for dx in range(size):
            out += padded[:, dy : dy + height, dx : dx + width, :] @ kernel[dy, dx]
    return out + bias


def max_pool(x: np.ndarray, pool: int) -> np.ndarray:
    n, height, width, channels = x.shape
    assert height % pool == 0 and width % pool == 0  # then Keras' 'same' padding adds nothing
    return x.reshape(n, height // pool, pool, width // pool, pool, channels).max(axis=(2, 4))


def reference_p_real(path: Path, batch: np.ndarray) -> np.ndarray:
    layers = keras_layers(path)
    x = batch.astype(np.float64) / 255.0
    for conv, bn, pool in zip(layers["conv2d"], layers["batch_normalization"], (2, 2, 2, 4), strict=True):
        x = np.maximum(conv_same(x, conv["kernel:0"].astype(np.float64), conv["bias:0"]), 0.0)
        x = (x - bn["moving_mean:0"]) / np.sqrt(bn["moving_variance:0"] + 1e-3) * bn["gamma:0"] + bn["beta:0"]
        x = max_pool(x, pool)
    assert x.shape[1:] == (8, 8, 16)
    hidden_layer, out_layer = layers["dense"]
    hidden = x.reshape(len(x), -1) @ hidden_layer["kernel:0"] + hidden_layer["bias:0"]  # NHWC flatten
    hidden = np.where(hidden > 0, hidden, 0.1 * hidden)
    logit = hidden @ out_layer["kernel:0"] + out_layer["bias:0"]
    return 1.0 / (1.0 + np.exp(-logit[:, 0]))


# ---- tests ----


def test_matches_numpy_reference(detector: Meso4Detector, faces: np.ndarray, store: ModelStore) -> None:
    expected_fake = 1.0 - reference_p_real(store.path(detector.meso_config.weights), faces)
    scores = detector.predict(list(faces))
    assert np.abs(scores - expected_fake).max() < 1e-4
    assert np.ptp(scores) > 1e-3  # the faces do not all collapse to one value


def test_scores_are_probabilities(detector: Meso4Detector, faces: np.ndarray) -> None:
    noise = np.random.default_rng(0).integers(0, 256, (3, 256, 256, 3), dtype=np.uint8)
    blanks = [np.zeros((256, 256, 3), np.uint8), np.full((256, 256, 3), 255, np.uint8)]
    scores = detector.predict([*faces, *noise, *blanks])
    assert scores.shape == (len(faces) + 5,)
    assert np.all((scores >= 0.0) & (scores <= 1.0))
    assert np.all(np.isfinite(scores))


def test_batch_equals_single_items(detector: Meso4Detector, faces: np.ndarray) -> None:
    batched = detector.predict(list(faces))
    singles = np.concatenate([detector.predict([face]) for face in faces])
    np.testing.assert_allclose(batched, singles, rtol=0, atol=1e-5)


def test_load_is_idempotent(store: ModelStore, faces: np.ndarray, monkeypatch: pytest.MonkeyPatch) -> None:
    meso = Meso4Detector(Meso4Config(), store)
    meso.load()
    before = meso.predict(list(faces[:2]))
    calls: list[None] = []
    monkeypatch.setattr(meso, "_load", lambda: calls.append(None))
    meso.load()
    assert calls == []
    np.testing.assert_array_equal(meso.predict(list(faces[:2])), before)


@pytest.mark.parametrize("shape", [(224, 224, 3), (256, 256, 4), (256, 256)])
def test_wrong_input_size_raises(detector: Meso4Detector, shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError):
        detector.predict([np.zeros(shape, np.uint8)])


def test_missing_weights_raise_model_unavailable(tmp_path: Path) -> None:
    meso = Meso4Detector(Meso4Config(weights="Meso4_F2F.h5"), ModelStore(tmp_path, allow_fetch=False))
    with pytest.raises(ModelUnavailable):
        meso.load()
    assert not meso.loaded


def test_registry_and_weight_names(store: ModelStore) -> None:
    assert detector_class("meso4") is Meso4Detector
    assert Meso4Detector(Meso4Config(weights="Meso4_F2F.h5"), store).weight_names() == ["Meso4_F2F.h5"]
    assert (Meso4Detector.looks_at, Meso4Detector.input_size) == ("face", 256)


def test_module_import_is_light() -> None:
    code = "import sys, worker.detectors.meso4; print('torch' in sys.modules or 'h5py' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "False"


def test_half_precision_only_on_cuda() -> None:
    import warnings
    from contextlib import nullcontext

    from worker.detectors.base import half_precision

    assert isinstance(half_precision("cpu"), nullcontext)
    with warnings.catch_warnings():  # without a GPU torch warns that it would disable autocast
        warnings.simplefilter("ignore", UserWarning)
        context = half_precision("cuda:0")  # built, not entered
    assert type(context).__name__ == "autocast" and context.fast_dtype == torch.float16

"""clip_linear (UnivFD) and clip_prompt (CoOp) on a tiny random CLIP: contracts, training, adapters.

The backbone is `tests.tiny_models.tiny_clip` (random weights, embed dim 32, text width 64): these tests check
the plumbing (shapes, batching, frozen backbone, adapter round trips, caching, lineage), not accuracy. The
public UnivFD head is checked on its own against a ViT-L/14-shaped head (1 x 768).
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from pydantic import BaseModel

from tests.conftest import REPO
from tests.tiny_models import tiny_clip
from worker.detectors import detector_class
from worker.detectors.base import TrainableDetector, weights_digest
from worker.detectors.clip_backbone import ClipBackboneConfig, declared_image_size
from worker.detectors.clip_linear import (
    ClipLinearConfig,
    ClipLinearDetector,
    build_head,
    load_head,
    read_head_state,
)
from worker.detectors.clip_prompt import ClipPromptConfig, ClipPromptDetector
from worker.errors import ModelUnavailable
from worker.models import ModelStore, sha256_file

torch = pytest.importorskip("torch")
pytest.importorskip("open_clip")

KINDS = ("clip_linear", "clip_prompt")
N_IMAGES = 4


@pytest.fixture(scope="module")
def backbone_config(tmp_path_factory: pytest.TempPathFactory) -> ClipBackboneConfig:
    return tiny_clip(tmp_path_factory.mktemp("tiny_clip"))


@pytest.fixture
def store(tmp_path: Path) -> ModelStore:
    return ModelStore(tmp_path / "model_cache", allow_fetch=False)


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (N_IMAGES, 224, 224, 3), dtype=np.uint8)


def make_config(kind: str, backbone: ClipBackboneConfig, adapter: Path) -> BaseModel:
    if kind == "clip_linear":
        return ClipLinearConfig(backbone=backbone, head=str(adapter))
    return ClipPromptConfig(backbone=backbone, context=str(adapter))


def make_detector(kind: str, config: BaseModel, store: ModelStore) -> TrainableDetector:
    cls = detector_class(kind)
    assert issubclass(cls, TrainableDetector)
    return cls(config, store)


@pytest.fixture
def fresh(
    backbone_config: ClipBackboneConfig, store: ModelStore, tmp_path: Path
) -> Callable[[str, int], TrainableDetector]:
    """A detector with its backbone and a freshly initialised adapter (as `dfw train` starts)."""

    def build(kind: str, seed: int = 0) -> TrainableDetector:
        detector = make_detector(kind, make_config(kind, backbone_config, tmp_path / "unused.pt"), store)
        detector.load_for_training(seed)
        return detector

    return build


@pytest.fixture
def loaded(
    fresh: Callable[[str, int], TrainableDetector],
    backbone_config: ClipBackboneConfig,
    store: ModelStore,
    tmp_path: Path,
) -> Callable[[str], tuple[TrainableDetector, Path]]:
    """A detector loaded through `load()` from an adapter file written by `save_adapter`."""

    def build(kind: str) -> tuple[TrainableDetector, Path]:
        adapter = tmp_path / f"{kind}_adapter.pt"
        fresh(kind, 1).save_adapter(adapter)
        detector = make_detector(kind, make_config(kind, backbone_config, adapter), store)
        detector.load()
        return detector, adapter

    return build


def train_step(detector: TrainableDetector, images: np.ndarray) -> None:
    optimizer = torch.optim.AdamW(detector.adapter_parameters(), lr=0.05)
    labels = torch.tensor([0.0, 1.0] * (len(images) // 2))
    logits = detector.fake_logits(detector.preprocess(images))
    loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, labels)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()


def backbone_of(detector: TrainableDetector) -> object:
    assert isinstance(detector, ClipLinearDetector | ClipPromptDetector)
    return detector.backbone


# --- both detectors ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_declares_input_before_load(
    kind: str, backbone_config: ClipBackboneConfig, store: ModelStore
) -> None:
    for looks_at in ("face", "frame"):
        config_cls = ClipLinearConfig if kind == "clip_linear" else ClipPromptConfig
        detector = make_detector(kind, config_cls(backbone=backbone_config, looks_at=looks_at), store)
        assert (detector.looks_at, detector.input_size, detector.loaded) == (looks_at, 224, False)
    default = make_detector(kind, ClipLinearConfig() if kind == "clip_linear" else ClipPromptConfig(), store)
    assert (default.looks_at, default.input_size) == ("frame", 224)  # ViT-L/14 from open_clip's config


@pytest.mark.parametrize("kind", KINDS)
def test_predict_shape_and_range(kind: str, loaded: Callable, images: np.ndarray) -> None:
    detector, _ = loaded(kind)
    scores = detector.predict(list(images))
    assert scores.shape == (N_IMAGES,)
    assert np.all(np.isfinite(scores)) and np.all((scores >= 0) & (scores <= 1))
    assert detector.predict([]).shape == (0,)


@pytest.mark.parametrize("kind", KINDS)
def test_batch_equals_single_predictions(kind: str, loaded: Callable, images: np.ndarray) -> None:
    detector, _ = loaded(kind)
    batch = detector.predict(list(images))
    singles = np.concatenate([detector.predict([image]) for image in images])
    np.testing.assert_allclose(batch, singles, rtol=0, atol=1e-5)
    assert np.ptp(batch) > 0  # the inputs really produce different scores


@pytest.mark.parametrize("kind", KINDS)
def test_training_step_changes_only_the_adapter(kind: str, fresh: Callable, images: np.ndarray) -> None:
    detector = fresh(kind)
    backbone = backbone_of(detector)
    snapshot = backbone.parameters_snapshot()  # type: ignore[attr-defined]
    before = [p.detach().clone() for p in detector.adapter_parameters()]
    scores_before = detector.predict(list(images))

    train_step(detector, images)

    after = detector.adapter_parameters()
    assert all(p.requires_grad for p in after)
    assert any(not torch.equal(old, new.detach()) for old, new in zip(before, after, strict=True))
    state = backbone.model.state_dict()  # type: ignore[attr-defined]
    assert state.keys() == snapshot.keys()
    for name, tensor in state.items():
        assert torch.equal(tensor, snapshot[name]), f"backbone tensor {name} changed"
    assert all(p.grad is None for p in backbone.model.parameters())  # type: ignore[attr-defined]
    assert not np.array_equal(detector.predict(list(images)), scores_before)


@pytest.mark.parametrize("kind", KINDS)
def test_saved_adapter_reloads_to_identical_predictions(
    kind: str,
    fresh: Callable,
    backbone_config: ClipBackboneConfig,
    store: ModelStore,
    tmp_path: Path,
    images: np.ndarray,
) -> None:
    trained = fresh(kind, 3)
    train_step(trained, images)
    adapter = tmp_path / "trained.pt"
    trained.save_adapter(adapter)

    reloaded = make_detector(kind, make_config(kind, backbone_config, adapter), store)
    reloaded.load()
    np.testing.assert_array_equal(reloaded.predict(list(images)), trained.predict(list(images)))


@pytest.mark.parametrize("kind", KINDS)
def test_missing_adapter_is_model_unavailable(
    kind: str, backbone_config: ClipBackboneConfig, store: ModelStore, tmp_path: Path
) -> None:
    detector = make_detector(kind, make_config(kind, backbone_config, tmp_path / "absent" / "a.pt"), store)
    with pytest.raises(ModelUnavailable):
        detector.load()
    assert not detector.loaded


def test_default_prompt_context_is_not_built_in(
    backbone_config: ClipBackboneConfig, store: ModelStore
) -> None:
    detector = ClipPromptDetector(ClipPromptConfig(backbone=backbone_config), store)
    with pytest.raises(ModelUnavailable, match=r"clip_prompt_context\.pt"):
        detector.load()


@pytest.mark.parametrize("kind", KINDS)
def test_lineage_has_the_sha256_of_the_loaded_files(
    kind: str, loaded: Callable, backbone_config: ClipBackboneConfig
) -> None:
    detector, adapter = loaded(kind)
    assert getattr(detector.config, detector.adapter_field) == str(adapter)
    lineage = detector.lineage()
    assert lineage.version == f"{kind}/1@{weights_digest(lineage.weights)}"
    assert lineage.weights == {
        backbone_config.weights: sha256_file(Path(backbone_config.weights)),
        str(adapter): sha256_file(adapter),
    }


@pytest.mark.parametrize("kind", KINDS)
def test_backbone_size_disagreeing_with_input_size_is_refused(
    kind: str, backbone_config: ClipBackboneConfig, store: ModelStore, tmp_path: Path
) -> None:
    detector = make_detector(kind, make_config(kind, backbone_config, tmp_path / "x.pt"), store)
    detector.input_size = 256
    with pytest.raises(ValueError, match="224px"):
        detector.load_for_training(0)


def test_declared_image_size_reads_the_architecture(tmp_path: Path) -> None:
    path = tmp_path / "big-clip.json"
    path.write_text(json.dumps({"embed_dim": 8, "vision_cfg": {"image_size": 336}, "text_cfg": {}}))
    assert declared_image_size(ClipBackboneConfig(model="big-clip", model_config_path=str(path))) == 336
    assert declared_image_size(ClipBackboneConfig(model="big-clip", model_config_path=str(tmp_path))) == 336
    assert declared_image_size(ClipBackboneConfig(model="ViT-L-14-336-quickgelu")) == 336
    assert declared_image_size(ClipBackboneConfig()) == 224


def test_modules_import_and_construct_without_torch() -> None:
    code = (
        "import sys, tempfile\n"
        "from worker.models import ModelStore\n"
        "from worker.detectors import create_detector\n"
        "from worker.detectors.clip_linear import ClipLinearConfig\n"
        "from worker.detectors.clip_prompt import ClipPromptConfig\n"
        "store = ModelStore(tempfile.mkdtemp(), allow_fetch=False)\n"
        "sizes = [create_detector(n, c, store).input_size\n"
        "         for n, c in (('clip_linear', ClipLinearConfig()), ('clip_prompt', ClipPromptConfig()))]\n"
        "assert sizes == [224, 224], sizes\n"
        "print(','.join(m for m in ('torch', 'open_clip') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    assert done.stdout.strip() == ""


# --- clip_linear ------------------------------------------------------------------------------------------


def test_linear_logit_is_the_head_on_unnormalised_features(loaded: Callable, images: np.ndarray) -> None:
    detector, adapter = loaded("clip_linear")
    state = torch.load(adapter, weights_only=True)
    with torch.no_grad():
        inputs = detector.preprocess(images)
        features = detector.backbone.model.encode_image(inputs)
        expected = features @ state["weight"].T + state["bias"]
        torch.testing.assert_close(detector.fake_logits(inputs), expected.reshape(-1), rtol=0, atol=1e-6)
    np.testing.assert_allclose(detector.predict(list(images)), torch.sigmoid(expected).reshape(-1), atol=1e-6)


def test_public_univfd_head_loads_as_vit_l14_head(models_dir: Path) -> None:
    path = ModelStore(models_dir, allow_fetch=False).path("univfd_fc_weights.pth")  # sha256-verified
    head = load_head(path, 768)
    raw = torch.load(path, map_location="cpu", weights_only=True)
    assert (head.in_features, head.out_features) == (768, 1)
    assert torch.equal(head.weight, raw["weight"]) and torch.equal(head.bias, raw["bias"])


def test_public_univfd_head_on_the_tiny_backbone_is_a_clear_error(
    models_dir: Path, backbone_config: ClipBackboneConfig
) -> None:
    store = ModelStore(models_dir, allow_fetch=False)
    detector = ClipLinearDetector(ClipLinearConfig(backbone=backbone_config), store)
    with pytest.raises(ValueError, match=r"weight \(1, 768\).*need weight \(1, 32\)"):
        detector.load()
    assert not detector.loaded


def test_head_file_formats(tmp_path: Path) -> None:
    prefixed = tmp_path / "prefixed.pth"
    torch.save({"fc.weight": torch.ones(1, 4), "fc.bias": torch.zeros(1), "other": torch.ones(2)}, prefixed)
    assert load_head(prefixed, 4).weight.sum().item() == 4
    for bad in ({"w": torch.ones(1, 4)}, [torch.ones(1, 4)]):
        torch.save(bad, tmp_path / "bad.pth")
        with pytest.raises(ValueError, match=r"bad\.pth"):
            read_head_state(tmp_path / "bad.pth")
    with pytest.raises(ValueError, match=r"bias \(2,\)"):
        build_head({"weight": torch.ones(1, 4), "bias": torch.zeros(2)}, 4)


# --- clip_prompt ------------------------------------------------------------------------------------------


def test_prompt_path_reproduces_encode_text(fresh: Callable) -> None:
    """With the context set to the embeddings of the X placeholders, the prompt path is CLIP's encode_text."""
    detector = fresh("clip_prompt")
    n_ctx = detector.prompt_config.n_ctx
    with torch.no_grad():
        detector.set_context(detector._embedded[0, 1 : 1 + n_ctx])
        expected = detector.backbone.model.encode_text(detector._tokens)
        torch.testing.assert_close(detector.encode_text(), expected, rtol=0, atol=1e-6)


def test_prompt_score_is_the_two_class_softmax(loaded: Callable, images: np.ndarray) -> None:
    detector, _ = loaded("clip_prompt")
    model = detector.backbone.model
    with torch.no_grad():
        image = torch.nn.functional.normalize(model.encode_image(detector.preprocess(images)), dim=-1)
        text = torch.nn.functional.normalize(detector.encode_text(), dim=-1)
        probs = (model.logit_scale.exp() * image @ text.T).softmax(dim=-1)[:, 1]
    np.testing.assert_allclose(detector.predict(list(images)), probs.numpy(), atol=1e-6)


def test_text_features_are_cached_and_refreshed(loaded: Callable, images: np.ndarray) -> None:
    detector, _ = loaded("clip_prompt")
    assert detector.text_encodings == 1  # the warm-up pass of load()
    first = detector.predict(list(images))
    detector.predict(list(images[:1]))
    assert detector.text_encodings == 1

    train_step(detector, images)  # with gradients: a fresh differentiable encoding
    assert detector.text_encodings == 2
    second = detector.predict(list(images))
    detector.predict(list(images))
    assert detector.text_encodings == 3
    assert not np.array_equal(first, second)

    with torch.no_grad():
        detector.adapter_parameters()[0].mul_(0.5)  # an in-place edit bumps the tensor version
    detector.predict(list(images))
    detector.set_context(torch.zeros(detector.prompt_config.n_ctx, detector.text_width))
    detector.predict(list(images))
    assert detector.text_encodings == 5


def test_prompt_context_must_match_config(
    fresh: Callable, backbone_config: ClipBackboneConfig, store: ModelStore, tmp_path: Path
) -> None:
    adapter = tmp_path / "ctx.pt"
    fresh("clip_prompt").save_adapter(adapter)
    saved = torch.load(adapter, weights_only=True)
    assert tuple(saved["ctx"].shape) == (16, 64)
    assert (saved["class_names"], saved["n_ctx"]) == (["real", "fake"], 16)
    cases = (
        ({"n_ctx": 8}, r"shape \(16, 64\).*needs \(8, 64\)"),
        ({"class_names": ("pristine", "forged")}, "trained for classes"),
    )
    for change, message in cases:
        config = ClipPromptConfig(backbone=backbone_config, context=str(adapter), **change)
        with pytest.raises(ValueError, match=message):
            ClipPromptDetector(config, store).load()

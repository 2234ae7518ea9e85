"""hf_classifier on tiny randomly initialised ViT checkpoints written by the test; no downloads."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.conftest import REPO
from worker.detectors import detector_class
from worker.detectors.base import weights_digest
from worker.detectors.hf_classifier import (
    HfClassifierConfig,
    HfClassifierDetector,
    class_of_label,
    input_size_of_directory,
    map_labels,
)
from worker.errors import ModelUnavailable
from worker.models import ModelStore, hash_tree

os.environ["HF_HUB_OFFLINE"] = "1"
torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

SIDE = 32
TINY_VIT: dict[str, Any] = {
    "image_size": SIDE,
    "patch_size": 8,
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "intermediate_size": 64,
}
MEAN = [0.48, 0.45, 0.40]
STD = [0.23, 0.22, 0.26]
COMMIT = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture(autouse=True)
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)


def write_checkpoint(
    directory: Path,
    id2label: dict[int, str],
    state: dict[str, Any] | None = None,
    processor: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A tiny ViT classifier with a spread-out random head (or `state`), and its image processor."""
    from transformers import ViTConfig, ViTForImageClassification, ViTImageProcessor

    config = ViTConfig(**TINY_VIT, id2label=id2label)
    torch.manual_seed(0)
    model = ViTForImageClassification(config)
    if state is None:
        spread_head(model)
    else:
        model.load_state_dict(state)
    model.save_pretrained(directory)
    if processor is None:
        processor = {"size": {"height": SIDE, "width": SIDE}, "image_mean": MEAN, "image_std": STD}
    ViTImageProcessor(**processor).save_pretrained(directory)
    return {key: value.clone() for key, value in model.state_dict().items()}


def spread_head(model: Any) -> None:
    """A random head centred on the features of varied inputs, so the scores spread over (0, 1).

    The default init gives logits near 0 (every p ~ 0.5) and a merely larger one saturates: the CLS features
    of a random ViT share a large common component.
    """
    generator = torch.Generator().manual_seed(1)
    probe = torch.randn(16, 3, SIDE, SIDE, generator=generator) + torch.randn(
        16, 3, 1, 1, generator=generator
    )
    with torch.no_grad():
        features = model.vit(probe).last_hidden_state[:, 0]
        weight = torch.randn(model.config.num_labels, features.shape[1], generator=generator)
        weight *= 1.5 / (features - features.mean(0)).matmul(weight.T).std()
        model.classifier.weight.copy_(weight)
        model.classifier.bias.copy_(-features.mean(0).matmul(weight.T))


def make_detector(model: str | None, tmp: Path, **fields: Any) -> HfClassifierDetector:
    store = ModelStore(tmp / "model-cache", allow_fetch=False)
    return HfClassifierDetector(HfClassifierConfig(model=model, **fields), store)


def loaded_detector(directory: Path, **fields: Any) -> HfClassifierDetector:
    detector = make_detector(str(directory), directory.parent, **fields)
    detector.load()
    return detector


def reference_softmax(directory: Path, images: np.ndarray) -> np.ndarray:
    """Class probabilities the transformers way: processor, model, softmax."""
    from transformers import AutoImageProcessor, AutoModelForImageClassification

    model = AutoModelForImageClassification.from_pretrained(directory, local_files_only=True).eval()
    processor = AutoImageProcessor.from_pretrained(directory, local_files_only=True)
    with torch.no_grad():
        logits = model(**processor(images=list(images), return_tensors="pt")).logits
    return torch.softmax(logits, dim=-1).numpy()


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    """Varied colours and noise levels (uniform noise alone looks the same to a random ViT)."""
    rng = np.random.default_rng(7)
    colours = rng.integers(0, 256, (6, 1, 1, 3))
    noise = rng.normal(0.0, 1.0, (6, SIDE, SIDE, 3)) * rng.uniform(10, 80, (6, 1, 1, 1))
    return np.clip(colours + noise, 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    directory = tmp_path_factory.mktemp("hf") / "real-fake"
    state = write_checkpoint(directory, {0: "Real", 1: "Fake"})
    return directory, state


@pytest.fixture(scope="module")
def detector(checkpoint: tuple[Path, dict[str, Any]]) -> HfClassifierDetector:
    return loaded_detector(checkpoint[0])


# --- scores -----------------------------------------------------------------------------------------------


def test_registry_and_declarations(checkpoint: tuple[Path, dict[str, Any]], tmp_path: Path) -> None:
    assert detector_class("hf_classifier") is HfClassifierDetector
    detector = make_detector(str(checkpoint[0]), tmp_path, looks_at="frame")
    assert (detector.name, detector.code_version, detector.looks_at) == ("hf_classifier", "1", "frame")


def test_predict_gives_one_probability_per_item(detector: HfClassifierDetector, images: np.ndarray) -> None:
    scores = detector.predict(list(images))
    assert scores.shape == (len(images),)
    assert np.all((scores >= 0) & (scores <= 1))
    assert scores.min() < 0.4 and scores.max() > 0.6, f"the tiny head should spread the scores: {scores}"


def test_batch_equals_singles(detector: HfClassifierDetector, images: np.ndarray) -> None:
    batch = detector.predict(list(images))
    singles = np.concatenate([detector.predict([image]) for image in images])
    np.testing.assert_allclose(batch, singles, atol=1e-5)


def test_score_is_the_softmax_of_the_fake_label(
    checkpoint: tuple[Path, dict[str, Any]], detector: HfClassifierDetector, images: np.ndarray
) -> None:
    expected = reference_softmax(checkpoint[0], images)[:, 1]
    np.testing.assert_allclose(detector.predict(list(images)), expected, atol=1e-5)


def test_fast_preprocessing_equals_the_image_processor(
    checkpoint: tuple[Path, dict[str, Any]], detector: HfClassifierDetector, images: np.ndarray
) -> None:
    from transformers import AutoImageProcessor

    processor = AutoImageProcessor.from_pretrained(checkpoint[0], local_files_only=True)
    expected = processor(images=list(images), return_tensors="pt")["pixel_values"]
    actual = detector.preprocess(images)
    assert actual.shape == expected.shape == (len(images), 3, SIDE, SIDE)
    torch.testing.assert_close(actual, expected, atol=1e-5, rtol=0)


def test_processor_defaults_are_used(tmp_path: Path, images: np.ndarray) -> None:
    """A processor config that omits mean/std gets its class defaults (0.5 for ViT), as transformers does."""
    from transformers import AutoImageProcessor

    directory = tmp_path / "defaults"
    write_checkpoint(directory, {0: "real", 1: "fake"}, processor={"size": {"height": SIDE, "width": SIDE}})
    saved = json.loads((directory / "preprocessor_config.json").read_text())
    saved.pop("image_mean")
    saved.pop("image_std")
    (directory / "preprocessor_config.json").write_text(json.dumps(saved))
    detector = loaded_detector(directory)
    processor = AutoImageProcessor.from_pretrained(directory, local_files_only=True)
    expected = processor(images=list(images), return_tensors="pt")["pixel_values"]
    torch.testing.assert_close(detector.preprocess(images), expected, atol=1e-5, rtol=0)


def test_swapped_labels_with_the_same_logits_give_the_complement(
    checkpoint: tuple[Path, dict[str, Any]],
    detector: HfClassifierDetector,
    images: np.ndarray,
    tmp_path: Path,
) -> None:
    state = checkpoint[1]
    write_checkpoint(tmp_path / "swapped", {0: "fake", 1: "real"}, state=state)
    swapped = loaded_detector(tmp_path / "swapped")
    np.testing.assert_allclose(swapped.predict(list(images)), 1 - detector.predict(list(images)), atol=1e-5)


def test_permuted_head_with_swapped_labels_gives_the_same_scores(
    checkpoint: tuple[Path, dict[str, Any]],
    detector: HfClassifierDetector,
    images: np.ndarray,
    tmp_path: Path,
) -> None:
    state = checkpoint[1]
    permuted = dict(state)
    permuted["classifier.weight"] = state["classifier.weight"][[1, 0]]
    permuted["classifier.bias"] = state["classifier.bias"][[1, 0]]
    write_checkpoint(tmp_path / "permuted", {0: "FAKE", 1: "REAL"}, state=permuted)
    other = loaded_detector(tmp_path / "permuted")
    np.testing.assert_allclose(other.predict(list(images)), detector.predict(list(images)), atol=1e-5)


def test_several_fake_labels_add_up(tmp_path: Path, images: np.ndarray) -> None:
    directory = tmp_path / "three"
    write_checkpoint(directory, {0: "real", 1: "Deepfake", 2: "AI-generated"})
    detector = loaded_detector(directory)
    expected = reference_softmax(directory, images)[:, 1:].sum(axis=1)
    np.testing.assert_allclose(detector.predict(list(images)), expected, atol=1e-5)


def test_single_logit_head_is_the_log_odds_of_its_label(tmp_path: Path, images: np.ndarray) -> None:
    from transformers import AutoImageProcessor, AutoModelForImageClassification

    state = write_checkpoint(tmp_path / "fake", {0: "fake"})
    write_checkpoint(tmp_path / "real", {0: "real"}, state=state)
    model = AutoModelForImageClassification.from_pretrained(tmp_path / "fake", local_files_only=True).eval()
    processor = AutoImageProcessor.from_pretrained(tmp_path / "fake", local_files_only=True)
    with torch.no_grad():
        logit = model(**processor(images=list(images), return_tensors="pt")).logits[:, 0]
    p_fake = loaded_detector(tmp_path / "fake").predict(list(images))
    np.testing.assert_allclose(p_fake, torch.sigmoid(logit).numpy(), atol=1e-5)
    np.testing.assert_allclose(
        loaded_detector(tmp_path / "real").predict(list(images)), 1 - p_fake, atol=1e-5
    )


# --- label rules ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("labels", "fake"),
    [
        (["Real", "Fake"], (1,)),
        (["artificial", "human"], (0,)),
        (["AI_Generated", "Human made"], (0,)),
        (["bona fide", "spoof"], (1,)),
        (["bonafide", "spoofing"], (1,)),
        (["pristine", "manipulated"], (1,)),
        (["authentic", "synthetic", "deepfakes"], (1, 2)),
        (["REAL", "FAKE"], (1,)),
        (["real_images", "fake_images"], (1,)),
        (["genuine", "generated"], (1,)),
        (["natural", "AI"], (1,)),
        (["original", "deep-fake"], (1,)),
    ],
)
def test_accepted_label_sets(labels: list[str], fake: tuple[int, ...]) -> None:
    mapped = map_labels(dict(enumerate(labels)))
    assert mapped.fake == fake
    assert set(mapped.fake) | set(mapped.real) == set(range(len(labels)))


@pytest.mark.parametrize(
    "labels",
    [
        ["cat", "dog"],
        ["deepfake", "realism"],  # "realism" is not the word "real"
        ["unreal", "fake"],
        ["LABEL_0", "LABEL_1"],
        ["fake", "deepfake"],  # no real class: P(fake) would always be 1
        ["real", "authentic"],
        ["not fake", "fake"],  # a negation is never classed
        ["non-human", "human"],
        ["real or fake", "fake"],  # both classes' words
        ["real", "fake", "other"],
    ],
)
def test_refused_label_sets(labels: list[str]) -> None:
    with pytest.raises(ValueError) as refused:
        map_labels(dict(enumerate(labels)))
    assert str(labels) in str(refused.value)


def test_single_labels_are_classed_but_must_be_known() -> None:
    assert map_labels({0: "Fake"}).fake == (0,)
    assert map_labels({0: "real"}).fake == ()
    with pytest.raises(ValueError, match="LABEL_0"):
        map_labels({0: "LABEL_0"})


def test_whole_words_only() -> None:
    assert class_of_label("surreal") is None
    assert class_of_label("fakeness") is None
    assert class_of_label("Fake image") == "fake"
    assert class_of_label("Real-Face") == "real"


def test_operator_can_name_the_fake_labels() -> None:
    mapped = map_labels({0: "Deepfake", 1: "Realism"}, fake_labels=["deepfake"])
    assert (mapped.fake, mapped.real) == ((0,), (1,))
    with pytest.raises(ValueError, match="not labels of the checkpoint"):
        map_labels({0: "Deepfake", 1: "Realism"}, fake_labels=["fake"])


def test_unmappable_checkpoint_is_refused_with_its_labels(tmp_path: Path) -> None:
    write_checkpoint(tmp_path / "pets", {0: "cat", 1: "dog"})
    detector = make_detector(str(tmp_path / "pets"), tmp_path)
    with pytest.raises(ModelUnavailable, match=re.escape("['cat', 'dog']")):
        detector.load()
    assert not detector.loaded


def test_fake_labels_setting_reaches_the_detector(tmp_path: Path, images: np.ndarray) -> None:
    write_checkpoint(tmp_path / "styles", {0: "Realism", 1: "Deepfake"})
    detector = loaded_detector(tmp_path / "styles", fake_labels=["Deepfake"])
    expected = reference_softmax(tmp_path / "styles", images)[:, 1]
    np.testing.assert_allclose(detector.predict(list(images)), expected, atol=1e-5)


# --- configuration and refusals ---------------------------------------------------------------------------


def test_unset_model_is_unavailable(tmp_path: Path) -> None:
    detector = make_detector(None, tmp_path)
    assert detector.input_size == 224
    assert detector.weight_names() == []
    with pytest.raises(ModelUnavailable) as refused:
        detector.load()
    assert refused.value.name == "hf_classifier"
    assert refused.value.reason == (
        "set DFW_HF_CLASSIFIER__MODEL to a local directory or org/repo with DFW_HF_CLASSIFIER__REVISION"
    )


def test_repo_without_a_pinned_revision_is_refused(tmp_path: Path) -> None:
    detector = make_detector("some-org/deepfake-vit", tmp_path)
    assert detector.input_size == 224 and detector.weight_names() == []
    with pytest.raises(ModelUnavailable, match="pinned revision"):
        detector.load()
    with pytest.raises(ModelUnavailable, match="not a commit hash"):
        make_detector("some-org/deepfake-vit", tmp_path, revision="main").load()


def test_missing_directory_is_unavailable(tmp_path: Path) -> None:
    with pytest.raises(ModelUnavailable, match="no directory"):
        make_detector(str(tmp_path / "absent" / "model" / "dir"), tmp_path).load()
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelUnavailable, match=re.escape("no config.json")):
        make_detector(str(tmp_path / "empty"), tmp_path).load()


def test_checkpoint_without_processor_config_is_refused(tmp_path: Path) -> None:
    write_checkpoint(tmp_path / "bare", {0: "real", 1: "fake"})
    (tmp_path / "bare" / "preprocessor_config.json").unlink()
    with pytest.raises(ModelUnavailable, match=re.escape("preprocessor_config.json")):
        make_detector(str(tmp_path / "bare"), tmp_path).load()


def test_input_size_is_read_from_json_before_load(tmp_path: Path) -> None:
    cropped = tmp_path / "cropped"
    cropped.mkdir()
    (cropped / "config.json").write_text(json.dumps({"image_size": 64}))
    processor = {
        "do_center_crop": True,
        "crop_size": {"height": 40, "width": 40},
        "size": {"shortest_edge": 48},
    }
    (cropped / "preprocessor_config.json").write_text(json.dumps(processor))
    assert input_size_of_directory(cropped) == 40
    (cropped / "preprocessor_config.json").write_text(json.dumps({"size": {"shortest_edge": 48}}))
    assert input_size_of_directory(cropped) == 48
    (cropped / "preprocessor_config.json").unlink()
    assert input_size_of_directory(cropped) == 64
    assert make_detector(str(cropped), tmp_path).input_size == 64
    (cropped / "config.json").write_text("{}")
    assert make_detector(str(cropped), tmp_path).input_size == 224


def test_constructing_reads_json_only(checkpoint: tuple[Path, dict[str, Any]]) -> None:
    code = (
        "import sys\n"
        "from worker.detectors.hf_classifier import HfClassifierConfig, HfClassifierDetector\n"
        "from worker.models import ModelStore\n"
        f"config = HfClassifierConfig(model={str(checkpoint[0])!r})\n"
        f"store = ModelStore({str(checkpoint[0].parent / 'model-cache')!r}, allow_fetch=False)\n"
        "detector = HfClassifierDetector(config, store)\n"
        "heavy = [m for m in ('torch', 'transformers', 'huggingface_hub') if m in sys.modules]\n"
        "print(detector.input_size, detector.weight_names() == [config.model], heavy)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    assert done.stdout.strip() == f"{SIDE} True []"


def test_load_corrects_an_input_size_that_changed(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    directory = tmp_path / "changed"
    write_checkpoint(directory, {0: "real", 1: "fake"})
    processor_file = directory / "preprocessor_config.json"
    saved = processor_file.read_text()
    processor_file.write_text(json.dumps({**json.loads(saved), "size": {"height": 16, "width": 16}}))
    detector = make_detector(str(directory), tmp_path)
    assert detector.input_size == 16
    processor_file.write_text(saved)
    detector.load()
    assert detector.input_size == SIDE
    assert "takes 32px inputs, not the 16px" in caplog.text


def test_lineage_hashes_the_directory(checkpoint: tuple[Path, dict[str, Any]], tmp_path: Path) -> None:
    directory = checkpoint[0]
    lineage = make_detector(str(directory), tmp_path).lineage()
    assert lineage.version == f"hf_classifier/1@{weights_digest(lineage.weights)}"
    assert list(lineage.weights) == [str(directory)]
    digest = lineage.weights[str(directory)]
    assert re.fullmatch(r"[0-9a-f]{64}", digest) and digest == hash_tree(directory)
    assert lineage.config["model"] == str(directory)


# --- the HF cache -----------------------------------------------------------------------------------------


def test_pinned_repo_resolves_in_the_hf_cache(
    checkpoint: tuple[Path, dict[str, Any]],
    detector: HfClassifierDetector,
    images: np.ndarray,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The cache's documented layout, models--ORG--REPO/snapshots/COMMIT/, with plain files for symlinks."""
    import huggingface_hub.constants

    hub = tmp_path / "hub"
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(hub))
    snapshot = hub / "models--some-org--tiny-vit" / "snapshots" / COMMIT
    write_checkpoint(snapshot, {0: "Real", 1: "Fake"}, state=checkpoint[1])
    cached = make_detector("some-org/tiny-vit", tmp_path, revision=COMMIT)
    assert cached.input_size == SIDE
    assert cached.weight_names() == [str(snapshot)]
    cached.load()
    np.testing.assert_allclose(cached.predict(list(images)), detector.predict(list(images)), atol=1e-5)
    lineage = cached.lineage()
    assert lineage.version == f"hf_classifier/1@{weights_digest(lineage.weights)}@{COMMIT}"
    assert lineage.weights == {str(snapshot): hash_tree(snapshot)}

    other = make_detector("some-org/tiny-vit", tmp_path, revision="f" * 40)
    with pytest.raises(ModelUnavailable, match=r"not in the HF cache .* fetching is disabled"):
        other.load()

"""RepDFD (clip_reprogram) on a tiny random CLIP, plus the real public checkpoint and real identity encoders.

The identity model is injectable: most tests use `PixelProjectionIdentity`, a deterministic test double (a
fixed random projection of downsampled pixels to 512-d), never a face-recognition model. The dlib encoder
is tested on real faces when dlib-bin and face-recognition-models are installed, and the ArcFace ONNX path
on a tiny random ONNX graph when onnx and onnxruntime are.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from tests.tiny_models import tiny_clip
from worker.detectors import detector_class
from worker.detectors.clip_backbone import ClipBackboneConfig
from worker.detectors.clip_reprogram import (
    PLACEHOLDER,
    REAL_PROMPT,
    ClipReprogramConfig,
    ClipReprogramDetector,
    canvas_geometry,
    encode_token_embeddings,
    read_repdfd_checkpoint,
)
from worker.errors import ModelUnavailable
from worker.faces.identity import ARCFACE_TEMPLATE, align_face
from worker.models import ModelStore

torch = pytest.importorskip("torch")
pytest.importorskip("open_clip")

REPDFD = "repdfd_ffpp_deepfakes.pth"
FACES = (
    "real/utkface/utk_100_1_0_20170110183726390.jpg",
    "real/utkface/utk_10_0_0_20170110220403810.jpg",
    "real/ffpp_cnndetection/deepfake_102_real.png",
    "fake/ffpp_cnndetection/deepfake_103_fake.png",
    "fake/ffpp_cnndetection/deepfake_112_fake.png",
)


class PixelProjectionIdentity:
    """Test double for an identity model: 16x16 area-downsampled pixels times a fixed random matrix."""

    name = "pixel-projection-test-double"

    def __init__(self, dim: int = 512, seed: int = 0) -> None:
        self.dim = dim
        self.matrix = np.random.default_rng(seed).standard_normal((16 * 16 * 3, dim)).astype(np.float32)

    def weight_names(self) -> list[str]:
        return []

    def encode(self, faces: np.ndarray, landmarks: np.ndarray | None = None) -> np.ndarray:
        small = [cv2.resize(face, (16, 16), interpolation=cv2.INTER_AREA) for face in faces]
        pixels = np.asarray(small, np.float32).reshape(len(faces), -1) / 255.0
        return pixels @ self.matrix / 16.0


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> ClipBackboneConfig:
    return tiny_clip(tmp_path_factory.mktemp("tiny_clip"))


@pytest.fixture(scope="module")
def store(models_dir: Path) -> ModelStore:
    return ModelStore(models_dir, allow_fetch=False)


@pytest.fixture(scope="module")
def faces(dev_dir: Path) -> np.ndarray:
    """(5, 224, 224, 3) uint8 RGB face crops."""
    crops = []
    for relative in FACES:
        with Image.open(dev_dir / relative) as image:
            crops.append(np.asarray(image.convert("RGB").resize((224, 224), Image.Resampling.BILINEAR)))
    return np.stack(crops)


def make_detector(
    tiny: ClipBackboneConfig, store: ModelStore, checkpoint: str = REPDFD, **config: object
) -> ClipReprogramDetector:
    settings = ClipReprogramConfig(backbone=tiny, checkpoint=checkpoint, **config)  # type: ignore[arg-type]
    return ClipReprogramDetector(settings, store, identity_encoder=PixelProjectionIdentity())


@pytest.fixture(scope="module")
def tiny_checkpoint(
    tiny: ClipBackboneConfig, store: ModelStore, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """A RepDFD-format checkpoint for the tiny backbone, with a random (non-zero) border perturbation."""
    detector = make_detector(tiny, store)
    detector.load_for_training(seed=3)
    with torch.no_grad():
        detector.delta.copy_(torch.randn(detector.delta.shape, generator=torch.Generator().manual_seed(4)))
    path = tmp_path_factory.mktemp("adapter") / "tiny_repdfd.pth"
    detector.save_adapter(path)
    return path


@pytest.fixture(scope="module")
def detector(tiny: ClipBackboneConfig, store: ModelStore, tiny_checkpoint: Path) -> ClipReprogramDetector:
    loaded = make_detector(tiny, store, str(tiny_checkpoint))
    loaded.load()
    return loaded


def test_registry_and_declarations() -> None:
    cls = detector_class("clip_reprogram")
    assert cls is ClipReprogramDetector
    assert (cls.name, cls.looks_at, cls.input_size, cls.code_version) == ("clip_reprogram", "face", 224, "1")
    config = ClipReprogramConfig()
    names = ClipReprogramDetector(config, ModelStore(Path("unused"))).weight_names()
    assert names == ["ViT-L-14.pt", REPDFD, "w600k_r50.onnx"]
    dlib_names = ClipReprogramDetector(config.model_copy(update={"identity": "dlib"}), ModelStore(Path("x")))
    assert dlib_names.weight_names() == ["ViT-L-14.pt", REPDFD]


def test_predict_shapes_and_range(detector: ClipReprogramDetector, faces: np.ndarray) -> None:
    scores = detector.predict(list(faces))
    assert scores.shape == (len(faces),)
    assert np.all(np.isfinite(scores)) and np.all((scores >= 0) & (scores <= 1))
    assert detector.predict([]).shape == (0,)


def test_batch_equals_singles(detector: ClipReprogramDetector, faces: np.ndarray) -> None:
    batched = detector.predict(list(faces))
    singles = np.array([detector.predict([face])[0] for face in faces])
    np.testing.assert_allclose(batched, singles, atol=1e-5, rtol=0)


def test_face_is_shrunk_into_the_centre_and_delta_only_touches_the_border(
    detector: ClipReprogramDetector, faces: np.ndarray
) -> None:
    geometry = detector.geometry
    assert (geometry.size, geometry.inner, geometry.before, geometry.after) == (224, 156, 34, 34)
    centre = geometry.face_slice()
    canvas, identity = detector.unpack(detector.preprocess(faces))
    assert identity.shape == (len(faces), 512)
    border = torch.ones(224, 224, dtype=torch.bool)
    border[centre, centre] = False
    assert torch.count_nonzero(canvas[..., border]) == 0  # zero padding in normalised space
    shrunk = np.stack(
        [np.asarray(Image.fromarray(f).resize((156, 156), Image.Resampling.BILINEAR)) for f in faces]
    )
    assert torch.equal(canvas[..., centre, centre], detector.backbone.preprocess(shrunk))

    reprogrammed = detector.reprogram(canvas)
    assert torch.count_nonzero(detector.delta[:, border]) > 0.9 * 3 * int(border.sum())  # a real perturbation
    assert torch.equal(reprogrammed[..., centre, centre], canvas[..., centre, centre])  # exactly untouched
    assert torch.equal(reprogrammed[..., border], (canvas + detector.delta)[..., border])


def test_geometry_matches_the_public_checkpoint(models_dir: Path) -> None:
    """RepDFD's delta is exactly zero where its mask hides the face: the same square as ours."""
    geometry = canvas_geometry(224, 0.7)
    delta = read_repdfd_checkpoint(models_dir / REPDFD, 224, 768, 512).delta
    zero = (delta == 0).all(dim=0)
    centre = geometry.face_slice()
    assert zero[centre, centre].all()
    assert int(zero.sum()) == geometry.inner**2


def test_prompts_follow_clip_text_encoding(detector: ClipReprogramDetector) -> None:
    """The truncated text path equals open_clip's encode_text; the ID token replaces the placeholder."""
    model, tokenizer, prompts = detector.backbone.model, detector.backbone.tokenizer, detector.prompts
    with torch.no_grad():
        real = torch.nn.functional.normalize(model.encode_text(tokenizer([REAL_PROMPT])), dim=-1)[0]
        torch.testing.assert_close(prompts.real_feature, real, atol=1e-5, rtol=0)

        plain = tokenizer(["A fake photo of a FE person"])
        placeholder_id = tokenizer([PLACEHOLDER])[0, 1]
        tokens = prompts.fake_tokens.clone()
        assert torch.count_nonzero(tokens[:, prompts.slot]) == 0
        tokens[:, prompts.slot] = model.token_embedding(placeholder_id)
        torch.testing.assert_close(
            encode_token_embeddings(model, tokens, prompts.eot), model.encode_text(plain), atol=1e-5, rtol=0
        )

        identities = torch.randn(2, 512, generator=torch.Generator().manual_seed(0))
        features = detector.fake_text_features(identities)
        slot = torch.nn.functional.pad(identities @ detector.projection.T, (0, 64 - 32))
        manual = prompts.fake_tokens.repeat(2, 1, 1)
        manual[:, prompts.slot] = slot
        expected = torch.nn.functional.normalize(encode_token_embeddings(model, manual, prompts.eot), dim=-1)
        torch.testing.assert_close(features, expected, atol=1e-6, rtol=0)
        assert not torch.allclose(features[0], features[1])


def test_fake_logits_are_the_softmax_log_odds(detector: ClipReprogramDetector, faces: np.ndarray) -> None:
    model = detector.backbone.model
    with torch.no_grad():
        inputs = detector.preprocess(faces[:2])
        canvas, identity = detector.unpack(inputs)
        image = torch.nn.functional.normalize(model.encode_image(detector.reprogram(canvas)), dim=-1)
        texts = torch.stack(
            [detector.prompts.real_feature.expand(2, -1), detector.fake_text_features(identity)], 1
        )
        logits = model.logit_scale.exp() * torch.einsum("nd,nkd->nk", image, texts)
        p_fake = logits.softmax(dim=-1)[:, 1]
        torch.testing.assert_close(torch.sigmoid(detector.fake_logits(inputs)), p_fake, atol=1e-6, rtol=0)
    np.testing.assert_allclose(detector.predict(list(faces[:2])), p_fake.numpy(), atol=1e-6)


@pytest.mark.parametrize("train_projection", [False, True])
def test_training_step_changes_only_the_adapter(
    tiny: ClipBackboneConfig, store: ModelStore, faces: np.ndarray, train_projection: bool
) -> None:
    from worker.training import TrainingSet, train_adapter

    detector = make_detector(tiny, store, train_projection=train_projection)
    detector.load_for_training(seed=0)
    backbone_before = detector.backbone.parameters_snapshot()
    delta_before = detector.delta.detach().clone()
    projection_before = detector.projection.detach().clone()
    expected = [detector.delta, detector.projection] if train_projection else [detector.delta]
    assert detector.adapter_parameters() == expected

    data = TrainingSet(faces[:4], np.array([0, 1, 0, 1], np.float32), 4, [])
    train_adapter(detector, data, epochs=1, lr=1e-2, batch_size=4, seed=0)

    after = detector.backbone.parameters_snapshot()
    assert after.keys() == backbone_before.keys()
    assert all(torch.equal(after[name], backbone_before[name]) for name in after)
    centre = detector.geometry.face_slice()
    assert not torch.equal(detector.delta, delta_before)
    assert torch.count_nonzero(detector.delta[:, centre, centre]) == 0  # no gradient reaches the face
    assert torch.equal(detector.projection.detach(), projection_before) is not train_projection


def test_init_adapter_follows_repdfd(tiny: ClipBackboneConfig, store: ModelStore) -> None:
    detector = make_detector(tiny, store)
    detector.load_for_training(seed=7)
    assert torch.count_nonzero(detector.delta) == 0
    assert detector.projection.shape == (32, 512)  # CLIP embedding dim x identity dim
    assert abs(float(detector.projection.std()) - 1 / 32) < 0.1 / 32  # N(0, (1 / embed_dim)^2)
    again = make_detector(tiny, store)
    again.load_for_training(seed=7)
    assert torch.equal(again.projection, detector.projection)


def test_save_load_round_trip(
    detector: ClipReprogramDetector,
    tiny: ClipBackboneConfig,
    store: ModelStore,
    faces: np.ndarray,
    tmp_path: Path,
) -> None:
    path = tmp_path / "round_trip.pth"
    detector.save_adapter(path)
    state = torch.load(str(path), map_location="cpu", weights_only=True)
    assert state["pretrained_model"] == "tiny-clip-test"
    assert (state["identity"], state["shrink_ratio"]) == ("pixel-projection-test-double", 0.7)
    assert state["perturb_dict"]["delta"].shape == (3, 224, 224)
    assert state["face_random_proj_dict"]["weight"].shape == (32, 512)
    reloaded = make_detector(tiny, store, str(path))
    reloaded.load()
    np.testing.assert_array_equal(reloaded.predict(list(faces)), detector.predict(list(faces)))


def test_public_checkpoint_reads_into_vit_l_shapes(models_dir: Path) -> None:
    adapter = read_repdfd_checkpoint(models_dir / REPDFD, image_size=224, embed_dim=768, identity_dim=512)
    assert adapter.pretrained_model == "clip_large_openclip"
    assert (adapter.identity, adapter.shrink_ratio) == ("transface", None)  # the reference's own format
    assert adapter.delta.shape == (3, 224, 224) and adapter.delta.dtype == torch.float32
    assert adapter.projection.shape == (768, 512)
    # RepDFD never trains the projection: it still has its initial N(0, (1/768)^2) statistics
    assert abs(float(adapter.projection.std()) - 1 / 768) < 0.02 / 768


def test_public_checkpoint_against_tiny_backbone_is_a_clear_error(
    tiny: ClipBackboneConfig, store: ModelStore
) -> None:
    detector = make_detector(tiny, store, REPDFD)
    with pytest.raises(ValueError, match=r"\(768, 512\).*needs \(32, 512\)"):
        detector.load()


def test_missing_checkpoint_is_unavailable(tiny: ClipBackboneConfig, tmp_path: Path) -> None:
    empty = ModelStore(tmp_path / "cache", allow_fetch=False)
    with pytest.raises(ModelUnavailable, match=REPDFD):
        make_detector(tiny, empty).load()
    with pytest.raises(ModelUnavailable, match="no file"):
        make_detector(tiny, empty, str(tmp_path / "absent.pth")).load()


def test_missing_arcface_is_unavailable(
    tiny: ClipBackboneConfig, store: ModelStore, tiny_checkpoint: Path
) -> None:
    config = ClipReprogramConfig(backbone=tiny, checkpoint=str(tiny_checkpoint))
    with pytest.raises(ModelUnavailable, match=r"w600k_r50\.onnx"):
        ClipReprogramDetector(config, store).load()


# ---- identity encoders ----


def tiny_arcface_onnx(path: Path) -> Path:
    """A random stand-in with ArcFace's interface: (N, 3, 112, 112) -> (N, 512)."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    weight = np.random.default_rng(0).standard_normal((3 * 14 * 14, 512)).astype(np.float32)
    nodes = [
        helper.make_node("AveragePool", ["input.1"], ["pooled"], kernel_shape=[8, 8], strides=[8, 8]),
        helper.make_node("Flatten", ["pooled"], ["flat"], axis=1),
        helper.make_node("MatMul", ["flat", "weight"], ["683"]),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny_arcface",
        [helper.make_tensor_value_info("input.1", TensorProto.FLOAT, ["None", 3, 112, 112])],
        [helper.make_tensor_value_info("683", TensorProto.FLOAT, ["None", 512])],
        [numpy_helper.from_array(weight, "weight")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def test_align_face_maps_landmarks_onto_the_arcface_template() -> None:
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, (112, 112, 3), dtype=np.uint8)
    image = cv2.GaussianBlur(noise, (0, 0), 2)
    np.testing.assert_allclose(align_face(image, ARCFACE_TEMPLATE).astype(int), image.astype(int), atol=1)
    doubled = cv2.resize(image, (224, 224), interpolation=cv2.INTER_LINEAR)
    aligned = align_face(doubled, ARCFACE_TEMPLATE * 2).astype(int)
    assert np.abs(aligned - image.astype(int))[8:-8, 8:-8].mean() < 3


def test_arcface_encoder_on_a_tiny_onnx_graph(
    tiny: ClipBackboneConfig, store: ModelStore, faces: np.ndarray, tmp_path: Path
) -> None:
    pytest.importorskip("onnxruntime")
    from worker.faces.identity import crop_landmarks, load_arcface

    weights = tiny_arcface_onnx(tmp_path / "tiny_arcface.onnx")
    encoder = load_arcface(store, str(weights), "cpu", crop_margin=1.3)
    assert encoder.dim == 512 and encoder.weight_names() == [str(weights)]
    batched = encoder.encode(faces)
    assert batched.shape == (len(faces), 512) and batched.dtype == np.float32
    singles = np.concatenate([encoder.encode(faces[i : i + 1]) for i in range(len(faces))])
    np.testing.assert_allclose(batched, singles, atol=1e-5)
    marks = crop_landmarks(len(faces), 224, 1.3)
    np.testing.assert_array_equal(encoder.encode(faces, marks), batched)  # the assumed landmarks

    config = ClipReprogramConfig(backbone=tiny, arcface_weights=str(weights))
    detector = ClipReprogramDetector(config, store)
    detector.load_for_training(seed=0)
    assert detector.identity.name == "arcface"
    assert detector.predict(list(faces)).shape == (len(faces),)


@pytest.fixture(scope="module")
def pipeline_crops(dev_dir: Path, store: ModelStore) -> np.ndarray:
    """Face crops made as the pipeline makes them (YuNet, margin 1.3, 224 px), one person each."""
    from worker.faces.yunet import YuNetFaceDetector, crop_face
    from worker.settings import FaceConfig

    finder = YuNetFaceDetector(FaceConfig(), store)
    crops = []
    for relative in (*FACES[:3], "real/utkface/utk_10_0_0_20170110220530650.jpg"):
        with Image.open(dev_dir / relative) as image:
            pixels = np.asarray(image.convert("RGB"))
        crops.append(crop_face(pixels, finder.detect(pixels)[0], 224, 1.3))
    return np.stack(crops)


def test_dlib_encoder_on_real_faces(pipeline_crops: np.ndarray) -> None:
    pytest.importorskip("dlib")
    from worker.faces.identity import load_dlib
    from worker.training import recompress_jpeg

    encoder = load_dlib(crop_margin=1.3)
    vectors = encoder.encode(pipeline_crops)
    assert vectors.shape == (len(pipeline_crops), 128) and vectors.dtype == np.float32
    np.testing.assert_array_equal(encoder.encode(pipeline_crops), vectors)  # deterministic
    recompressed = encoder.encode(np.stack([recompress_jpeg(crop, 70) for crop in pipeline_crops]))
    same = np.linalg.norm(recompressed - vectors, axis=1)
    others = np.linalg.norm(vectors[:, None] - vectors[None], axis=-1)[~np.eye(len(vectors), dtype=bool)]
    assert same.max() < 0.2 < 0.45 < others.min()  # dlib calls two faces the same person below 0.6


def test_dlib_identity_in_the_detector(
    tiny: ClipBackboneConfig, store: ModelStore, pipeline_crops: np.ndarray, tmp_path: Path
) -> None:
    pytest.importorskip("dlib")
    config = ClipReprogramConfig(backbone=tiny, identity="dlib", checkpoint=REPDFD)
    detector = ClipReprogramDetector(config, store)
    detector.load_for_training(seed=0)
    assert detector.projection.shape == (32, 128)
    assert detector.predict(list(pipeline_crops)).shape == (len(pipeline_crops),)
    path = tmp_path / "dlib_adapter.pth"
    detector.save_adapter(path)
    with pytest.raises(ValueError, match=r"\(32, 128\)"):  # a dlib adapter is no arcface adapter
        make_detector(tiny, store, str(path)).load()

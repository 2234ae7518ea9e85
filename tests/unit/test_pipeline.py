"""The whole in-process pipeline on real media with the real YuNet and MesoNet weights."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from worker.detectors.meso4 import Meso4Config
from worker.errors import ErrorCode, MediaError, ModelUnavailable
from worker.faces.types import Face
from worker.faces.yunet import crop_face
from worker.models import ModelStore
from worker.pipeline import Pipeline
from worker.settings import WorkerSettings


@pytest.fixture(scope="module")
def pipeline(models_dir: Path) -> Pipeline:
    import torch

    torch.set_num_threads(1)
    settings = WorkerSettings(model_dir=models_dir, model_fetch=False, device="cpu")
    loaded = Pipeline(settings)
    loaded.load()
    return loaded


def test_two_people_in_a_photo_are_two_tracks(pipeline: Pipeline, dev_dir: Path) -> None:
    analysis = pipeline.analyze(dev_dir / "real/deepface_photos/deepface_couple.jpg")
    verdict = analysis.verdict
    assert analysis.info.kind == "image" and (analysis.info.width, analysis.info.height) == (2280, 1588)
    assert verdict.coverage.faces == 2 and verdict.coverage.tracks == 2
    assert verdict.label in {"fake", "real", "uncertain"} and 0.0 <= verdict.score <= 1.0
    # the default detector (the project's dfwmeso) scores each face; the verdict is the highest track
    assert pipeline.settings.detectors == ["dfwmeso"]
    assert len(analysis.scores) == 2 and {s.detector for s in analysis.scores} == {"dfwmeso"}
    assert verdict.score == pytest.approx(max(s.score for s in analysis.scores))


def test_video_samples_frames_and_tracks_one_face(pipeline: Pipeline, dev_dir: Path) -> None:
    analysis = pipeline.analyze(dev_dir / "real/inthewild_video/itw_RealObama.mp4")
    coverage = analysis.verdict.coverage
    assert analysis.info.kind == "video" and analysis.method in {"decord", "pyav-seek", "pyav-sequential"}
    assert coverage.frames_requested == 16 and coverage.frames_decoded == 16
    assert [f.index for f in analysis.frames] == sorted({f.index for f in analysis.frames})
    assert coverage.faces == 16 and coverage.tracks == 1
    assert {"probe", "decode", "faces", "detector:dfwmeso", "aggregate"} <= set(analysis.timings)


def test_no_face_is_no_face(pipeline: Pipeline, tmp_path: Path) -> None:
    gradient = np.tile(np.linspace(0, 255, 320, dtype=np.uint8), (240, 1))
    Image.fromarray(np.stack([gradient] * 3, axis=-1)).save(tmp_path / "sky.png")
    verdict = pipeline.analyze(tmp_path / "sky.png").verdict
    assert verdict.label == "no_face" and verdict.score is None and verdict.coverage.frames_decoded == 1


def test_bad_input_is_a_media_error(pipeline: Pipeline, tmp_path: Path) -> None:
    (tmp_path / "empty.jpg").write_bytes(b"")
    with pytest.raises(MediaError) as caught:
        pipeline.analyze(tmp_path / "empty.jpg")
    assert caught.value.code is ErrorCode.EMPTY


def test_scores_do_not_depend_on_batch_size(pipeline: Pipeline, dev_dir: Path, models_dir: Path) -> None:
    path = dev_dir / "real/inthewild_video/itw_RealTaxi.mp4"
    settings = pipeline.settings.model_copy(update={"batch_size": 3})
    small = Pipeline(settings)
    small.load()
    a = [s.score for s in pipeline.analyze(path).scores]
    b = [s.score for s in small.analyze(path).scores]
    assert np.allclose(a, b, atol=1e-5)
    assert small.version == pipeline.version  # batch size does not change the numbers, nor the version


def test_version_changes_with_weights(pipeline: Pipeline) -> None:
    settings = pipeline.settings.model_copy(
        update={"detectors": ["meso4"], "meso4": Meso4Config(weights="Meso4_F2F.h5")}
    )
    other = Pipeline(settings)
    other.load()
    assert other.version != pipeline.version
    assert other.lineage()["detectors"]["meso4"]["weights"] == {
        "Meso4_F2F.h5": ModelStore(pipeline.settings.model_dir).entry("Meso4_F2F.h5").sha256
    }


def test_missing_weights_disable_the_detector(tmp_path: Path, models_dir: Path) -> None:
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "face_detection_yunet_2023mar.onnx").write_bytes(
        (models_dir / "face_detection_yunet_2023mar.onnx").read_bytes()
    )
    # dfwnet's weights ship in the package; Meso4's are missing, so meso4 is disabled and dfwnet runs alone
    pipeline = Pipeline(
        WorkerSettings(model_dir=cache, model_fetch=False, device="cpu", detectors=["dfwnet", "meso4"])
    )
    statuses = {status.name: status for status in pipeline.load()}
    assert statuses["dfwnet"].available and [d.name for d in pipeline.detectors] == ["dfwnet"]
    assert not statuses["meso4"].available and "Meso4_DF.h5" in statuses["meso4"].reason
    # with no detector left, nothing could be analysed: refused
    settings = WorkerSettings(model_dir=cache, model_fetch=False, device="cpu", detectors=["meso4"])
    with pytest.raises(ModelUnavailable) as caught:
        Pipeline(settings).load()
    assert "Meso4_DF.h5" in str(caught.value)


def test_unknown_detector_is_refused_by_settings() -> None:
    with pytest.raises(ValueError, match="unknown detector"):
        WorkerSettings(detectors=["nope"], device="cpu")


def test_crop_near_the_edge_keeps_the_face_centred() -> None:
    image = np.zeros((100, 100, 3), np.uint8)
    image[0:20, 0:20] = 255  # a bright "face" in the corner
    face = Face(0, 0.0, 0, (0.0, 0.0, 20.0, 20.0), np.zeros((5, 2), np.float32), 0.9)
    crop = crop_face(image, face, size=64, margin=2.0)
    assert crop.shape == (64, 64, 3) and crop.dtype == np.uint8
    assert crop[32, 32].tolist() == [255, 255, 255]  # the box centre is the crop centre

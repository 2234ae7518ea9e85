"""The SCRFD backend on real photos with the real scrfd_500m_bnkps.onnx, against YuNet on the same images."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from worker.errors import ModelUnavailable
from worker.faces import create_face_detector
from worker.faces.scrfd import ScrfdFaceDetector, nms
from worker.faces.types import Face
from worker.faces.yunet import YuNetFaceDetector
from worker.models import ModelStore
from worker.pipeline import Pipeline
from worker.settings import FaceConfig, WorkerSettings

PHOTOS = ["deepface_couple.jpg", "deepface_img1.jpg", "deepface_img2.jpg", "deepface_img10.jpg"]


def iou(a: Face, b: Face) -> float:
    ax0, ay0, ax1, ay1 = a.box_xyxy()
    bx0, by0, bx1, by1 = b.box_xyxy()
    inter = max(0.0, min(ax1, bx1) - max(ax0, bx0)) * max(0.0, min(ay1, by1) - max(ay0, by0))
    return inter / (a.box[2] * a.box[3] + b.box[2] * b.box[3] - inter)


def rgb(path: Path) -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)


@pytest.fixture(scope="module")
def store(models_dir: Path) -> ModelStore:
    return ModelStore(models_dir, allow_fetch=False)


@pytest.fixture(scope="module")
def scrfd(store: ModelStore) -> ScrfdFaceDetector:
    detector = create_face_detector(FaceConfig(backend="scrfd"), store)
    assert isinstance(detector, ScrfdFaceDetector)
    detector.load()
    return detector


def test_factory_chooses_by_backend(store: ModelStore) -> None:
    assert isinstance(create_face_detector(FaceConfig(), store), YuNetFaceDetector)
    assert isinstance(create_face_detector(FaceConfig(backend="scrfd"), store), ScrfdFaceDetector)


def test_couple_has_two_faces_with_landmarks_inside(scrfd: ScrfdFaceDetector, dev_dir: Path) -> None:
    image = rgb(dev_dir / "real/deepface_photos/deepface_couple.jpg")
    faces = scrfd.detect(image, frame_index=3, timestamp_s=0.5)
    assert len(faces) == 2
    assert [f.face_index for f in faces] == [0, 1] and faces[0].confidence >= faces[1].confidence
    for face in faces:
        assert face.frame_index == 3 and face.timestamp_s == 0.5
        assert face.landmarks.shape == (5, 2) and face.landmarks.dtype == np.float32
        x0, y0, x1, y1 = face.box_xyxy()
        assert 0 <= x0 < x1 <= image.shape[1] and 0 <= y0 < y1 <= image.shape[0]
        assert face.box[2] > 200  # original pixels, not the 640-px detection frame
        inside = (face.landmarks[:, 0] >= x0) & (face.landmarks[:, 0] <= x1)
        inside &= (face.landmarks[:, 1] >= y0) & (face.landmarks[:, 1] <= y1)
        assert inside.all()
        right_eye, left_eye = face.landmarks[0], face.landmarks[1]
        assert right_eye[0] < left_eye[0]  # image-left eye first, as YuNet orders them


def test_boxes_overlap_yunet(scrfd: ScrfdFaceDetector, store: ModelStore, dev_dir: Path) -> None:
    yunet = YuNetFaceDetector(FaceConfig(), store)
    matched = 0
    for name in PHOTOS:
        image = rgb(dev_dir / "real/deepface_photos" / name)
        ours, theirs = scrfd.detect(image), yunet.detect(image)
        assert ours, name
        for face in theirs:
            best = max(iou(face, other) for other in ours)
            assert best > 0.5, (name, face.box, [o.box for o in ours])
            matched += 1
    assert matched >= len(PHOTOS)


def test_caps_and_no_face(store: ModelStore, dev_dir: Path) -> None:
    image = rgb(dev_dir / "real/deepface_photos/deepface_couple.jpg")
    one = ScrfdFaceDetector(FaceConfig(backend="scrfd", max_faces_per_frame=1), store)
    assert len(one.detect(image)) == 1
    huge_minimum = ScrfdFaceDetector(FaceConfig(backend="scrfd", min_face_px=2000), store)
    assert huge_minimum.detect(image) == []
    gradient = np.tile(np.linspace(0, 255, 320, dtype=np.uint8), (240, 1))
    assert one.detect(np.stack([gradient] * 3, axis=-1)) == []


def test_nms_keeps_the_best_of_overlapping_boxes() -> None:
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60]], np.float32)
    assert nms(boxes, np.array([0.6, 0.9, 0.7], np.float32), 0.3) == [1, 2]


def test_lineage_names_weights_and_operator_path(store: ModelStore, models_dir: Path) -> None:
    lineage = ScrfdFaceDetector(FaceConfig(backend="scrfd"), store).lineage()
    assert lineage["name"] == "scrfd"
    assert lineage["weights"] == {"scrfd_500m_bnkps.onnx": store.entry("scrfd_500m_bnkps.onnx").sha256}
    own = str(models_dir / "scrfd_500m_bnkps.onnx")  # an operator's path, hashed for lineage
    operator = ScrfdFaceDetector(FaceConfig(backend="scrfd", scrfd_weights=own), store)
    operator.load()
    assert operator.lineage()["weights"] == {own: store.entry("scrfd_500m_bnkps.onnx").sha256}


def test_model_without_keypoints_is_refused(store: ModelStore, models_dir: Path) -> None:
    yunet_path = str(models_dir / "face_detection_yunet_2023mar.onnx")  # an ONNX of another layout
    with pytest.raises(ModelUnavailable, match="keypoints"):
        ScrfdFaceDetector(FaceConfig(backend="scrfd", scrfd_weights=yunet_path), store).load()


def test_pipeline_end_to_end_with_scrfd(models_dir: Path, dev_dir: Path) -> None:
    settings = WorkerSettings(
        model_dir=models_dir, model_fetch=False, device="cpu", faces=FaceConfig(backend="scrfd")
    )
    pipeline = Pipeline(settings)
    pipeline.load()
    assert pipeline.lineage()["face_detector"]["name"] == "scrfd"
    analysis = pipeline.analyze(dev_dir / "real/deepface_photos/deepface_couple.jpg")
    assert analysis.verdict.coverage.faces == 2 and analysis.verdict.coverage.tracks == 2
    assert len(analysis.scores) == 2 * len(pipeline.detectors)  # each face, every detector
    video = pipeline.analyze(dev_dir / "real/inthewild_video/itw_RealObama.mp4")
    assert video.verdict.coverage.faces >= 15 and video.verdict.coverage.tracks == 1
    yunet = Pipeline(settings.model_copy(update={"faces": FaceConfig()}))
    yunet.load()
    assert yunet.version != pipeline.version  # the face backend is part of the pipeline version

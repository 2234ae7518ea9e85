"""Face-identity encoders: square face crops -> one identity embedding per face.

Two encoders sit behind one small interface (`IdentityEncoder.encode(faces, landmarks=None) -> (N, dim)`):

- `arcface`: an insightface ArcFace recognition model in ONNX (e.g. `w600k_r50.onnx` from the buffalo_l
  pack, 512-d), run with onnxruntime directly. Input: 112x112 RGB faces aligned by a 5-point similarity
  transform onto insightface's ArcFace template, scaled to (x - 127.5) / 127.5, NCHW float32. That scaling
  is what insightface uses for its recognition packs (w600k_r50, glintr100); graphs that normalise inside
  (old MXNet conversions) are not supported.
- `dlib`: dlib's ResNet face descriptor (128-d) from the `face-recognition-models` package, aligned by
  dlib itself from its 5-point shape predictor, as the `face_recognition` library does.

Landmarks. Callers that know the 5 landmarks (right eye, left eye, nose tip, right and left mouth corner,
as `Face.landmarks`) in crop pixels pass them and ArcFace aligns on them exactly. Detectors only receive
crops, so without landmarks the encoders assume the geometry of `worker.faces.yunet.crop_face`: the face
box centred in the crop, its longer side = crop side / `crop_margin`. ArcFace then aligns on the average
landmark positions of such crops (measured with YuNet on 398 dev images, symmetrised; the spread per
coordinate is 3-7% of the crop side), and dlib runs its shape predictor inside the average box its own
detector draws on such crops, so dlib's alignment still follows the actual face.
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path
from typing import Any, Protocol

import cv2
import numpy as np

from worker.errors import ModelUnavailable
from worker.models import ModelStore

logger = logging.getLogger(__name__)

ARCFACE_SIZE = 112
# insightface's ArcFace template for 112x112 crops, in Face.landmarks order
ARCFACE_TEMPLATE = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]],
    np.float32,
)
ARCFACE_MEAN = 127.5
ARCFACE_STD = 127.5

REFERENCE_MARGIN = 1.3  # the crop margin the two geometry constants below were measured at
# mean YuNet landmarks in crop_face crops at margin 1.3, as fractions of the crop side (symmetrised)
CROP_LANDMARKS = np.array(
    [[0.357, 0.384], [0.643, 0.384], [0.5, 0.547], [0.38, 0.674], [0.62, 0.674]], np.float32
)
# mean box of dlib's frontal face detector in the same crops (left, top, right, bottom), fractions of the side
DLIB_CROP_BOX = (0.15, 0.18, 0.83, 0.86)
DLIB_DIM = 128
DLIB_PACKAGE = "face_recognition_models"
DLIB_SHAPE_MODEL = "shape_predictor_5_face_landmarks.dat"
DLIB_DESCRIPTOR_MODEL = "dlib_face_recognition_resnet_model_v1.dat"


class IdentityEncoder(Protocol):
    name: str
    dim: int

    def weight_names(self) -> list[str]:
        """Model-store names of the encoder's weights (for lineage); empty when a package carries them."""
        ...

    def encode(self, faces: np.ndarray, landmarks: np.ndarray | None = None) -> np.ndarray:
        """(N, S, S, 3) uint8 RGB crops [+ (N, 5, 2) landmarks in crop pixels] -> (N, dim) float32."""
        ...


def scaled_to_margin(points: np.ndarray, margin: float) -> np.ndarray:
    """Fractions measured at REFERENCE_MARGIN moved to a crop of another margin (same centre)."""
    return np.asarray(0.5 + (points - 0.5) * (REFERENCE_MARGIN / margin), np.float32)


def crop_landmarks(count: int, size: int, margin: float) -> np.ndarray:
    """(count, 5, 2) assumed landmarks, in pixels, for crops of side `size` made with `margin`."""
    points = scaled_to_margin(CROP_LANDMARKS, margin) * size
    return np.repeat(points[None], count, axis=0)


def align_face(image: np.ndarray, landmarks: np.ndarray, size: int = ARCFACE_SIZE) -> np.ndarray:
    """The face warped by the similarity transform best mapping its 5 landmarks onto the ArcFace template."""
    template = ARCFACE_TEMPLATE * (size / ARCFACE_SIZE)
    matrix, _ = cv2.estimateAffinePartial2D(
        np.asarray(landmarks, np.float32).reshape(5, 2), template, method=cv2.LMEDS
    )
    if matrix is None:
        raise ValueError(f"cannot align a face on landmarks {np.asarray(landmarks).tolist()}")
    return cv2.warpAffine(np.ascontiguousarray(image), matrix, (size, size), borderValue=(0, 0, 0))


def check_faces(faces: np.ndarray, landmarks: np.ndarray | None) -> None:
    if faces.ndim != 4 or faces.shape[-1] != 3 or faces.dtype != np.uint8:
        raise ValueError(f"expected (N, S, S, 3) uint8 RGB crops, got {faces.shape} {faces.dtype}")
    if landmarks is not None and np.asarray(landmarks).shape != (len(faces), 5, 2):
        raise ValueError(f"expected ({len(faces)}, 5, 2) landmarks, got {np.asarray(landmarks).shape}")


class ArcFaceOnnxEncoder:
    """insightface ArcFace (ONNX) through onnxruntime; 512-d for w600k_r50."""

    name = "arcface"

    def __init__(self, session: Any, ref: str, crop_margin: float) -> None:
        self.session = session
        self.ref = ref
        self.crop_margin = crop_margin
        self.input_name = session.get_inputs()[0].name
        batch_dim = session.get_inputs()[0].shape[0]
        self.max_batch = batch_dim if isinstance(batch_dim, int) and batch_dim > 0 else None
        out_dim = session.get_outputs()[0].shape[-1]
        if isinstance(out_dim, int):
            self.dim = out_dim
        else:  # a symbolic output width: ask the graph
            self.dim = int(self._run(np.zeros((1, 3, ARCFACE_SIZE, ARCFACE_SIZE), np.float32)).shape[-1])

    def weight_names(self) -> list[str]:
        return [self.ref]

    def encode(self, faces: np.ndarray, landmarks: np.ndarray | None = None) -> np.ndarray:
        check_faces(faces, landmarks)
        if len(faces) == 0:
            return np.zeros((0, self.dim), np.float32)
        points = landmarks
        if points is None:
            points = crop_landmarks(len(faces), faces.shape[1], self.crop_margin)
        aligned = np.stack([align_face(face, mark) for face, mark in zip(faces, points, strict=True)])
        blob = (aligned.astype(np.float32) - ARCFACE_MEAN) / ARCFACE_STD
        blob = np.ascontiguousarray(blob.transpose(0, 3, 1, 2))
        step = self.max_batch or len(blob)
        parts = [self._run(blob[start : start + step]) for start in range(0, len(blob), step)]
        return np.concatenate(parts).astype(np.float32, copy=False)

    def _run(self, blob: np.ndarray) -> np.ndarray:
        return np.asarray(self.session.run(None, {self.input_name: blob})[0], np.float32)


def onnx_providers(device: str) -> list[Any]:
    import onnxruntime

    available = onnxruntime.get_available_providers()
    if device.startswith("cuda") and "CUDAExecutionProvider" in available:
        index = int(device.partition(":")[2] or 0)
        return [("CUDAExecutionProvider", {"device_id": index}), "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


def load_arcface(store: ModelStore, ref: str, device: str, crop_margin: float) -> ArcFaceOnnxEncoder:
    """Open an ArcFace ONNX file (model-store name or path). Raises ModelUnavailable."""
    try:
        path = store.resolve(ref)
    except ModelUnavailable as exc:
        raise ModelUnavailable(
            ref,
            f"{exc.reason}. The ArcFace recognition model (insightface, e.g. w600k_r50.onnx from the "
            "buffalo_l pack; non-commercial licence) is operator-provided: give its path, or put it in "
            "the model directory with a NAME.manifest.json entry",
        ) from None
    try:
        import onnxruntime
    except ImportError:
        raise ModelUnavailable(
            ref, "the arcface identity encoder needs onnxruntime (pip install onnxruntime)"
        ) from None
    session = onnxruntime.InferenceSession(str(path), providers=onnx_providers(device))
    encoder = ArcFaceOnnxEncoder(session, ref, crop_margin)
    logger.info("ArcFace identity encoder %s loaded (%d-d) on %s", path.name, encoder.dim, device)
    return encoder


class DlibEncoder:
    """dlib's 128-d ResNet face descriptor, aligned by dlib's 5-point shape predictor."""

    name = "dlib"
    dim = DLIB_DIM

    def __init__(self, dlib: Any, model_dir: Path, crop_margin: float) -> None:
        self.dlib = dlib
        self.shape_predictor = dlib.shape_predictor(str(model_dir / DLIB_SHAPE_MODEL))
        self.descriptor = dlib.face_recognition_model_v1(str(model_dir / DLIB_DESCRIPTOR_MODEL))
        self.crop_margin = crop_margin
        self.box = scaled_to_margin(np.asarray(DLIB_CROP_BOX, np.float32), crop_margin)

    def weight_names(self) -> list[str]:
        return []

    def encode(self, faces: np.ndarray, landmarks: np.ndarray | None = None) -> np.ndarray:
        """Landmarks, if given, only move the box dlib's own shape predictor searches in."""
        check_faces(faces, landmarks)
        vectors = [
            self._encode_one(np.ascontiguousarray(face), None if landmarks is None else landmarks[i])
            for i, face in enumerate(faces)
        ]
        return np.asarray(vectors, np.float32).reshape(len(faces), self.dim)

    def _encode_one(self, face: np.ndarray, marks: np.ndarray | None) -> np.ndarray:
        left, top, right, bottom = self._box(face.shape[0], marks)
        shape = self.shape_predictor(face, self.dlib.rectangle(left, top, right, bottom))
        return np.asarray(self.descriptor.compute_face_descriptor(face, shape, 0), np.float32)

    def _box(self, side: int, marks: np.ndarray | None) -> tuple[int, int, int, int]:
        """The assumed dlib box in the crop, carried along with the face when its landmarks are known."""
        corners = self.box.reshape(2, 2) * side
        if marks is not None:
            assumed = scaled_to_margin(CROP_LANDMARKS, self.crop_margin) * side
            matrix, _ = cv2.estimateAffinePartial2D(
                assumed, np.asarray(marks, np.float32).reshape(5, 2), method=cv2.LMEDS
            )
            if matrix is not None:
                corners = cv2.transform(corners[None], matrix)[0]
        (left, top), (right, bottom) = corners.min(axis=0), corners.max(axis=0)
        return round(float(left)), round(float(top)), round(float(right)), round(float(bottom))


def dlib_model_dir() -> Path:
    """The model folder of the face-recognition-models package, found without importing it (its
    __init__ needs pkg_resources, which recent setuptools no longer ships)."""
    spec = importlib.util.find_spec(DLIB_PACKAGE)
    if spec is None or spec.origin is None:
        raise ModelUnavailable(
            DLIB_PACKAGE, "the dlib identity encoder needs pip install dlib-bin face-recognition-models"
        )
    folder = Path(spec.origin).parent / "models"
    for name in (DLIB_SHAPE_MODEL, DLIB_DESCRIPTOR_MODEL):
        if not (folder / name).is_file():
            raise ModelUnavailable(name, f"not found in the {DLIB_PACKAGE} package at {folder}")
    return folder


def load_dlib(crop_margin: float) -> DlibEncoder:
    """dlib's face descriptor with the weights from face-recognition-models. Raises ModelUnavailable."""
    try:
        import dlib
    except ImportError:
        raise ModelUnavailable(
            "dlib", "the dlib identity encoder needs pip install dlib-bin face-recognition-models"
        ) from None
    encoder = DlibEncoder(dlib, dlib_model_dir(), crop_margin)
    logger.info("dlib identity encoder loaded (%d-d)", encoder.dim)
    return encoder

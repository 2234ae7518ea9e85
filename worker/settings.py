"""Typed settings for everything that runs inside a worker process.

This is the only module of the `worker` package that reads the environment. Every field can be set with
an environment variable prefixed `DFW_`; nested fields use a double underscore, e.g.
`DFW_LIMITS__MAX_BYTES=1000000` or `DFW_FACES__SCORE_THRESHOLD=0.8`. List fields accept JSON or a
comma-separated string (`DFW_DETECTORS=dfwmeso,dfwnet`; the default is `dfwmeso`).
"""

from __future__ import annotations

import hashlib
import json
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from worker.detectors import DETECTOR_MODULES
from worker.detectors.clip_linear import ClipLinearConfig
from worker.detectors.clip_prompt import ClipPromptConfig
from worker.detectors.clip_reprogram import ClipReprogramConfig
from worker.detectors.dfwmeso import DfwmesoConfig
from worker.detectors.dfwnet import DfwnetConfig
from worker.detectors.hf_classifier import HfClassifierConfig
from worker.detectors.meso4 import Meso4Config
from worker.detectors.vqa_prompt import VqaPromptConfig
from worker.explain.lvlm_http import LvlmHttpConfig
from worker.explain.lvlm_local import LvlmLocalConfig

PIPELINE_SCHEMA = 1  # bump when the meaning of stored rows changes


class MediaLimits(BaseModel):
    """Input caps. Anything over a cap fails with a stable error code, before it is decoded."""

    max_bytes: int = Field(default=2 * 1024**3, gt=0, description="largest object fetched or scanned")
    max_pixels: int = Field(default=80_000_000, gt=0, description="width x height of an image or a frame")
    max_duration_s: float = Field(default=4 * 3600.0, gt=0, description="longest video analysed")
    max_frames: int = Field(default=2_000_000, gt=0, description="most frames a video may declare")
    max_fps: float = Field(default=1000.0, gt=0, description="highest frame rate a video may declare")


SamplingMethod = Literal["auto", "decord", "seek", "sequential", "keyframes"]


class SamplingConfig(BaseModel):
    frames_per_video: int = Field(default=16, ge=1, le=1024, description="uniformly spaced frames decoded")
    method: SamplingMethod = Field(
        default="auto",
        description="how video frames are decoded: auto = the cheapest exact method for the file's keyframe "
        "layout; decord, seek (PyAV seek per group of pictures), sequential (one PyAV pass); keyframes = the "
        "keyframe nearest each uniformly spaced frame (a cheap first pass, only keyframes are decoded)",
    )
    second_pass_frames: int = Field(
        default=0,
        ge=0,
        le=1024,
        description="an uncertain video verdict decodes this many more frames around its most suspicious "
        "frames, scores them and decides again over all frames; 0 = no second pass",
    )
    second_pass_centres: int = Field(
        default=2, ge=1, le=64, description="second pass: around how many of the most suspicious frames"
    )
    decode_ahead: int = Field(
        default=2,
        ge=0,
        le=16,
        exclude=True,  # not in the pipeline version: it changes when work happens, not the numbers
        description="decoded frames a background thread may hold ready while faces and detectors work on "
        "earlier ones; 0 = decode on the analysing thread",
    )


class FaceConfig(BaseModel):
    backend: Literal["yunet", "scrfd"] = Field(
        default="yunet",
        description="face detector: yunet (OpenCV) or scrfd (insightface SCRFD/RetinaFace ONNX)",
    )
    score_threshold: float = Field(default=0.7, gt=0, lt=1)
    nms_threshold: float = Field(default=0.3, gt=0, lt=1)
    detect_long_side: int = Field(
        default=640, ge=64, description="frames are downscaled to this for detection"
    )
    min_face_px: int = Field(
        default=24, ge=1, description="faces narrower than this (original pixels) are skipped"
    )
    max_faces_per_frame: int = Field(default=8, ge=1)
    scrfd_weights: str = Field(
        default="scrfd_500m_bnkps.onnx",
        description="scrfd backend: model-store name or path of an SCRFD/RetinaFace ONNX with keypoints "
        "(e.g. det_10g.onnx from an insightface buffalo pack)",
    )
    scrfd_score_threshold: float = Field(
        default=0.5, gt=0, lt=1, description="scrfd backend: lowest face score kept (insightface's default)"
    )
    scrfd_threads: int = Field(
        default=0, ge=0, description="scrfd backend: onnxruntime threads, 0 = its default"
    )
    crop_margin: float = Field(default=1.3, ge=1.0, le=3.0, description="square crop side / face box side")
    track_iou: float = Field(
        default=0.3, gt=0, lt=1, description="IoU that links faces across sampled frames"
    )
    detect_every: int = Field(
        default=1,
        ge=1,
        le=16,
        description="run the face detector on every k-th sampled frame (and the last); the faces of the "
        "frames between are interpolated from the detections on either side",
    )
    interpolate_within_s: float = Field(
        default=0.5,
        gt=0,
        description="with detect_every > 1: two detections are never further apart than this (seconds), so "
        "only dense frames are interpolated",
    )


class AggregateConfig(BaseModel):
    policy: Literal["max_track_mean/2"] = "max_track_mean/2"
    threshold: float | None = Field(
        default=None,
        gt=0,
        lt=1,
        description="score at or above which media is fake; unset: the calibrated one for the detector set "
        "(`dfw eval --calibrate-fpr`), else 0.5",
    )
    uncertain_margin: float = Field(
        default=0.1, ge=0, lt=1, description="scores in [threshold - margin, threshold) are uncertain"
    )


class ExplainConfig(BaseModel):
    explainer: Literal["evidence", "lvlm_local", "lvlm_http"] = "evidence"
    policy: Literal["all", "flagged", "none"] = Field(
        default="flagged", description="which verdicts get an explanation: flagged = fake or uncertain"
    )
    top_k: int = Field(default=4, ge=1, le=32, description="most suspicious faces or frames sent along")
    lvlm_local: LvlmLocalConfig = Field(default_factory=LvlmLocalConfig)
    lvlm_http: LvlmHttpConfig = Field(default_factory=LvlmHttpConfig)


class WorkerSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="DFW_", env_nested_delimiter="__", extra="ignore")

    model_dir: Path = Field(
        default=Path.home() / ".cache" / "deepfake-worker" / "models",
        description="model-store cache; files with the right sha256 here are used offline",
    )
    model_fetch: bool = Field(default=True, description="download missing weights from their sources")
    device: str = Field(default="auto", description="auto, cpu, cuda or cuda:N")
    detectors: Annotated[list[str], NoDecode] = Field(default_factory=lambda: ["dfwmeso"])
    batch_size: int = Field(default=32, ge=1, description="face crops per detector forward pass")
    limits: MediaLimits = Field(default_factory=MediaLimits)
    sampling: SamplingConfig = Field(default_factory=SamplingConfig)
    faces: FaceConfig = Field(default_factory=FaceConfig)
    aggregate: AggregateConfig = Field(default_factory=AggregateConfig)
    dfwnet: DfwnetConfig = Field(default_factory=DfwnetConfig)
    dfwmeso: DfwmesoConfig = Field(default_factory=DfwmesoConfig)
    meso4: Meso4Config = Field(default_factory=Meso4Config)
    clip_linear: ClipLinearConfig = Field(default_factory=ClipLinearConfig)
    clip_prompt: ClipPromptConfig = Field(default_factory=ClipPromptConfig)
    clip_reprogram: ClipReprogramConfig = Field(default_factory=ClipReprogramConfig)
    hf_classifier: HfClassifierConfig = Field(default_factory=HfClassifierConfig)
    vqa_prompt: VqaPromptConfig = Field(default_factory=VqaPromptConfig)
    explain: ExplainConfig = Field(default_factory=ExplainConfig)

    @field_validator("detectors", mode="before")
    @classmethod
    def split_detectors(cls, value: Any) -> Any:
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                return json.loads(text)
            return [part.strip() for part in text.split(",") if part.strip()]
        return value

    @field_validator("detectors")
    @classmethod
    def require_detectors(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("at least one detector must be configured")
        unknown = [name for name in value if name not in DETECTOR_MODULES]
        if unknown:
            known = ", ".join(sorted(DETECTOR_MODULES))
            raise ValueError(f"unknown detector(s) {', '.join(unknown)}; known detectors: {known}")
        return list(dict.fromkeys(value))

    def detector_config(self, name: str) -> BaseModel:
        config = getattr(self, name, None)
        if not isinstance(config, BaseModel):
            raise KeyError(name)
        return config

    def analysis_settings(self) -> dict[str, Any]:
        """What changes the numbers a pipeline produces (not caps, devices or paths)."""
        return {
            "schema": PIPELINE_SCHEMA,
            "detectors": {
                name: self.detector_config(name).model_dump(mode="json") for name in self.detectors
            },
            "sampling": self.sampling.model_dump(mode="json"),
            "faces": self.faces.model_dump(mode="json"),
            "aggregate": self.aggregate.model_dump(mode="json"),
        }


def settings_digest(payload: dict[str, Any]) -> str:
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


@lru_cache(maxsize=1)
def get_settings() -> WorkerSettings:
    return WorkerSettings()

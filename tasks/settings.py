"""Typed settings of the Celery edge (broker, queues, retries, leases). Env prefix `DFW_`."""

from __future__ import annotations

import tempfile
from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class ServiceSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="DFW_", extra="ignore")

    broker_url: str = Field(default="redis://127.0.0.1:6379/0", description="Celery broker (Redis)")
    detect_queue: str = Field(default="detect", description="queue of detect_media tasks (GPU workers)")
    explain_queue: str = Field(default="explain", description="queue of explain_media tasks (LVLM workers)")
    max_attempts: int = Field(default=5, ge=1, description="attempts per job before it fails for good")
    lease_s: float = Field(default=900.0, gt=0, description="how long a claimed job stays claimed")
    reap_interval_s: float = Field(default=60.0, gt=0, description="how often `dfw worker --beat` reaps")
    retry_backoff_s: float = Field(default=2.0, gt=0, description="first retry delay; doubles, jittered")
    retry_backoff_max_s: float = Field(default=60.0, gt=0, description="cap on a retry delay")
    transient_retries: int = Field(
        default=12, ge=0, description="retries of a task after object-store or database errors (~8 min)"
    )
    soft_time_limit_s: float = Field(default=600.0, gt=0, description="a job over this fails with `timeout`")
    time_limit_s: float = Field(default=660.0, gt=0, description="hard limit: the worker process is replaced")
    visibility_timeout_s: int = Field(default=3600, gt=0, description="Redis redelivery of unacked tasks")
    tmp_dir: Path = Field(default=Path(tempfile.gettempdir()), description="where objects are downloaded")


@lru_cache(maxsize=1)
def get_service_settings() -> ServiceSettings:
    return ServiceSettings()

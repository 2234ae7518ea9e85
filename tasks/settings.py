"""Typed settings of the Celery edge (broker, queues, retries, leases). Env prefix `DFW_`."""

from __future__ import annotations

import tempfile
from functools import lru_cache
from pathlib import Path

from pydantic import BaseModel, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class WebhookSettings(BaseModel):
    """Signed callbacks of final verdicts (`DFW_WEBHOOKS__*`); see the README's Webhooks section."""

    secret: SecretStr = Field(default=SecretStr(""), description="shared HMAC-SHA256 key (set it)")
    timeout_s: float = Field(default=10.0, gt=0, description="connect + read timeout of one POST")
    max_attempts: int = Field(default=8, ge=1, description="POSTs per job before delivery is given up")
    backoff_s: float = Field(default=5.0, gt=0, description="first retry delay; doubles, jittered")
    backoff_max_s: float = Field(default=600.0, gt=0, description="cap on a retry delay")
    replay_window_s: int = Field(default=300, gt=0, description="receivers reject older timestamps")
    callers: dict[str, str] = Field(
        default_factory=dict, description='callback URL per caller id (metadata["caller"]), JSON'
    )


class ServiceSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="DFW_", env_nested_delimiter="__", extra="ignore")

    broker_url: str = Field(default="redis://127.0.0.1:6379/0", description="Celery broker (Redis)")
    detect_queue: str = Field(default="detect", description="queue of detect_media tasks (GPU workers)")
    explain_queue: str = Field(default="explain", description="queue of explain_media tasks (LVLM workers)")
    webhooks_queue: str = Field(default="webhooks", description="queue of deliver_webhook tasks (HTTP only)")
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
    metrics_port: int | None = Field(
        default=None, ge=1, le=65535, description="`dfw worker` serves Prometheus metrics on this port"
    )
    metrics_address: str = Field(default="0.0.0.0", description="address the metrics endpoint listens on")
    webhooks: WebhookSettings = Field(default_factory=WebhookSettings, description="signed verdict callbacks")


@lru_cache(maxsize=1)
def get_service_settings() -> ServiceSettings:
    return ServiceSettings()

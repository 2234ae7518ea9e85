"""Typed settings of the reviewer page. Env prefix `DFW_REVIEW_`."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class ReviewSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="DFW_REVIEW_", extra="ignore")

    host: str = Field(default="127.0.0.1", description="address `dfw review` listens on")
    port: int = Field(default=8080, ge=1, le=65535, description="port `dfw review` listens on")
    page_size: int = Field(default=25, ge=1, le=500, description="media per page of the flagged list")
    frames_shown: int = Field(default=8, ge=1, le=64, description="sampled frames shown on a media page")
    frame_long_side: int = Field(
        default=960, ge=64, le=4096, description="frames are served as JPEGs at most this long"
    )
    frame_cache_jobs: int = Field(
        default=16, ge=1, le=256, description="media whose shown frames are kept in memory"
    )
    default_since: str = Field(default="7d", description="time window of the list when none is asked for")

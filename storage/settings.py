"""Typed settings of the storage package (database and object store). Env prefix `DFW_`."""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class StorageSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="DFW_", extra="ignore")

    database_url: str = Field(
        default="postgresql+psycopg://postgres@127.0.0.1:5432/deepfake_worker",
        description="SQLAlchemy URL of the results database (psycopg 3 driver)",
    )
    s3_endpoint_url: str | None = Field(
        default=None, description="S3-compatible endpoint (MinIO, moto); unset means AWS"
    )
    s3_region: str | None = Field(default=None, description="region name for the S3 client")
    s3_connect_timeout_s: float = Field(default=10.0, gt=0)
    s3_read_timeout_s: float = Field(default=60.0, gt=0)
    s3_max_attempts: int = Field(default=5, ge=1, description="attempts per S3 request, first included")


@lru_cache(maxsize=1)
def get_storage_settings() -> StorageSettings:
    return StorageSettings()

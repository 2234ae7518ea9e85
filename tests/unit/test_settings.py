from __future__ import annotations

import pytest
from pydantic import ValidationError

from worker.settings import WorkerSettings


def test_env_lists_and_nested_fields(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DFW_DETECTORS", "meso4, meso4")
    monkeypatch.setenv("DFW_SAMPLING__FRAMES_PER_VIDEO", "8")
    monkeypatch.setenv("DFW_MESO4__WEIGHTS", "Meso4_F2F.h5")
    settings = WorkerSettings()
    assert settings.detectors == ["meso4"]
    assert settings.sampling.frames_per_video == 8
    assert settings.meso4.weights == "Meso4_F2F.h5"
    monkeypatch.setenv("DFW_DETECTORS", '["meso4"]')
    assert WorkerSettings().detectors == ["meso4"]


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("DFW_DETECTORS", ""),
        ("DFW_SAMPLING__FRAMES_PER_VIDEO", "0"),
        ("DFW_MESO4__WEIGHTS", "other.h5"),
        ("DFW_AGGREGATE__THRESHOLD", "1.5"),
    ],
)
def test_bad_values_fail_at_start(monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError):
        WorkerSettings()


def test_analysis_settings_change_with_what_changes_numbers() -> None:
    base = WorkerSettings().analysis_settings()
    assert WorkerSettings(device="cpu").analysis_settings() == base
    assert WorkerSettings(sampling={"frames_per_video": 4}).analysis_settings() != base
    assert WorkerSettings(dfwmeso={"weights": "mine.safetensors"}).analysis_settings() != base
    # a detector that is not configured does not change the numbers
    assert WorkerSettings(dfwnet={"weights": "mine.safetensors"}).analysis_settings() == base
    meso4 = WorkerSettings(detectors=["meso4"]).analysis_settings()
    assert WorkerSettings(detectors=["meso4"], meso4={"weights": "Meso4_F2F.h5"}).analysis_settings() != meso4

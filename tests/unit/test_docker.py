"""docker/compose.yaml and the Dockerfiles, checked without a Docker engine: services, images, healthchecks,
start order, and every DFW_* variable against the settings the code reads; the images install the project
the way the README does."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import typer.main
import yaml
from pydantic import BaseModel

from storage.settings import StorageSettings
from tasks.cli import app as cli_app
from tasks.review.settings import ReviewSettings
from tasks.settings import ServiceSettings
from tests.conftest import REPO
from worker.settings import WorkerSettings

DOCKER = REPO / "docker"
DOCKERFILES = ("Dockerfile.cpu", "Dockerfile.cuda")
EXPECTED_SERVICES = {
    "postgres",
    "redis",
    "minio",
    "minio-init",
    "migrate",
    "detect-worker",
    "explain-worker",
    "flower",
    "review",
}
WORKERS = ("detect-worker", "explain-worker")
# pip options that choose where wheels come from or how quietly, not what gets installed
SOURCE_OPTIONS_WITH_VALUE = {"--index-url", "-i", "--extra-index-url", "--find-links", "-f"}
QUIET_OPTIONS = {"-q", "--quiet", "--no-cache-dir", "--upgrade", "-U"}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load((DOCKER / "compose.yaml").read_text())


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]


def project_services(services: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {name: s for name, s in services.items() if "build" in s}


def env_names(model: type[BaseModel], prefix: str, delimiter: str | None) -> set[str]:
    """The variables a pydantic-settings class reads: PREFIX+FIELD, and PREFIX+FIELD__SUB when nested."""
    names = set()
    for field_name, field in model.model_fields.items():
        name = f"{prefix}{field_name}".upper()
        names.add(name)
        annotation = field.annotation
        if delimiter and isinstance(annotation, type) and issubclass(annotation, BaseModel):
            names |= env_names(annotation, f"{name}{delimiter}", delimiter)
    return names


def known_settings() -> set[str]:
    known = set()
    for settings in (WorkerSettings, ServiceSettings, StorageSettings, ReviewSettings):
        config = settings.model_config
        known |= env_names(settings, config.get("env_prefix", ""), config.get("env_nested_delimiter"))
    return known


def test_every_service_is_there_and_healthchecked_or_a_completed_one_shot(services) -> None:
    assert set(services) >= EXPECTED_SERVICES
    awaited = {
        dependency
        for service in services.values()
        for dependency, condition in (service.get("depends_on") or {}).items()
        if condition.get("condition") == "service_completed_successfully"
    }
    for name, service in services.items():
        if "healthcheck" in service:
            assert service["healthcheck"].get("test"), name
            assert not service["healthcheck"].get("disable"), name
        else:
            assert service.get("restart") == "no", f"{name}: no healthcheck and not a one-shot"
            assert name in awaited, f"{name}: a one-shot nobody waits for"


def test_dependencies_exist_and_healthy_ones_have_a_healthcheck(services) -> None:
    for name, service in services.items():
        for dependency, condition in (service.get("depends_on") or {}).items():
            assert dependency in services, f"{name} depends on unknown {dependency}"
            if condition["condition"] == "service_healthy":
                assert "healthcheck" in services[dependency], f"{name} waits for {dependency}'s health"


def test_workers_start_after_migrations_and_the_bucket(services) -> None:
    for name in (*WORKERS, "review"):
        depends = services[name]["depends_on"]
        assert depends["migrate"] == {"condition": "service_completed_successfully"}, name
        assert depends["minio-init"] == {"condition": "service_completed_successfully"}, name
    assert services["migrate"]["command"] == ["db", "upgrade"]
    assert "mc mb --ignore-existing local/uploads" in " ".join(services["minio-init"]["command"])


def test_redis_persists_and_workers_expose_metrics(services) -> None:
    assert "--appendonly" in services["redis"]["command"]
    assert services["redis"]["command"][services["redis"]["command"].index("--appendonly") + 1] == "yes"
    for name in WORKERS:
        port = services[name]["environment"]["DFW_METRICS_PORT"]
        assert any(str(mapping).endswith(f":{port}") for mapping in services[name]["ports"]), name
    queues = {
        name: services[name]["command"][services[name]["command"].index("--queues") + 1] for name in WORKERS
    }
    assert "detect" in queues["detect-worker"].split(",") and "explain" in queues["explain-worker"].split(",")


def test_project_services_run_real_dfw_commands_from_the_project_images(services) -> None:
    commands = typer.main.get_command(cli_app).commands  # type: ignore[attr-defined]
    built = project_services(services)
    assert set(built) >= {"migrate", *WORKERS, "flower", "review"}
    for name, service in built.items():
        assert service["build"]["dockerfile"] in {f"docker/{f}" for f in DOCKERFILES}, name
        assert (REPO / service["build"]["dockerfile"]).is_file()
        assert service["command"][0] in commands, f"{name}: `dfw {service['command'][0]}` does not exist"
    assert built["flower"]["command"][0] == "flower" and built["review"]["command"][0] == "review"
    for name, service in services.items():
        if "build" not in service:
            assert ":" in service["image"], f"{name}: image without a tag"


def test_every_dfw_variable_in_compose_is_a_setting_the_code_reads(services) -> None:
    known = known_settings()
    assert {"DFW_DATABASE_URL", "DFW_METRICS_PORT", "DFW_LIMITS__MAX_BYTES", "DFW_REVIEW_PORT"} <= known
    used = {
        (name, variable)
        for name, service in services.items()
        for variable in (service.get("environment") or {})
        if variable.upper().startswith("DFW_")
    }
    assert used, "no DFW_ variable found: the anchors were not expanded"
    unknown = sorted(f"{name}: {variable}" for name, variable in used if variable.upper() not in known)
    assert not unknown, unknown


def pip_install_targets(command: str) -> list[str]:
    """What `... pip install ...` installs: its arguments after `install`, up to the next `&&`, without
    options that only choose an index or verbosity. This is what "the same install step" means: the same
    requirement specifiers and flags (`-e '.[ml]'`), while the CPU image may take torch from the CPU index."""
    words = shlex.split(command)
    start = next(i for i, word in enumerate(words) if word.endswith("pip") and words[i + 1] == "install") + 2
    targets: list[str] = []
    skip = False
    for word in words[start:]:
        if word in {"&&", ";", "||"}:
            break
        if skip:
            skip = False
        elif word in SOURCE_OPTIONS_WITH_VALUE:
            skip = True
        elif word.split("=", 1)[0] in SOURCE_OPTIONS_WITH_VALUE or word in QUIET_OPTIONS:
            continue
        else:
            targets.append(word)
    return targets


def readme_install_command() -> str:
    readme = (REPO / "README.md").read_text()
    block = re.search(r"```(?:sh|bash|shell)?\n(.*?)```", readme, re.S)
    assert block, "README has no code block"
    return block.group(1)


def dockerfile_install_command(path: Path) -> str:
    text = path.read_text().replace("\\\n", " ")
    lines = [line for line in text.splitlines() if re.match(r"RUN\s+(\S*/)?pip\s+install\b", line.strip())]
    assert len(lines) == 1, f"{path.name}: expected one RUN pip install line, found {len(lines)}"
    return lines[0].strip().removeprefix("RUN").strip()


def test_pip_install_targets_ignore_index_options() -> None:
    command = "pip install -q --extra-index-url https://x/whl/cpu -e '.[ml]' && dfw scan x"
    assert pip_install_targets(command) == ["-e", ".[ml]"]
    assert pip_install_targets(".venv/bin/pip install --index-url=https://y -e '.[ml,test]'") == [
        "-e",
        ".[ml,test]",
    ]


@pytest.mark.parametrize("dockerfile", DOCKERFILES)
def test_images_install_like_the_readme(dockerfile: str) -> None:
    readme = pip_install_targets(readme_install_command())
    assert readme == ["-e", ".[ml]"]
    assert pip_install_targets(dockerfile_install_command(DOCKER / dockerfile)) == readme

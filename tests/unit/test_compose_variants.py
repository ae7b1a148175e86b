"""The compose variants: docker-compose.yml alone, and with docker-compose.scale.yml.

Each variant is run through a real compose parser (`docker-compose config -q`,
Debian's docker-compose v1, which .ci/run installs; skipped where it is not
installed) with an env file of non-placeholder values. The structural checks
need no tool: the scale variant's NATS cluster, R3 streams, the MongoDB
replica set and its init step, two replicas per service, Prometheus finding
every replica, and a stop grace period that covers each service's drain time
as the code defines it.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
BASE = ROOT / "docker-compose.yml"
SCALE = ROOT / "docker-compose.scale.yml"
TLS = ROOT / "docker-compose.tls.yml"
ENV_EXAMPLE = ROOT / ".env.example"
NATS_CLUSTER_CONF = ROOT / "ops" / "nats" / "nats-cluster.conf"
NATS_AUTH_CONF = ROOT / "ops" / "nats" / "auth.conf"
MONGO_RS_INIT = ROOT / "ops" / "mongo" / "init-replica-set.js"
PROMETHEUS_SCALE = ROOT / "ops" / "prometheus" / "prometheus-scale.yml"
PROMETHEUS_BASE = ROOT / "ops" / "prometheus" / "prometheus.yml"

APP_SERVICES = {"intake": "INTAKE", "router": "ROUTER", "sla": "SLA", "notify": "NOTIFY"}
NATS_NODES = ("nats", "nats-2", "nats-3")
MONGO_MEMBERS = ("mongo", "mongo-2", "mongo-3")
SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN|KEY")
INTERPOLATION = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?P<op>:?[-?+])?[^}]*\}")

# --------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------


def _load(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text())


def _environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {str(k): "" if v is None else str(v) for k, v in env.items()}


def _mounts(service: dict[str, Any]) -> dict[str, str]:
    """Container path -> source of a service's volumes."""
    mounts = {}
    for volume in service.get("volumes") or []:
        source, target, *_mode = volume.split(":")
        mounts[target] = source
    return mounts


def _merged(base: dict[str, Any], override: dict[str, Any], name: str) -> dict[str, Any]:
    """One service as `-f base -f override` merges it (the fields used here).

    Mappings (environment, depends_on, deploy) merge key by key, volumes by
    container path, lists such as ports accumulate, anything else is replaced.
    The real merge is checked against docker-compose below where it is installed.
    """
    merged = dict(base["services"].get(name, {}))
    for key, value in override["services"].get(name, {}).items():
        if key in ("environment", "depends_on", "deploy", "healthcheck"):
            merged[key] = {**(merged.get(key) or {}), **value}
        elif key == "volumes":
            by_target = {v.split(":")[1]: v for v in merged.get(key) or []}
            by_target.update({v.split(":")[1]: v for v in value})
            merged[key] = list(by_target.values())
        elif key == "ports":
            merged[key] = [*(merged.get(key) or []), *value]
        else:
            merged[key] = value
    return merged


def _duration_s(value: str) -> float:
    """Seconds of a compose duration such as 60s, 1m30s or 1.5m."""
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001, "us": 1e-6}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|us|h|m|s)", str(value))
    assert parts and "".join(n + u for n, u in parts) == str(value), f"bad duration {value!r}"
    return sum(float(number) * units[unit] for number, unit in parts)


def _code_number(path: str, pattern: str) -> float:
    text = (ROOT / path).read_text()
    match = re.search(pattern, text)
    assert match, f"{path}: {pattern} not found (drain time moved?)"
    return float(match[1])


def _app_drain_s() -> float:
    """Worst-case shutdown of a service, from the timeouts in the code.

    uvicorn waits for open requests, then the lifespan stops the broker, which
    waits for running handlers; background tasks are then cancelled.
    """
    uvicorn = _code_number("lapor/runtime/serve.py", r"timeout_graceful_shutdown=(\d+(?:\.\d+)?)")
    broker = _code_number("lapor/runtime/broker.py", r"graceful_timeout=(\d+(?:\.\d+)?)")
    return uvicorn + broker


def _dlq_drain_s() -> float:
    """The watcher stops after its current fetch and the advisories in hand."""
    pattern = r"\.fetch\(self\.batch, timeout=(\d+(?:\.\d+)?)\)"
    return _code_number("services/deadletters/handlers.py", pattern)


def _nats_block(text: str, name: str) -> str:
    text = "\n".join(re.sub(r"(^|\s)#.*$", "", line) for line in text.splitlines())
    match = re.search(rf"^\s*{name}\s*[:=]?\s*\{{", text, flags=re.MULTILINE)
    assert match, f"no {name} {{ ... }} block"
    depth = 1
    for index in range(match.end(), len(text)):
        depth += {"{": 1, "}": -1}.get(text[index], 0)
        if depth == 0:
            return text[match.end() : index]
    raise AssertionError(f"unbalanced braces in the {name} block")


def _mongo_hosts(url: str) -> tuple[list[str], dict[str, list[str]]]:
    """Hosts and query of a mongodb:// URL (urlsplit cannot take a host list)."""
    match = re.fullmatch(r"mongodb://(?:[^@/]*@)?(?P<hosts>[^/?]+)/(?P<db>[^?]*)\?(?P<q>.*)", url)
    assert match, f"not a mongodb URL with options: {url}"
    return match["hosts"].split(","), parse_qs(match["q"])


def _read_env_file(path: Path) -> dict[str, str]:
    values = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            values[key] = value
    return values


# --------------------------------------------------------------------------
# Fixtures
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def base() -> dict[str, Any]:
    return _load(BASE)


@pytest.fixture(scope="module")
def scale() -> dict[str, Any]:
    return _load(SCALE)


@pytest.fixture(scope="module")
def scaled(base: dict[str, Any], scale: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every service of the scale variant, merged over the base file."""
    names = {*base["services"], *scale["services"]}
    return {name: _merged(base, scale, name) for name in names}


@pytest.fixture()
def env_file(tmp_path: Path) -> Path:
    """Every variable of .env.example, each placeholder replaced by a test value.

    Settings that are not placeholders (ports, directories, log level) keep
    their example value, which must be valid as it is.
    """
    lines = []
    for index, (key, value) in enumerate(_read_env_file(ENV_EXAMPLE).items()):
        if key == "COMPOSE_PROJECT_NAME":
            lines.append(f"{key}=laporcheck")
        elif value.startswith("change-me"):
            # Letters and digits only, starting with a letter: valid everywhere
            # (NATS config values, MongoDB URLs).
            lines.append(f"{key}=Check{index}x{'7' * 24}")
        else:
            lines.append(f"{key}={value}")
    path = tmp_path / "check.env"
    path.write_text("\n".join(lines) + "\n")
    return path


# --------------------------------------------------------------------------
# A real compose parser
# --------------------------------------------------------------------------


def _docker_compose() -> str:
    cli = shutil.which("docker-compose")
    if cli is None:
        pytest.skip("docker-compose is not installed (.ci/run installs it)")
    return cli


def _compose_config(
    env_file: Path, *files: Path, quiet: bool = True
) -> subprocess.CompletedProcess:
    args = [_docker_compose(), "--project-directory", str(ROOT), "--env-file", str(env_file)]
    for path in files:
        args += ["-f", str(path)]
    args += ["config", "-q"] if quiet else ["config"]
    # The env file alone supplies the values: nothing leaks in from the shell.
    env = {"PATH": "/usr/bin:/bin:/usr/local/bin", "HOME": str(env_file.parent)}
    return subprocess.run(args, capture_output=True, text=True, timeout=120, env=env, cwd=ROOT)


@pytest.mark.parametrize(
    "files", [(BASE,), (BASE, SCALE), (BASE, TLS)], ids=["base", "base+scale", "base+tls"]
)
def test_docker_compose_accepts_the_variant(env_file: Path, files: tuple[Path, ...]) -> None:
    result = _compose_config(env_file, *files)
    assert result.returncode == 0, result.stderr or result.stdout
    # v1 reports some problems as warnings only (unknown keys are errors, but
    # e.g. unset variables are not).
    assert "WARNING" not in result.stderr, result.stderr


def test_docker_compose_refuses_a_missing_secret(env_file: Path) -> None:
    # The check above bites: without one required secret the variant is refused.
    lines = env_file.read_text().splitlines()
    env_file.write_text(
        "\n".join(line for line in lines if not line.startswith("LAPOR_NATS_ROUTE_PASSWORD="))
    )
    assert _compose_config(env_file, BASE).returncode == 0, "the base file does not need it"
    result = _compose_config(env_file, BASE, SCALE)
    assert result.returncode != 0 and "LAPOR_NATS_ROUTE_PASSWORD" in result.stderr


def test_docker_compose_merges_the_scale_variant_as_expected(env_file: Path) -> None:
    result = _compose_config(env_file, BASE, SCALE, quiet=False)
    assert result.returncode == 0, result.stderr
    services = yaml.safe_load(result.stdout)["services"]
    for name in APP_SERVICES:
        service = services[name]
        assert service["deploy"]["replicas"] == 2, name
        assert not service.get("ports"), f"{name}: a replicated service publishes no port"
        env = service["environment"]
        assert env["NATS_STREAM_REPLICAS"] == "3"
        assert set(service["depends_on"]) >= {"mongo-init", *NATS_NODES, "mongo"}
        assert _duration_s(service["stop_grace_period"]) > _app_drain_s()
    # The single node's data volumes are not taken over.
    assert _mounts(services["nats"])["/data"] == "nats-1-data"
    assert _mounts(services["mongo"])["/data/db"] == "mongo-1-data"
    prometheus_configs = [
        v for v in services["prometheus"]["volumes"] if ":/etc/prometheus/prometheus.yml:" in v
    ]
    assert prometheus_configs == [f"{PROMETHEUS_SCALE}:/etc/prometheus/prometheus.yml:ro"]
    # The emulated merge the structural tests use agrees with the real one.
    base, scale = _load(BASE), _load(SCALE)
    for name in ("intake", "nats", "mongo", "dlq"):
        ours = _merged(base, scale, name)
        assert set(ours["depends_on"] if "depends_on" in ours else {}) == set(
            services[name].get("depends_on") or {}
        ), name
        assert set(_mounts(ours)) == set(_mounts(services[name])), name


# --------------------------------------------------------------------------
# Stop grace periods (both variants)
# --------------------------------------------------------------------------


def test_drain_time_is_known() -> None:
    assert _app_drain_s() >= 20 and _dlq_drain_s() > 0


@pytest.mark.parametrize("variant", ["base", "scale"])
def test_stop_grace_period_covers_the_drain_time(
    base: dict[str, Any], scaled: dict[str, dict[str, Any]], variant: str
) -> None:
    services = base["services"] if variant == "base" else scaled
    for name in APP_SERVICES:
        grace = services[name].get("stop_grace_period")
        assert grace, f"{variant}: {name} has no stop_grace_period (Docker's default is 10 s)"
        assert _duration_s(grace) > _app_drain_s(), (
            f"{variant}: {name} stop_grace_period {grace} does not cover its drain "
            f"({_app_drain_s()} s: uvicorn + broker graceful timeouts)"
        )
    grace = services["dlq"].get("stop_grace_period")
    assert grace and _duration_s(grace) > _dlq_drain_s(), f"{variant}: dlq {grace}"


def test_the_base_file_says_what_the_grace_period_covers() -> None:
    text = BASE.read_text()
    comment = text[: text.index("stop_grace_period:")]
    for word in ("timeout_graceful_shutdown", "graceful_timeout"):
        assert word in comment, f"the comment above stop_grace_period should name {word}"


# --------------------------------------------------------------------------
# NATS: three nodes, one JetStream cluster, R3 streams
# --------------------------------------------------------------------------


def test_three_nats_nodes_run_the_cluster_config(scaled: dict[str, dict[str, Any]]) -> None:
    names, volumes = set(), set()
    for node in NATS_NODES:
        service = scaled[node]
        command = service["command"]
        config = command[command.index("--config") + 1]
        mounts = _mounts(service)
        assert mounts[config] == "./" + NATS_CLUSTER_CONF.relative_to(ROOT).as_posix(), node
        # The same users and allow-lists as the single node.
        assert mounts["/etc/nats/auth.conf"] == "./" + NATS_AUTH_CONF.relative_to(ROOT).as_posix()
        assert not mounts["/data"].startswith("."), f"{node}: the store must be a volume"
        volumes.add(mounts["/data"])
        names.add(_environment(service)["NATS_SERVER_NAME"])
        assert service["image"] == _load(BASE)["services"]["nats"]["image"]
        test = " ".join(service["healthcheck"]["test"])
        assert "8222/healthz" in test, node
    assert len(names) == 3, "each node needs its own server_name"
    assert len(volumes) == 3, "each node needs its own store"


def test_nats_cluster_config_has_routes_between_the_three(
    scaled: dict[str, dict[str, Any]],
) -> None:
    text = NATS_CLUSTER_CONF.read_text()
    assert re.search(r"^server_name:\s*\$NATS_SERVER_NAME\s*$", text, re.M)
    cluster = _nats_block(text, "cluster")
    assert re.search(r"^\s*name:\s*\S+", cluster, re.M), "a JetStream cluster needs a name"
    assert re.search(r"^\s*port:\s*6222\b", cluster, re.M)
    authorization = _nats_block(cluster, "authorization")
    assert "$LAPOR_NATS_ROUTE_PASSWORD" in authorization, "routes must authenticate"
    routes = re.search(r"routes:\s*\[(.*?)\]", cluster, re.S)
    assert routes, "no routes in the cluster block"
    variables = re.findall(r"\$(\w+)", routes[1])
    assert len(variables) == 3
    hosts = set()
    for node in NATS_NODES:
        env = _environment(scaled[node])
        assert env["LAPOR_NATS_ROUTE_PASSWORD"].startswith("${LAPOR_NATS_ROUTE_PASSWORD:?")
        for variable in variables:
            url = env[variable]
            match = re.fullmatch(
                r"nats-route://route:\$\{LAPOR_NATS_ROUTE_PASSWORD:\?[^}]*\}@([\w-]+):6222", url
            )
            assert match, f"{node}: {variable}={url}"
            hosts.add(match[1])
    assert hosts == set(NATS_NODES), "the routes must reach all three nodes"


def test_nats_cluster_keeps_the_single_node_guarantees() -> None:
    text = NATS_CLUSTER_CONF.read_text()
    jetstream = _nats_block(text, "jetstream")
    assert re.search(r"^\s*sync_interval:\s*always\s*$", jetstream, re.M)
    assert re.search(r"^\s*cipher:\s*aes\s*$", jetstream, re.M)
    assert re.search(r"^\s*key:\s*\$LAPOR_NATS_STORE_KEY\s*$", jetstream, re.M)
    assert re.search(r'^\s*store_dir:\s*"/data"', jetstream, re.M)
    assert re.search(r'^include "auth.conf"\s*$', text, re.M)
    assert re.search(r"^port:\s*4222\s*$", text, re.M)


def _nats_server() -> str | None:
    beside_python = Path(sys.executable).with_name("nats-server")
    return shutil.which("nats-server") or (str(beside_python) if beside_python.exists() else None)


def test_nats_cluster_config_is_accepted_by_nats_server(tmp_path: Path) -> None:
    server = _nats_server()
    if server is None:
        pytest.skip("nats-server is not installed")
    passwords = {
        name: "Checkonly1"
        for name in re.findall(r"\$(LAPOR_NATS_\w+_PASSWORD)", NATS_AUTH_CONF.read_text())
    }
    env = {
        "PATH": "/usr/bin:/bin",
        **passwords,
        "LAPOR_NATS_STORE_KEY": "check-only-" + "k" * 32,
        "LAPOR_NATS_ROUTE_PASSWORD": "Routecheck1",
        "NATS_SERVER_NAME": "check-1",
        **{
            f"LAPOR_NATS_ROUTE_{i}": f"nats-route://route:Routecheck1@{host}:6222"
            for i, host in enumerate(NATS_NODES, start=1)
        },
    }
    result = subprocess.run(
        [server, "-t", "-c", str(NATS_CLUSTER_CONF)],
        capture_output=True,
        text=True,
        timeout=30,
        env=env,
    )
    assert result.returncode == 0, result.stderr or result.stdout


@pytest.mark.parametrize("name", sorted(APP_SERVICES))
def test_services_reach_every_node_and_create_r3_streams(
    scaled: dict[str, dict[str, Any]], name: str
) -> None:
    env = _environment(scaled[name])
    assert env["NATS_STREAM_REPLICAS"] == "3"
    urls = env["NATS_URL"].split(",")
    assert {re.fullmatch(r"nats://([\w-]+):4222", url)[1] for url in urls} == set(NATS_NODES)


# --------------------------------------------------------------------------
# MongoDB: a three-member replica set
# --------------------------------------------------------------------------


def _repl_set(service: dict[str, Any]) -> str | None:
    command = service.get("command") or []
    return command[command.index("--replSet") + 1] if "--replSet" in command else None


def test_mongo_replica_set_has_three_authenticated_members(
    scaled: dict[str, dict[str, Any]],
) -> None:
    names = {_repl_set(scaled[member]) for member in MONGO_MEMBERS}
    assert len(names) == 1 and None not in names, names
    keyfiles = set()
    for member in MONGO_MEMBERS:
        service = scaled[member]
        assert service["image"] == _load(BASE)["services"]["mongo"]["image"]
        command = service["command"]
        keyfile = command[command.index("--keyFile") + 1]
        keyfiles.add(keyfile)
        source = _mounts(service)[str(Path(keyfile).parent)]
        assert not source.startswith("."), f"{member}: the keyfile lives in a volume"
        assert not _mounts(service)["/data/db"].startswith(".")
        assert service["healthcheck"]["test"], member
        assert service["depends_on"]["mongo-keyfile"]["condition"] == (
            "service_completed_successfully"
        )
    assert len(keyfiles) == 1
    assert len({_mounts(scaled[m])["/data/db"] for m in MONGO_MEMBERS}) == 3


def test_mongo_keyfile_is_generated_not_committed(scaled: dict[str, dict[str, Any]]) -> None:
    keygen = scaled["mongo-keyfile"]
    script = " ".join(keygen["command"])
    assert "/dev/urandom" in script and "chmod 400" in script
    assert "-s /etc/mongo-key/keyfile" in script, "an existing keyfile must be kept"
    tracked = subprocess.run(
        ["git", "ls-files"], capture_output=True, text=True, cwd=ROOT, check=True
    ).stdout.split()
    assert not [path for path in tracked if "keyfile" in path.lower()], "no keyfile in git"


def test_mongo_init_initiates_the_set_once_and_is_healthchecked(
    scaled: dict[str, dict[str, Any]],
) -> None:
    init = scaled["mongo-init"]
    assert _mounts(init)["/etc/lapor/init-replica-set.js"] == (
        "./" + MONGO_RS_INIT.relative_to(ROOT).as_posix()
    )
    assert "/etc/lapor/init-replica-set.js" in " ".join(init["command"])
    for member in MONGO_MEMBERS:
        assert init["depends_on"][member]["condition"] == "service_healthy"
    health = " ".join(init["healthcheck"]["test"])
    set_name = _repl_set(scaled["mongo"])
    assert f"replicaSet={set_name}" in health and "PRIMARY" in health

    script = MONGO_RS_INIT.read_text()
    assert "rs.initiate(" in script
    # Idempotent: only a set that is not initiated yet is initiated.
    assert "NotYetInitialized" in script
    assert re.search(rf'replSetName\s*=\s*"{re.escape(set_name)}"', script)
    hosts = re.search(r"members\s*=\s*\[(.*?)\]", script, re.S)
    assert hosts
    assert re.findall(r'"([\w-]+):27017"', hosts[1]) == list(MONGO_MEMBERS)


@pytest.mark.parametrize("name", [*sorted(APP_SERVICES), "dlq"])
def test_services_wait_for_the_set_and_write_with_majority(
    scaled: dict[str, dict[str, Any]], name: str
) -> None:
    service = scaled[name]
    assert service["depends_on"]["mongo-init"]["condition"] == "service_healthy"
    hosts, query = _mongo_hosts(_environment(service)["MONGO_URL"])
    assert [host.split("@")[-1] for host in hosts] == [f"{m}:27017" for m in MONGO_MEMBERS]
    assert query.get("replicaSet") == [_repl_set(scaled["mongo"])]
    assert query.get("w") == ["majority"]
    assert query.get("readConcernLevel") == ["majority"]
    assert query.get("authSource") == ["lapor"]


def test_scale_depends_on_waits_for_healthy_or_completed(
    scaled: dict[str, dict[str, Any]],
) -> None:
    for name, service in scaled.items():
        for target, spec in (service.get("depends_on") or {}).items():
            assert target in scaled, f"{name} depends on unknown {target}"
            if spec["condition"] == "service_completed_successfully":
                assert scaled[target].get("restart") == "no", f"{target} must be one-shot"
                continue
            assert spec["condition"] == "service_healthy", f"{name} -> {target}"
            assert scaled[target].get("healthcheck", {}).get("test"), target


# --------------------------------------------------------------------------
# Replicas, ports, Prometheus, images, secrets
# --------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(APP_SERVICES))
def test_two_replicas_and_no_published_port(scaled: dict[str, dict[str, Any]], name: str) -> None:
    service = scaled[name]
    replicas = service.get("scale", (service.get("deploy") or {}).get("replicas"))
    assert replicas == 2, f"{name}: {replicas} replicas"
    # Two replicas cannot bind one host port: the edge proxy publishes intake.
    assert not service.get("ports"), f"{name} publishes {service.get('ports')}"


def test_prometheus_scale_config_finds_every_replica(scaled: dict[str, dict[str, Any]]) -> None:
    mounts = _mounts(scaled["prometheus"])
    assert mounts["/etc/prometheus/prometheus.yml"] == (
        "./" + PROMETHEUS_SCALE.relative_to(ROOT).as_posix()
    )
    config = _load(PROMETHEUS_SCALE)
    assert config["rule_files"] == _load(PROMETHEUS_BASE)["rule_files"]
    found = set()
    for job in config["scrape_configs"]:
        for sd in job.get("dns_sd_configs", []):
            assert sd["type"] == "A"
            for name in sd["names"]:
                found.add((name, str(sd["port"])))
        if job.get("dns_sd_configs"):
            relabel = job.get("relabel_configs") or []
            assert any(r.get("target_label") == "service" for r in relabel)
    expected = {
        (name, _environment(scaled[name])[f"{prefix}_HTTP_PORT"])
        for name, prefix in {**APP_SERVICES, "gateway": "GATEWAY", "hotspots": "HOTSPOTS"}.items()
    }
    assert found == expected


def test_scale_variant_pins_no_new_floating_tag(
    base: dict[str, Any], scale: dict[str, Any]
) -> None:
    base_images = {s["image"] for s in base["services"].values() if "image" in s}
    for name, service in scale["services"].items():
        image = service.get("image")
        if image is None:
            continue
        assert ":" in image and not image.endswith(":latest"), f"{name}: {image}"
        assert image in base_images, f"{name}: {image} is not the base file's image"


def test_scale_variables_are_in_env_example_and_secrets_required(
    scale: dict[str, Any],
) -> None:
    text = SCALE.read_text()
    known = _read_env_file(ENV_EXAMPLE)
    for match in INTERPOLATION.finditer(text.replace("$$", "")):
        name = match["name"]
        assert name in known, f"{name} is missing from .env.example"
        if SECRET_NAME.search(name):
            assert match["op"] == ":?", f"${{{name}}} must be required (:?)"
            assert known[name].startswith("change-me"), f"{name}: placeholder only"
    # No literal credential in a URL.
    for password in re.findall(r"://[^/\s:@]*:([^/\s@]*)@", text):
        assert password.startswith("${") and password.endswith("}"), password

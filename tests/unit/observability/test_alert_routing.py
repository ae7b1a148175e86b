"""Alerts reach someone: Alertmanager's wiring, its rendered config, the runbook.

Prometheus sends to the compose service `alertmanager`; its config is rendered
from ops/alertmanager/alertmanager.yml.tmpl by entrypoint.sh with the values
of .env (SMTP under notify's setting names, the recipients); every alert rule
has an entry in README.md's "Alerts and what to do". The rendered file is
checked with amtool where it is installed (Debian `prometheus-alertmanager`);
tests/integration/test_alert_delivery.py delivers through a real Alertmanager.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from services.notify.settings import NotifySettings

ROOT = Path(__file__).resolve().parents[3]
PROMETHEUS = ROOT / "ops" / "prometheus"
ALERTMANAGER = ROOT / "ops" / "alertmanager"
TEMPLATE = ALERTMANAGER / "alertmanager.yml.tmpl"
ENTRYPOINT = ALERTMANAGER / "entrypoint.sh"
COMPOSE = ROOT / "docker-compose.yml"
SCALE = ROOT / "docker-compose.scale.yml"
README = ROOT / "README.md"
PLACEHOLDER = re.compile(r"\$\{([A-Z_][A-Z0-9_]*)\}")

# Settings a working delivery needs, with values that YAML and shells find awkward.
AWKWARD = {
    "NOTIFY_SMTP_HOST": "127.0.0.1",
    "NOTIFY_SMTP_PORT": "2525",
    "NOTIFY_SMTP_FROM": "LAPOR! Kabupaten Banjar <lapor@banjarkab.go.id>",
    "NOTIFY_SMTP_USER": "alerts@banjarkab.go.id",
    "NOTIFY_SMTP_PASSWORD": 'it\'s a "p&ss\\word" ${HOME} $(id) #1: {x}',
    "NOTIFY_SMTP_STARTTLS": "false",
    "LAPOR_ALERT_EMAIL_TO": "operators@banjarkab.go.id",
    "LAPOR_ALERT_WEBHOOK_URL": "https://hooks.example.org/lapor?token=a&b='c'",
}


def _rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def _services(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text())["services"]


# --------------------------------------------------------------------------
# Prometheus -> Alertmanager, and what Prometheus scrapes
# --------------------------------------------------------------------------


@pytest.mark.parametrize("config", ["prometheus.yml", "prometheus-scale.yml"])
def test_prometheus_sends_alerts_to_the_alertmanager_service(config: str) -> None:
    alerting = yaml.safe_load((PROMETHEUS / config).read_text())["alerting"]
    targets = [
        target
        for manager in alerting["alertmanagers"]
        for static in manager["static_configs"]
        for target in static["targets"]
    ]
    assert targets == ["alertmanager:9093"]
    alertmanager = _services(COMPOSE)["alertmanager"]
    assert alertmanager["image"].startswith("prom/alertmanager:v")
    assert "127.0.0.1:9093:9093" in alertmanager["ports"], "loopback only"


def _scrape_targets(config: str, job: str) -> set[str]:
    jobs = yaml.safe_load((PROMETHEUS / config).read_text())["scrape_configs"]
    (found,) = [j for j in jobs if j["job_name"] == job]
    return {t for static in found["static_configs"] for t in static["targets"]}


def test_nats_and_mongodb_are_scraped_through_their_exporters() -> None:
    base = _services(COMPOSE)
    assert _scrape_targets("prometheus.yml", "nats") == {"nats-exporter:7777"}
    assert _scrape_targets("prometheus.yml", "mongodb") == {"mongo-exporter:9216"}
    nats_exporter = base["nats-exporter"]
    assert nats_exporter["image"].startswith("natsio/prometheus-nats-exporter:")
    # Health and every consumer's backlog (the SMS backlog alert needs -jsz=all).
    assert {"-healthz", "-jsz=all", "http://nats:8222"} <= set(nats_exporter["command"])
    mongo_exporter = base["mongo-exporter"]
    assert mongo_exporter["image"].startswith("percona/mongodb_exporter:")
    assert "--mongodb.uri=mongodb://mongo:27017/admin" in mongo_exporter["command"]

    # The scale variant: one exporter per node, each of them scraped.
    scale = _services(SCALE)
    nodes = {"nats-exporter": "nats", "nats-exporter-2": "nats-2", "nats-exporter-3": "nats-3"}
    for exporter, node in nodes.items():
        command = (scale.get(exporter) or base[exporter])["command"]
        assert f"http://{node}:8222" in command, exporter
    assert _scrape_targets("prometheus-scale.yml", "nats") == {f"{e}:7777" for e in nodes}
    members = {
        "mongo-exporter": "mongo",
        "mongo-exporter-2": "mongo-2",
        "mongo-exporter-3": "mongo-3",
    }
    for exporter, member in members.items():
        command = (scale.get(exporter) or base[exporter])["command"]
        assert f"--mongodb.uri=mongodb://{member}:27017/admin" in command, exporter
    assert _scrape_targets("prometheus-scale.yml", "mongodb") == {f"{e}:9216" for e in members}


def test_the_mongo_exporter_logs_in_with_cluster_monitor_only() -> None:
    script = (ROOT / "ops" / "mongo" / "init-users.js").read_text()
    block = script[script.index("LAPOR_MONGO_EXPORTER_USER") :]
    block = block[: block.index("\n}\n")]
    assert re.findall(r"role:\s*\"(\w+)\"", block) == ["clusterMonitor"]
    assert 'getSiblingDB("admin")' in block
    mongo_env = _services(COMPOSE)["mongo"]["environment"]
    exporter_env = _services(COMPOSE)["mongo-exporter"]["environment"]
    for variable in ("LAPOR_MONGO_EXPORTER_USER", "LAPOR_MONGO_EXPORTER_PASSWORD"):
        assert variable in mongo_env
    assert exporter_env["MONGODB_USER"].startswith("${LAPOR_MONGO_EXPORTER_USER:?")
    assert exporter_env["MONGODB_PASSWORD"].startswith("${LAPOR_MONGO_EXPORTER_PASSWORD:?")


# --------------------------------------------------------------------------
# Alertmanager's config: template, compose environment, rendering
# --------------------------------------------------------------------------


def test_every_template_value_comes_from_the_compose_environment() -> None:
    service = _services(COMPOSE)["alertmanager"]
    env = service["environment"]
    used = set(PLACEHOLDER.findall(TEMPLATE.read_text()))
    assert used == set(AWKWARD), used ^ set(AWKWARD)
    assert used <= set(env), used - set(env)
    for name in ("NOTIFY_SMTP_PASSWORD", "LAPOR_ALERT_WEBHOOK_URL"):
        assert env[name].startswith(f"${{{name}:?"), f"{name} must be required from .env"
    mounts = {volume.split(":")[1]: volume.split(":")[0] for volume in service["volumes"]}
    assert service["entrypoint"][1:3] == [
        "/etc/alertmanager/entrypoint.sh",
        "/etc/alertmanager/alertmanager.yml.tmpl",
    ]
    assert mounts["/etc/alertmanager/entrypoint.sh"] == "./ops/alertmanager/entrypoint.sh"
    assert mounts["/etc/alertmanager/alertmanager.yml.tmpl"] == (
        "./ops/alertmanager/alertmanager.yml.tmpl"
    )
    # Rendered onto the tmpfs, not into the read-only image.
    assert service["entrypoint"][3].startswith("/tmp/") and service["read_only"] is True


def test_smtp_settings_are_notifys_own() -> None:
    fields = {f"NOTIFY_{name.upper()}" for name in NotifySettings.model_fields}
    smtp = {name for name in AWKWARD if name.startswith("NOTIFY_SMTP_")}
    assert smtp <= fields, smtp - fields


def _render(tmp_path: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    output = tmp_path / "alertmanager.yml"
    # `true` stands in for Alertmanager: only the rendering is under test here.
    return subprocess.run(
        ["sh", str(ENTRYPOINT), str(TEMPLATE), str(output)],
        capture_output=True,
        text=True,
        timeout=30,
        env={"PATH": os.environ["PATH"], "ALERTMANAGER": "true", **env},
    )


def test_rendered_config_carries_every_value_verbatim(tmp_path: Path) -> None:
    result = _render(tmp_path, AWKWARD)
    assert result.returncode == 0, result.stderr
    path = tmp_path / "alertmanager.yml"
    assert path.stat().st_mode & 0o077 == 0, "the rendered file holds the SMTP password"
    config = yaml.safe_load(path.read_text())
    assert config["global"]["smtp_auth_password"] == AWKWARD["NOTIFY_SMTP_PASSWORD"]
    assert config["global"]["smtp_smarthost"] == "127.0.0.1:2525"
    assert config["global"]["smtp_from"] == AWKWARD["NOTIFY_SMTP_FROM"]
    assert config["global"]["smtp_require_tls"] is False
    (receiver,) = config["receivers"]
    assert receiver["email_configs"][0]["to"] == AWKWARD["LAPOR_ALERT_EMAIL_TO"]
    assert receiver["webhook_configs"][0]["url"] == AWKWARD["LAPOR_ALERT_WEBHOOK_URL"]
    assert config["route"]["receiver"] == receiver["name"]

    amtool = shutil.which("amtool")
    if amtool:
        check = subprocess.run(
            [amtool, "check-config", str(path)], capture_output=True, text=True, timeout=30
        )
        assert check.returncode == 0, check.stdout + check.stderr


@pytest.mark.parametrize(
    "name, value, message",
    [
        ("NOTIFY_SMTP_PASSWORD", None, "not set"),
        ("NOTIFY_SMTP_PASSWORD", "change-me-smtp-password", "placeholder"),
        ("LAPOR_ALERT_WEBHOOK_URL", "change-me-alert-webhook-url", "placeholder"),
        ("LAPOR_ALERT_EMAIL_TO", "a@example.org\nbcc: b@example.org", "line break"),
        ("NOTIFY_SMTP_STARTTLS", "maybe", "true or false"),
    ],
)
def test_entrypoint_refuses_to_start_without_a_real_value(
    tmp_path: Path, name: str, value: str | None, message: str
) -> None:
    env = {k: v for k, v in AWKWARD.items() if k != name}
    if value is not None:
        env[name] = value
    result = _render(tmp_path, env)
    assert result.returncode != 0 and message in result.stderr, result
    assert name in result.stderr
    assert not (tmp_path / "alertmanager.yml").exists()


# --------------------------------------------------------------------------
# The runbook
# --------------------------------------------------------------------------


def _runbook() -> str:
    text = README.read_text()
    start = text.index("\n## Alerts and what to do\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else len(text)]


def test_every_alert_has_a_runbook_entry() -> None:
    runbook = _runbook()
    for rule in _rules():
        entry = f"**`{rule['alert']}`** ({rule['labels']['severity']})"
        assert entry in runbook, f"README.md, Alerts and what to do: no entry {entry}"
        following = runbook.split(entry, 1)[1].split("\n- **", 1)[0]
        assert "Do:" in following, f"{rule['alert']}: the entry does not say what to do"


def test_the_runbook_has_no_entry_for_a_rule_that_does_not_exist() -> None:
    names = {rule["alert"] for rule in _rules()}
    listed = set(re.findall(r"^- \*\*`(\w+)`\*\*", _runbook(), re.M))
    assert listed == names, listed ^ names

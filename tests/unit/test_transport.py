"""Transport security of the compose deployment.

- `edge` terminates TLS: HTTPS on 443 with the certificate from LAPOR_TLS_DIR,
  modern protocol and cipher settings, HSTS; port 80 only redirects. The nginx
  config is checked by `nginx -t` and exercised by a real nginx (skipped where
  nginx is not installed; .ci/run installs it).
- A first start without a certificate gets a self-signed one, and a directory
  holding one is never touched.
- No internal port (NATS and its monitoring, MongoDB, Prometheus, Grafana) is
  published on a public interface in any variant.
- docker-compose.tls.yml turns on TLS for NATS client connections: nats-server
  accepts the config, and a client that trusts the generated CA connects over
  tls:// while one that does not is refused.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
import warnings
from pathlib import Path
from typing import Any

import pytest
import yaml

pytestmark = [pytest.mark.security]

ROOT = Path(__file__).resolve().parents[2]
BASE = ROOT / "docker-compose.yml"
SCALE = ROOT / "docker-compose.scale.yml"
TLS = ROOT / "docker-compose.tls.yml"
ENV_EXAMPLE = ROOT / ".env.example"
EDGE_CONF = ROOT / "ops" / "nginx" / "edge.conf"
EDGE_CERT_SCRIPT = ROOT / "ops" / "tls" / "edge-self-signed.sh"
NATS_CERT_SCRIPT = ROOT / "ops" / "tls" / "nats-self-signed.sh"
NATS_DIR = ROOT / "ops" / "nats"
NATS_TLS_CONF = NATS_DIR / "nats-tls.conf"

APP_SERVICES = ("intake", "router", "sla", "notify", "dlq")
VARIANTS = {"base": (BASE,), "base+scale": (BASE, SCALE), "base+tls": (BASE, TLS)}
# Ports only the compose network may reach: NATS clients, routes and
# monitoring, MongoDB.
INTERNAL_PORTS = {4222, 6222, 8222, 27017}
INTERPOLATION = re.compile(r"\$\{(?P<name>\w+)(?:(?P<op>:?[-?+])(?P<arg>[^}]*))?\}")

# --------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------

# Split so that this file does not hold the marker it looks for.
PEM_KEY_MARKER = b"PRIVATE" + b" KEY-----"


def _load(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text())


def _defaults(text: str) -> str:
    """A compose string with each ${VAR:-default} replaced by its default."""
    return INTERPOLATION.sub(lambda m: m["arg"] if m["op"] == ":-" else m[0], text)


def _mounts(service: dict[str, Any]) -> dict[str, str]:
    """Container path -> source, interpolations reduced to their defaults."""
    mounts = {}
    for volume in service.get("volumes") or []:
        source, target, *_mode = _defaults(volume).split(":")
        mounts[target] = source
    return mounts


def _raw_mounts(service: dict[str, Any]) -> dict[str, str]:
    """Container path -> source as written (interpolations kept)."""
    mounts = {}
    for volume in service.get("volumes") or []:
        masked = INTERPOLATION.sub(lambda m: "\0" * len(m[0]), volume)
        cut = [i for i, c in enumerate(masked) if c == ":"]
        source, target = volume[: cut[0]], volume[cut[0] + 1 : cut[1] if len(cut) > 1 else None]
        mounts[target] = source
    return mounts


def _published(port: Any) -> tuple[str, str, int]:
    """(host address, host port, container port) of a ports entry, short or long form."""
    if isinstance(port, dict):
        return str(port.get("host_ip", "")), str(port.get("published", "")), int(port["target"])
    text = INTERPOLATION.sub(lambda m: "{" + m["name"] + "}", str(port)).split("/")[0]
    parts = text.split(":")
    if len(parts) == 1:
        return "", "", int(parts[0])
    if len(parts) == 2:
        return "", parts[0], int(parts[1])
    return parts[0], parts[1], int(parts[2])


def _nginx_servers(text: str) -> list[str]:
    """The bodies of the top-level server { ... } blocks of an nginx snippet."""
    text = "\n".join(re.sub(r"(^|\s)#.*$", "", line) for line in text.splitlines())
    bodies = []
    for match in re.finditer(r"^server\s*\{", text, re.M):
        depth = 1
        for index in range(match.end(), len(text)):
            depth += {"{": 1, "}": -1}.get(text[index], 0)
            if depth == 0:
                bodies.append(text[match.end() : index])
                break
    return bodies


def _directives(block: str, name: str) -> list[str]:
    return [m.strip() for m in re.findall(rf"^\s*{name}\s+([^;]*);", block, re.M)]


def _server(listen: str) -> str:
    servers = [
        s for s in _nginx_servers(EDGE_CONF.read_text()) if listen in _directives(s, "listen")
    ]
    assert len(servers) == 1, f"one server must listen on {listen!r}"
    return servers[0]


def _openssl() -> None:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")


def _edge_cert(tls_dir: Path, **env: str) -> subprocess.CompletedProcess:
    _openssl()
    return subprocess.run(
        ["bash", str(EDGE_CERT_SCRIPT), str(tls_dir)],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": os.environ["PATH"], **env},
    )


def _nats_cert(tls_dir: Path) -> subprocess.CompletedProcess:
    _openssl()
    return subprocess.run(
        ["bash", str(NATS_CERT_SCRIPT), str(tls_dir)],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": os.environ["PATH"]},
    )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_for_port(port: int, process: subprocess.Popen, what: str) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        assert process.poll() is None, f"{what} exited"
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"{what} did not listen on {port}")


@pytest.fixture(scope="module")
def base() -> dict[str, Any]:
    return _load(BASE)


@pytest.fixture(scope="module")
def tls_override() -> dict[str, Any]:
    return _load(TLS)


# --------------------------------------------------------------------------
# edge: HTTPS with the certificate from LAPOR_TLS_DIR
# --------------------------------------------------------------------------


def test_edge_publishes_https_with_the_certificate_from_lapor_tls_dir(
    base: dict[str, Any],
) -> None:
    edge = base["services"]["edge"]
    ports = {_published(p)[2]: p for p in edge["ports"]}
    assert set(ports) == {443, 8080}, edge["ports"]
    assert ports[443] == "${LAPOR_HTTPS_PORT:-443}:443"
    assert ports[8080] == "${LAPOR_HTTP_PORT:-80}:8080"

    # The certificate directory is a host path taken from LAPOR_TLS_DIR.
    source = _raw_mounts(edge)["/etc/nginx/tls"]
    assert re.fullmatch(r"\$\{LAPOR_TLS_DIR:-\./var/tls\}", source), source
    assert edge["volumes"][1].endswith(":/etc/nginx/tls:ro"), "edge reads it read-only"

    https = _server("443 ssl")
    assert _directives(https, "ssl_certificate") == ["/etc/nginx/tls/fullchain.pem"]
    assert _directives(https, "ssl_certificate_key") == ["/etc/nginx/tls/privkey.pem"]
    # The generator writes into the same directory, and edge waits for it.
    generator = base["services"]["edge-cert"]
    assert _raw_mounts(generator)["/tls"] == source
    assert str(EDGE_CERT_SCRIPT.relative_to(ROOT)) in " ".join(generator["volumes"])
    assert "/tls" in " ".join(generator["command"])
    assert edge["depends_on"]["edge-cert"]["condition"] == "service_healthy"
    assert "fullchain.pem" in " ".join(generator["healthcheck"]["test"])


def test_edge_tls_settings_are_modern() -> None:
    https = _server("443 ssl")
    assert _directives(https, "ssl_protocols") == ["TLSv1.2 TLSv1.3"]
    (ciphers,) = _directives(https, "ssl_ciphers")
    for suite in ciphers.split(":"):
        assert suite.startswith("ECDHE-"), f"{suite}: no forward secrecy"
        assert re.search(r"GCM|CHACHA20-POLY1305", suite), f"{suite}: not an AEAD suite"
        assert not re.search(r"RC4|3DES|DES|MD5|NULL|EXPORT|CBC|aNULL|PSK", suite), suite
    assert _directives(https, "ssl_session_tickets") == ["off"]
    (hsts,) = [
        h for h in _directives(https, "add_header") if h.startswith("Strict-Transport-Security")
    ]
    max_age = re.search(r"max-age=(\d+)", hsts)
    assert max_age and int(max_age[1]) >= 365 * 24 * 3600, hsts
    assert hsts.endswith(" always"), "HSTS on error answers too"


def test_port_80_only_redirects_to_https() -> None:
    plain = _server("8080")
    locations = dict(re.findall(r"location\s+([^{]*?)\s*\{(.*?)\n    \}", plain, re.S))
    assert set(locations) == {"/", "= /healthz"}, set(locations)
    redirect = "return 301 https://$host$request_uri;"
    assert locations["/"].strip() == redirect
    # /healthz reaches intake only from inside the container (the healthcheck).
    health = locations["= /healthz"]
    guard = re.search(r'if \(\$remote_addr != "127\.0\.0\.1"\) \{\s*(.*?)\s*\}', health, re.S)
    assert guard and guard[1] == redirect, "/healthz must redirect everyone else"
    assert "ssl" not in " ".join(_directives(plain, "listen"))


def test_edge_healthcheck_goes_through_the_plain_port(base: dict[str, Any]) -> None:
    test = " ".join(base["services"]["edge"]["healthcheck"]["test"])
    assert "http://127.0.0.1:8080/healthz" in test


# --------------------------------------------------------------------------
# The certificate on a first start
# --------------------------------------------------------------------------


def test_first_start_gets_a_self_signed_certificate_and_keeps_a_real_one(
    tmp_path: Path,
) -> None:
    tls_dir = tmp_path / "tls"
    result = _edge_cert(tls_dir, LAPOR_TLS_HOSTNAME="lapor.example.org")
    assert result.returncode == 0, result.stderr
    cert, key = tls_dir / "fullchain.pem", tls_dir / "privkey.pem"
    assert oct(key.stat().st_mode & 0o777) == "0o600"
    text = subprocess.run(
        ["openssl", "x509", "-noout", "-text", "-in", str(cert)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "DNS:lapor.example.org" in text and "DNS:localhost" in text

    # A second start (or an operator's certificate) is left as it is.
    before = cert.read_bytes(), key.read_bytes()
    assert _edge_cert(tls_dir).returncode == 0
    assert (cert.read_bytes(), key.read_bytes()) == before

    # Half a pair is refused, not overwritten.
    key.unlink()
    result = _edge_cert(tls_dir)
    assert result.returncode != 0 and "privkey.pem" in result.stderr
    assert cert.read_bytes() == before[0] and not key.exists()


def test_no_certificate_or_key_is_committed() -> None:
    tracked = subprocess.run(
        ["git", "ls-files"], capture_output=True, text=True, cwd=ROOT, check=True
    ).stdout.split()
    for path in tracked:
        file = ROOT / path
        if file.is_file() and file.stat().st_size < 1_000_000:
            assert PEM_KEY_MARKER not in file.read_bytes(), f"{path} holds a private key"
    assert "var/" in (ROOT / ".gitignore").read_text().split(), "the default TLS dirs are ignored"


# --------------------------------------------------------------------------
# nginx itself
# --------------------------------------------------------------------------


def _nginx() -> str:
    nginx = shutil.which("nginx") or (Path("/usr/sbin/nginx").exists() and "/usr/sbin/nginx")
    if not nginx:
        pytest.skip("nginx is not installed (.ci/run installs it)")
    return nginx


def _nginx_prefix(tmp_path: Path, http_port: int = 8080, https_port: int = 443) -> Path:
    """edge.conf inside a minimal nginx.conf, with a generated certificate."""
    assert _edge_cert(tmp_path / "tls").returncode == 0
    conf = EDGE_CONF.read_text().replace("/etc/nginx/tls/", f"{tmp_path / 'tls'}/")
    conf = conf.replace("listen 8080;", f"listen 127.0.0.1:{http_port};")
    conf = conf.replace("listen 443 ssl;", f"listen 127.0.0.1:{https_port} ssl;")
    (tmp_path / "edge.conf").write_text(conf)
    (tmp_path / "nginx.conf").write_text(
        f"pid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/error.log;\n"
        "events {}\n"
        f"http {{ access_log off; include {tmp_path}/edge.conf; }}\n"
    )
    return tmp_path


def _nginx_cmd(nginx: str, prefix: Path, *args: str) -> list[str]:
    return [
        nginx,
        "-p",
        str(prefix),
        "-e",
        f"{prefix}/error.log",
        "-c",
        f"{prefix}/nginx.conf",
        *args,
    ]


def test_nginx_accepts_the_edge_config(tmp_path: Path) -> None:
    nginx = _nginx()
    prefix = _nginx_prefix(tmp_path)
    result = subprocess.run(
        _nginx_cmd(nginx, prefix, "-t"), capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stderr


def _get(url: str, context: ssl.SSLContext | None = None) -> tuple[int, dict[str, str]]:
    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: Any) -> None:
            return None

    handlers: list[Any] = [NoRedirect()]
    if context is not None:
        handlers.append(urllib.request.HTTPSHandler(context=context))
    opener = urllib.request.build_opener(*handlers)
    try:
        with opener.open(url, timeout=10) as response:
            return response.status, dict(response.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers)


def test_edge_redirects_http_and_serves_only_modern_tls(tmp_path: Path) -> None:
    nginx = _nginx()
    http_port, https_port = _free_port(), _free_port()
    prefix = _nginx_prefix(tmp_path, http_port, https_port)
    process = subprocess.Popen(
        _nginx_cmd(nginx, prefix, "-g", "daemon off;"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        _wait_for_port(https_port, process, "nginx")
        # Plain HTTP: a redirect to the same path over HTTPS, and nothing else.
        status, headers = _get(f"http://localhost:{http_port}/complaints?x=1")
        assert status == 301 and headers["Location"] == "https://localhost/complaints?x=1"
        # /healthz is not redirected for the container itself (127.0.0.1):
        # proxied to intake (absent here, hence 502, not 301).
        assert _get(f"http://127.0.0.1:{http_port}/healthz")[0] == 502

        trusted = ssl.create_default_context(cafile=str(tmp_path / "tls" / "fullchain.pem"))
        status, headers = _get(f"https://localhost:{https_port}/healthz", trusted)
        assert status == 502  # through to the (absent) intake
        assert headers["Strict-Transport-Security"].startswith("max-age=")
        for version in (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3):
            context = ssl.create_default_context(cafile=str(tmp_path / "tls" / "fullchain.pem"))
            context.minimum_version = context.maximum_version = version
            with socket.create_connection(("127.0.0.1", https_port), timeout=5) as raw:
                with context.wrap_socket(raw, server_hostname="localhost") as tls:
                    assert tls.version() == version.name.replace("v1_", "v1.")
        # TLS 1.1 and older are refused.
        old = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        old.check_hostname, old.verify_mode = False, ssl.CERT_NONE
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                old.minimum_version = ssl.TLSVersion.TLSv1
                old.maximum_version = ssl.TLSVersion.TLSv1_1
            old.set_ciphers("ALL:@SECLEVEL=0")
        except (ValueError, ssl.SSLError):
            pytest.skip("this OpenSSL cannot even offer TLS 1.1")
        with socket.create_connection(("127.0.0.1", https_port), timeout=5) as raw:
            with pytest.raises(ssl.SSLError):
                old.wrap_socket(raw, server_hostname="localhost")
    finally:
        process.terminate()
        process.wait(timeout=10)


# --------------------------------------------------------------------------
# Published ports, every variant
# --------------------------------------------------------------------------


def _merged_services(files: tuple[Path, ...]) -> dict[str, dict[str, Any]]:
    """Services of `-f a -f b ...` for the keys checked here (ports accumulate)."""
    services: dict[str, dict[str, Any]] = {}
    for path in files:
        for name, service in (_load(path)["services"] or {}).items():
            merged = services.setdefault(name, {})
            for key, value in (service or {}).items():
                if key == "ports":
                    merged[key] = [*(merged.get(key) or []), *value]
                elif key == "volumes":
                    merged[key] = [*(merged.get(key) or []), *value]
                else:
                    merged[key] = value
    return services


def _check_ports(services: dict[str, dict[str, Any]], variant: str) -> None:
    for name, service in services.items():
        for port in service.get("ports") or []:
            host, _published_port, target = _published(port)
            assert target not in INTERNAL_PORTS, f"{variant}: {name} publishes {target}"
            if name == "edge":
                assert target in {443, 8080}, f"{variant}: edge publishes {target}"
                continue
            # Anything else is for the operator on the host itself.
            assert host == "127.0.0.1", f"{variant}: {name} publishes {port} beyond loopback"


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_only_edge_is_published_beyond_loopback(variant: str) -> None:
    _check_ports(_merged_services(VARIANTS[variant]), variant)


def test_the_port_check_bites() -> None:
    services = _merged_services((BASE,))
    services["nats"] = {**services["nats"], "ports": ["127.0.0.1:4222:4222"]}
    with pytest.raises(AssertionError, match="nats publishes 4222"):
        _check_ports(services, "broken")
    services = _merged_services((BASE,))
    services["grafana"] = {**services["grafana"], "ports": ["3000:3000"]}
    with pytest.raises(AssertionError, match="beyond loopback"):
        _check_ports(services, "broken")


@pytest.fixture()
def env_file(tmp_path: Path) -> Path:
    """Every variable of .env.example: placeholders replaced, the rest kept."""
    lines = []
    for index, line in enumerate(ENV_EXAMPLE.read_text().splitlines()):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, _, value = line.partition("=")
        if value.startswith("change-me"):
            value = f"Check{index}x{'7' * 24}"
        elif key == "COMPOSE_PROJECT_NAME":
            value = "laporcheck"
        lines.append(f"{key}={value}")
    path = tmp_path / "check.env"
    path.write_text("\n".join(lines) + "\n")
    return path


def _compose_config(env_file: Path, files: tuple[Path, ...]) -> subprocess.CompletedProcess:
    cli = shutil.which("docker-compose")
    if cli is None:
        pytest.skip("docker-compose is not installed (.ci/run installs it)")
    args = [cli, "--project-directory", str(ROOT), "--env-file", str(env_file)]
    for path in files:
        args += ["-f", str(path)]
    env = {"PATH": "/usr/bin:/bin:/usr/local/bin", "HOME": str(env_file.parent)}
    return subprocess.run(
        [*args, "config"], capture_output=True, text=True, timeout=120, env=env, cwd=ROOT
    )


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_docker_compose_publishes_only_edge_beyond_loopback(env_file: Path, variant: str) -> None:
    result = _compose_config(env_file, VARIANTS[variant])
    assert result.returncode == 0, result.stderr
    assert "WARNING" not in result.stderr, result.stderr
    services = yaml.safe_load(result.stdout)["services"]
    _check_ports(services, variant)
    edge = {_published(p)[2]: _published(p)[1] for p in services["edge"]["ports"]}
    assert edge == {443: "443", 8080: "80"}, edge


def test_docker_compose_takes_ports_and_tls_dir_from_the_env_file(env_file: Path) -> None:
    env_file.write_text(
        env_file.read_text()
        + "LAPOR_HTTPS_PORT=8443\nLAPOR_HTTP_PORT=8081\nLAPOR_TLS_DIR=/srv/lapor/tls\n"
    )
    result = _compose_config(env_file, (BASE,))
    assert result.returncode == 0, result.stderr
    services = yaml.safe_load(result.stdout)["services"]
    edge = {_published(p)[2]: _published(p)[1] for p in services["edge"]["ports"]}
    assert edge == {443: "8443", 8080: "8081"}
    assert "/srv/lapor/tls:/etc/nginx/tls:ro" in services["edge"]["volumes"]
    assert "/srv/lapor/tls:/tls:rw" in services["edge-cert"]["volumes"]


# --------------------------------------------------------------------------
# NATS TLS: docker-compose.tls.yml
# --------------------------------------------------------------------------


def test_tls_override_switches_nats_and_every_client_to_tls(
    tls_override: dict[str, Any], base: dict[str, Any]
) -> None:
    services = tls_override["services"]
    nats = services["nats"]
    config = nats["command"][nats["command"].index("--config") + 1]
    mounts = _mounts(nats)
    assert mounts[config] == "./" + NATS_TLS_CONF.relative_to(ROOT).as_posix()
    # nats-tls.conf is the single node's config plus a tls block.
    text = NATS_TLS_CONF.read_text()
    assert re.search(r'^include "nats\.conf"\s*$', text, re.M)
    tls_block = re.search(r"^tls\s*\{(.*?)^\}", text, re.M | re.S)
    assert tls_block, "no tls block"
    settings = dict(re.findall(r"^\s*(\w+):\s*\"?([^\"\n]+)\"?", tls_block[1], re.M))
    cert_dir = str(Path(settings["cert_file"]).parent)
    assert str(Path(settings["key_file"]).parent) == cert_dir
    assert settings.get("min_version") in {"1.2", "1.3"}
    # The server certificate and key come from LAPOR_NATS_TLS_DIR/server.
    assert _raw_mounts(nats)[cert_dir] == "${LAPOR_NATS_TLS_DIR:-./var/nats-tls}/server"
    assert nats["depends_on"]["nats-tls-cert"]["condition"] == "service_healthy"
    assert set(nats) <= {"command", "volumes", "depends_on"}, "the base nats stays as it is"

    for name in APP_SERVICES:
        assert name in base["services"], name
        env = services[name]["environment"]
        assert env["NATS_URL"] == "tls://nats:4222", name
        cert_dirs = env["SSL_CERT_DIR"].split(":")
        assert cert_dirs[0] == "/etc/ssl/certs", f"{name}: the public CAs stay trusted"
        # Only the CA directory: no service sees the server's key.
        raw = _raw_mounts(services[name])
        assert set(raw) == {cert_dirs[1]}, raw
        assert raw[cert_dirs[1]] == "${LAPOR_NATS_TLS_DIR:-./var/nats-tls}/ca", name

    generator = services["nats-tls-cert"]
    assert _raw_mounts(generator)["/tls"] == "${LAPOR_NATS_TLS_DIR:-./var/nats-tls}"
    assert NATS_CERT_SCRIPT.name in " ".join(generator["command"])


def test_tls_override_is_valid_compose(env_file: Path) -> None:
    result = _compose_config(env_file, (BASE, TLS))
    assert result.returncode == 0, result.stderr
    services = yaml.safe_load(result.stdout)["services"]
    # The override adds to the base file's nats (volumes, dependencies) and
    # keeps what it does not name.
    nats = services["nats"]
    assert {"/etc/nats/nats.conf", "/etc/nats/auth.conf", "/etc/nats/tls", "/data"} <= {
        v.split(":")[1] for v in nats["volumes"]
    }
    assert set(nats["depends_on"]) == {"nats-tls-cert"}
    assert nats["environment"]["LAPOR_NATS_STORE_KEY"]
    for name in APP_SERVICES:
        env = services[name]["environment"]
        assert env["NATS_URL"] == "tls://nats:4222" and env["NATS_USER"] == name
        assert set(services[name]["depends_on"]) >= {"nats", "mongo"}


def _nats_server() -> str:
    beside_python = Path(sys.executable).with_name("nats-server")
    server = shutil.which("nats-server") or (str(beside_python) if beside_python.exists() else None)
    if server is None:
        pytest.skip("nats-server is not installed")
    return server


def _nats_tls_setup(tmp_path: Path, port: int = 4222, http_port: int = 8222) -> tuple[Path, dict]:
    """ops/nats/*.conf copied with the paths of a test directory, certificates generated."""
    assert _nats_cert(tmp_path / "nats-tls").returncode == 0
    conf_dir = tmp_path / "conf"
    conf_dir.mkdir()
    for conf in NATS_DIR.glob("*.conf"):
        text = conf.read_text()
        text = text.replace("/etc/nats/tls/", f"{tmp_path / 'nats-tls' / 'server'}/")
        text = text.replace('store_dir: "/data"', f'store_dir: "{tmp_path / "store"}"')
        text = re.sub(r"^port: 4222$", f"port: {port}", text, flags=re.M)
        text = re.sub(r"^http_port: 8222$", f"http_port: {http_port}", text, flags=re.M)
        (conf_dir / conf.name).write_text(text)
    passwords = {
        name: "Checkonly1"
        for name in re.findall(r"\$(LAPOR_NATS_\w+_PASSWORD)", (NATS_DIR / "auth.conf").read_text())
    }
    env = {"PATH": "/usr/bin:/bin", **passwords, "LAPOR_NATS_STORE_KEY": "check-only-" + "k" * 32}
    return conf_dir / NATS_TLS_CONF.name, env


def test_nats_tls_config_is_accepted_by_nats_server(tmp_path: Path) -> None:
    server = _nats_server()
    config, env = _nats_tls_setup(tmp_path)
    result = subprocess.run(
        [server, "-t", "-c", str(config)], capture_output=True, text=True, timeout=30, env=env
    )
    assert result.returncode == 0, result.stderr or result.stdout
    # The check bites: without the server key the config is refused.
    (tmp_path / "nats-tls" / "server" / "key.pem").unlink()
    result = subprocess.run(
        [server, "-t", "-c", str(config)], capture_output=True, text=True, timeout=30, env=env
    )
    assert result.returncode != 0


def test_nats_certificate_generation_is_once_and_links_the_ca(tmp_path: Path) -> None:
    tls_dir = tmp_path / "nats-tls"
    assert _nats_cert(tls_dir).returncode == 0
    files = [
        tls_dir / "ca" / "ca.pem",
        tls_dir / "server" / "cert.pem",
        tls_dir / "server" / "key.pem",
    ]
    before = [f.read_bytes() for f in files]
    assert _nats_cert(tls_dir).returncode == 0
    assert [f.read_bytes() for f in files] == before
    assert oct(files[2].stat().st_mode & 0o777) == "0o600"
    links = list((tls_dir / "ca").glob("*.0"))
    assert len(links) == 1 and links[0].resolve() == files[0].resolve()
    # Nothing but the CA certificate (and its link) where the services look.
    assert {p.name for p in (tls_dir / "ca").iterdir()} == {"ca.pem", links[0].name}
    text = subprocess.run(
        ["openssl", "x509", "-noout", "-text", "-in", str(files[1])],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for host in ("nats", "nats-2", "nats-3"):
        assert f"DNS:{host}," in text or f"DNS:{host}\n" in text, host
    files[2].unlink()
    assert _nats_cert(tls_dir).returncode != 0, "a partial directory is refused"


CLIENT = """
import asyncio, sys
import nats

async def main():
    nc = await nats.connect(sys.argv[1], user="intake", password="Checkonly1",
                            max_reconnect_attempts=0, allow_reconnect=False, connect_timeout=5)
    info = nc._server_info
    await nc.close()
    print("tls_required=%s" % info.get("tls_required"))

asyncio.run(main())
"""


def test_a_service_connects_over_tls_with_the_ca_from_ssl_cert_dir(
    tmp_path: Path, tls_override: dict[str, Any]
) -> None:
    server = _nats_server()
    port, http_port = _free_port(), _free_port()
    config, env = _nats_tls_setup(tmp_path, port, http_port)
    process = subprocess.Popen(
        [server, "-c", str(config)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        _wait_for_port(port, process, "nats-server")
        ca_dir = tmp_path / "nats-tls" / "ca"
        # As the override sets it, with the test's CA directory for the mount.
        cert_dirs = tls_override["services"]["intake"]["environment"]["SSL_CERT_DIR"].split(":")
        client_env = {
            "PATH": os.environ["PATH"],
            "SSL_CERT_DIR": ":".join([cert_dirs[0], str(ca_dir)]),
        }

        def connect(url: str, env: dict[str, str]) -> subprocess.CompletedProcess:
            return subprocess.run(
                [sys.executable, "-c", CLIENT, url],
                capture_output=True,
                text=True,
                timeout=60,
                env=env,
            )

        ok = connect(f"tls://localhost:{port}", client_env)
        assert ok.returncode == 0, ok.stderr
        assert "tls_required=True" in ok.stdout
        # A client that does not trust the CA is refused (the check bites).
        untrusted = connect(f"tls://localhost:{port}", {**client_env, "SSL_CERT_DIR": cert_dirs[0]})
        assert untrusted.returncode != 0
        assert "CERTIFICATE_VERIFY_FAILED" in untrusted.stderr, untrusted.stderr[-2000:]
        # The name in the certificate matters: 127.0.0.2 is not in it.
        wrong_name = connect(f"tls://127.0.0.2:{port}", client_env)
        assert wrong_name.returncode != 0
    finally:
        process.terminate()
        process.wait(timeout=10)

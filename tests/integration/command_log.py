"""The names of the database commands a client sent, in order (a pymongo listener)."""

from typing import Any

from pymongo import AsyncMongoClient, monitoring


class Commands(monitoring.CommandListener):
    def __init__(self) -> None:
        self.names: list[str] = []
        # The same, each with its collection: `insert:complaints`.
        self.targets: list[str] = []
        # The statements of each write, with their collection: `update:complaints`.
        self.statements: list[str] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        self.names.append(event.command_name)
        target = f"{event.command_name}:{event.command.get(event.command_name)}"
        self.targets.append(target)
        for field in ("updates", "documents", "deletes"):
            self.statements += [target] * len(event.command.get(field) or ())

    def clear(self) -> None:
        self.names.clear()
        self.targets.clear()
        self.statements.clear()

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


def listened(url: str) -> tuple[AsyncMongoClient[dict[str, Any]], Commands]:
    """A client of its own on `url`, with the commands it sends listed."""
    commands = Commands()
    return AsyncMongoClient(url, tz_aware=True, event_listeners=[commands]), commands

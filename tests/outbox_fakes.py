"""An announcement and a publisher that only records what it was given, for tests of
the outbox (`lapor.runtime.outbox`) with or without a database."""

from __future__ import annotations

from pydantic import BaseModel


class Noted(BaseModel):
    event_id: str
    complaint_id: str = "LPR-1"


class Publisher:
    schema = Noted
    subject = "lapor.test.noted"

    def __init__(self) -> None:
        self.published: list[str] = []

    async def publish(self, message: BaseModel, msg_id: str) -> bool:
        self.published.append(msg_id)
        return True

"""The SLA service's own data: each complaint's clocks and their deadlines."""

from datetime import datetime
from typing import Any

from pymongo import ASCENDING
from pymongo.asynchronous.database import AsyncDatabase

from lapor.contracts import Deadlines

Document = dict[str, Any]


class ClockRepository:
    def __init__(self, db: AsyncDatabase[Document]) -> None:
        self.clocks = db["sla_clocks"]

    async def ensure_indexes(self) -> None:
        # The sweep reads only what is due: an indexed range on the next due moment.
        await self.clocks.create_index([("next_due_at", ASCENDING)])

    async def set_deadlines(
        self,
        *,
        complaint_id: str,
        cause_event_id: str,
        region: str,
        agency: str | None,
        priority: str,
        received_at: datetime,
        deadlines: Deadlines,
        now: datetime,
    ) -> None:
        due = [d for d in deadlines.model_dump().values() if d is not None]
        await self.clocks.update_one(
            {"_id": complaint_id},
            {
                "$set": {
                    "region": region,
                    "agency": agency,
                    "priority": priority,
                    "received_at": received_at,
                    "deadlines": deadlines.model_dump(),
                    "next_due_at": min(due) if due else None,
                    "cause_event_id": cause_event_id,
                    "updated_at": now,
                },
            },
            upsert=True,
        )

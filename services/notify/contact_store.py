"""What notify remembers of each complaint: how to reach its reporter (sealed), kept
in one contact document per complaint, with the routings kept there before the
deadlines carried them (and the first acknowledged answer date, before it was
kept with the acknowledgement's record)."""

from collections import OrderedDict
from typing import Any

from pymongo.asynchronous.collection import AsyncCollection

from lapor.runtime.pii import PiiCipher, is_sealed

Document = dict[str, Any]

# The reporter's addresses in a contact: sealed at rest.
_SEALED = ("sms", "email")
# Contacts kept as saved, the latest: more than the complaints of a busy minute.
SAVED_CONTACTS = 5000


class ContactStore:
    cipher: PiiCipher
    contacts: AsyncCollection[Document]
    routings: AsyncCollection[Document]
    # The contacts this process saved, as it saved them: a contact does not change
    # once the received event stored it, so its acknowledgement reads nothing.
    saved: "OrderedDict[str, Document]"

    async def save_contact(self, complaint_id: str, contact: Document) -> None:
        stored = dict(contact)
        for key in _SEALED:
            if stored.get(key):
                stored[key] = self.cipher.seal(stored[key], complaint_id)
        await self.contacts.update_one({"_id": complaint_id}, {"$set": stored}, upsert=True)
        self.saved[complaint_id] = {"_id": complaint_id, **contact}
        self.saved.move_to_end(complaint_id)
        while len(self.saved) > SAVED_CONTACTS:
            self.saved.popitem(last=False)

    async def contact(self, complaint_id: str) -> Document | None:
        if (saved := self.saved.get(complaint_id)) is not None:
            return dict(saved)
        return self._opened(await self.contacts.find_one({"_id": complaint_id}), complaint_id)

    def _opened(self, found: Document | None, complaint_id: str) -> Document | None:
        # Known once the received event stored it: a routing that came first creates
        # the document with nothing else.
        if found is None or "region" not in found:
            return None
        for key in _SEALED:
            # A value stored before sealing was introduced is read as it is.
            if is_sealed(found.get(key)):
                found[key] = self.cipher.open(found[key], complaint_id)
        return found

    async def region_of(self, complaint_id: str) -> str | None:
        """The complaint's region; None when notify never heard of the complaint."""
        found = await self.contacts.find_one({"_id": complaint_id}, {"region": 1})
        return None if found is None or "region" not in found else str(found["region"] or "")

    async def routing(self, routed_event_id: str, contact: Document | None) -> Document | None:
        """For deadlines that do not carry their routing (`DeadlinesSet.category`):
        the routing `contact` (as read) carries, as notify kept routings until the
        deadlines carried them; else the one stored apart, as routings were before
        they went into the contact document. Needed while a complaint routed before
        then may still have its deadlines announced (moments after its routing: a day
        after deployment covers it)."""
        for entry in (contact or {}).get("routings") or []:
            if entry.get("event_id") == routed_event_id:
                return dict(entry)
        return await self.routings.find_one({"_id": routed_event_id})

"""Where photos' bytes and refused uploads are kept.

GridFS (bucket `complaint_photos`: collections `complaint_photos.files` and
`complaint_photos.chunks`) in the same database as the complaints, so a photo
is as durable as the complaint, and a backup of the database holds both.
Each file's `_id` is the photo id, a string: FerretDB answers equality on the
first field of an index through that index only for strings, and the chunks
are read by `files_id` on the `(files_id, n)` index. The id is random: two
uploads never write chunks of the same file (pymongo removes a failed upload's
chunks by its id).

The complaint record lists its photos (`photos`): a file no complaint lists (a
crash between the upload and the record's write) is never served, and is
removed by `remove_orphan` where the upload notices it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from gridfs import AsyncGridFSBucket, NoFile
from pydantic import BaseModel
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase

from lapor.runtime.outbox import Outbox, ensure_outbox_index

Document = dict[str, Any]
BUCKET = "complaint_photos"
REFUSALS = "photo_refusals"
CHUNK_BYTES = 255 * 1024


@dataclass(frozen=True)
class StoredPhoto:
    length: int
    chunks: AsyncIterator[bytes]


class PhotoStore(Protocol):
    async def ensure_indexes(self) -> None: ...

    async def save(self, photo_id: str, data: bytes, metadata: Document) -> None: ...

    async def open(self, photo_id: str) -> StoredPhoto | None: ...

    async def remove_orphan(self, photo_id: str) -> None: ...

    async def add_refusal(self, record: Document, events: Sequence[BaseModel]) -> Document: ...

    async def announce_refusal(self, record: Document) -> int: ...

    def outbox_collections(self) -> dict[str, AsyncCollection[Document]]: ...


class GridFsPhotoStore:
    def __init__(self, db: AsyncDatabase[Document], outbox: Outbox) -> None:
        self.bucket = AsyncGridFSBucket(db, bucket_name=BUCKET, chunk_size_bytes=CHUNK_BYTES)
        self.refusals = db[REFUSALS]
        self.outbox = outbox

    async def ensure_indexes(self) -> None:
        # GridFS creates these on a first upload to an empty bucket; made here at once,
        # so that reads are indexed from the start.
        db = self.refusals.database
        await db[f"{BUCKET}.files"].create_index([("filename", 1), ("uploadDate", 1)])
        await db[f"{BUCKET}.chunks"].create_index([("files_id", 1), ("n", 1)], unique=True)
        await ensure_outbox_index(self.refusals)

    async def save(self, photo_id: str, data: bytes, metadata: Document) -> None:
        await self.bucket.upload_from_stream_with_id(
            photo_id, f"{photo_id}", data, metadata=metadata
        )

    async def open(self, photo_id: str) -> StoredPhoto | None:
        try:
            stream = await self.bucket.open_download_stream(photo_id)
        except NoFile:
            return None

        async def chunks() -> AsyncIterator[bytes]:
            try:
                while chunk := await stream.readchunk():
                    yield chunk
            finally:
                await stream.close()

        return StoredPhoto(length=int(stream.length), chunks=chunks())

    async def remove_orphan(self, photo_id: str) -> None:
        try:
            await self.bucket.delete(photo_id)
        except NoFile:
            pass

    async def add_refusal(self, record: Document, events: Sequence[BaseModel]) -> Document:
        stored = self.outbox.document(record, events, record["stored_at"])
        await self.refusals.insert_one(stored)
        return stored

    async def announce_refusal(self, record: Document) -> int:
        return await self.outbox.flush(self.refusals, record)

    def outbox_collections(self) -> dict[str, AsyncCollection[Document]]:
        return {REFUSALS: self.refusals}


class MemoryPhotoStore:
    """For unit tests: the same behaviour, kept in dictionaries."""

    def __init__(self) -> None:
        self.files: dict[str, tuple[bytes, Document]] = {}
        self.refused: list[Document] = []
        self.announced: list[BaseModel] = []

    async def ensure_indexes(self) -> None:
        return None

    async def save(self, photo_id: str, data: bytes, metadata: Document) -> None:
        if photo_id in self.files:
            raise FileExistsError(photo_id)
        self.files[photo_id] = (data, metadata)

    async def open(self, photo_id: str) -> StoredPhoto | None:
        if photo_id not in self.files:
            return None
        data = self.files[photo_id][0]

        async def chunks() -> AsyncIterator[bytes]:
            for start in range(0, len(data), CHUNK_BYTES):
                yield data[start : start + CHUNK_BYTES]

        return StoredPhoto(length=len(data), chunks=chunks())

    async def remove_orphan(self, photo_id: str) -> None:
        self.files.pop(photo_id, None)

    async def add_refusal(self, record: Document, events: Sequence[BaseModel]) -> Document:
        self.refused.append(record)
        self.announced.extend(events)
        return record

    async def announce_refusal(self, record: Document) -> int:
        return 0

    def outbox_collections(self) -> dict[str, AsyncCollection[Document]]:
        return {}

"""The router passes on what hotspots compare: the text's subject words without the
place, the reporter's pseudonym and confidentiality."""

from datetime import UTC, datetime
from functools import cache

from pydantic import BaseModel

from lapor.contracts import Channel, ComplaintReceived, ComplaintRouted
from lapor.directory import REGIONS_DIR
from services.router.domain import Router
from services.router.handlers import RouterDeps, handle_received
from services.router.places import PlaceFinder

NOW = datetime(2026, 11, 28, 1, 0, tzinfo=UTC)


class Collect:
    def __init__(self) -> None:
        self.events: list[ComplaintRouted] = []

    async def publish(self, message: BaseModel, msg_id: str) -> bool:
        assert isinstance(message, ComplaintRouted)
        self.events.append(message)
        return True


@cache
def router() -> Router:
    return Router.load(REGIONS_DIR / "banjar")


async def route(text: str, **fields: object) -> ComplaintRouted:
    finder = PlaceFinder.load(REGIONS_DIR / "banjar")
    assert finder is not None
    out = Collect()
    deps = RouterDeps(routers={"banjar": router()}, routed=out, places={"banjar": finder})  # type: ignore[arg-type]
    event = ComplaintReceived(
        event_id="received:BJR-1", occurred_at=NOW, complaint_id="BJR-1", region="banjar",
        channel=Channel.SMS, text=text, received_at=NOW, **fields,  # type: ignore[arg-type]
    )  # fmt: skip
    await handle_received(event, deps)
    return out.events[0]


async def test_keywords_are_stems_without_stopwords_or_the_place() -> None:
    routed = await route(
        "jalan di ds gambut barat kec gambut terendam banjir tdk bisa dilewati",
        reporter="0123456789abcdef",
        confidential=True,
    )
    assert routed.place is not None and routed.place.desa is not None
    assert routed.keywords[:3] == ["jalan", "rendam", "banjir"]
    assert not {"gambut", "barat", "ds", "kec", "di"} & set(routed.keywords)
    assert routed.reporter == "0123456789abcdef" and routed.confidential is True


async def test_spellings_of_one_word_give_one_keyword() -> None:
    one = await route("jln rusak parah bnyk lubang")
    other = await route("jalan rusak parah banyak lubang")
    assert one.keywords == other.keywords

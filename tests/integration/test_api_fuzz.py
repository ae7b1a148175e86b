"""Property-based fuzzing of intake's HTTP API against its committed OpenAPI document.

Schemathesis generates requests from `docs/openapi/intake.json` (valid ones and ones
that break it) and sends them to the real intake app in-process; its lifespan
connects to this module's own nats-server and FerretDB, so every request goes
through the real repository, the real command handling and the real broker. Every
answer must be documented (status, content type, headers, body schema), never a
5xx, a request that breaks the document must be refused, and every refusal must
say why in its body.

`LAPOR_FUZZ_EXAMPLES=500` runs longer; the case count is in the session summary.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import pytest_asyncio
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.core.parameters import ParameterLocation
from schemathesis.generation import GenerationMode
from schemathesis.generation.meta import negated_parameters
from schemathesis.python import asgi
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from lapor.contracts.commands import Role
from lapor.runtime.settings import InfraSettings
from lapor.tokens import in_memory_tokens
from services.intake.auth import new_token, token_record
from services.sla.api import breaches_router
from services.sla.settings import SlaSettings
from services.sla.wiring import create_app as create_sla_app
from tests.integration import intake_harness
from tools.devstack import ROOT, Stack

pytestmark = [pytest.mark.integration]

DATABASE = "lapor_fuzz"
# Per operation and generation phase: small enough for CI on two loaded cores.
EXAMPLES = int(os.environ.get("LAPOR_FUZZ_EXAMPLES", "50"))
FUZZ = settings(
    max_examples=EXAMPLES,
    # A loaded CI machine and a database round trip per case make timings meaningless.
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
SEED_TEXTS = (
    "Jalan di depan pasar Martapura berlubang besar dan sering membuat pengendara jatuh",
    "Lampu penerangan jalan di Desa Sungai Batang mati sudah dua minggu, gelap sekali",
    "Air PDAM di Kecamatan Astambul tidak mengalir sudah tiga hari, warga kesulitan",
)

# The document is the oracle: the drift test keeps it equal to what the code serves.
schema = schemathesis.openapi.from_path(ROOT / "docs" / "openapi" / "intake.json")


@schemathesis.check
def refusal_says_why(ctx: Any, response: Any, case: Any) -> bool | None:
    """A 4xx carries its reason: `detail` on the API, GeoReport's error list on Open311."""
    if not 400 <= response.status_code < 500:
        return None
    media = (response.headers.get("content-type") or [""])[0]
    if "xml" in media:
        assert "<description>" in response.text, f"XML refusal, no description: {response.text}"
        return True
    assert "json" in media, f"a {response.status_code} answered with {media or 'no body type'}"
    body = response.json()
    if isinstance(body, list):  # Open311
        assert body and all(e.get("description") for e in body), f"no description: {body}"
    else:
        assert isinstance(body, dict) and body.get("detail"), f"no detail: {body}"
    return True


CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
    refusal_says_why,
]


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def tokens(own_mongo: Any) -> AsyncIterator[dict[str, str]]:
    made = {"admin": new_token(), "partner": new_token()}
    await own_mongo[DATABASE].api_tokens.insert_many(
        [
            token_record(made["admin"], Role.ADMIN, "fuzz-admin", None),
            token_record(made["partner"], Role.PARTNER, "fuzz-partner", None),
        ]
    )
    yield made


@pytest.fixture(scope="module")
def intake_app(own_servers: Stack, tokens: dict[str, str]) -> Iterator[Any]:
    yield intake_harness.intake_app(own_servers, DATABASE)
    # Schemathesis keeps a started lifespan for the process; end it before the servers stop.
    asgi.shutdown_lifespans()


@pytest.fixture(scope="module")
def seeded(intake_app: Any) -> list[str]:
    """Real complaints, so reads and actions also reach stored records, not only 404s."""
    with asgi.get_client(intake_app) as client:
        ids = []
        for n, text in enumerate(SEED_TEXTS):
            answer = client.post("/api/v1/complaints", json={"text": text, "client_id": f"s{n}"})
            assert answer.status_code == 202, answer.text
            ids.append(answer.json()["tracking_id"])
    return ids


@pytest.fixture(scope="module")
def services(intake_app: Any) -> list[str]:
    with asgi.get_client(intake_app) as client:
        answer = client.get("/open311/v2/services.json")
    return [s["service_code"] for s in answer.json()]


def _aim_at_seeded(case: Any, seeded: list[str]) -> None:
    # Only a valid case may be redirected: a broken tracking id must stay broken.
    if case.meta is None or case.meta.generation.mode is not GenerationMode.POSITIVE:
        return
    current = case.path_parameters.get("tracking_id")
    if isinstance(current, str) and len(current) % 2 == 0:
        case.path_parameters["tracking_id"] = seeded[len(current) % len(seeded)]


@schema.parametrize()
@FUZZ
def test_fuzz_with_admin_token(
    case: Any,
    intake_app: Any,
    tokens: dict[str, str],
    seeded: list[str],
    services: list[str],
    fuzz_tally: Counter[str],
) -> None:
    """Past authentication: an admin may do anything, so the handlers themselves are hit."""
    _aim_at_seeded(case, seeded)
    if isinstance(case.body, dict):  # an Open311 form: a real key and a real service
        if "api_key" in case.body:
            case.body["api_key"] = tokens["partner"]
        # Any string is valid here, so this leaves a deliberately broken form broken.
        if isinstance(code := case.body.get("service_code"), str):
            case.body["service_code"] = services[len(code) % len(services)]
    fuzz_tally["admin"] += 1
    # A case whose headers are broken on purpose (no or a mangled Authorization) keeps them.
    header = case.meta.components.get(ParameterLocation.HEADER) if case.meta else None
    broken = header is not None and header.mode.is_negative
    token = {} if broken else {"Authorization": f"Bearer {tokens['admin']}"}
    response = case.call_and_validate(app=intake_app, headers=token, checks=CHECKS)
    fuzz_tally[f"answer {response.status_code // 100}xx"] += 1


@schema.parametrize()
@FUZZ
def test_fuzz_without_credentials(
    case: Any, intake_app: Any, seeded: list[str], fuzz_tally: Counter[str]
) -> None:
    """No token (or only a made-up one): refused with 401/403 where one is needed, never a 5xx."""
    _aim_at_seeded(case, seeded)
    fuzz_tally["anonymous"] += 1
    response = case.call_and_validate(app=intake_app, checks=CHECKS)
    fuzz_tally[f"answer {response.status_code // 100}xx"] += 1
    if case.path.startswith(("/api/v1/agencies", "/api/v1/complaints/{tracking_id}/actions")):
        # A citizen's secret link is the only way in without a token; a fuzzed key is not one.
        assert response.status_code in (400, 401, 403, 404, 405, 422), response.text


def _sla_document() -> dict[str, Any]:
    # SLA commits no OpenAPI file: its router's own document is the oracle.
    from fastapi import FastAPI

    app = FastAPI(title="Lapor sla")
    app.include_router(breaches_router(lambda: None, in_memory_tokens({})))  # type: ignore[arg-type,return-value]
    return app.openapi()


sla_schema = schemathesis.openapi.from_dict(_sla_document())


@pytest.fixture(scope="module")
def sla_app(own_servers: Stack) -> Iterator[Any]:
    infra = InfraSettings(  # type: ignore[call-arg]
        NATS_URL=own_servers.nats,
        MONGO_URL=own_servers.mongo,
        MONGO_DB=DATABASE,
        LAPOR_DATA_DIR=ROOT / "data",
        LOG_LEVEL="WARNING",
    )
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    app = create_sla_app(SlaSettings(infra=infra))
    root.handlers[:], root.level = handlers, level
    yield app
    asgi.shutdown_lifespans()


@sla_schema.parametrize()
@FUZZ
def test_fuzz_sla_breaches(
    case: Any, sla_app: Any, tokens: dict[str, str], fuzz_tally: Counter[str]
) -> None:
    """The accountability record: periods, agencies, clocks and limits, as an admin."""
    fuzz_tally["sla"] += 1
    # A negative case that leaves the token out must reach the API without one: put
    # back, it would turn the case valid (an unknown query parameter is ignored).
    drops_token = any(name.lower() == "authorization" for name, _ in negated_parameters(case.meta))
    admin = {} if drops_token else {"Authorization": f"Bearer {tokens['admin']}"}
    response = case.call_and_validate(app=sla_app, headers=admin, checks=CHECKS)
    fuzz_tally[f"answer {response.status_code // 100}xx"] += 1

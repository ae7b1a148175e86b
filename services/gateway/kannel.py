"""Kannel's HTTP interface as the connector uses it: sendsms and the status page."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

import httpx

from lapor.runtime.broker import DependencyUnavailable

# Kannel got the request but its answer was lost (smsbox stopped, a timeout).
NO_ANSWER = "no_answer"


class KannelUnavailable(DependencyUnavailable):
    """Kannel did not take the SMS now (down, overloaded, misconfigured login): later."""

    def __init__(self, kind: str, detail: str, *, retry_in_s: float | None = None) -> None:
        super().__init__(f"{kind}: {detail}", retry_in_s=retry_in_s)
        self.kind = kind


class KannelRefused(Exception):
    """Kannel refused this SMS for good (a malformed number or text)."""


class KannelPort(Protocol):
    async def sendsms(self, query: Mapping[str, str]) -> str:
        """Submit one SMS; Kannel's answer text when accepted (or queued)."""
        ...

    async def status_page(self) -> str:
        """bearerbox's status.xml."""
        ...


class HttpKannel:
    def __init__(
        self,
        client: httpx.AsyncClient,
        sendsms_url: str,
        status_url: str,
        status_password: str,
        timeout_s: float,
    ) -> None:
        self._client = client
        self._sendsms_url = sendsms_url
        self._status_url = status_url
        self._status_password = status_password
        self._timeout = timeout_s

    async def sendsms(self, query: Mapping[str, str]) -> str:
        try:
            response = await self._client.get(
                self._sendsms_url, params=dict(query), timeout=self._timeout
            )
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            raise KannelUnavailable("unreachable", type(exc).__name__) from exc
        except httpx.HTTPError as exc:
            # The request went out and no answer came back: Kannel may hold the SMS.
            raise KannelUnavailable(NO_ANSWER, type(exc).__name__) from exc
        answer = response.text.strip()[:200]
        if response.status_code in (200, 202):
            return answer
        # 403: our own login is wrong; 5xx: smsbox is busy or has lost bearerbox.
        # Neither says anything about this SMS, so it waits for the fix.
        if response.status_code == 403 or response.status_code >= 500:
            kind = "login" if response.status_code == 403 else "busy"
            raise KannelUnavailable(kind, f"HTTP {response.status_code} {answer}")
        raise KannelRefused(f"HTTP {response.status_code} {answer}")

    async def status_page(self) -> str:
        response = await self._client.get(
            self._status_url, params={"password": self._status_password}, timeout=self._timeout
        )
        response.raise_for_status()
        return response.text


class FakeKannel:
    """In-memory Kannel for unit tests: records submissions, fails when told to."""

    def __init__(self) -> None:
        self.sent: list[dict[str, str]] = []
        self.failure: Exception | None = None
        self.answer = "0: Accepted for delivery"
        self.status_xml = "<gateway><smscs></smscs></gateway>"

    async def sendsms(self, query: Mapping[str, str]) -> str:
        if self.failure is not None:
            raise self.failure
        self.sent.append(dict(query))
        return self.answer

    async def status_page(self) -> str:
        if self.failure is not None:
            raise self.failure
        return self.status_xml

"""`GitHub`: the clients a job uses, sharing one session (one budget, one meter)."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime

import httpx

from capture.github.graphql import GraphQLClient
from capture.github.rest import RestClient
from capture.github.session import Meter, Session
from capture.settings import CaptureSettings

USER_AGENT = "prcapture/0.1 (+https://github.com/)"


def connect(
    settings: CaptureSettings, transport: httpx.BaseTransport | None = None
) -> httpx.Client:
    """An httpx client with GitHub's headers; raises ConfigError without a token."""
    token = settings.require_token()
    return httpx.Client(
        headers={
            "authorization": f"Bearer {token}",
            "user-agent": USER_AGENT,
            "x-github-api-version": "2022-11-28",
        },
        timeout=httpx.Timeout(30.0, connect=10.0),
        transport=transport,
    )


class GitHub:
    def __init__(
        self,
        client: httpx.Client,
        settings: CaptureSettings,
        *,
        realtime: bool = False,
        sleep: Callable[[float], None] = time.sleep,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.settings = settings
        self.session = Session(
            client,
            reserve=settings.reserve,
            realtime=realtime,
            concurrency=settings.concurrency,
            sleep=sleep,
            now=now,
        )
        self.graphql = GraphQLClient(self.session, settings.graphql_url)
        self.rest = RestClient(self.session, settings.api_url)

    @property
    def meter(self) -> Meter:
        return self.session.meter

    def close(self) -> None:
        self.session.client.close()

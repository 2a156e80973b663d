"""The REST client: per_page 100, `link` pagination to the end, conditional requests
(ETags kept per URL and credential, in memory or persisted across jobs), and a cap on
what a fallback may spend."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any, Protocol

from capture.errors import FallbackCapped
from capture.github.session import Session
from jobstore import fingerprint

PAUSE = timedelta(minutes=15)  # how long a job capped on REST waits before trying again


class EtagCache(Protocol):
    """Bodies of earlier answers by (credential, URL), to ask GitHub whether they changed."""

    def get(self, credential: str, key: str) -> tuple[str, Any, str | None] | None: ...

    def put(self, credential: str, key: str, etag: str, body: Any, link: str | None) -> None: ...


class MemoryEtags:
    def __init__(self) -> None:
        self._entries: dict[tuple[str, str], tuple[str, Any, str | None]] = {}

    def get(self, credential: str, key: str) -> tuple[str, Any, str | None] | None:
        return self._entries.get((credential, key))

    def put(self, credential: str, key: str, etag: str, body: Any, link: str | None) -> None:
        self._entries[(credential, key)] = (etag, body, link)


class RestClient:
    def __init__(self, session: Session, base_url: str, etags: EtagCache | None = None) -> None:
        self.session = session
        self.base_url = base_url.rstrip("/")
        self.etags: EtagCache = etags or MemoryEtags()
        self.cap: int | None = None  # REST requests this job may spend, when capped
        self.cap_reason = ""

    def limit(self, requests: int, reason: str) -> None:
        """From now on, at most `requests` REST requests in all (a fallback's budget)."""
        self.cap, self.cap_reason = requests, reason

    def get(self, path: str, params: dict[str, Any] | None = None) -> Any:
        return self._get(self._url(path), params)[0]

    def pages(
        self, path: str, params: dict[str, Any] | None = None, conditional: bool = True
    ) -> Iterator[list]:
        """Every page of a list endpoint, following `link: rel="next"` to the end; not
        `conditional`: no ETag kept (a URL never asked again, e.g. with a since= time)."""
        url: str | None = self._url(path)
        query = {"per_page": 100, **(params or {})}
        while url is not None:
            body, link = self._get(url, query, conditional)
            yield body
            url, query = parse_link(link).get("next"), None

    def _url(self, path: str) -> str:
        return path if path.startswith("http") else f"{self.base_url}{path}"

    def _get(
        self, url: str, params: dict[str, Any] | None, conditional: bool = True
    ) -> tuple[Any, str | None]:
        meter = self.session.meter
        if self.cap is not None and meter.rest_points >= self.cap:
            raise FallbackCapped(
                self.session.now() + PAUSE,
                f"REST fallback stopped at its cap of {self.cap} requests ({self.cap_reason})",
            )
        key = f"{url}?{sorted((params or {}).items())}"
        credential = fingerprint(self.session.client.headers.get("authorization", ""))
        cached = self.etags.get(credential, key) if conditional else None
        headers = {"accept": "application/vnd.github+json"}
        if cached is not None:
            headers["if-none-match"] = cached[0]
        response = self.session.request("GET", url, "core", params=params, headers=headers)
        meter.rest_calls += 1
        if response.status_code == 304 and cached is not None:  # unchanged: free
            return cached[1], cached[2]
        meter.rest_points += 1
        body = response.json()
        link = response.headers.get("link")
        if conditional and "etag" in response.headers:
            self.etags.put(credential, key, response.headers["etag"], body, link)
        return body, link


def parse_link(header: str | None) -> dict[str, str]:
    """A `link` header as {rel: url}."""
    links = {}
    for part in (header or "").split(","):
        url, _, rest = part.partition(";")
        rel = rest.strip().removeprefix('rel="').removesuffix('"')
        if url.strip().startswith("<") and rel:
            links[rel] = url.strip()[1:-1]
    return links

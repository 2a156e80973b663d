"""The REST client: per_page 100, `link` pagination to the end, conditional requests."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from capture.github.session import Session
from capture.records import parse_link


class RestClient:
    def __init__(self, session: Session, base_url: str) -> None:
        self.session = session
        self.base_url = base_url.rstrip("/")
        self._etags: dict[str, tuple[str, Any]] = {}

    def get(self, path: str, params: dict[str, Any] | None = None) -> Any:
        return self._get(self._url(path), params)[0]

    def pages(self, path: str, params: dict[str, Any] | None = None) -> Iterator[list]:
        """Every page of a list endpoint, following `link: rel="next"` to the end."""
        url: str | None = self._url(path)
        query = {"per_page": 100, **(params or {})}
        while url is not None:
            body, headers = self._get(url, query)
            yield body
            url, query = parse_link(headers.get("link")).get("next"), None

    def _url(self, path: str) -> str:
        return path if path.startswith("http") else f"{self.base_url}{path}"

    def _get(self, url: str, params: dict[str, Any] | None) -> tuple[Any, Any]:
        key = f"{url}?{sorted((params or {}).items())}"
        headers = {"accept": "application/vnd.github+json"}
        if key in self._etags:
            headers["if-none-match"] = self._etags[key][0]
        response = self.session.request("GET", url, "core", params=params, headers=headers)
        meter = self.session.meter
        meter.rest_calls += 1
        if response.status_code == 304:  # unchanged: free, served from our copy
            return self._etags[key][1], response.headers
        meter.rest_points += 1
        body = response.json()
        if "etag" in response.headers:
            self._etags[key] = (response.headers["etag"], body)
        return body, response.headers

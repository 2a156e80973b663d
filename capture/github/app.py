"""GitHub App authentication: the app's JWT (RS256, signed with PyJWT), installations
found by owner, installation tokens minted, cached and refreshed before they expire, so a
long job never meets an expired token."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import httpx
import jwt

from capture.errors import AccessDenied, CredentialsRejected, NetworkError
from jobstore import Secret, fingerprint

JWT_LIFETIME = timedelta(minutes=9)  # GitHub allows 10; a minute of clock skew spare
REFRESH_BEFORE = timedelta(minutes=5)  # a token with less than this left is renewed


@dataclass(frozen=True)
class Minted:
    token: Secret
    expires_at: datetime


# Installation tokens are shared by every job of a process (a worker, the Inngest server):
# minted once an hour per installation, not once a job. Keyed by app, key and installation.
_TOKENS: dict[tuple[str, int], Minted] = {}
_TOKENS_LOCK = threading.Lock()


class GitHubApp:
    """One GitHub App: its id and private key; installation tokens on demand."""

    def __init__(
        self,
        app_id: int,
        private_key: Secret,
        client: httpx.Client,
        api_url: str,
        now: Callable[[], datetime],
    ) -> None:
        self.app_id = app_id
        self.private_key = private_key
        self.client = client
        self.api_url = api_url.rstrip("/")
        self.now = now
        self._key = f"{app_id}:{api_url}:{fingerprint(private_key.reveal())}"
        self._owners: dict[str, int | None] = {}
        self.minted = 0

    def jwt(self) -> str:
        """The app's own credential: short-lived, for the /app endpoints only."""
        issued = self.now() - timedelta(seconds=60)  # GitHub's advice against clock drift
        claims = {
            "iat": int(issued.timestamp()),
            "exp": int((issued + JWT_LIFETIME).timestamp()),
            "iss": str(self.app_id),
        }
        return jwt.encode(claims, self.private_key.reveal(), algorithm="RS256")

    def call(self, method: str, path: str, params: dict | None = None) -> httpx.Response:
        """One /app endpoint as the app (its JWT): NetworkError if GitHub cannot be
        reached, CredentialsRejected for a refused JWT; other answers are the caller's."""
        return self._call(method, path, params)

    def _call(self, method: str, path: str, params: dict | None = None) -> httpx.Response:
        try:
            response = self.client.request(
                method,
                f"{self.api_url}{path}",
                params=params,
                headers={
                    "authorization": f"Bearer {self.jwt()}",
                    "accept": "application/vnd.github+json",
                },
                follow_redirects=method == "GET",  # a renamed repository's old name: 301
            )
        except httpx.HTTPError as exc:
            raise NetworkError(f"GitHub unreachable for the app: {type(exc).__name__}") from None
        if response.status_code == 401:
            raise CredentialsRejected(
                f"GitHub refused app {self.app_id}'s JWT (HTTP 401): check GITHUB_APP_ID "
                "and its private key"
            )
        return response

    def installation_for(self, repository: str) -> int | None:
        """The installation covering `repository` (owner/name), found once per owner; None
        if the app is not installed there."""
        key = repository.split("/")[0].lower()
        if key not in self._owners:
            response = self._call("GET", f"/repos/{repository}/installation")
            if response.status_code == 404:
                self._owners[key] = None
            elif response.status_code != 200:
                raise AccessDenied(
                    f"installation lookup for {repository}: HTTP {response.status_code}"
                )
            else:
                self._owners[key] = int(response.json()["id"])
        return self._owners[key]

    def forget(self, installation_id: int) -> None:
        """Drops the cached token (GitHub refused it): the next request mints one."""
        with _TOKENS_LOCK:
            _TOKENS.pop((self._key, installation_id), None)

    def token(self, installation_id: int) -> Minted:
        """A current token for the installation: cached for the process, renewed when it
        would expire within REFRESH_BEFORE."""
        with _TOKENS_LOCK:
            held = _TOKENS.get((self._key, installation_id))
            if held is not None and held.expires_at - self.now() > REFRESH_BEFORE:
                return held
            response = self._call("POST", f"/app/installations/{installation_id}/access_tokens")
            if response.status_code != 201:
                raise AccessDenied(
                    f"GitHub would not mint a token for installation {installation_id} "
                    f"(HTTP {response.status_code})"
                )
            body = response.json()
            expires = datetime.fromisoformat(body["expires_at"].replace("Z", "+00:00"))
            minted = Minted(Secret(body["token"]), expires)
            _TOKENS[(self._key, installation_id)] = minted
            self.minted += 1
            return minted

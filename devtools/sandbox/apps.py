"""GitHub Apps as the sandbox plays them: apps with a public key (tests generate the pair),
installations on accounts with their own hourly budget, installation tokens minted for a
valid app JWT and expiring an hour later on the sandbox clock."""

from __future__ import annotations

import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import jwt

from devtools.sandbox.lanes import Rejected

TOKEN_LIFETIME = timedelta(hours=1)
JWT_MAX = timedelta(minutes=10)  # GitHub refuses app JWTs that live longer


@dataclass
class Installation:
    id: int
    app_id: int
    account: str  # the user or organisation it is installed on
    limit: int = 5000  # points an hour (GitHub: 5,000, more with repositories and users)


@dataclass
class Apps:
    clock: Callable[[], datetime]
    keys: dict[int, str] = field(default_factory=dict)  # app id -> public key (PEM)
    installations: dict[int, Installation] = field(default_factory=dict)
    tokens: dict[str, tuple[int, datetime]] = field(default_factory=dict)  # -> (id, expiry)
    minted: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def register(self, app_id: int, public_key: str) -> None:
        self.keys[app_id] = public_key

    def install(self, installation: Installation) -> None:
        self.installations[installation.id] = installation

    def app_of(self, authorization: str) -> int:
        """The app a `Bearer <JWT>` header proves to be, checked as GitHub checks it:
        RS256 signed by the app's key, issued in the past, expiring within 10 minutes."""
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or token.count(".") != 2:
            raise Rejected(401, "A JSON web token could not be decoded")
        try:
            claims = jwt.decode(token, options={"verify_signature": False})
            app_id = int(claims["iss"])
            key = self.keys[app_id]
            claims = jwt.decode(
                token,
                key,
                algorithms=["RS256"],
                options={"verify_exp": False, "verify_iat": False, "require": ["iat", "exp"]},
            )
        except (jwt.PyJWTError, KeyError, ValueError, TypeError):
            raise Rejected(401, "A JSON web token could not be decoded") from None
        now = self.clock().timestamp()
        if claims["iat"] > now + 60 or claims["exp"] <= now:
            raise Rejected(401, "'Expiration time' claim ('exp') must be a future time")
        if claims["exp"] - claims["iat"] > JWT_MAX.total_seconds() + 60:
            raise Rejected(401, "'Expiration time' claim ('exp') is too far in the future")
        return app_id

    def mint(self, app_id: int, installation_id: int) -> dict:
        installation = self.installations.get(installation_id)
        if installation is None or installation.app_id != app_id:
            raise Rejected(404, "Not Found")
        token = "ghs_" + secrets.token_hex(18)
        expires = self.clock() + TOKEN_LIFETIME
        with self._lock:
            self.tokens[token] = (installation_id, expires)
            self.minted += 1
        return {
            "token": token,
            "expires_at": expires.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "permissions": {"contents": "read", "metadata": "read", "pull_requests": "read"},
            "repository_selection": "all",
        }

    def installation_for(self, app_id: int, owner: str) -> dict:
        for installation in self.installations.values():
            if installation.app_id == app_id and installation.account.lower() == owner.lower():
                return {
                    "id": installation.id,
                    "app_id": app_id,
                    "account": {"login": installation.account, "type": "Organization"},
                    "target_type": "Organization",
                }
        raise Rejected(404, "Not Found")

    def bucket(self, token: str) -> tuple[str, int] | None:
        """The budget an installation token draws from, or None (unknown or expired)."""
        found = self.tokens.get(token)
        if found is None or found[1] <= self.clock():
            return None
        installation = self.installations[found[0]]
        return f"installation:{installation.id}", installation.limit

"""A token or key kept out of reprs, logs and exceptions."""

from __future__ import annotations

import hashlib


class Secret:
    """A token or key that never shows itself in a repr, a log line or an exception."""

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __bool__(self) -> bool:
        return bool(self._value)

    def fingerprint(self) -> str:
        """A stable name for the secret that cannot be turned back into it."""
        return fingerprint(self._value)


def fingerprint(value: str) -> str:
    """sha256 of a token, shortened: what tables and logs may say instead of the token."""
    return "sha256:" + hashlib.sha256(value.encode()).hexdigest()[:16]

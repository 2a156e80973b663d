"""What a script tells GitHub Actions: step outputs, a Markdown job summary, annotations.

Active only when GITHUB_ACTIONS=true; elsewhere every call does nothing.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import click

from jobstore.config import RunnerFiles, runner_files


def _escape(text: str, properties: bool = False) -> str:
    # The workflow-command escaping GitHub documents (and actions/toolkit implements).
    text = text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
    return text.replace(":", "%3A").replace(",", "%2C") if properties else text


class ActionsReport:
    def __init__(self, files: RunnerFiles | None = None) -> None:
        self.files = files if files is not None else runner_files()

    @property
    def active(self) -> bool:
        return self.files.active

    def outputs(self, values: Mapping[str, Any]) -> None:
        """Appends step outputs; lists and dicts are written as JSON (for fromJSON)."""
        if not self.active or self.files.output is None:
            return
        lines = []
        for name, value in values.items():
            text = value if isinstance(value, str) else json.dumps(value, default=str)
            if "\n" in text:
                delimiter = f"ghadelimiter_{uuid.uuid4()}"
                lines.append(f"{name}<<{delimiter}\n{text}\n{delimiter}")
            else:
                lines.append(f"{name}={text}")
        with self.files.output.open("a") as handle:
            handle.write("\n".join(lines) + "\n")

    def summary(self, title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        """Appends a Markdown table to the job summary."""
        if not self.active or self.files.summary is None:
            return

        def cell(value: Any) -> str:
            return ("-" if value is None else str(value)).replace("|", "\\|").replace("\n", " ")

        lines = [f"### {title}", "", "| " + " | ".join(columns) + " |"]
        lines.append("|" + "---|" * len(columns))
        lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
        with self.files.summary.open("a") as handle:
            handle.write("\n".join(lines) + "\n\n")

    def error(self, message: str, title: str = "") -> None:
        """An ::error:: annotation on the run."""
        if self.active:
            props = f" title={_escape(title, properties=True)}" if title else ""
            click.echo(f"::error{props}::{_escape(message)}")

    def warning(self, message: str, title: str = "") -> None:
        if self.active:
            props = f" title={_escape(title, properties=True)}" if title else ""
            click.echo(f"::warning{props}::{_escape(message)}")

"""What a script tells GitHub Actions: step outputs, a Markdown job summary, annotations.

Active only when GITHUB_ACTIONS=true; elsewhere every call does nothing.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click


@dataclass(frozen=True)
class RunnerFiles:
    """What a GitHub Actions runner provides a step (empty outside Actions)."""

    active: bool = False
    output: Path | None = None
    summary: Path | None = None
    run_url: str = ""  # this workflow run's page, when the runner says where it is

    @property
    def run_ref(self) -> str:
        """This run as a Dispatched ref ("ID URL"), e.g. for the matrix legs it will run."""
        return f"{self.run_url.rsplit('/', 1)[-1]} {self.run_url}" if self.run_url else ""


def runner_files(env: Mapping[str, str] | None = None) -> RunnerFiles:
    """GITHUB_OUTPUT and GITHUB_STEP_SUMMARY when GITHUB_ACTIONS is "true"."""
    env = os.environ if env is None else env
    if env.get("GITHUB_ACTIONS") != "true":
        return RunnerFiles()
    output, summary = env.get("GITHUB_OUTPUT"), env.get("GITHUB_STEP_SUMMARY")
    server, repo, run_id = (
        env.get(k, "") for k in ("GITHUB_SERVER_URL", "GITHUB_REPOSITORY", "GITHUB_RUN_ID")
    )
    run_url = f"{server}/{repo}/actions/runs/{run_id}" if server and repo and run_id else ""
    return RunnerFiles(
        True, Path(output) if output else None, Path(summary) if summary else None, run_url
    )


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

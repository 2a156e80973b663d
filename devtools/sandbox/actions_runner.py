"""The sandbox's GitHub Actions runner: runs a dispatched workflow's `run:` steps from its
YAML file, as a hosted runner would, against this machine's checkout.

What it does like Actions: jobs in `needs` order, `if:` conditions, `strategy.matrix`
(including `fromJSON(...)` of another job's output) with `max-parallel`, `env:` at
workflow, job and step level with `${{ }}` expressions (inputs, secrets, matrix, needs,
steps, github, vars), GITHUB_OUTPUT and GITHUB_STEP_SUMMARY files per step, job outputs,
`bash -e` for scripts, and the run's conclusion. `uses:` steps (checkout, setup-python)
are skipped: the runner already has the checkout and its environment. An expression it
does not understand fails the run loudly, never evaluates to nothing.
"""

from __future__ import annotations

import json
import re
import subprocess
import tempfile
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from devtools.sandbox.lanes import Run

EXPRESSION = re.compile(r"\$\{\{\s*(.*?)\s*\}\}")
TOKEN = re.compile(
    r"\s*(?:(?P<str>'(?:[^']|'')*')|(?P<num>-?\d+(?:\.\d+)?)|(?P<op>==|!=|&&|\|\||!|\(|\)|,)"
    r"|(?P<name>[A-Za-z_][\w.\-*]*))"
)


class ExpressionError(Exception):
    """An expression this runner does not understand (the run fails with it)."""


def load_workflow(path: Path) -> dict[str, Any]:
    with path.open() as handle:
        document = yaml.safe_load(handle)
    # YAML 1.1 reads the `on:` key as True.
    if True in document:
        document["on"] = document.pop(True)
    return document


def declared_inputs(workflow: Mapping[str, Any]) -> dict[str, dict]:
    trigger = workflow.get("on") or {}
    dispatch = trigger.get("workflow_dispatch") if isinstance(trigger, dict) else None
    return dict((dispatch or {}).get("inputs") or {})


class Evaluator:
    """A small subset of the Actions expression language, enough for our workflows."""

    def __init__(self, contexts: Mapping[str, Any], status: str = "success") -> None:
        self.contexts = contexts
        self.status = status

    def value(self, expression: str) -> Any:
        tokens = []
        position = 0
        while position < len(expression):
            match = TOKEN.match(expression, position)
            if not match or match.end() == position:
                raise ExpressionError(f"cannot read expression {expression!r}")
            position = match.end()
            kind = match.lastgroup
            tokens.append((kind, match[kind]))
        self.tokens, self.at = tokens, 0
        result = self._or()
        if self.at != len(self.tokens):
            raise ExpressionError(f"unexpected {self.tokens[self.at][1]!r} in {expression!r}")
        return result

    def _peek(self) -> str | None:
        return self.tokens[self.at][1] if self.at < len(self.tokens) else None

    def _take(self) -> tuple[str, str]:
        token = self.tokens[self.at]
        self.at += 1
        return token

    def _or(self) -> Any:
        left = self._and()
        while self._peek() == "||":
            self._take()
            right = self._and()
            left = left or right
        return left

    def _and(self) -> Any:
        left = self._compare()
        while self._peek() == "&&":
            self._take()
            right = self._compare()
            left = left and right
        return left

    def _compare(self) -> Any:
        left = self._unary()
        while self._peek() in ("==", "!="):
            op = self._take()[1]
            right = self._unary()
            left = _loose(left) == _loose(right) if op == "==" else _loose(left) != _loose(right)
        return left

    def _unary(self) -> Any:
        if self._peek() == "!":
            self._take()
            return not self._unary()
        return self._primary()

    def _primary(self) -> Any:
        kind, text = self._take()
        if text == "(":
            inner = self._or()
            self._take()
            return inner
        if kind == "str":
            return text[1:-1].replace("''", "'")
        if kind == "num":
            return float(text) if "." in text else int(text)
        if self._peek() == "(":
            self._take()
            args = []
            while self._peek() != ")":
                args.append(self._or())
                if self._peek() == ",":
                    self._take()
            self._take()
            return self._call(text, args)
        if text in ("true", "false", "null"):
            return {"true": True, "false": False, "null": None}[text]
        return self._lookup(text)

    def _call(self, name: str, args: list[Any]) -> Any:
        lowered = name.lower()
        if lowered == "fromjson":
            return json.loads(args[0])
        if lowered == "tojson":
            return json.dumps(args[0])
        if lowered in ("always", "success", "failure", "cancelled"):
            return {
                "always": True,
                "success": self.status == "success",
                "failure": self.status == "failure",
                "cancelled": False,
            }[lowered]
        raise ExpressionError(f"function {name}() is not supported by the sandbox runner")

    def _lookup(self, path: str) -> Any:
        head, *rest = path.split(".")
        if head not in self.contexts:
            raise ExpressionError(f"unknown context {head!r} in {path!r}")
        value: Any = self.contexts[head]
        for part in rest:
            value = value.get(part) if isinstance(value, Mapping) else None
        return "" if value is None else value

    def render(self, text: Any) -> str:
        """A string with every ${{ }} replaced (objects become JSON, as Actions does)."""
        if not isinstance(text, str):
            return (
                "" if text is None else str(text).lower() if isinstance(text, bool) else str(text)
            )

        def one(match: re.Match[str]) -> str:
            value = self.value(match[1])
            if isinstance(value, bool):
                return str(value).lower()
            return json.dumps(value) if isinstance(value, list | dict) else str(value)

        return EXPRESSION.sub(one, text)

    def condition(self, text: Any) -> bool:
        if text is None:
            return self.status == "success"
        inner = EXPRESSION.fullmatch(text.strip()) if isinstance(text, str) else None
        return bool(self.value(inner[1] if inner else str(text)))


def _loose(value: Any) -> Any:
    return "" if value is None else value


def read_outputs(path: Path) -> dict[str, str]:
    """GITHUB_OUTPUT lines: name=value, or name<<DELIMITER ... DELIMITER."""
    outputs: dict[str, str] = {}
    lines = path.read_text().splitlines() if path.exists() else []
    index = 0
    while index < len(lines):
        line = lines[index]
        if "<<" in line and ("=" not in line or line.index("<<") < line.index("=")):
            name, delimiter = line.split("<<", 1)
            end = lines.index(delimiter, index + 1)
            outputs[name] = "\n".join(lines[index + 1 : end])
            index = end + 1
            continue
        if "=" in line:
            name, value = line.split("=", 1)
            outputs[name] = value
        index += 1
    return outputs


@dataclass
class StepLog:
    job: str
    name: str
    returncode: int | None  # None: skipped (`uses:` or a false `if:`)
    output: str = ""
    summary: str = ""


@dataclass
class RunLog:
    run_id: int
    workflow: str
    conclusion: str = "success"
    steps: list[StepLog] = field(default_factory=list)
    job_outputs: dict[str, dict[str, str]] = field(default_factory=dict)
    legs: int = 0
    error: str = ""


@dataclass
class ActionsRunner:
    """Runs dispatched workflows from `workflows/` in `workdir` with `secrets`."""

    workflows: Path
    workdir: Path
    secrets: Mapping[str, str]
    base_env: Mapping[str, str] = field(default_factory=dict)
    server_url: str = "http://sandbox.invalid"  # also the API URL, as on GitHub Enterprise
    repository: str = "acme/ops"
    variables: Mapping[str, str] = field(default_factory=dict)
    on_finish: Callable[[int, str], None] | None = None
    logs: list[RunLog] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, run: Run) -> RunLog:
        """Runs one dispatched workflow run (the sandbox's Actions calls this)."""
        return self.run(run.workflow, run.inputs, run.id, event="workflow_dispatch")

    def run(
        self, file: str, inputs: Mapping[str, str], run_id: int, event: str = "workflow_dispatch"
    ) -> RunLog:
        log = RunLog(run_id, file)
        with self.lock:
            self.logs.append(log)
        try:
            self._run(load_workflow(self.workflows / file), dict(inputs), run_id, event, log)
        except ExpressionError as exc:
            log.conclusion, log.error = "failure", str(exc)
        if self.on_finish is not None:
            self.on_finish(run_id, log.conclusion)
        return log

    def _run(self, workflow: dict, inputs: dict, run_id: int, event: str, log: RunLog) -> None:
        jobs: dict[str, dict] = workflow["jobs"]
        github = {
            "run_id": str(run_id),
            "run_attempt": "1",
            "repository": self.repository,
            "server_url": self.server_url,
            "api_url": self.server_url,
            "event_name": event,
            "ref_name": "main",
            "token": self.secrets.get("GITHUB_TOKEN", ""),
            "workflow": workflow.get("name", ""),
        }
        results: dict[str, dict] = {}
        pending = list(jobs)
        while pending:
            ready = [j for j in pending if all(n in results for n in _needs(jobs[j]))]
            if not ready:
                raise ExpressionError(f"jobs {pending} wait for each other")
            for name in ready:
                pending.remove(name)
                job = jobs[name]
                needs = {n: results[n] for n in _needs(job)}
                failed = any(r["result"] != "success" for r in needs.values())
                contexts = {
                    "inputs": inputs,
                    "github": github,
                    "needs": needs,
                    "vars": self.variables,
                    "secrets": self.secrets,
                    "matrix": {},
                    "env": {},
                }
                evaluator = Evaluator(contexts, "failure" if failed else "success")
                if not evaluator.condition(job.get("if")):
                    results[name] = {"result": "skipped", "outputs": {}}
                    continue
                results[name] = self._job(name, job, workflow, contexts, github, log)
        log.job_outputs = {name: r["outputs"] for name, r in results.items()}
        if any(r["result"] == "failure" for r in results.values()):
            log.conclusion = "failure"

    def _job(
        self, name: str, job: dict, workflow: dict, contexts: dict, github: dict, log: RunLog
    ) -> dict:
        strategy = job.get("strategy") or {}
        matrix_spec = strategy.get("matrix")
        legs: list[dict] = [{}]
        if matrix_spec is not None:
            evaluator = Evaluator(contexts)
            expanded = {}
            for key, values in matrix_spec.items():
                if isinstance(values, str):
                    values = evaluator.value(EXPRESSION.fullmatch(values.strip())[1])
                expanded[key] = values
            keys = list(expanded)
            legs = [{}]
            for key in keys:
                legs = [{**leg, key: value} for leg in legs for value in expanded[key]]
            if len(legs) > 256:
                raise ExpressionError(f"matrix of {len(legs)} jobs: GitHub allows 256")
        parallel = int(strategy.get("max-parallel") or len(legs) or 1)
        with ThreadPoolExecutor(max_workers=max(parallel, 1)) as pool:
            outcomes = list(
                pool.map(lambda leg: self._leg(name, job, workflow, contexts, leg, log), legs)
            )
        if matrix_spec is not None:
            with self.lock:
                log.legs += len(legs)
        result = "success" if all(ok for ok, _ in outcomes) else "failure"
        return {"result": result, "outputs": outcomes[-1][1] if outcomes else {}}

    def _leg(
        self, name: str, job: dict, workflow: dict, contexts: dict, leg: dict, log: RunLog
    ) -> tuple[bool, dict[str, str]]:
        contexts = {**contexts, "matrix": leg, "steps": {}}
        status = "success"
        env: dict[str, str] = {"ACT": "true"}  # as `act` does: workflows may skip installs
        for scope in (workflow.get("env"), job.get("env")):
            evaluator = Evaluator({**contexts, "env": env})
            env.update({k: evaluator.render(v) for k, v in (scope or {}).items()})
        with tempfile.TemporaryDirectory(prefix="sandbox-runner-") as tmp:
            for index, step in enumerate(job.get("steps") or []):
                label = step.get("name") or step.get("uses") or f"step {index + 1}"
                evaluator = Evaluator({**contexts, "env": env}, status)
                if "uses" in step or not evaluator.condition(step.get("if")):
                    log.steps.append(StepLog(name, label, None))
                    continue
                step_env = {
                    **env,
                    **{k: evaluator.render(v) for k, v in (step.get("env") or {}).items()},
                }
                output, summary = Path(tmp) / f"output-{index}", Path(tmp) / f"summary-{index}"
                output.touch()
                summary.touch()
                process_env = {
                    **self.base_env,
                    **step_env,
                    "CI": "true",
                    "GITHUB_ACTIONS": "true",
                    "GITHUB_OUTPUT": str(output),
                    "GITHUB_STEP_SUMMARY": str(summary),
                    "GITHUB_RUN_ID": github_value(contexts, "run_id"),
                    "GITHUB_REPOSITORY": self.repository,
                    "GITHUB_SERVER_URL": self.server_url,
                    "GITHUB_API_URL": self.server_url,
                    "GITHUB_GRAPHQL_URL": f"{self.server_url}/graphql",
                    "GITHUB_WORKSPACE": str(self.workdir),
                    "GITHUB_JOB": name,
                    "RUNNER_TEMP": tmp,
                }
                script = evaluator.render(step["run"])
                done = subprocess.run(
                    ["bash", "--noprofile", "--norc", "-e", "-o", "pipefail", "-c", script],
                    cwd=self.workdir,
                    env=process_env,
                    capture_output=True,
                    text=True,
                    timeout=float(job.get("timeout-minutes", 360)) * 60,
                )
                log.steps.append(
                    StepLog(
                        name, label, done.returncode, done.stdout + done.stderr, summary.read_text()
                    )
                )
                if step.get("id"):
                    contexts["steps"][step["id"]] = {"outputs": read_outputs(output)}
                if done.returncode != 0:
                    status = "failure"
        outputs_evaluator = Evaluator({**contexts, "env": env}, status)
        outputs = {k: outputs_evaluator.render(v) for k, v in (job.get("outputs") or {}).items()}
        return status == "success", outputs


def github_value(contexts: Mapping[str, Any], key: str) -> str:
    return str(contexts["github"].get(key, ""))


def _needs(job: Mapping[str, Any]) -> list[str]:
    needs = job.get("needs") or []
    return [needs] if isinstance(needs, str) else list(needs)

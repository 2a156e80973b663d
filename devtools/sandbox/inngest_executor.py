"""The sandbox's Inngest executor: delivers an accepted event to a served function over
HTTP, signed as Inngest Cloud signs it, step by step until the function ends.

The real executor cannot be installed on these machines; this one speaks the same serve
protocol (POST {serve url}?fnId=...&stepId=..., 206 with step opcodes, 200 when done,
500 with x-inngest-no-retry for a non-retriable error) so the SDK's adapter, signature
check and step memoisation are exercised for real.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from typing import Any

import httpx
from inngest._internal.net import sign_request

# sign_request is the SDK's own signer, meant "for tests that mimic Inngest server
# behavior" (its docstring): exactly what this executor is.

MAX_CALLS = 200


@dataclass
class Run:
    event_id: str
    status: str = "running"  # completed | failed
    output: Any = None
    calls: int = 0


@dataclass
class Executor:
    serve_url: str
    function_id: str
    signing_key: str | None = None
    runs: list[Run] = field(default_factory=list)
    client: httpx.Client = field(default_factory=lambda: httpx.Client(timeout=600))
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, delivered: dict) -> Run:
        """Runs the function for one delivered event (the sandbox's Inngest calls this)."""
        event = {k: delivered[k] for k in ("name", "data", "id") if k in delivered}
        event.setdefault("ts", 0)
        run = Run(delivered.get("internal_id", ""))
        with self.lock:
            self.runs.append(run)
        steps: dict[str, Any] = {}
        stack: list[str] = []
        step_id = "step"
        while run.calls < MAX_CALLS:
            run.calls += 1
            answer = self._call(event, steps, stack, step_id, run.event_id)
            if answer.status_code == 206:
                step_id = "step"
                for op in answer.json():
                    if op.get("op") == "StepPlanned":
                        step_id = op["id"]
                        continue
                    steps[op["id"]] = {"data": op.get("data")} if "error" not in op else op
                    stack.append(op["id"])
                continue
            run.status = "completed" if answer.status_code == 200 else "failed"
            try:
                run.output = answer.json()
            except ValueError:
                run.output = answer.text
            return run
        run.status, run.output = "failed", "too many calls"
        return run

    def _call(
        self, event: dict, steps: dict, stack: list[str], step_id: str, run_id: str
    ) -> httpx.Response:
        body = {
            "ctx": {
                "attempt": 0,
                "disable_immediate_execution": False,
                "run_id": f"sandbox-run-{run_id}",
                "stack": {"stack": list(stack)},
            },
            "event": event,
            "events": [event],
            "steps": steps,
            "use_api": False,
        }
        raw = json.dumps(body).encode()
        headers = {
            "content-type": "application/json",
            "x-inngest-server-kind": "cloud",
            "connection": "close",  # one call per connection, none left open between runs
        }
        if self.signing_key:
            headers["x-inngest-signature"] = sign_request(raw, self.signing_key)
        return self.client.post(
            self.serve_url,
            params={"fnId": self.function_id, "stepId": step_id},
            content=raw,
            headers=headers,
        )

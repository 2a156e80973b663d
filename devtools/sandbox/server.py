"""The sandbox: one request handler for GitHub's GraphQL, REST and Actions APIs and Inngest's
Event API, reachable in-process (an httpx transport) or over HTTP on 127.0.0.1."""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx

from capture.github.cost import NODE_LIMIT, query_cost
from devtools.sandbox.apps import Apps
from devtools.sandbox.data import World
from devtools.sandbox.faults import Entry, FaultPlan, Ledger
from devtools.sandbox.graphql_api import GraphQLApi
from devtools.sandbox.lanes import Actions, Inngest, Rejected, Workflow
from devtools.sandbox.limits import PER_MINUTE, Budgets
from devtools.sandbox.rest_api import BadRequest, Moved, NotFound, RestApi
from devtools.sandbox.webhooks import Faults, Hooks, Send

DEFAULT_TOKEN = "sandbox-token"
DEFAULT_EVENT_KEY = "sandbox-event-key"
DISPATCH = re.compile(r"/repos/(?P<repo>[^/]+/[^/]+)/actions/workflows/(?P<file>[^/]+)/dispatches")
RUNS = re.compile(r"/repos/(?P<repo>[^/]+/[^/]+)/actions/runs(?:/(?P<id>\d+))?")
APP_PATH = re.compile(r"/app/installations/(?P<id>\d+)/access_tokens")
HOOK_DELIVERIES = re.compile(r"/app/hook/deliveries(?:/(?P<id>\d+)(?P<attempts>/attempts)?)?")
# POST /_sandbox/world actions: the World method and the arguments it takes.
WORLD_ACTIONS = {
    "rename_repository": ("rename_repository", ("full_name", "new_name")),
    "transfer_repository": ("transfer_repository", ("full_name", "new_owner")),
    "hide_repository": ("hide_repository", ("full_name",)),
    "restore_repository": ("restore_repository", ("full_name",)),
    "rename_user": ("rename_user", ("database_id", "login")),
    "delete_user": ("delete_user", ("database_id",)),
    "edit_comment": ("edit_comment", ("full_name", "number", "comment_id", "body", "at")),
    "delete_comment": ("delete_comment", ("full_name", "number", "comment_id", "at")),
    "delete_review": ("delete_review", ("full_name", "number", "review_id", "at")),
}
INSTALLATION = re.compile(
    r"(?:/repos/(?P<owner>[^/]+)/(?P<name>[^/]+)|/repositories/(?P<id>\d+))/installation"
)
SECONDARY = (
    "You have exceeded a secondary rate limit. Please wait a few minutes before you try again."
)


@dataclass
class Response:
    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)

    def content(self) -> bytes:
        return b"" if self.body is None else json.dumps(self.body).encode()


@dataclass
class Options:
    tokens: dict[str, int] = field(default_factory=lambda: {DEFAULT_TOKEN: 5000})
    # Personal tokens of one user share one budget (GitHub's rule): token -> login. A
    # token without a user here has a budget of its own.
    users: dict[str, str] = field(default_factory=dict)
    per_minute: dict[str, int] = field(default_factory=lambda: dict(PER_MINUTE))
    event_keys: set[str] = field(default_factory=lambda: {DEFAULT_EVENT_KEY})
    latency: float = 0.0  # seconds added to every request
    node_latency: float = 0.0  # seconds added per possible node of a GraphQL query
    timeout_nodes: int = 300_000  # heavier GraphQL queries time out (502) and are charged
    # How `nodes(ids: [...])` counts towards cost and the node limit, GitHub's docs being
    # silent: "strict" multiplies what is under it by the number of ids, "lenient" does not.
    node_count: str = "strict"
    node_limit: int = NODE_LIMIT  # GitHub's is 500,000; lower it to play a stricter server
    # How GraphQL documents run: "lean" (devtools.sandbox.executor), "graphql-core" (its
    # reference), or "compare" (both; differences kept in `graphql.differences`)
    executor: str = "lean"
    sleep: Callable[[float], None] = time.sleep


class Sandbox:
    """A stand-in for GitHub and Inngest with faults, budgets and a ledger of requests."""

    def __init__(
        self,
        world: World | None = None,
        options: Options | None = None,
        clock: Callable[[], datetime] | None = None,
        base_url: str = "http://sandbox.invalid",
    ) -> None:
        self.clock = clock or (lambda: datetime.now(UTC))
        self.world = world or World()
        self.options = options or Options()
        self.budgets = Budgets(self.clock, {})
        self.apps = Apps(self.clock)
        self.faults = FaultPlan(self.clock)
        self.ledger = Ledger()
        self.graphql = GraphQLApi(self.world, base_url, self.options.executor)
        self.rest = RestApi(self.world, base_url)
        self.actions = Actions(self.clock, base_url)
        self.inngest = Inngest(self.clock, self.options.event_keys)
        self.base_url = base_url
        self.hooks: Hooks | None = None

    @property
    def base_url(self) -> str:
        return self._base_url

    @base_url.setter
    def base_url(self, url: str) -> None:
        self._base_url = url
        self.graphql.base_url = self.rest.base_url = self.actions.base_url = url

    def register_workflow(
        self,
        repository: str,
        file: str,
        inputs: dict[str, dict],
        run_name: str = "",
        name: str | None = None,
    ) -> None:
        self.actions.register(repository, file, Workflow(name or file, inputs, run_name))

    def load_workflows(self, directory: Path, repository: str) -> list[str]:
        """Registers every workflow_dispatch workflow in `directory` (its declared inputs
        and run-name) for `repository`; returns their file names."""
        from devtools.sandbox.actions_runner import declared_inputs, load_workflow

        files = []
        for path in sorted(directory.glob("*.yml")):
            workflow = load_workflow(path)
            trigger = workflow.get("on") or {}
            if not isinstance(trigger, dict) or "workflow_dispatch" not in trigger:
                continue
            self.register_workflow(
                repository,
                path.name,
                declared_inputs(workflow),
                run_name=workflow.get("run-name", ""),
                name=workflow.get("name"),
            )
            files.append(path.name)
        return files

    def drain(self) -> None:
        """Waits for the handlers of every dispatched run and delivered event so far."""
        self.actions.handlers.drain()
        self.inngest.handlers.drain()

    # The one entry point.

    def handle(self, method: str, target: str, headers: dict[str, str], body: bytes) -> Response:
        url = urlsplit(target)
        path, query = url.path.rstrip("/") or "/", dict(parse_qsl(url.query))
        headers = {k.lower(): v for k, v in headers.items()}
        kind = self._kind(method, path)
        response = self._route(kind, method, path, query, headers, body)
        extra = {}
        if op := response.headers.pop("x-sandbox-operation", ""):
            extra["operation"] = op
        if bucket := self._bucket_of(headers):
            extra["bucket"] = bucket
        self.ledger.record(
            Entry(
                self.clock(),
                method,
                path,
                kind,
                response.status,
                int(response.headers.pop("x-sandbox-points", 0)),
                int(response.headers.pop("x-sandbox-nodes", 0)),
                _error_type(response.body),
                extra,
            )
        )
        return response

    def _kind(self, method: str, path: str) -> str:
        if path.startswith("/e/"):
            return "inngest"
        if path in ("/graphql", "/api/graphql"):
            return "graphql"
        if DISPATCH.fullmatch(path):
            return "dispatch"
        if RUNS.fullmatch(path):
            return "runs"
        if path in ("/user", "/rate_limit"):  # who the token is, what it has left: no data
            return "identity"
        return "admin" if path.startswith("/_sandbox") else "rest"

    def _route(
        self, kind: str, method: str, path: str, query: dict, headers: dict, body: bytes
    ) -> Response:
        if kind == "inngest":
            return self._inngest(method, path, body)
        if kind == "admin":
            return self._admin(method, path, body)
        if APP_PATH.fullmatch(path) or INSTALLATION.fullmatch(path):
            return self._app(method, path, headers)
        if found := HOOK_DELIVERIES.fullmatch(path):
            return self._deliveries(method, found, query, headers)
        token = self._bucket(_token(headers.get("authorization", "")))
        if token is None:
            return Response(
                401,
                {"message": "Bad credentials", "documentation_url": "https://docs.github.com/rest"},
            )
        if path == "/user" and method == "GET":
            return self._user(headers)
        if not self.budgets.enter(token):
            return Response(403, {"message": SECONDARY}, {"retry-after": "60"})
        try:
            self.options.sleep(self.options.latency) if self.options.latency else None
            if kind == "graphql":
                return self._graphql(token, method, body)
            if path == "/rate_limit":
                return self._rate_limit(token)
            return self._rest(kind, token, method, path, query, headers, body)
        finally:
            self.budgets.leave(token)

    def _bucket_of(self, headers: dict) -> str | None:
        """The budget a request's token drew from (for the ledger), without side effects."""
        token = _token(headers.get("authorization", ""))
        if token in self.options.tokens:
            login = self.options.users.get(token)
            return f"user:{login}" if login else token
        found = self.apps.tokens.get(token)
        return f"installation:{found[0]}" if found else None

    def _bucket(self, token: str) -> str | None:
        """The budget a token draws from: its user's (personal tokens of one user share
        one), its installation's, or its own; None for a token GitHub would refuse."""
        if token in self.options.tokens:
            login = self.options.users.get(token)
            bucket = f"user:{login}" if login else token
            self.budgets.limits[bucket] = self.options.tokens[token]
            return bucket
        found = self.apps.bucket(token)
        if found is None:
            return None
        self.budgets.limits.setdefault(*found)
        return found[0]

    def _user(self, headers: dict) -> Response:
        token = _token(headers.get("authorization", ""))
        login = self.options.users.get(token)
        if token not in self.options.tokens:
            return Response(403, {"message": "Resource not accessible by integration"})
        login = login or "sandbox-user"
        return Response(200, {"login": login, "id": _id(login), "type": "User"})

    def _app(self, method: str, path: str, headers: dict) -> Response:
        """The App endpoints, authenticated by the app's JWT."""
        try:
            app_id = self.apps.app_of(headers.get("authorization", ""))
            minting = APP_PATH.fullmatch(path)
            if minting and method == "POST":
                return Response(201, self.apps.mint(app_id, int(minting["id"])))
            found = INSTALLATION.fullmatch(path)
            if found and method == "GET":
                if found["id"]:  # where a renamed repository's old name redirects
                    repo = self.world.by_id(int(found["id"]))
                    if repo is None:
                        raise Rejected(404, "Not Found")
                    return Response(200, self.apps.installation_for(app_id, repo.owner))
                repo, moved = self.world.resolve(f"{found['owner']}/{found['name']}")
                if repo is not None and moved:
                    where = f"{self.base_url}/repositories/{repo.database_id}/installation"
                    return Response(
                        301,
                        {
                            "message": "Moved Permanently",
                            "url": where,
                            "documentation_url": "https://docs.github.com/v3/#http-redirects",
                        },
                        {"location": where},
                    )
                return Response(200, self.apps.installation_for(app_id, found["owner"]))
        except Rejected as exc:
            return Response(exc.status, {"message": str(exc)})
        return Response(404, {"message": "Not Found"})

    def enable_webhooks(
        self,
        secret: str,
        url: str = "",
        send: Send | None = None,
        faults: Faults | None = None,
        seed: int = 1,
    ) -> Hooks:
        """The App's webhook: every change of the world in an installation's repositories
        is delivered to `url` through `send` when `hooks.pump(until)` is called."""
        self.hooks = Hooks(
            self.world, self.apps, self.clock, self.base_url, secret, url, send, faults, seed
        )
        return self.hooks

    def _deliveries(self, method: str, found: Any, query: dict, headers: dict) -> Response:
        """The App's delivery log and redelivery (its JWT), as GitHub serves them."""
        try:
            self.apps.app_of(headers.get("authorization", ""))
        except Rejected as exc:
            return Response(exc.status, {"message": str(exc)})
        hooks = self.hooks
        if hooks is None:
            return Response(404, {"message": "Not Found"})
        if found["id"] is None and method == "GET":
            try:
                per_page = max(1, min(100, int(query.get("per_page", 30))))
            except ValueError:
                return Response(400, {"message": "per_page must be a number"})
            items, after = hooks.listing(per_page, query.get("cursor"))
            extra = {}
            if after is not None:
                where = f"{self.base_url}/app/hook/deliveries?per_page={per_page}&cursor={after}"
                extra["link"] = f'<{where}>; rel="next"'
            return Response(200, items, extra)
        attempt = hooks.attempt(int(found["id"]))
        if attempt is None:
            return Response(404, {"message": "Not Found"})
        if found["attempts"] and method == "POST":
            hooks.redeliver(attempt.id)
            return Response(202, {})
        if not found["attempts"] and method == "GET":
            return Response(200, hooks.detail(attempt.id))
        return Response(404, {"message": "Not Found"})

    def _fault(self, target: str) -> Response | None:
        fault = self.faults.take(target, None)
        if fault is None or fault.kind == "partial":
            return None
        if fault.kind == "secondary":
            wait = int((fault.until - self.clock()).total_seconds()) + 1 if fault.until else 60
            return Response(403, {"message": SECONDARY}, {"retry-after": str(max(wait, 1))})
        if fault.kind == "down":
            return Response(503, {"message": "Service Unavailable"})
        return Response(int(fault.kind), {"message": f"sandbox fault: HTTP {fault.kind}"})

    def _graphql(self, token: str, method: str, raw: bytes) -> Response:
        if method != "POST":
            return Response(404, {"message": "Not Found"})
        if (faulted := self._fault("graphql")) is not None:
            return faulted
        try:
            payload = json.loads(raw or b"{}")
            source = payload["query"]
            variables = payload.get("variables") or {}
        except (json.JSONDecodeError, KeyError, TypeError):
            return Response(400, {"message": "Problems parsing JSON"})
        document, problems = self.graphql.check(source)
        if problems:
            return Response(200, {"errors": problems})
        cost = query_cost(
            document, variables, payload.get("operationName"), counting=self.options.node_count
        )
        operation = operation_name(document, payload.get("operationName"))
        window = self.budgets.window(token, "graphql")
        headers = window.headers("graphql")
        if cost.nodes > self.options.node_limit:
            return Response(
                200,
                {
                    "errors": [
                        {
                            "type": "MAX_NODE_LIMIT_EXCEEDED",
                            "message": (
                                f"This query requests up to {cost.nodes:,} possible nodes "
                                "which exceeds the maximum limit of "
                                f"{self.options.node_limit:,}."
                            ),
                        }
                    ]
                },
                headers,
            )
        if window.remaining < cost.points:
            window.used = window.limit
            return Response(
                200,
                {
                    "errors": [
                        {
                            "type": "RATE_LIMITED",
                            "message": ("API rate limit already exceeded for user ID 1."),
                        }
                    ]
                },
                window.headers("graphql"),
            )
        if (
            self.budgets.last_minute(token, "graphql") + cost.points
            > self.options.per_minute["graphql"]
        ):
            return Response(403, {"message": SECONDARY}, {"retry-after": "60", **headers})
        window = self.budgets.charge(token, "graphql", cost.points)
        charged = {
            **window.headers("graphql"),
            "x-sandbox-points": str(cost.points),
            "x-sandbox-nodes": str(cost.nodes),
            "x-sandbox-operation": operation,
        }
        if cost.nodes > self.options.timeout_nodes:
            return Response(
                502,
                {
                    "message": "We couldn't respond to your request in time. "
                    "Sorry about that. Please try resubmitting your request."
                },
                charged,
            )
        if self.options.node_latency:
            self.options.sleep(self.options.node_latency * cost.nodes)
        context = {
            "partial": self.faults.partial_prs(),
            "rate_limit": {
                "cost": cost.points,
                "limit": window.limit,
                "nodeCount": cost.nodes,
                "remaining": window.remaining,
                "used": window.used,
                "resetAt": window.reset_at,
            },
        }
        body = self.graphql.run(document, variables, payload.get("operationName"), context)
        return Response(200, body, charged)

    def _rate_limit(self, token: str) -> Response:
        core, graphql = self.budgets.window(token, "core"), self.budgets.window(token, "graphql")

        def shape(w: Any) -> dict:
            return {
                "limit": w.limit,
                "used": w.used,
                "remaining": w.remaining,
                "reset": int(w.reset_at.timestamp()),
            }

        reset = int(core.reset_at.timestamp())
        fixed = {  # resources the sandbox does not meter, at GitHub's documented limits
            name: {"limit": limit, "used": 0, "remaining": limit, "reset": reset}
            for name, limit in (
                ("search", 30),
                ("code_search", 10),
                ("integration_manifest", 5000),
                ("source_import", 100),
                ("code_scanning_upload", 1000),
                ("actions_runner_registration", 10000),
                ("scim", 15000),
                ("dependency_snapshots", 100),
            )
        }
        body = {
            "resources": {"core": shape(core), "graphql": shape(graphql), **fixed},
            "rate": shape(core),
        }
        return Response(200, body, core.headers("core"))

    def _rest(
        self, kind: str, token: str, method: str, path: str, query: dict, headers: dict, body: bytes
    ) -> Response:
        window = self.budgets.window(token, "core")
        if window.remaining <= 0:
            return Response(
                403,
                {
                    "message": "API rate limit exceeded for user ID 1.",
                    "documentation_url": "https://docs.github.com/rest/rate-limit",
                },
                window.headers("core"),
            )
        if self.budgets.last_minute(token, "core") + 1 > self.options.per_minute["core"]:
            return Response(403, {"message": SECONDARY}, {"retry-after": "60"})
        target = "dispatch" if kind == "dispatch" else "rest"
        if (faulted := self._fault(target)) is not None:
            return faulted
        try:
            result = self._rest_call(kind, method, path, query, body)
        except Rejected as exc:
            result = Response(exc.status, {"message": str(exc)})
        except NotFound:
            result = Response(404, {"message": "Not Found"})
        except Moved as exc:
            result = Response(
                301,
                {
                    "message": "Moved Permanently",
                    "url": exc.location,
                    "documentation_url": "https://docs.github.com/v3/#http-redirects",
                },
                {"location": exc.location},
            )
        except BadRequest:
            result = Response(422, {"message": "Validation Failed"})
        if result.status == 200 and method == "GET":
            etag = '"' + hashlib.sha256(result.content()).hexdigest()[:32] + '"'
            result.headers["etag"] = etag
            if headers.get("if-none-match") == etag:
                return Response(304, None, {"etag": etag, **window.headers("core")})
        window = self.budgets.charge(token, "core", 1)
        result.headers |= {**window.headers("core"), "x-sandbox-points": "1"}
        return result

    def _rest_call(self, kind: str, method: str, path: str, query: dict, body: bytes) -> Response:
        if kind == "dispatch":
            if method != "POST":
                return Response(404, {"message": "Not Found"})
            match = DISPATCH.fullmatch(path)
            assert match is not None
            status, details = self.actions.dispatch(match["repo"], match["file"], body)
            return Response(status, details)
        if kind == "runs":
            match = RUNS.fullmatch(path)
            assert match is not None
            if match["id"]:
                run = self.actions.runs.get(int(match["id"]))
                if run is None or run.repository.lower() != match["repo"].lower():
                    raise NotFound
                return Response(200, run.as_json(self.base_url))
            return Response(200, self.actions.list_runs(match["repo"], query))
        routed = self.rest.route(path) if method == "GET" else None
        if routed is None:
            raise NotFound
        data, extra = self.rest.get(*routed, query, path)
        return Response(200, data, extra)

    def _inngest(self, method: str, path: str, body: bytes) -> Response:
        if method != "POST":
            return Response(405, {"error": "method not allowed", "status": 405})
        if (faulted := self._fault("inngest")) is not None:
            return Response(
                faulted.status, {"error": "service unavailable", "status": faulted.status}
            )
        try:
            ids = self.inngest.send(path.removeprefix("/e/"), body)
        except Rejected as exc:
            return Response(exc.status, {"error": str(exc), "status": exc.status})
        return Response(200, {"ids": ids, "status": 200})

    def _admin(self, method: str, path: str, body: bytes) -> Response:
        if path == "/_sandbox/ledger":
            return Response(
                200, {"entries": self.ledger.as_json(), "summary": self.ledger.summary()}
            )
        if path == "/_sandbox/faults" and method == "POST":
            try:
                self.faults.add(*json.loads(body or b"[]"))
            except (ValueError, TypeError) as exc:
                return Response(400, {"message": str(exc)})
            return Response(204)
        if path == "/_sandbox/faults" and method == "DELETE":
            self.faults.clear()
            return Response(204)
        if path == "/_sandbox/world" and method == "POST":
            return self._change_world(body)
        return Response(404, {"message": "Not Found"})

    def _change_world(self, body: bytes) -> Response:
        """What GitHub moves or takes away, by hand: {"action": ..., its arguments}, e.g.
        {"action": "rename_repository", "full_name": "acme/widgets", "new_name":
        "acme/gizmos"}; a change to a comment or review happens at the sandbox's now."""
        try:
            change = json.loads(body or b"{}")
            action = WORLD_ACTIONS[change.pop("action")]
            args = {k: v for k, v in change.items() if k in action[1]}
            if "at" in action[1]:
                args["at"] = self.clock()
            getattr(self.world, action[0])(**args)
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            return Response(400, {"message": f"cannot change the world: {exc!r}"})
        return Response(204)

    # Ways in.

    def transport(self) -> httpx.MockTransport:
        """An httpx transport that answers from this sandbox, in-process."""

        def handler(request: httpx.Request) -> httpx.Response:
            answer = self.handle(
                request.method, str(request.url), dict(request.headers), request.read()
            )
            return httpx.Response(answer.status, headers=_headers(answer), content=answer.content())

        return httpx.MockTransport(handler)

    def serve(self, host: str = "127.0.0.1", port: int = 0) -> Served:
        """Serves over HTTP in a background thread until `stop()`."""
        sandbox = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body go out in two writes: with Nagle's algorithm the second
            # waits for the client's delayed ACK, 40 ms an answer that GitHub never adds.
            disable_nagle_algorithm = True

            def _answer(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else b""
                answer = sandbox.handle(self.command, self.path, dict(self.headers), body)
                content = answer.content()
                self.send_response(answer.status)
                for key, value in _headers(answer).items():
                    self.send_header(key, value)
                self.send_header("content-length", str(len(content)))
                self.end_headers()
                # The client may have gone away (a killed worker): as GitHub would, shrug.
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    self.wfile.write(content)

            do_GET = do_POST = do_DELETE = _answer

            def log_message(self, *args: Any) -> None:
                pass  # the ledger records every request

        server = CountingServer((host, port), Handler)
        server.daemon_threads = True
        self.base_url = f"http://{host}:{server.server_address[1]}"
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        return Served(server, thread, self.base_url)


class CountingServer(ThreadingHTTPServer):
    """Counts the connections clients open (how many HTTP clients a worker really made)."""

    connections = 0

    def process_request(self, request: Any, client_address: Any) -> None:
        self.connections += 1  # the accepting thread only: no lock needed
        super().process_request(request, client_address)


@dataclass
class Served:
    server: CountingServer
    thread: threading.Thread
    url: str

    @property
    def connections(self) -> int:
        """TCP connections accepted so far."""
        return self.server.connections

    @property
    def urls(self) -> dict[str, str]:
        return {"rest": self.url, "graphql": f"{self.url}/graphql", "inngest": self.url}

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)


def operation_name(document: Any, chosen: str | None) -> str:
    """The name of the operation a document runs (for the ledger)."""
    names = [d.name.value for d in document.definitions if getattr(d, "operation", None) and d.name]
    return chosen or (names[0] if names else "")


def _id(login: str) -> int:
    return int(hashlib.sha1(login.encode()).hexdigest()[:7], 16)


def _error_type(body: Any) -> str:
    errors = body.get("errors") if isinstance(body, dict) else None
    return str(errors[0].get("type", "")) if errors and isinstance(errors[0], dict) else ""


def _token(header: str) -> str:
    scheme, _, value = header.partition(" ")
    return value.strip() if scheme.lower() in ("bearer", "token") else ""


def _headers(answer: Response) -> dict[str, str]:
    headers = dict(answer.headers)
    if answer.body is not None:
        headers.setdefault("content-type", "application/json; charset=utf-8")
    return headers

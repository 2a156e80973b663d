"""POST /graphql: documents executed with graphql-core over the sandbox's world."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Sequence
from datetime import datetime
from importlib import resources
from typing import Any

from graphql import (
    GraphQLError,
    GraphQLSchema,
    TypeInfo,
    TypeInfoVisitor,
    Visitor,
    build_schema,
    execute,
    parse,
    validate,
    visit,
)

from devtools.sandbox import data
from devtools.sandbox.executor import Execution

PAGE_LIMIT = 100
# "lean": devtools.sandbox.executor; "graphql-core": its reference; "compare": both, each
# answer checked against the reference's (which is the one given)
EXECUTORS = ("lean", "graphql-core", "compare")
CHECKED = 512  # documents whose verdict is kept


def load_schema() -> GraphQLSchema:
    sdl = resources.files("devtools.sandbox").joinpath("schema.graphql").read_text()
    schema = build_schema(sdl)
    for name in ("DateTime", "GitTimestamp"):
        schema.type_map[name].coerce_output_value = iso  # type: ignore[attr-defined]
    for name, resolve in (
        ("Actor", _actor_type),
        ("Node", _actor_type),
        ("RepositoryOwner", lambda *_: "Organization"),
    ):
        schema.type_map[name].resolve_type = resolve  # type: ignore[attr-defined]
    return schema


def iso(value: Any) -> str:
    """GitHub's DateTime: whole seconds, UTC, with a Z (isoformat is several times faster
    than strftime, and this is on every timestamp of every answer)."""
    if isinstance(value, datetime):
        return value.replace(microsecond=0, tzinfo=None).isoformat() + "Z"
    return str(value)


def _actor_type(value: Any, *_: Any) -> str:
    return value["__typename"]


def error(message: str, kind: str, path: Sequence[str | int] | None = None) -> GraphQLError:
    return GraphQLError(message, path=path, extensions={"type": kind})


def cursor(index: int) -> str:
    return base64.b64encode(f"cursor:v2:{index}".encode()).decode()


def _index(value: str, name: str) -> int:
    try:
        raw = base64.b64decode(value.encode(), validate=True).decode()
        prefix, _, number = raw.rpartition(":")
        if prefix != "cursor:v2":
            raise ValueError(raw)
        return int(number)
    except ValueError:
        raise error(
            f"`{value}` does not appear to be a valid cursor.", "INVALID_CURSOR_ARGUMENTS"
        ) from None


def connection(items: Callable[[], list], name: str, node: Callable[[Any], Any]) -> Callable:
    """A resolver for a paginated connection over `items()` (built only when queried)."""

    def resolve(
        info: Any,
        first: int | None = None,
        last: int | None = None,
        after: str | None = None,
        before: str | None = None,
        **filters: Any,
    ) -> dict:
        if first is None and last is None:
            raise error(
                f"You must provide a `first` or `last` value to properly paginate the `{name}` "
                "connection.",
                "MISSING_PAGINATION_BOUNDARIES",
            )
        for arg, value in (("first", first), ("last", last)):
            if value is not None and not 1 <= value <= PAGE_LIMIT:
                raise error(
                    f"Requesting {value} records on the `{name}` connection exceeds the `{arg}` "
                    f"limit of {PAGE_LIMIT} records.",
                    "EXCESSIVE_PAGINATION",
                )
        everything = items(**filters) if filters else items()
        start, stop = 0, len(everything)
        if after is not None:
            start = max(start, _index(after, name) + 1)
        if before is not None:
            stop = min(stop, _index(before, name))
        window = range(start, max(start, stop))
        if first is not None:
            window = window[:first]
        if last is not None:
            window = window[-last:]
        nodes = [node(everything[i]) for i in window]
        return {
            "nodes": nodes,
            "totalCount": len(everything),
            "pageInfo": {
                "hasNextPage": bool(window) and window[-1] < len(everything) - 1,
                "hasPreviousPage": bool(window) and window[0] > 0,
                "startCursor": cursor(window[0]) if window else None,
                "endCursor": cursor(window[-1]) if window else None,
            },
        }

    return resolve


def undefined_fields(schema: GraphQLSchema, document: Any) -> list[dict]:
    """GitHub's errors for fields a type does not have: "Field 'x' doesn't exist on type
    'Y'", with extensions code undefinedField and the field's path from the operation."""
    type_info = TypeInfo(schema)
    found: list[dict] = []
    path: list[str] = []

    class Fields(Visitor):
        def enter_operation_definition(self, node: Any, *_: Any) -> None:
            path[:] = [node.operation.value]

        def enter_fragment_definition(self, node: Any, *_: Any) -> None:
            path[:] = [f"fragment {node.name.value}"]

        def enter_field(self, node: Any, *_: Any) -> None:
            name = node.name.value
            path.append(node.alias.value if node.alias else name)
            parent = type_info.get_parent_type()
            fields = getattr(parent, "fields", None)
            if fields is not None and name not in fields and not name.startswith("__"):
                found.append(
                    {
                        "path": list(path),
                        "extensions": {
                            "code": "undefinedField",
                            "typeName": parent.name,
                            "fieldName": name,
                        },
                        "locations": _locations(node),
                        "message": f"Field '{name}' doesn't exist on type '{parent.name}'",
                    }
                )

        def leave_field(self, *_: Any) -> None:
            path.pop()

    visit(document, TypeInfoVisitor(type_info, Fields()))
    return found


def _locations(node: Any) -> list[dict[str, int]]:
    if node.loc is None:
        return []
    where = node.loc.source.get_location(node.loc.start)
    return [{"line": where.line, "column": where.column}]


class GraphQLApi:
    """Builds GraphQL nodes from the world; a `partial` fault's PR fails its field."""

    def __init__(self, world: data.World, base_url: str, executor: str = "lean") -> None:
        if executor not in EXECUTORS:
            raise ValueError(f"executor must be one of {', '.join(EXECUTORS)}, got {executor!r}")
        self.world, self.executor = world, executor
        self.differences: list[dict] = []  # "compare": answers the two executors differ on
        self.base_url = base_url
        self.schema = load_schema()
        self._checked: dict[str, tuple[Any, list[dict]]] = {}

    def run(self, document: Any, variables: dict, operation: str | None, context: dict) -> dict:
        """The document's answer by the executor chosen (see Options.executor)."""
        if self.executor == "lean":
            return self._lean(document, variables, operation, context)
        answer = self._reference(document, variables, operation, context)
        if self.executor == "compare":
            lean = self._lean(document, variables, operation, context)
            if json.dumps(lean, default=str) != json.dumps(answer, default=str):
                self.differences.append({"graphql-core": answer, "lean": lean})
        return answer

    def _lean(self, document: Any, variables: dict, operation: str | None, context: dict) -> dict:
        run = Execution(self.schema, document, self.root(context), variables, operation, context)
        return self.body(run.data, run.errors)

    def _reference(
        self, document: Any, variables: dict, operation: str | None, context: dict
    ) -> dict:
        result = execute(
            self.schema,
            document,
            root_value=self.root(context),
            variable_values=variables,
            operation_name=operation,
            context_value=context,
        )
        return self.body(result.data, result.errors)

    @staticmethod
    def body(data: Any, errors: Sequence[GraphQLError] | None) -> dict:
        body: dict[str, Any] = {"data": data}
        if errors:
            body["errors"] = [
                {
                    "message": e.message,
                    "type": (e.extensions or {}).get("type", "INTERNAL"),
                    "path": e.path,
                    "locations": [loc._asdict() for loc in e.locations or ()],
                }
                for e in errors
            ]
        return body

    def check(self, source: str) -> tuple[Any, list[dict]]:
        """Parses and validates; returns the document or GitHub-style errors. A field the
        schema does not have is refused as GitHub refuses it (undefinedField, its path).
        Clients send the same documents again and again: the verdict is kept per text."""
        found = self._checked.get(source)
        if found is None:
            found = self._check(source)
            if len(self._checked) >= CHECKED:
                self._checked.pop(next(iter(self._checked)))
            self._checked[source] = found
        return found[0], [dict(e) for e in found[1]]

    def _check(self, source: str) -> tuple[Any, list[dict]]:
        try:
            document = parse(source)
        except GraphQLError as exc:
            return None, [{"message": exc.message, "type": "PARSE_ERROR"}]
        unknown = undefined_fields(self.schema, document)
        if unknown:
            return document, unknown
        problems = validate(self.schema, document)
        return document, [{"message": e.message, "type": "INVALID_QUERY"} for e in problems]

    def root(self, context: dict) -> dict:
        return {
            "id": "Q",
            "rateLimit": lambda info, dryRun=False: context["rate_limit"],
            "repository": lambda info, owner, name, followRenames=True: self.repository(
                owner, name, followRenames
            ),
            "node": lambda info, id: self.node(id),
            "nodes": lambda info, ids: [self.node(i) for i in ids],
        }

    def node(self, node_id: str) -> dict | None:
        """A pull request, review thread, repository or account by its node id (None if
        unknown, as on GitHub)."""
        found = self.world.find(node_id)
        if isinstance(found, tuple):
            return {**self.pull(*found, None), "__typename": "PullRequest"}
        if isinstance(found, data.Thread):
            return {**self.thread(found), "__typename": "PullRequestReviewThread"}
        if isinstance(found, data.Repository):
            return {**self.repository_node(found), "__typename": "Repository"}
        if isinstance(found, data.Account):
            return self.actor(found)
        return None

    def repository(self, owner: str, name: str, follow: bool = True) -> dict:
        """A repository by name; an old name of a renamed or transferred one resolves to
        it (as GitHub's followRenames, true by default)."""
        repo, moved = self.world.resolve(f"{owner}/{name}")
        if repo is None or (moved and not follow):
            raise error(
                f"Could not resolve to a Repository with the name '{owner}/{name}'.", "NOT_FOUND"
            )
        return self.repository_node(repo)

    def repository_node(self, repo: data.Repository) -> dict:

        def pulls(
            states: list[str] | None = None,
            orderBy: dict | None = None,
            labels: list[str] | None = None,
            baseRefName: str | None = None,
            headRefName: str | None = None,
        ) -> list:
            found = list(repo.pulls.values())
            if states:
                found = [p for p in found if p.state in states]
            if labels:
                found = [p for p in found if {lab[1] for lab in p.labels} & set(labels)]
            if baseRefName:
                found = [p for p in found if p.base_ref == baseRefName]
            if headRefName:
                found = [p for p in found if p.head_ref == headRefName]
            order = orderBy or {"field": "CREATED_AT", "direction": "ASC"}
            key = {
                "CREATED_AT": lambda p: (p.created_at, p.number),
                "UPDATED_AT": lambda p: (p.updated_at, p.number),
                "COMMENTS": lambda p: (len(p.comments), p.number),
            }[order["field"]]
            return sorted(found, key=key, reverse=order["direction"] == "DESC")

        def one(info: Any, number: int) -> dict:
            if number not in repo.pulls:
                raise error(
                    f"Could not resolve to a PullRequest with the number of {number}.", "NOT_FOUND"
                )
            return self.pull(repo, repo.pulls[number], info.context)

        return {
            "id": repo.node_id,
            "databaseId": repo.database_id,
            "name": repo.name,
            "nameWithOwner": repo.full_name,
            "createdAt": repo.created_at,
            "updatedAt": lambda info: max(
                (p.updated_at for p in repo.pulls.values()), default=repo.created_at
            ),  # when asked: a monorepo's is a walk over every pull request
            "isPrivate": False,
            "isArchived": False,
            "isFork": False,
            "description": f"The {repo.name} repository",
            "stargazerCount": 0,
            "url": f"{self.base_url}/{repo.full_name}",
            "owner": {
                "__typename": "Organization",
                "id": f"O_{repo.owner}",
                "login": repo.owner,
                "url": f"{self.base_url}/{repo.owner}",
                "avatarUrl": self.avatar(repo.owner),
            },
            "pullRequests": connection(pulls, "pullRequests", lambda p: self.pull(repo, p, None)),
            "pullRequest": one,
        }

    def avatar(self, login: str, size: int | None = None) -> Callable:
        return lambda info=None, size=None: f"{self.base_url}/avatars/{login}"

    def actor(self, account: data.Account | None) -> dict | None:
        if account is None:
            return None
        return {
            "__typename": account.kind,
            "id": account.node_id,
            "databaseId": account.database_id,
            "login": account.login,
            "name": account.name,
            "url": f"{self.base_url}/{account.login}",
            "avatarUrl": self.avatar(account.login),
        }

    def pull(self, repo: data.Repository, pr: data.PullRequest, _: Any) -> dict:
        def failing(name: str, resolve: Callable) -> Callable:
            """The field, failing while a "partial" fault names it for this PR."""

            def field(info: Any, **kwargs: Any) -> dict:
                if (pr.number, name) in info.context["partial"]:
                    raise error("Something went wrong while executing your query.", "INTERNAL")
                return resolve(info, **kwargs)

            return field

        files = failing("files", connection(lambda: pr.files, "files", self.file))

        def reviews(states: list[str] | None = None) -> list:
            return [r for r in pr.reviews if not states or r.state in states]

        decided = [r.state for r in pr.reviews if r.state in ("APPROVED", "CHANGES_REQUESTED")]

        return {
            "id": pr.node_id,
            "databaseId": pr.database_id,
            "number": pr.number,
            "title": pr.title,
            "body": pr.body,
            "state": pr.state,
            "isDraft": pr.is_draft,
            "createdAt": pr.created_at,
            "updatedAt": pr.updated_at,
            "closedAt": pr.closed_at,
            "closed": pr.state != "OPEN",
            "authorAssociation": data.association(pr.author),
            "reviewDecision": decided[-1] if decided else "REVIEW_REQUIRED",
            "totalCommentsCount": len(pr.comments) + len(pr.review_comments),
            "baseRefOid": data.sha(f"{repo.full_name}@{pr.base_ref}"),
            "mergedAt": pr.merged_at,
            "merged": pr.merged_at is not None,
            "additions": pr.additions,
            "deletions": pr.deletions,
            "changedFiles": len(pr.files),
            "url": f"{self.base_url}/{repo.full_name}/pull/{pr.number}",
            "baseRefName": pr.base_ref,
            "headRefName": pr.head_ref,
            "headRefOid": pr.head_oid,
            "author": self.actor(pr.author),
            "mergedBy": self.actor(pr.merged_by),
            "mergeCommit": {"oid": pr.merge_commit_oid} if pr.merge_commit_oid else None,
            "labels": connection(lambda: pr.labels, "labels", self.label),
            "reviews": connection(reviews, "reviews", lambda r: self.review(repo, pr, r)),
            "comments": failing(
                "comments", connection(lambda: pr.comments, "comments", self.comment)
            ),
            "reviewThreads": connection(lambda: pr.threads, "reviewThreads", self.thread),
            "files": files,
            "commits": connection(lambda: pr.commits, "commits", self.commit),
        }

    def label(self, label: tuple[int, str, str]) -> dict:
        return {"id": f"LA_{label[0]}", "name": label[1], "color": label[2], "description": None}

    def review(self, repo: data.Repository, pr: data.PullRequest, r: data.Review) -> dict:
        mine = [c for c in pr.review_comments if c.review_id == r.database_id]
        return {
            "id": f"PRR_{r.database_id}",
            "databaseId": r.database_id,
            "state": r.state,
            "author": self.actor(r.author),
            "authorAssociation": data.association(r.author),
            "body": r.body,
            "submittedAt": r.submitted_at,
            "createdAt": r.created_at,
            "url": f"{self.base_url}/{repo.full_name}/pull/{pr.number}"
            f"#pullrequestreview-{r.database_id}",
            "commit": self.commit(pr.commits[-1])["commit"] if pr.commits else None,
            "comments": connection(lambda: mine, "comments", self.comment),
        }

    def comment(self, c: data.Comment) -> dict:
        prefix = "IC" if c.path is None else "PRRC"
        node = {
            "id": f"{prefix}_{c.database_id}",
            "databaseId": c.database_id,
            "body": c.body,
            "author": self.actor(c.author),
            "authorAssociation": data.association(c.author),
            "createdAt": c.created_at,
            "updatedAt": c.updated_at,
            "url": f"{self.base_url}/comments/{c.database_id}",
            "path": c.path,
            "line": c.line,
            "originalLine": c.original_line,
            "replyTo": {"id": f"PRRC_{c.reply_to}", "databaseId": c.reply_to}
            if c.reply_to
            else None,
            "pullRequestReview": {"id": f"PRR_{c.review_id}", "databaseId": c.review_id}
            if c.review_id
            else None,
        }
        return node

    def thread(self, t: data.Thread) -> dict:
        return {
            "id": f"PRRT_{t.database_id}",
            "path": t.path,
            "line": t.line,
            "isResolved": t.is_resolved,
            "isCollapsed": t.is_resolved,
            "isOutdated": False,
            "originalLine": t.line,
            "diffSide": "RIGHT",
            "comments": connection(lambda: t.comments, "comments", self.comment),
        }

    def file(self, f: data.File) -> dict:
        return {
            "path": f.path,
            "additions": f.additions,
            "deletions": f.deletions,
            "changeType": f.change_type,
        }

    def commit(self, c: data.Commit) -> dict:
        return {
            "id": f"PRC_{c.oid[:12]}",
            "commit": {
                "id": f"C_{c.oid}",
                "oid": c.oid,
                "message": c.message,
                "committedDate": c.committed_at,
                "authoredDate": c.authored_at,
                "additions": c.additions,
                "deletions": c.deletions,
                "author": {
                    "name": c.author_name,
                    "email": c.author_email,
                    "date": c.authored_at,
                    "user": self.actor(c.author) if c.author and c.author.kind == "User" else None,
                },
            },
        }

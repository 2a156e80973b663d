"""GitHub's REST object shapes, whole: every field GitHub's OpenAPI description requires
(the tests parse each answer with githubkit's generated models), built from the world."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from devtools.sandbox import data

GHOST = data.Account(10137, "ghost", "User", "Deleted user")
# (field, path after /repos/{full_name}) of a repository's URL templates, as GitHub serves them
REPO_URLS = (
    ("archive_url", "/{archive_format}{/ref}"),
    ("assignees_url", "/assignees{/user}"),
    ("blobs_url", "/git/blobs{/sha}"),
    ("branches_url", "/branches{/branch}"),
    ("collaborators_url", "/collaborators{/collaborator}"),
    ("comments_url", "/comments{/number}"),
    ("commits_url", "/commits{/sha}"),
    ("compare_url", "/compare/{base}...{head}"),
    ("contents_url", "/contents/{+path}"),
    ("contributors_url", "/contributors"),
    ("deployments_url", "/deployments"),
    ("downloads_url", "/downloads"),
    ("events_url", "/events"),
    ("forks_url", "/forks"),
    ("git_commits_url", "/git/commits{/sha}"),
    ("git_refs_url", "/git/refs{/sha}"),
    ("git_tags_url", "/git/tags{/sha}"),
    ("hooks_url", "/hooks"),
    ("issue_comment_url", "/issues/comments{/number}"),
    ("issue_events_url", "/issues/events{/number}"),
    ("issues_url", "/issues{/number}"),
    ("keys_url", "/keys{/key_id}"),
    ("labels_url", "/labels{/name}"),
    ("languages_url", "/languages"),
    ("merges_url", "/merges"),
    ("milestones_url", "/milestones{/number}"),
    ("notifications_url", "/notifications{?since,all,participating}"),
    ("pulls_url", "/pulls{/number}"),
    ("releases_url", "/releases{/id}"),
    ("stargazers_url", "/stargazers"),
    ("statuses_url", "/statuses/{sha}"),
    ("subscribers_url", "/subscribers"),
    ("subscription_url", "/subscription"),
    ("tags_url", "/tags"),
    ("teams_url", "/teams"),
    ("trees_url", "/git/trees{/sha}"),
)


def iso(value: datetime | None) -> str | None:
    return None if value is None else value.strftime("%Y-%m-%dT%H:%M:%SZ")


class Shapes:
    """Builds REST objects; `base` is the sandbox's URL (API and web alike)."""

    def __init__(self, base: str) -> None:
        self.base = base

    def user(self, account: data.Account | None, owner: str | None = None) -> dict[str, Any]:
        """A SimpleUser; a deleted account is GitHub's `ghost`, an owner an Organization."""
        if owner is not None:
            login, uid, node, kind = owner, _owner_id(owner), f"O_{owner}", "Organization"
        else:
            account = account or GHOST
            login, uid, node = account.login, account.database_id, account.node_id
            kind = account.kind
        api = f"{self.base}/users/{login}"
        return {
            "login": login,
            "id": uid,
            "node_id": node,
            "avatar_url": f"{self.base}/avatars/{login}",
            "gravatar_id": "",
            "url": api,
            "html_url": f"{self.base}/{login}",
            "followers_url": f"{api}/followers",
            "following_url": f"{api}/following{{/other_user}}",
            "gists_url": f"{api}/gists{{/gist_id}}",
            "starred_url": f"{api}/starred{{/owner}}{{/repo}}",
            "subscriptions_url": f"{api}/subscriptions",
            "organizations_url": f"{api}/orgs",
            "repos_url": f"{api}/repos",
            "events_url": f"{api}/events{{/privacy}}",
            "received_events_url": f"{api}/received_events",
            "type": kind,
            "user_view_type": "public",
            "site_admin": False,
        }

    def repository(self, repo: data.Repository, full: bool = False) -> dict[str, Any]:
        """A Repository (as nested in pull requests), or a FullRepository."""
        api = f"{self.base}/repos/{repo.full_name}"
        pushed = max((p.updated_at for p in repo.pulls.values()), default=repo.created_at)
        body: dict[str, Any] = {
            "id": repo.database_id,
            "node_id": repo.node_id,
            "name": repo.name,
            "full_name": repo.full_name,
            "private": False,
            "owner": self.user(None, owner=repo.owner),
            "html_url": f"{self.base}/{repo.full_name}",
            "description": f"The {repo.name} repository",
            "fork": False,
            "url": api,
            **{name: api + suffix for name, suffix in REPO_URLS},
            "git_url": f"git://sandbox.invalid/{repo.full_name}.git",
            "ssh_url": f"git@sandbox.invalid:{repo.full_name}.git",
            "clone_url": f"{self.base}/{repo.full_name}.git",
            "svn_url": f"{self.base}/{repo.full_name}",
            "mirror_url": None,
            "homepage": None,
            "language": "Python",
            "forks_count": 0,
            "forks": 0,
            "stargazers_count": 0,
            "watchers_count": 0,
            "watchers": 0,
            "size": 1024,
            "default_branch": "main",
            "open_issues_count": sum(p.state == "OPEN" for p in repo.pulls.values()),
            "open_issues": sum(p.state == "OPEN" for p in repo.pulls.values()),
            "is_template": False,
            "topics": [],
            "has_issues": True,
            "has_projects": True,
            "has_wiki": False,
            "has_pages": False,
            "has_downloads": True,
            "has_discussions": False,
            "archived": False,
            "disabled": False,
            "visibility": "public",
            "pushed_at": iso(pushed),
            "created_at": iso(repo.created_at),
            "updated_at": iso(pushed),
            "license": None,
        }
        if full:
            body |= {"subscribers_count": 0, "network_count": 0, "temp_clone_token": None}
        return body

    def named_repository(self, full_name: str) -> dict[str, Any]:
        """A repository that is not part of the world (the Actions repository)."""
        owner, name = full_name.split("/")
        created = datetime(2020, 1, 1, tzinfo=UTC)
        return self.repository(data.Repository(_owner_id(full_name), owner, name, created))

    def label(self, repo: data.Repository, label: tuple[int, str, str]) -> dict[str, Any]:
        number, name, color = label
        return {
            "id": number,
            "node_id": f"LA_{number}",
            "url": f"{self.base}/repos/{repo.full_name}/labels/{name}",
            "name": name,
            "description": None,
            "color": color,
            "default": False,
            "archived_by": None,
        }

    def pull(self, repo: data.Repository, pr: data.PullRequest, full: bool = False) -> dict:
        """A PullRequestSimple (the list), or a PullRequest (one, with its counts)."""
        api = f"{self.base}/repos/{repo.full_name}"
        web = f"{self.base}/{repo.full_name}/pull/{pr.number}"
        links = {
            "self": f"{api}/pulls/{pr.number}",
            "html": web,
            "issue": f"{api}/issues/{pr.number}",
            "comments": f"{api}/issues/{pr.number}/comments",
            "review_comments": f"{api}/pulls/{pr.number}/comments",
            "review_comment": f"{api}/pulls/comments{{/number}}",
            "commits": f"{api}/pulls/{pr.number}/commits",
            "statuses": f"{api}/statuses/{pr.head_oid}",
        }
        author = self.user(pr.author)
        body = {
            "url": links["self"],
            "id": pr.database_id,
            "node_id": pr.node_id,
            "html_url": web,
            "diff_url": f"{web}.diff",
            "patch_url": f"{web}.patch",
            "issue_url": links["issue"],
            "commits_url": links["commits"],
            "review_comments_url": links["review_comments"],
            "review_comment_url": links["review_comment"],
            "comments_url": links["comments"],
            "statuses_url": links["statuses"],
            "number": pr.number,
            "state": "open" if pr.state == "OPEN" else "closed",
            "locked": False,
            "title": pr.title,
            "user": author,
            "body": pr.body or None,
            "labels": [self.label(repo, label) for label in pr.labels],
            "milestone": None,
            "active_lock_reason": None,
            "created_at": iso(pr.created_at),
            "updated_at": iso(pr.updated_at),
            "closed_at": iso(pr.closed_at),
            "merged_at": iso(pr.merged_at),
            "merge_commit_sha": pr.merge_commit_oid,
            "assignee": None,
            "assignees": [],
            "requested_reviewers": [],
            "requested_teams": [],
            "head": self.ref(repo, pr.head_ref, pr.head_oid, author),
            "base": self.ref(repo, pr.base_ref, data.sha(f"{repo.full_name}@{pr.base_ref}")),
            "_links": {name: {"href": href} for name, href in links.items()},
            "author_association": self.association(pr.author),
            "auto_merge": None,
            "draft": pr.is_draft,
        }
        if full:
            body |= {
                "merged": pr.merged_at is not None,
                "mergeable": None if pr.state != "OPEN" else True,
                "rebaseable": None if pr.state != "OPEN" else True,
                "mergeable_state": "clean" if pr.state == "OPEN" else "unknown",
                "merged_by": self.user(pr.merged_by) if pr.merged_by else None,
                "comments": len(pr.comments),
                "review_comments": len(pr.review_comments),
                "maintainer_can_modify": False,
                "commits": len(pr.commits),
                "additions": pr.additions,
                "deletions": pr.deletions,
                "changed_files": len(pr.files),
            }
        return body

    def ref(self, repo: data.Repository, ref: str, sha: str, user: dict | None = None) -> dict:
        return {
            "label": f"{repo.owner}:{ref}",
            "ref": ref,
            "sha": sha,
            "user": user or self.user(None, owner=repo.owner),
            "repo": self.repository(repo),
        }

    def association(self, account: data.Account | None) -> str:
        return data.association(account)

    def review(self, repo: data.Repository, pr: data.PullRequest, r: data.Review) -> dict:
        web = f"{self.base}/{repo.full_name}/pull/{pr.number}#pullrequestreview-{r.database_id}"
        pull = f"{self.base}/repos/{repo.full_name}/pulls/{pr.number}"
        body = {
            "id": r.database_id,
            "node_id": f"PRR_{r.database_id}",
            "user": self.user(r.author),
            "body": r.body,
            "state": r.state,
            "html_url": web,
            "pull_request_url": pull,
            "_links": {"html": {"href": web}, "pull_request": {"href": pull}},
            "commit_id": pr.head_oid,
            "author_association": self.association(r.author),
        }
        if r.submitted_at is not None:  # a pending review has not been submitted
            body["submitted_at"] = iso(r.submitted_at)
        return body

    def review_comment(self, repo: data.Repository, pr: data.PullRequest, c: data.Comment) -> dict:
        api = f"{self.base}/repos/{repo.full_name}"
        url = f"{api}/pulls/comments/{c.database_id}"
        web = f"{self.base}/{repo.full_name}/pull/{pr.number}#discussion_r{c.database_id}"
        pull = f"{api}/pulls/{pr.number}"
        body = {
            "url": url,
            "pull_request_review_id": c.review_id,
            "id": c.database_id,
            "node_id": f"PRRC_{c.database_id}",
            "diff_hunk": f"@@ -{c.line or 1},3 +{c.line or 1},4 @@",
            "path": c.path,
            "position": c.line,
            "original_position": c.original_line,
            "commit_id": pr.head_oid,
            "original_commit_id": pr.head_oid,
            "user": self.user(c.author),
            "body": c.body,
            "created_at": iso(c.created_at),
            "updated_at": iso(c.updated_at),
            "html_url": web,
            "pull_request_url": pull,
            "author_association": self.association(c.author),
            "_links": {
                "self": {"href": url},
                "html": {"href": web},
                "pull_request": {"href": pull},
            },
            "line": c.line,
            "original_line": c.original_line,
            "side": "RIGHT",
            "subject_type": "line",
        }
        if c.reply_to is not None:
            body["in_reply_to_id"] = c.reply_to
        return body

    def issue_comment(self, repo: data.Repository, pr: data.PullRequest, c: data.Comment) -> dict:
        api = f"{self.base}/repos/{repo.full_name}"
        web = f"{self.base}/{repo.full_name}/pull/{pr.number}"
        return {
            "id": c.database_id,
            "node_id": f"IC_{c.database_id}",
            "url": f"{api}/issues/comments/{c.database_id}",
            "html_url": f"{web}#issuecomment-{c.database_id}",
            "body": c.body,
            "user": self.user(c.author),
            "created_at": iso(c.created_at),
            "updated_at": iso(c.updated_at),
            "issue_url": f"{api}/issues/{pr.number}",
            "author_association": self.association(c.author),
        }

    def diff_entry(self, repo: data.Repository, pr: data.PullRequest, f: data.File) -> dict:
        blob = data.sha(f"{pr.head_oid}:{f.path}")
        body = {
            "sha": blob,
            "filename": f.path,
            "status": STATUS[f.change_type],
            "additions": f.additions,
            "deletions": f.deletions,
            "changes": f.additions + f.deletions,
            "blob_url": f"{self.base}/{repo.full_name}/blob/{pr.head_oid}/{f.path}",
            "raw_url": f"{self.base}/{repo.full_name}/raw/{pr.head_oid}/{f.path}",
            "contents_url": f"{self.base}/repos/{repo.full_name}/contents/{f.path}"
            f"?ref={pr.head_oid}",
        }
        if f.previous_path:
            body["previous_filename"] = f.previous_path
        return body

    def commit(self, repo: data.Repository, c: data.Commit) -> dict:
        api = f"{self.base}/repos/{repo.full_name}"
        person = self.user(c.author) if c.author and c.author.kind == "User" else None
        tree = data.sha(f"tree:{c.oid}")
        return {
            "url": f"{api}/commits/{c.oid}",
            "sha": c.oid,
            "node_id": f"C_{c.oid}",
            "html_url": f"{self.base}/{repo.full_name}/commit/{c.oid}",
            "comments_url": f"{api}/commits/{c.oid}/comments",
            "commit": {
                "url": f"{api}/git/commits/{c.oid}",
                "author": {
                    "name": c.author_name,
                    "email": c.author_email,
                    "date": iso(c.authored_at),
                },
                "committer": {
                    "name": c.author_name,
                    "email": c.author_email,
                    "date": iso(c.committed_at),
                },
                "message": c.message,
                "comment_count": 0,
                "tree": {"sha": tree, "url": f"{api}/git/trees/{tree}"},
            },
            "author": person,
            "committer": person,
            "parents": [],
        }


STATUS = {
    "ADDED": "added",
    "DELETED": "removed",
    "MODIFIED": "modified",
    "RENAMED": "renamed",
    "COPIED": "copied",
    "CHANGED": "changed",
}


def _owner_id(login: str) -> int:
    return int(data.sha(f"owner:{login}")[:7], 16)

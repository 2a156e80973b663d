"""The layout shows the architecture: dependencies point one way (bin -> capture.cli ->
capture -> jobstore; devtools -> product), click only in the CLI package, the pure core
does no I/O, every package is installed and names its public surface."""

from __future__ import annotations

import ast
import configparser
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import capture
import capture.api
import capture.fetch
import capture.github
import capture.handlers
import capture.ops
import jobstore
from devtools import modgraph
from tests.conftest import ROOT

PRODUCT = ("jobstore", "capture")
PURE = [
    "jobstore/domain.py",
    "jobstore/routing.py",
    "jobstore/spec.py",
    "capture/records.py",
    "capture/github/cost.py",
    "capture/github/budgets.py",
    "capture/fetch/shape.py",
    "capture/jobtypes.py",
    "capture/freshness/rules.py",
    "jobstore/rollout.py",
]
IO_MODULES = {"psycopg", "httpx", "click", "socket", "subprocess", "requests", "os", "flask"}


def imported(path: Path) -> set[str]:
    """Every module a file imports, by its full dotted name."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def tops(path: Path) -> set[str]:
    return {name.split(".")[0] for name in imported(path)}


def files(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


@pytest.mark.parametrize("module", PURE)
def test_pure_modules_do_no_io_and_read_no_configuration(module):
    names = imported(ROOT / module)
    assert not {n.split(".")[0] for n in names} & IO_MODULES
    assert not {n for n in names if n.endswith(".settings") or n.endswith(".db")}


def test_jobstore_never_imports_capture():
    for path in files("jobstore"):
        assert "capture" not in tops(path), path


def test_the_product_never_imports_the_rig():
    for package in PRODUCT:
        for path in files(package):
            assert not tops(path) & {"devtools", "tests", "yaml", "procrastinate"}, path


def test_click_only_in_the_cli_package():
    for package in PRODUCT:
        for path in files(package):
            if (ROOT / "capture" / "cli") not in path.parents:
                assert "click" not in tops(path), path


def test_the_library_never_imports_the_scripts():
    for package in PRODUCT:
        for path in files(package):
            if (ROOT / "capture" / "cli") not in path.parents:
                assert not {n for n in imported(path) if n.startswith("capture.cli")}, path


def test_bin_scripts_are_thin_shims():
    for path in (ROOT / "bin").iterdir():
        if path.is_dir():  # __pycache__ of _shim.py
            continue
        lines = [line for line in path.read_text().splitlines() if line.strip()]
        if path.name == "_shim.py":  # finds the project's environment: standard library only
            assert tops(path) <= set(sys.stdlib_module_names), tops(path)
        else:
            assert len(lines) <= 12, f"{path.name} holds logic; move it into a package"


def test_every_product_package_is_installed_and_the_rig_is_not():
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    listed = set(config["options"]["packages"].split())
    found = {
        ".".join(p.parent.relative_to(ROOT).parts)
        for package in PRODUCT
        for p in (ROOT / package).rglob("__init__.py")
    }
    assert listed == found | {"jobstore.schema"}
    assert not any(name.startswith("devtools") for name in listed)
    assert "pyyaml" not in config["options"]["install_requires"]


def test_no_import_circle_among_product_modules():
    assert modgraph.circles(modgraph.graph()) == []


def test_no_import_goes_up_the_layers():
    """Foundations (errors, settings, records) never import features (freshness, ...)."""
    assert modgraph.upward(modgraph.graph()) == []


def test_only_the_database_module_opens_connections():
    """One component owns connections (jobstore.db.Database); every holder is given one."""
    assert {site.split(":")[0] for site in modgraph.connection_sites()} == {"jobstore.db"}


def test_no_sql_on_job_heads_outside_the_job_store():
    """capture asks the store (active, children, stuck, head, ...), never its tables."""
    for path in files("capture"):
        assert "job_heads" not in path.read_text(), path


def test_capture_uses_only_the_job_stores_front_door():
    """capture imports `from jobstore import ...` only, and only names in its __all__."""
    exported = set(jobstore.__all__)
    for path in files("capture"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                assert not any(a.name.startswith("jobstore") for a in node.names), path
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("jobstore"):
                assert node.module == "jobstore", f"{path}: from {node.module} import ..."
                names = {alias.name for alias in node.names}
                assert names <= exported, f"{path}: {sorted(names - exported)}"


def test_the_environment_is_read_only_by_settings_modules_and_scripts():
    """Each package's settings in one place: its settings.py (scripts read their own)."""
    for package in PRODUCT:
        for path in files(package):
            if path.name == "settings.py" or (ROOT / "capture" / "cli") in path.parents:
                continue
            reads = [
                node
                for node in ast.walk(ast.parse(path.read_text()))
                if isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id == "os"
                and node.attr in ("environ", "getenv")
            ]
            assert not reads, path


def test_no_fmt_skip_in_the_code():
    for package in (*PRODUCT, "devtools", "tests"):
        for path in files(package):
            assert "fmt: " + "skip" not in path.read_text(), path


@pytest.mark.parametrize(
    ("package", "names"),
    [
        (
            jobstore,
            "FINAL GITHUB_EPOCH INNGEST_EVENT LANES MAX_DAYS PRIORITIES SECONDS_BOUNDS STOPPED "
            "TRIGGERS "
            "AmbiguousJobId Ask "
            "Claim ConfigError Database DatabaseReadOnly DatabaseRefused DatabaseUnavailable "
            "Dispatcher EmbeddedServer Enqueued HealthSettings Hint InvalidSpec "
            "InvalidTransition Job JobNotFound JobUnreadable JobSpec JobStore JobStoreError "
            "JobViews "
            "LanePrice LaneSettings Patient RetryPolicy Rollout Route RoutingSettings Secret "
            "Sent Settings Status Submitted SweepReport Wakeup application_name audit_fields "
            "batchable "
            "catch_up database_url decide fingerprint load_prices load_settings migrate "
            "number open_store open_views parse_repository plan_matrix project_forever reads "
            "archive "
            "rollbacks sweep watch",
        ),
        (
            capture,
            "HANDLERS AccessDenied CaptureError CaptureSettings GitHub GitHubFactory Intake "
            "ItemsFailed NetworkError NotFound QueryFailed RateLimited Result Runner ServerError "
            "Storage capable connect load_settings query_cost run_claimed run_job take work",
        ),
        (
            capture.github,
            "Budget GitHub GitHubFactory GraphQLClient Meter RestClient Session connect",
        ),
        (capture.handlers, "HANDLERS Context Handler Outcome Progress capable"),
        (capture.api, "ApiSettings Context create_app"),
        (capture.ops, "Health Oversight RULES oversee render snapshot"),
    ],
)
def test_public_surface_is_pinned(package, names):
    assert sorted(package.__all__) == sorted(names.split())
    for name in package.__all__:
        assert hasattr(package, name), name


@pytest.mark.slow
def test_the_wheel_holds_the_product_and_its_schema_but_not_the_rig(tmp_path):
    subprocess.run(
        [
            *(sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps"),
            *("--no-build-isolation", "--disable-pip-version-check", "-w", str(tmp_path), ROOT),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = tmp_path.glob("prcapture-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    tops = {name.split("/")[0] for name in names if not name.startswith("prcapture-")}
    assert tops == {"jobstore", "capture"}
    schema = sorted(n.rsplit("/", 1)[1] for n in names if n.startswith("jobstore/schema/"))
    assert [n for n in schema if n.endswith(".sql")] == sorted(
        p.name for p in (ROOT / "schema").glob("*.sql")
    )
    assert "capture/queries/PullRequestsByIds.graphql" in names
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    scripts = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "prcapture-jobs" in scripts
    assert "devtools" not in scripts


def test_the_lock_file_pins_every_requirement_within_its_range():
    """requirements.lock (pip-compile --generate-hashes setup.cfg) is what the workflows
    install; regenerate it when install_requires changes."""
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    pinned = dict(
        line.split(" ", 1)[0].split("==")
        for line in (ROOT / "requirements.lock").read_text().splitlines()
        if "==" in line and not line.startswith((" ", "#"))
    )
    pinned = {canonicalize_name(name): version for name, version in pinned.items()}
    for line in config["options"]["install_requires"].split("\n"):
        if line.strip():
            requirement = Requirement(line)
            name = canonicalize_name(requirement.name)
            assert name in pinned, f"{name} is not in requirements.lock"
            assert requirement.specifier.contains(pinned[name]), (name, pinned[name])

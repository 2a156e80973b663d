"""The embedded server, migrations and connection settings."""

from __future__ import annotations

import json
import multiprocessing
from pathlib import Path

import psycopg
import pytest
from click.testing import CliRunner

import jobstore
from capture.cli.db import db_group
from jobstore import db, migrations, settings
from jobstore.embedded import Server
from jobstore.errors import ConfigError, DatabaseUnavailable
from tests.conftest import ROOT, assert_refused


def start_server(home: str) -> str:
    return Server(Path(home)).start()


@pytest.fixture(scope="module")
def fresh_home(tmp_path_factory) -> Server:
    home = tmp_path_factory.mktemp("home")
    yield home
    Server(home).stop()


@pytest.mark.slow
def test_two_processes_starting_at_once_get_one_server(fresh_home):
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(2) as pool:
        urls = pool.map(start_server, [str(fresh_home)] * 2)
    assert urls[0] == urls[1]
    with psycopg.connect(urls[0]) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
    log = (fresh_home / "server.log").read_text()
    assert log.count("ready to accept connections") == 1  # one initdb, one start


@pytest.mark.slow
def test_cli_status_stop_and_start(fresh_home):
    env = {"JOBSTORE_HOME": str(fresh_home), "DATABASE_URL": ""}
    runner = CliRunner()
    Server(fresh_home).start()
    status = runner.invoke(db_group, ["status", "--json"], env=env)
    assert status.exit_code == 0, status.output
    assert json.loads(status.output)["running"] is True
    assert runner.invoke(db_group, ["stop"], env=env).output.strip() == "stopped"
    assert runner.invoke(db_group, ["stop"], env=env).output.strip() == "not running"
    down = runner.invoke(db_group, ["status", "--json"], env=env)
    assert (down.exit_code, json.loads(down.output)["running"]) == (1, False)
    started = runner.invoke(db_group, ["start"], env=env)
    assert started.exit_code == 0, started.output
    assert started.stdout.strip() == Server(fresh_home).url()
    migrate = runner.invoke(db_group, ["migrate"], env=env)
    assert migrate.stdout.strip() == "up to date"


def test_migrate_applies_each_file_once(database_url):
    assert jobstore.migrate(database_url) == []
    with psycopg.connect(database_url) as conn:
        names = [r[0] for r in conn.execute("SELECT name FROM schema_migrations ORDER BY name")]
    assert names == [f.name for f in migrations.schema_files()]


def test_schema_files_are_package_data_and_every_sql_file_is_applied():
    """Every .sql file in schema/ is numbered and found as package data, in order."""
    on_disk = sorted(p.name for p in (ROOT / "schema").glob("*.sql"))
    assert on_disk
    assert [f.name for f in migrations.schema_files()] == on_disk
    assert all(name[:3].isdigit() and name[3] == "_" for name in on_disk)


def test_eventsourcing_env_comes_from_the_url():
    env = db.eventsourcing_env("postgresql://u:secret@db.example:6543/jobs", pool_size=3)
    assert env["POSTGRES_HOST"] == "db.example"
    assert env["POSTGRES_PORT"] == "6543"
    assert env["POSTGRES_DBNAME"] == "jobs"
    assert env["POSTGRES_USER"] == "u"
    assert env["POSTGRES_PASSWORD"] == "secret"
    assert (env["POSTGRES_POOL_SIZE"], env["POSTGRES_MAX_OVERFLOW"]) == ("1", "2")  # at most 3
    assert env["POSTGRES_ENABLE_DB_FUNCTIONS"] == "n"


def test_unreachable_database_is_one_clean_line():
    with pytest.raises(DatabaseUnavailable) as err:
        jobstore.migrate("postgresql://nobody@127.0.0.1:1/nothing")
    assert str(err.value).startswith("cannot connect to PostgreSQL:")
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"DATABASE_URL": "mysql://x"}, "DATABASE_URL must start with postgresql://"),
        ({"JOBSTORE_LEASE_LOCAL": "soon"}, "JOBSTORE_LEASE_LOCAL must be a number, got 'soon'"),
        ({"JOBSTORE_MAX_ATTEMPTS": "0"}, "JOBSTORE_MAX_ATTEMPTS must be at least 1, got '0'"),
    ],
)
def test_bad_configuration_is_named(env, message):
    with pytest.raises(ConfigError, match=message):
        settings.load(env)
    result = CliRunner().invoke(db_group, ["url"], env=env)
    assert result.exit_code == 2
    assert message in result.output


def test_every_command_has_help():
    for name in [None, *db_group.commands]:
        args = ["--help"] if name is None else [name, "--help"]
        result = CliRunner().invoke(db_group, args)
        assert result.exit_code == 0
        assert "Usage:" in result.output


def test_db_status_exits_1_when_the_external_server_does_not_answer():
    env = {"DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none?connect_timeout=2"}
    result = CliRunner().invoke(db_group, ["status", "--json"], env=env)
    assert (result.exit_code, json.loads(result.output)["running"]) == (1, False)


def test_the_default_home_is_the_nearest_jobstore_folder_above(tmp_path):
    project = tmp_path / "project"
    (project / ".jobstore").mkdir(parents=True)
    deep = project / "src" / "deeper"
    deep.mkdir(parents=True)
    assert settings.find_home(deep) == project / ".jobstore"
    assert settings.load({}).home == settings.find_home(Path.cwd())


def test_a_new_cluster_says_where_it_is_created(tmp_path, caplog):
    home = tmp_path / "elsewhere"
    try:
        Server(home).start()
    finally:
        Server(home).stop()
    assert f"no PostgreSQL cluster in {home / 'data'}" in caplog.text


def test_no_embedded_server_on_github_actions(tmp_path):
    config = settings.load({"GITHUB_ACTIONS": "true", "JOBSTORE_HOME": str(tmp_path)})
    with pytest.raises(ConfigError, match="DATABASE_URL is not set: on GitHub Actions"):
        db.database_url(config)
    assert not any(tmp_path.iterdir())  # nothing was created
    result = CliRunner().invoke(
        db_group, ["url"], env={"GITHUB_ACTIONS": "true", "DATABASE_URL": ""}
    )
    assert_refused(result, "DATABASE_URL is not set: on GitHub Actions")

"""The Dagster instance on PostgreSQL (``dagster_home/dagster-postgres.yaml``) against a real server:
concurrent CLI materializations of several recipes and one schedule tick through the daemon, with
nothing lost (every run's events stored, every asset materialized once).

The server is Debian's ``postgresql`` package (``.ci/run`` installs it), started in a temporary
data directory on a free local port. PostgreSQL refuses to run as root, and CI runs as root, so the
server's commands then run as the ``postgres`` user the package creates. Without the package the
test is skipped, except under CI (``CI=true``), where it fails.
"""

from __future__ import annotations

import datetime
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
from collections import Counter
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass
from importlib.metadata import version
from itertools import pairwise
from pathlib import Path

import pytest
import sqlalchemy
import yaml
from conftest import FILMS, reviews, write_films_recipe
from dagster import AssetKey, DagsterEventType, DagsterInstance, DagsterRunStatus, RunsFilter
from dagster._core.storage.event_log.sql_event_log import SqlEventLogStorage
from dagster._utils.concurrency import ConcurrencySlotStatus
from dagster_dev import free_port, stop

from finetune_assets.defs import build_definitions, slot_claims
from finetune_assets.defs.build import shared_definitions

REPO = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent
MODULE = "finetune_assets.definitions"
CLI_RECIPES = ("films_a", "films_b")  # materialized by two `dagster asset materialize` at once
SCHEDULED = "films_c"  # its schedule, started, ticks in the daemon while those two run
USER, PASSWORD, DATABASE = "dagster", "not-a-secret", "finetune"
CLAIMED, BLOCKED = ConcurrencySlotStatus.CLAIMED, ConcurrencySlotStatus.BLOCKED


def server_binaries() -> Path | None:
    """The newest PostgreSQL's bin folder (Debian keeps it off PATH), else the one on PATH."""
    debian = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"), key=lambda p: int(p.parts[-3]))
    if debian:
        return debian[-1].parent
    found = shutil.which("postgres")
    return Path(found).resolve().parent if found else None


def as_postgres(command: list) -> list[str]:
    """``command`` as the ``postgres`` user when this process is root (the server refuses root)."""
    command = [str(part) for part in command]
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


@dataclass(frozen=True)
class Server:
    port: int

    def env(self) -> dict[str, str]:
        """The variables dagster-postgres.yaml reads."""
        return {
            "DAGSTER_PG_HOST": "127.0.0.1",
            "DAGSTER_PG_PORT": str(self.port),
            "DAGSTER_PG_DB": DATABASE,
            "DAGSTER_PG_USERNAME": USER,
            "DAGSTER_PG_PASSWORD": PASSWORD,
        }


@pytest.fixture(scope="module")
def postgres() -> Iterator[Server]:
    """A PostgreSQL server of its own: a data directory in a new temporary folder (owned by
    ``postgres`` when run as root), password authentication, 127.0.0.1 and a free port only."""
    binaries = server_binaries()
    if binaries is None:
        message = "PostgreSQL is not installed (Debian: apt-get install postgresql; .ci/run does)"
        if os.environ.get("CI", "").lower() in ("true", "1"):
            pytest.fail(message)
        pytest.skip(message)
    root = Path(tempfile.mkdtemp(prefix="finetune-postgres-"))  # not under pytest's root-only folder
    (root / "password").write_text(PASSWORD)
    if os.geteuid() == 0:
        for path in (root, root / "password"):
            shutil.chown(path, "postgres")
    data, server = root / "data", Server(free_port())
    pg_ctl = [binaries / "pg_ctl", "-D", data, "-w", "-t", "60"]
    options = f"-p {server.port} -k {root} -c listen_addresses=127.0.0.1"
    initdb = [binaries / "initdb", "-D", data, "-U", USER, "--pwfile", root / "password", "-A", "scram-sha-256"]
    try:  # cwd: the postgres user may not enter this process's working directory
        subprocess.run(as_postgres([*initdb, "-E", "UTF8", "--locale", "C"]), cwd=root, check=True)
        subprocess.run(as_postgres([*pg_ctl, "-l", root / "server.log", "-o", options, "start"]), cwd=root, check=True)
        subprocess.run(
            [binaries / "createdb", "-h", "127.0.0.1", "-p", str(server.port), "-U", USER, DATABASE],
            env={**os.environ, "PGPASSWORD": PASSWORD},
            check=True,
        )
        yield server
    finally:
        subprocess.run(as_postgres([*pg_ctl, "-m", "fast", "stop"]), cwd=root, check=False)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def project(postgres, tmp_path_factory, tiny_bert) -> Iterator[tuple[Path, dict[str, str]]]:
    """``(home, env)``: a DAGSTER_HOME holding dagster-postgres.yaml as its dagster.yaml, its tables
    created the way scripts/init_dagster_home.sh creates them, and the environment every process of
    the test runs with (the server, three tiny recipes, their artifacts root)."""
    root = tmp_path_factory.mktemp("postgres_instance")
    (root / "bert").symlink_to(tiny_bert)
    recipes, home = root / "recipes", root / "home"
    for seed, name in enumerate((*CLI_RECIPES, SCHEDULED)):
        (recipes / name).mkdir(parents=True)
        reviews(seed, per_label=30).to_csv(recipes / name / "reviews.csv", index=False)
        write_films_recipe(recipes, name, dataset={**FILMS["dataset"], "source": name})
    home.mkdir()
    shutil.copy(REPO / "dagster_home" / "dagster-postgres.yaml", home / "dagster.yaml")
    env = {
        **os.environ,
        **postgres.env(),
        "DAGSTER_HOME": str(home),
        "FINETUNE_RECIPES": str(recipes),
        "FINETUNE_ARTIFACTS_DIR": str(root / "artifacts"),
        "PYTHONPATH": os.pathsep.join(sys.path),
    }
    init = REPO / "scripts" / "init_dagster_home.sh"
    subprocess.run(["bash", init, home], check=True, env={**env, "DAGSTER": str(VENV_BIN / "dagster")})
    with pytest.MonkeyPatch.context() as patch:
        for key in ("DAGSTER_HOME", *postgres.env()):
            patch.setenv(key, env[key])
        yield home, env


def test_the_postgres_instance_differs_from_the_default_in_its_storage_only():
    default, postgres = (
        yaml.safe_load((REPO / "dagster_home" / name).read_text()) for name in ("dagster.yaml", "dagster-postgres.yaml")
    )
    assert "sqlite" in default.pop("storage") and "postgres" in postgres.pop("storage")
    assert postgres == default


def test_setup_installs_the_pinned_extra_and_ci_installs_the_server_before_the_tests():
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert extras["postgres"] == [f"dagster-postgres=={version('dagster-postgres')}"]  # the one installed
    assert version("dagster-postgres").split(".")[2] == version("dagster").split(".")[2]  # released together
    extras = re.search(r'pip install -q -e "\.\[([a-z0-9,-]+)\]"', (REPO / "scripts" / "setup.sh").read_text())
    assert extras and "postgres" in extras.group(1).split(",")
    ci = (REPO / ".ci" / "run").read_text()
    assert ci.index("apt-get install -y -qq postgresql") < ci.index("bash scripts/test.sh")


def schedule_one_tick(recipes: Path) -> datetime.datetime:
    """The scheduled recipe's cron set to tick once, at the next minute at least 30 s away (time to
    start the schedule before it, the one process then loading the definitions), daily: no second
    tick while the test runs."""
    at = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=30)
    at = at.replace(second=0, microsecond=0) + datetime.timedelta(minutes=1)
    dataset = {**FILMS["dataset"], "source": SCHEDULED}
    write_films_recipe(recipes, SCHEDULED, dataset=dataset, schedule={"cron": f"{at.minute} {at.hour} * * *"})
    return at


def wait_for_scheduled_run(instance: DagsterInstance, seconds: float):
    """The run the schedule's tick started, once it has finished."""
    deadline = time.monotonic() + seconds
    tagged = RunsFilter(tags={"dagster/schedule_name": f"{SCHEDULED}_schedule"})
    while time.monotonic() < deadline:
        runs = instance.get_runs(tagged)
        if runs and runs[0].is_finished:
            return runs[0]
        time.sleep(2)
    pytest.fail(f"no finished run of {SCHEDULED}_schedule within {seconds} s: {instance.get_runs(tagged)}")


def test_concurrent_materializations_and_a_schedule_tick_lose_nothing(project, tmp_path):
    home, env = project
    dagster = str(VENV_BIN / "dagster")
    tick = schedule_one_tick(Path(env["FINETUNE_RECIPES"]))
    start = [dagster, "schedule", "start", f"{SCHEDULED}_schedule", "-m", MODULE]
    subprocess.run(start, env=env, cwd=tmp_path, check=True)  # first, alone: the tick comes sooner
    assert datetime.datetime.now(datetime.UTC) < tick, "the schedule started after its one tick"
    daemon_log = (tmp_path / "daemon.log").open("w")
    daemon = subprocess.Popen(
        [VENV_BIN / "dagster-daemon", "run", "-m", MODULE],
        env=env,
        cwd=tmp_path,
        stdout=daemon_log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        materializing = [
            subprocess.Popen(
                [dagster, "asset", "materialize", "-m", MODULE, "--select", f"group:{name}"],
                env=env,
                cwd=tmp_path,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            for name in CLI_RECIPES
        ]
        outputs = [process.communicate(timeout=600)[0] for process in materializing]  # a hang guard
        assert [process.returncode for process in materializing] == [0, 0], "\n".join(o[-3000:] for o in outputs)
        with DagsterInstance.get() as instance:
            scheduled = wait_for_scheduled_run(instance, 240)
    finally:
        stop(daemon)
        daemon_log.close()
    assert scheduled.status == DagsterRunStatus.SUCCESS, (tmp_path / "daemon.log").read_text()[-3000:]
    check_nothing_lost(home, env)


@pytest.fixture
def storage(project) -> Iterator:
    """The PostgreSQL instance's event log storage."""
    with DagsterInstance.get() as instance:  # kept open: the storage refers to it weakly
        yield instance.event_log_storage


def second_claim_paused(storage, pool: str, at: tuple[str, str], meanwhile) -> ConcurrencySlotStatus:
    """The second run's claim of ``pool``'s slot, in a thread of its own, paused at its first
    statement that begins with ``at[1]`` (``at[0]``: ``before_cursor_execute`` or
    ``after_cursor_execute``) while this thread calls ``meanwhile``; its claim status."""
    event, statement_start = at
    paused, resume, said = threading.Event(), threading.Event(), []

    def pause(conn, cursor, statement, *_):
        if threading.current_thread().name == "second" and statement.lstrip().startswith(statement_start):
            paused.set()
            resume.wait(30)

    second = threading.Thread(
        name="second", target=lambda: said.append(storage.claim_concurrency_slot(pool, "second", "train"))
    )
    sqlalchemy.event.listen(storage._engine, event, pause)
    try:
        second.start()
        assert paused.wait(30), f"the second claim never came to {statement_start}"
        meanwhile()
        resume.set()
        second.join(30)
    finally:
        sqlalchemy.event.remove(storage._engine, event, pause)
    return said[0].slot_status


def replay_two_claims_of_one_slot(storage, pool: str) -> dict[str, ConcurrencySlotStatus]:
    """The race CI met, replayed step by step: two runs' trainings both assigned to the pool's one
    slot (Dagster's assignment counts free slots without a lock); the second reads the slot free,
    the first claims it, then the second writes. Each run's claim status, and who holds the slot."""
    storage.set_concurrency_slots(pool, 1)
    for run_id in ("first", "second"):
        storage.add_pending_step(pool, run_id, "train", should_assign=True)
    said = {}
    said["second"] = second_claim_paused(
        storage,
        pool,
        ("after_cursor_execute", "SELECT concurrency_slots.id"),
        lambda: said.update(first=storage.claim_concurrency_slot(pool, "first", "train").slot_status),
    )
    [holder] = storage.get_concurrency_info(pool).claimed_slots
    return said | {"holder": holder.run_id}


def test_two_trainings_claiming_the_one_slot_at_once_run_one_after_the_other(storage, monkeypatch, tmp_path):
    """Dagster 1.13's own claim gives the slot to both (when that assertion fails, Dagster gives it
    to one and ``slot_claims`` can go); the corrected claim, in place once the Definitions are built,
    to the first, and to the second once the first frees it."""
    dagsters_own_claims(monkeypatch)
    dagsters = replay_two_claims_of_one_slot(storage, "race-dagsters-own")
    assert dagsters == {"first": CLAIMED, "second": CLAIMED, "holder": "second"}, "Dagster now claims once"
    shared_definitions(artifacts_root=str(tmp_path))  # as every run worker does when it loads the recipes
    assert SqlEventLogStorage._claim_concurrency_slot is slot_claims.claim_a_free_slot
    assert SqlEventLogStorage.claim_concurrency_slot is slot_claims.claim_or_take_a_slot_freed_meanwhile
    pool = "race-corrected"
    assert replay_two_claims_of_one_slot(storage, pool) == {"first": CLAIMED, "second": BLOCKED, "holder": "first"}
    assert not storage.claim_concurrency_slot(pool, "second", "train").is_claimed  # still waiting
    storage.free_concurrency_slot_for_step("first", "train")
    assert storage.claim_concurrency_slot(pool, "second", "train").is_claimed
    forget(storage, ["race-dagsters-own", "race-corrected"])


def replay_a_free_before_the_queueing(storage, pool: str) -> list[ConcurrencySlotStatus]:
    """The second race, replayed: the first run holds the one slot; the second counts no slot free,
    the first frees it before the second is queued, then the second is queued. The second's claim
    statuses: as it is queued, and at the claim check after."""
    storage.set_concurrency_slots(pool, 1)
    assert storage.claim_concurrency_slot(pool, "first", "train").is_claimed
    queued = second_claim_paused(
        storage,
        pool,
        ("before_cursor_execute", "INSERT INTO pending_steps"),
        lambda: storage.free_concurrency_slot_for_step("first", "train"),
    )
    return [queued, storage.claim_concurrency_slot(pool, "second", "train").slot_status]


def test_a_slot_freed_while_a_training_was_being_queued_goes_to_it(storage, monkeypatch, tmp_path):
    """With Dagster 1.13's own queueing the second training waits for a slot no one holds (when that
    assertion fails, Dagster assigns it and ``slot_claims`` can go); with the correction it takes it."""
    dagsters_own_claims(monkeypatch)
    dagsters = replay_a_free_before_the_queueing(storage, "freed-dagsters-own")
    assert dagsters == [BLOCKED, BLOCKED], "Dagster now assigns a slot freed meanwhile"
    assert storage.get_concurrency_info("freed-dagsters-own").claimed_slots == []  # free, yet waited for
    shared_definitions(artifacts_root=str(tmp_path))  # as every run worker does when it loads the recipes
    assert replay_a_free_before_the_queueing(storage, "freed-corrected") == [CLAIMED, CLAIMED]
    [holder] = storage.get_concurrency_info("freed-corrected").claimed_slots
    assert holder.run_id == "second"
    forget(storage, ["freed-dagsters-own", "freed-corrected"])


def dagsters_own_claims(monkeypatch) -> None:
    """Dagster 1.13's own methods in place of ``slot_claims``'s, for this test."""
    monkeypatch.setattr(SqlEventLogStorage, "_claim_concurrency_slot", slot_claims.DAGSTERS_OWN_CLAIM)
    monkeypatch.setattr(SqlEventLogStorage, "claim_concurrency_slot", slot_claims.DAGSTERS_OWN_QUEUEING)


def forget(storage, pools: list[str]) -> None:
    """Free the replays' runs and delete their pools, leaving the instance as the other tests see it."""
    for run_id in ("first", "second"):
        storage.free_concurrency_slots_for_run(run_id)
    for pool in pools:
        storage.delete_concurrency_limit(pool)
    assert not set(pools) & storage.get_concurrency_keys()


def check_nothing_lost(home: Path, env: dict[str, str]) -> None:
    """One successful run per recipe, each with all its events; each asset materialized once, by
    its recipe's run; the trainings one at a time (the pool's one slot); and all of it in Postgres."""
    import psycopg2

    defs = build_definitions([Path(env["FINETUNE_RECIPES"])], env["FINETUNE_ARTIFACTS_DIR"])
    keys = defs.resolve_asset_graph().get_all_asset_keys()
    with DagsterInstance.get() as instance:
        runs = instance.get_runs()
        assert Counter(run.tags.get("dagster/schedule_name") for run in runs) == {None: 2, f"{SCHEDULED}_schedule": 1}
        assert {run.status for run in runs} == {DagsterRunStatus.SUCCESS}
        trainings = []
        for run in runs:
            events = [entry.dagster_event for entry in instance.all_logs(run.run_id) if entry.is_dagster_event]
            kinds = Counter(event.event_type for event in events)
            [recipe] = {event.asset_key.path[0] for event in events if event.asset_key}
            recipe_keys = {key for key in keys if key.path[0] == recipe}
            assert kinds[DagsterEventType.RUN_START] == kinds[DagsterEventType.RUN_SUCCESS] == 1, recipe
            assert kinds[DagsterEventType.STEP_START] == kinds[DagsterEventType.STEP_SUCCESS] > 0, recipe
            assert kinds[DagsterEventType.ASSET_MATERIALIZATION] == len(recipe_keys), recipe
            for key in recipe_keys:
                [record] = instance.fetch_materializations(key, limit=5).records
                assert record.run_id == run.run_id, key
            trainings.append(training_interval(instance, run.run_id))
        assert instance.event_log_storage.get_concurrency_info("training").slot_count == 1
    trainings.sort()
    assert all(end <= start for (_, end), (start, _) in pairwise(trainings)), trainings
    assert not list(home.rglob("*.db")), "nothing went to SQLite"
    server = {"host": "127.0.0.1", "port": env["DAGSTER_PG_PORT"], "user": USER, "password": PASSWORD}
    with closing(psycopg2.connect(**server, dbname=DATABASE)) as connection, connection.cursor() as cursor:
        cursor.execute("select count(*) from runs")
        assert cursor.fetchone()[0] == 3
        cursor.execute("select count(*) from event_logs where dagster_event_type = 'ASSET_MATERIALIZATION'")
        assert cursor.fetchone()[0] == len(keys)
    assert AssetKey([SCHEDULED, "finetuned_model"]) in keys


def training_interval(instance: DagsterInstance, run_id: str) -> tuple[float, float]:
    """When the run's training step started and succeeded."""
    times = {
        entry.dagster_event.event_type: entry.timestamp
        for entry in instance.all_logs(run_id)
        if entry.is_dagster_event and "finetuned_model" in (entry.step_key or "")
    }
    return times[DagsterEventType.STEP_START], times[DagsterEventType.STEP_SUCCESS]

"""postgresql_health_info against the lab's real PostgreSQL.

Readiness and version, sessions idle in a transaction, lock waits, long-running queries,
pg_stat_statements before and after CREATE EXTENSION, an unreachable server and bad credentials.
"""

from __future__ import annotations

import threading
import time

import psycopg2
import pytest
from conftest import pg_args, pg_connect, pg_query

MODULE = "postgresql_health_info"
SCRATCH_DB = "rb_it_health"
LOCK_TABLE = "rb_it_health_lock"


# ------------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------------


def pg(lab, dbname="postgres", autocommit=True, app="rb-it-health"):
    return pg_connect(lab, dbname, autocommit, app)


def sql(lab, statement, dbname="postgres", args=None):
    return pg_query(lab, statement, dbname, args)


def wait_for(predicate, timeout=20.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def backend_state(lab, pid):
    rows = sql(lab, "SELECT state, wait_event_type FROM pg_stat_activity WHERE pid = %s", args=[pid])
    return rows[0] if rows else (None, None)


def assert_clean(res, lab):
    out = res["_stdout"] + res["_stderr"]
    assert "Traceback" not in out, out
    assert lab["pg"]["login_password"] not in out


class Background:
    """Run one statement on its own connection in a thread (it is expected to block or sleep)."""

    def __init__(self, lab, statement, dbname="postgres"):
        self.conn = pg(lab, dbname, app="rb-it-health-bg")
        self.pid = self.conn.get_backend_pid()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, args=(statement,), daemon=True)
        self.thread.start()

    def _run(self, statement):
        try:
            with self.conn.cursor() as cur:
                cur.execute("SET statement_timeout = '60s'")
                cur.execute(statement)
        except psycopg2.Error as exc:
            self.error = exc

    def stop(self, lab):
        sql(lab, "SELECT pg_cancel_backend(%s)", args=[self.pid])
        self.thread.join(30)
        self.conn.close()


@pytest.fixture
def scratch_db(lab):
    sql(lab, f'DROP DATABASE IF EXISTS "{SCRATCH_DB}" WITH (FORCE)')
    sql(lab, f'CREATE DATABASE "{SCRATCH_DB}"')
    yield SCRATCH_DB
    sql(lab, f'DROP DATABASE IF EXISTS "{SCRATCH_DB}" WITH (FORCE)')


@pytest.fixture
def lock_table(lab):
    sql(lab, f"DROP TABLE IF EXISTS {LOCK_TABLE}")
    sql(lab, f"CREATE TABLE {LOCK_TABLE} (id int PRIMARY KEY, v text)")
    sql(lab, f"INSERT INTO {LOCK_TABLE} VALUES (1, 'a')")
    yield LOCK_TABLE
    sql(lab, f"DROP TABLE IF EXISTS {LOCK_TABLE}")


# ------------------------------------------------------------------------------------------------
# tests
# ------------------------------------------------------------------------------------------------


def test_ready_version_connections_databases(lab, module):
    expected_num = int(sql(lab, "SHOW server_version_num")[0][0])
    expected_text = sql(lab, "SHOW server_version")[0][0]
    max_conn = int(sql(lab, "SHOW max_connections")[0][0])
    db_size = sql(lab, "SELECT pg_database_size('postgres')")[0][0]
    for check_mode in (False, True):
        res = module(MODULE, pg_args(lab), check_mode=check_mode)
        assert_clean(res, lab)
        assert res["_rc"] == 0 and not res.get("failed"), res
        assert res["changed"] is False
        assert res["ready"] is True
        assert "error" not in res
        assert res["version_num"] == expected_num
        assert res["version"] == expected_text
        assert res["in_recovery"] is False
        conns = res["connections"]
        assert conns["max_connections"] == max_conn
        assert conns["total"] >= 1
        assert sum(conns["by_state"].values()) == conns["total"]
        assert sum(conns["by_database"].values()) == conns["total"]
        assert conns["by_database"].get("postgres", 0) >= 1  # the module's own connection
        assert conns["percent_used"] == round(100.0 * conns["total"] / max_conn, 1)
        dbs = {d["name"]: d for d in res["databases"]}
        assert "template0" not in dbs and "template1" not in dbs
        assert dbs["postgres"]["size_bytes"] == pytest.approx(db_size, rel=0.5)
        assert dbs["postgres"]["size_pretty"].endswith(("kB", "MB", "GB"))
        assert isinstance(res["duration_s"], float)


def test_idle_in_transaction_session_is_reported_with_its_age(lab, module):
    idle = pg(lab, autocommit=False, app="rb-it-idle-xact")
    try:
        with idle.cursor() as cur:
            cur.execute("SELECT 42 AS rb_it_marker")
        pid = idle.get_backend_pid()
        time.sleep(1.5)
        res = module(MODULE, pg_args(lab, idle_in_transaction_min_s=1))
        assert_clean(res, lab)
        mine = [s for s in res["idle_in_transaction"] if s["pid"] == pid]
        assert len(mine) == 1, res["idle_in_transaction"]
        entry = mine[0]
        assert entry["state"] == "idle in transaction"
        assert entry["application_name"] == "rb-it-idle-xact"
        assert entry["usename"] == lab["pg"]["login_user"]
        assert entry["datname"] == "postgres"
        assert entry["client_addr"] == "127.0.0.1"
        assert 1.0 <= entry["state_age_s"] < 120
        assert entry["xact_age_s"] >= entry["state_age_s"]
        assert "rb_it_marker" in entry["query"]
        # the threshold filters: an hour-old minimum hides the 2-second-old session
        res = module(MODULE, pg_args(lab, idle_in_transaction_min_s=3600))
        assert pid not in [s["pid"] for s in res["idle_in_transaction"]]
    finally:
        idle.close()


def test_lock_wait_appears_in_blocking_with_the_right_pids(lab, module, lock_table):
    holder = pg(lab, autocommit=False, app="rb-it-lock-holder")
    waiter = None
    try:
        with holder.cursor() as cur:
            cur.execute(f"SELECT * FROM {lock_table} WHERE id = 1 FOR UPDATE")
        waiter = Background(lab, f"UPDATE {lock_table} SET v = 'b' WHERE id = 1")
        wait_for(lambda: backend_state(lab, waiter.pid)[1] == "Lock", what="the UPDATE to wait for the row lock")
        res = module(MODULE, pg_args(lab))
        assert_clean(res, lab)
        blocked = [b for b in res["blocking"] if b["pid"] == waiter.pid]
        assert len(blocked) == 1, res["blocking"]
        entry = blocked[0]
        assert entry["blocking_pids"] == [holder.get_backend_pid()]
        assert entry["wait_event_type"] == "Lock"
        assert entry["wait_event"] in ("transactionid", "tuple")
        assert lock_table in entry["query"]
        assert entry["duration_s"] >= 0
        # the holder is idle in transaction, so it shows there too
        assert holder.get_backend_pid() in [s["pid"] for s in res["idle_in_transaction"]]
        holder.rollback()
        waiter.thread.join(30)
        assert waiter.error is None, waiter.error
        res = module(MODULE, pg_args(lab))
        assert waiter.pid not in [b["pid"] for b in res["blocking"]]
    finally:
        holder.close()
        if waiter is not None:
            waiter.stop(lab)


def test_long_running_query_honours_the_threshold(lab, module):
    sleeper = Background(lab, "SELECT pg_sleep(30) /* rb-it-long */")
    try:
        wait_for(lambda: backend_state(lab, sleeper.pid)[0] == "active", what="pg_sleep to start")
        time.sleep(1.2)
        res = module(MODULE, pg_args(lab, long_query_threshold_s=1))
        assert_clean(res, lab)
        mine = [q for q in res["long_running"] if q["pid"] == sleeper.pid]
        assert len(mine) == 1, res["long_running"]
        assert 1.0 <= mine[0]["duration_s"] < 60
        assert "rb-it-long" in mine[0]["query"]
        assert mine[0]["application_name"] == "rb-it-health-bg"
        # default threshold (5 minutes): not long-running yet
        res = module(MODULE, pg_args(lab))
        assert sleeper.pid not in [q["pid"] for q in res["long_running"]]
        # threshold 0: everything active is listed except the module's own query
        res = module(MODULE, pg_args(lab, long_query_threshold_s=0))
        assert sleeper.pid in [q["pid"] for q in res["long_running"]]
        assert not [q for q in res["long_running"] if "clock_timestamp() - query_start" in (q["query"] or "")]
    finally:
        sleeper.stop(lab)


def test_pg_stat_statements_before_and_after_create_extension(lab, module, scratch_db):
    res = module(MODULE, pg_args(lab, login_db=scratch_db))
    assert_clean(res, lab)
    pss = res["pg_stat_statements"]
    assert pss["installed"] is False
    assert pss["preloaded"] is True
    assert scratch_db in pss["reason"] and "CREATE EXTENSION pg_stat_statements" in pss["reason"]
    assert "top" not in pss

    sql(lab, "CREATE EXTENSION pg_stat_statements", dbname=scratch_db)
    # the statistics are cluster-wide and outlive the extension: start from a clean slate so that
    # the statements below rank among the top ones whatever else ran on the lab before
    sql(lab, "SELECT pg_stat_statements_reset()", dbname=scratch_db)
    for _round in range(3):
        sql(lab, "SELECT count(*) FROM generate_series(1, 300000) AS rb_it_pss", dbname=scratch_db)
    res = module(MODULE, pg_args(lab, login_db=scratch_db, top_statements=3))
    assert_clean(res, lab)
    pss = res["pg_stat_statements"]
    assert pss["installed"] is True
    assert pss["version"]
    assert 1 <= len(pss["top"]) <= 3
    times = [s["total_exec_time_ms"] for s in pss["top"]]
    assert times == sorted(times, reverse=True)
    for stmt in pss["top"]:
        assert stmt["calls"] >= 1
        assert isinstance(stmt["mean_exec_time_ms"], float)
        assert len(stmt["query"]) <= 200
    res = module(MODULE, pg_args(lab, login_db=scratch_db, top_statements=50))
    ours = [s for s in res["pg_stat_statements"]["top"] if "rb_it_pss" in s["query"]]
    assert len(ours) == 1, res["pg_stat_statements"]["top"]
    assert ours[0]["calls"] == 3 and ours[0]["rows"] == 3
    assert ours[0]["datname"] == scratch_db and ours[0]["usename"] == lab["pg"]["login_user"]
    # the extension lives in the scratch database only
    res = module(MODULE, pg_args(lab))
    assert res["pg_stat_statements"]["installed"] is False


def test_unreachable_server_is_not_ready_but_not_failed(lab, module):
    t0 = time.monotonic()
    res = module(MODULE, pg_args(lab, login_port=1, connect_timeout=3))
    assert time.monotonic() - t0 < 30
    assert_clean(res, lab)
    assert res["_rc"] == 0 and not res.get("failed"), res
    assert res["ready"] is False
    assert "127.0.0.1:1" in res["error"]
    assert "version" not in res
    assert res["duration_s"] < 4

    res = module(MODULE, pg_args(lab, login_port=1, connect_timeout=3, fail_on_unready=True))
    assert_clean(res, lab)
    assert res.get("failed") is True
    assert res["ready"] is False
    assert "127.0.0.1:1" in res["msg"]


def test_wrong_password_fails_naming_user_and_host(lab, module):
    secret = "rb-it-wrong-pw-8812"
    res = module(MODULE, pg_args(lab, login_password=secret))
    out = res["_stdout"] + res["_stderr"]
    assert "Traceback" not in out
    assert secret not in out
    assert res.get("failed") is True, res
    assert "password authentication failed" in res["msg"]
    assert f"user {lab['pg']['login_user']!r}" in res["msg"]
    assert f"{lab['pg']['login_host']}:{lab['pg']['login_port']}" in res["msg"]


def test_negative_threshold_is_refused(lab, module):
    res = module(MODULE, pg_args(lab, long_query_threshold_s=-5))
    assert_clean(res, lab)
    assert res.get("failed") is True
    assert "long_query_threshold_s must be 0 or more" in res["msg"]

"""postgresql_maintenance against the lab's real PostgreSQL, in a scratch database.

VACUUM / ANALYZE leave their mark in pg_stat_user_tables, REINDEX gives indexes a new relfilenode,
check mode leaves both untouched; unknown tables fail before anything runs; sessions idle in a
transaction are terminated only in the target database and only in a real run.
"""

from __future__ import annotations

import time

import psycopg2
import pytest
from conftest import assert_clean_failure, pg_args, pg_connect, pg_query

MODULE = "postgresql_maintenance"
DB = "rb_it_maint"


# ------------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------------


def pg(lab, dbname="postgres", autocommit=True, app="rb-it-maint"):
    return pg_connect(lab, dbname, autocommit, app)


def sql(lab, statement, dbname=DB, args=None):
    return pg_query(lab, statement, dbname, args)


def conn_args(lab, **extra):
    return pg_args(lab, name=DB) | extra


def stats(lab, table):
    """(last_vacuum, last_analyze, vacuum_count, analyze_count) of public.<table>."""
    return sql(
        lab,
        "SELECT last_vacuum, last_analyze, vacuum_count, analyze_count FROM pg_stat_user_tables "
        "WHERE schemaname = 'public' AND relname = %s",
        args=[table],
    )[0]


def filenode(lab, relation):
    return sql(lab, "SELECT pg_relation_filenode(%s::regclass)", args=[relation])[0][0]


def alive(lab, pid):
    return bool(sql(lab, "SELECT 1 FROM pg_stat_activity WHERE pid = %s", dbname="postgres", args=[pid]))


def idle_in_transaction(lab, dbname, app):
    c = pg(lab, dbname, autocommit=False, app=app)
    with c.cursor() as cur:
        cur.execute("SELECT 1")
    return c


@pytest.fixture(scope="module")
def scratch_db(lab):
    sql(lab, f'DROP DATABASE IF EXISTS "{DB}" WITH (FORCE)', dbname="postgres")
    sql(lab, f'CREATE DATABASE "{DB}"', dbname="postgres")
    yield DB
    sql(lab, f'DROP DATABASE IF EXISTS "{DB}" WITH (FORCE)', dbname="postgres")


@pytest.fixture
def tables(lab, scratch_db):
    """Fresh tables (never vacuumed or analyzed by hand) for each test."""
    sql(
        lab,
        """
        DROP TABLE IF EXISTS orders, customers CASCADE;
        CREATE TABLE customers (id int PRIMARY KEY, name text);
        CREATE TABLE orders (id int PRIMARY KEY, customer_id int, amount numeric);
        CREATE INDEX orders_customer_idx ON orders (customer_id);
        INSERT INTO customers SELECT g, 'c' || g FROM generate_series(1, 500) g;
        INSERT INTO orders SELECT g, g % 500 + 1, g * 1.5 FROM generate_series(1, 5000) g;
        DELETE FROM orders WHERE id % 3 = 0;
        """,
    )
    return ["customers", "orders"]


# ------------------------------------------------------------------------------------------------
# vacuum / analyze
# ------------------------------------------------------------------------------------------------


def test_vacuum_analyze_check_mode_then_real_run(lab, module, tables):
    args = conn_args(lab, tasks=["vacuum", "analyze"], tables=["public.orders", "customers"])
    res = module(MODULE, args, check_mode=True)
    assert res["_rc"] == 0 and not res.get("failed"), res
    assert res["changed"] is True
    expected = [
        'VACUUM "public"."orders"',
        'VACUUM "public"."customers"',
        'ANALYZE "public"."orders"',
        'ANALYZE "public"."customers"',
    ]
    assert res["statements"] == expected
    assert [t["name"] for t in res["tasks"]] == ["vacuum", "analyze"]
    assert res["tasks"][0]["tables"] == ["public.orders", "public.customers"]
    for table in tables:
        last_vacuum, last_analyze, _vacuum_count, _analyze_count = stats(lab, table)
        assert last_vacuum is None and last_analyze is None, table

    res = module(MODULE, args)
    assert res["_rc"] == 0 and not res.get("failed"), res
    assert res["changed"] is True
    assert res["statements"] == expected
    assert all(t["duration_s"] >= 0 for t in res["tasks"])
    assert res["duration_s"] >= sum(t["duration_s"] for t in res["tasks"])
    for table in tables:
        last_vacuum, last_analyze, vacuums, analyzes = stats(lab, table)
        assert last_vacuum is not None and last_analyze is not None, table
        assert (vacuums, analyzes) == (1, 1), table


def test_default_tables_are_every_user_table(lab, module, tables):
    res = module(MODULE, conn_args(lab, tasks=["analyze"]), check_mode=True)
    assert res["tasks"][0]["tables"] == ["public.customers", "public.orders"]
    assert stats(lab, "customers")[1] is None

    res = module(MODULE, conn_args(lab, tasks=["analyze"]))
    assert res["changed"] is True
    assert res["statements"] == ['ANALYZE "public"."customers"', 'ANALYZE "public"."orders"']
    for table in tables:
        assert stats(lab, table)[1] is not None, table


def test_vacuum_full_rewrites_the_table(lab, module, tables):
    before = filenode(lab, "public.orders")
    res = module(MODULE, conn_args(lab, tasks=["vacuum"], vacuum_full=True, tables=["orders"]), check_mode=True)
    assert res["statements"] == ['VACUUM (FULL) "public"."orders"']
    assert filenode(lab, "public.orders") == before
    res = module(MODULE, conn_args(lab, tasks=["vacuum"], vacuum_full=True, tables=["orders"]))
    assert res["changed"] is True
    assert filenode(lab, "public.orders") != before

    res = module(MODULE, conn_args(lab, tasks=["analyze"], vacuum_full=True))
    assert_clean_failure(res, "vacuum_full", "'vacuum' in tasks", lab=lab)


# ------------------------------------------------------------------------------------------------
# reindex
# ------------------------------------------------------------------------------------------------


def test_reindex_concurrently_gives_indexes_new_files(lab, module, tables):
    indexes = ["public.orders_pkey", "public.orders_customer_idx"]
    before = {i: filenode(lab, i) for i in indexes}
    customers_before = filenode(lab, "public.customers_pkey")
    args = conn_args(lab, tasks=["reindex"], tables=["public.orders"])

    res = module(MODULE, args, check_mode=True)
    assert res["changed"] is True
    assert res["statements"] == ['REINDEX TABLE CONCURRENTLY "public"."orders"']
    assert {i: filenode(lab, i) for i in indexes} == before

    res = module(MODULE, args)
    assert res["changed"] is True, res
    assert res["statements"] == ['REINDEX TABLE CONCURRENTLY "public"."orders"']
    after = {i: filenode(lab, i) for i in indexes}
    assert all(after[i] != before[i] for i in indexes), (before, after)
    assert filenode(lab, "public.customers_pkey") == customers_before  # not named, not touched

    res = module(MODULE, conn_args(lab, tasks=["reindex"], tables=["orders"], reindex_concurrently=False))
    assert res["statements"] == ['REINDEX TABLE "public"."orders"']
    assert filenode(lab, "public.orders_pkey") != after["public.orders_pkey"]


def test_reindex_concurrently_refuses_system_catalogs_up_front(lab, module, tables):
    before = filenode(lab, "public.orders_pkey")
    res = module(MODULE, conn_args(lab, tasks=["reindex"], tables=["orders", "pg_catalog.pg_class"]))
    assert_clean_failure(res, "pg_catalog.pg_class", "concurrently", lab=lab)
    assert res["statements"] == []
    assert filenode(lab, "public.orders_pkey") == before


# ------------------------------------------------------------------------------------------------
# bad input
# ------------------------------------------------------------------------------------------------


def test_unknown_table_fails_before_anything_runs(lab, module, tables):
    before = stats(lab, "orders")
    for check_mode in (True, False):
        res = module(
            MODULE,
            conn_args(lab, tasks=["vacuum", "analyze"], tables=["public.orders", "public.rb_no_such_table"]),
            check_mode=check_mode,
        )
        assert_clean_failure(res, "'public.rb_no_such_table'", f"database {DB!r}", "does not exist", lab=lab)
        assert res["changed"] is False
        assert res["statements"] == []
    assert stats(lab, "orders") == before


def test_view_is_not_a_table(lab, module, tables):
    sql(lab, "CREATE OR REPLACE VIEW big_orders AS SELECT * FROM orders WHERE amount > 100")
    res = module(MODULE, conn_args(lab, tasks=["vacuum"], tables=["big_orders"]))
    assert_clean_failure(res, "'big_orders'", "is a view", lab=lab)


def test_unknown_database_and_negative_threshold(lab, module, scratch_db):
    res = module(MODULE, conn_args(lab, name="rb_no_such_db", tasks=["vacuum"]))
    assert_clean_failure(res, "database 'rb_no_such_db' does not exist", lab=lab)
    res = module(MODULE, conn_args(lab, terminate_idle_in_transaction_s=-5))
    assert_clean_failure(res, "terminate_idle_in_transaction_s must be 0 or more", "-5", lab=lab)


def test_no_tasks_changes_nothing(lab, module, tables):
    res = module(MODULE, conn_args(lab))
    assert res["_rc"] == 0 and not res.get("failed"), res
    assert res["changed"] is False
    assert res["tasks"] == [] and res["statements"] == [] and res["terminated"] == []


# ------------------------------------------------------------------------------------------------
# terminating sessions idle in a transaction
# ------------------------------------------------------------------------------------------------


def test_terminate_idle_in_transaction(lab, module, scratch_db):
    old = idle_in_transaction(lab, DB, "rb-it-old-idle")
    other_db = idle_in_transaction(lab, "postgres", "rb-it-other-db")
    old_pid, other_pid = old.get_backend_pid(), other_db.get_backend_pid()
    young = None
    try:
        time.sleep(4)
        young = idle_in_transaction(lab, DB, "rb-it-young-idle")
        young_pid = young.get_backend_pid()
        args = conn_args(lab, terminate_idle_in_transaction_s=3)

        res = module(MODULE, args, check_mode=True)
        assert res["_rc"] == 0 and not res.get("failed"), res
        assert res["changed"] is True
        assert [s["pid"] for s in res["terminated"]] == [old_pid]
        entry = res["terminated"][0]
        assert entry["usename"] == lab["pg"]["login_user"]
        assert entry["application_name"] == "rb-it-old-idle"
        assert 3 <= entry["state_age_s"] < 120
        assert alive(lab, old_pid) and alive(lab, young_pid) and alive(lab, other_pid)

        res = module(MODULE, args)
        assert res["_rc"] == 0 and not res.get("failed"), res
        assert res["changed"] is True
        assert [s["pid"] for s in res["terminated"]] == [old_pid]
        assert res["terminated"][0]["state_age_s"] >= 3
        assert not alive(lab, old_pid)
        with pytest.raises(psycopg2.Error), old.cursor() as cur:
            cur.execute("SELECT 1")
        # younger than the threshold, or in another database: untouched
        assert alive(lab, young_pid) and alive(lab, other_pid)
        with young.cursor() as cur:
            cur.execute("SELECT 1")
        with other_db.cursor() as cur:
            cur.execute("SELECT 1")

        res = module(MODULE, args)
        assert res["changed"] is False
        assert res["terminated"] == []
    finally:
        for c in (old, other_db, young):
            if c is not None:
                c.close()

"""postgresql_backup / postgresql_restore against the lab's real PostgreSQL.

Round trip (schema dump, per-table content hashes, sequence values, grants, database settings),
verification before anything is replaced, interrupted backups, check mode, and bad input.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import psycopg2
import pytest
from conftest import assert_clean_failure, pg_args, pg_connect, pg_query

DB = "rb_it_app"
OWNER = "rb_it_owner"
READER = "rb_it_reader"


# ------------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------------


def pg(lab, dbname="postgres"):
    return pg_connect(lab, dbname)


def sql(lab, statement, dbname="postgres", args=None):
    return pg_query(lab, statement, dbname, args)


def db_exists(lab, name):
    return bool(sql(lab, "SELECT 1 FROM pg_database WHERE datname = %s", args=[name]))


def drop_db(lab, name):
    sql(lab, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def pg_env(lab):
    env = dict(os.environ)
    env.update(
        PGHOST=lab["pg"]["login_host"],
        PGPORT=str(lab["pg"]["login_port"]),
        PGUSER=lab["pg"]["login_user"],
        PGPASSWORD=lab["pg"]["login_password"],
    )
    return env


def schema_dump(lab, dbname):
    out = subprocess.run(
        ["pg_dump", "--schema-only", "--quote-all-identifiers", "-d", dbname],
        env=pg_env(lab),
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    # restrict keys / comments differ only in the dump's own header lines
    return "\n".join(ln for ln in out.splitlines() if not ln.startswith(("--", "\\restrict", "\\unrestrict")))


def fingerprint(lab, dbname):
    """Everything that must survive backup + restore."""
    c = pg(lab, dbname)
    try:
        with c.cursor() as cur:
            cur.execute(
                """SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                   WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1, 2"""
            )
            tables = cur.fetchall()
            content = {}
            for schema, table in tables:
                cur.execute(
                    f"SELECT count(*), md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), '')) FROM \"{schema}\".\"{table}\" t"
                )
                content[f"{schema}.{table}"] = cur.fetchone()
            cur.execute("""SELECT schemaname, sequencename, last_value FROM pg_sequences ORDER BY 1, 2""")
            sequences = cur.fetchall()
            cur.execute(
                """SELECT pg_get_userbyid(datdba), pg_encoding_to_char(encoding), datcollate, datctype,
                          datacl::text, datconnlimit, shobj_description(oid, 'pg_database')
                   FROM pg_database WHERE datname = current_database()"""
            )
            dbfacts = cur.fetchone()
            cur.execute(
                """SELECT coalesce(r.rolname, ''), s.setconfig FROM pg_db_role_setting s
                   JOIN pg_database d ON d.oid = s.setdatabase LEFT JOIN pg_roles r ON r.oid = s.setrole
                   WHERE d.datname = current_database() ORDER BY 1"""
            )
            settings = cur.fetchall()
            cur.execute(
                "SELECT relname, relacl::text FROM pg_class WHERE relacl IS NOT NULL AND relnamespace = 'app'::regnamespace ORDER BY 1"
            )
            grants = cur.fetchall()
    finally:
        c.close()
    return {
        "schema": schema_dump(lab, dbname),
        "content": content,
        "sequences": sequences,
        "database": dbfacts,
        "settings": settings,
        "grants": grants,
    }


def make_app_db(lab, rows=2000):
    drop_db(lab, DB)
    for role in (OWNER, READER):
        if not sql(lab, "SELECT 1 FROM pg_roles WHERE rolname = %s", args=[role]):
            sql(lab, f"CREATE ROLE \"{role}\" LOGIN PASSWORD '{role}-pw'")
    sql(lab, f'CREATE DATABASE "{DB}" OWNER "{OWNER}"')
    sql(lab, f'REVOKE CONNECT ON DATABASE "{DB}" FROM PUBLIC')
    sql(lab, f'GRANT CONNECT ON DATABASE "{DB}" TO "{READER}"')
    sql(lab, f"COMMENT ON DATABASE \"{DB}\" IS 'runbook.stack integration: it''s the app db'")
    sql(lab, f'ALTER DATABASE "{DB}" SET search_path = app, public')
    sql(lab, f"ALTER DATABASE \"{DB}\" SET work_mem = '8MB'")
    sql(lab, f'ALTER ROLE "{READER}" IN DATABASE "{DB}" SET statement_timeout = \'5s\'')
    sql(lab, f'ALTER DATABASE "{DB}" CONNECTION LIMIT 50')
    sql(
        lab,
        f"""
        SET ROLE "{OWNER}";
        CREATE SCHEMA app;
        CREATE TABLE app.customers (id serial PRIMARY KEY, name text NOT NULL, email text UNIQUE);
        CREATE TABLE app.orders (id bigserial PRIMARY KEY, customer_id int REFERENCES app.customers(id),
                                 amount numeric(12,2), payload bytea, created timestamptz DEFAULT now());
        CREATE INDEX orders_customer_idx ON app.orders (customer_id);
        CREATE TABLE app."Odd Name" ("weird col" text);
        COMMENT ON TABLE app.orders IS 'orders placed';
        INSERT INTO app.customers (name, email)
          SELECT 'customer ' || g, 'c' || g || '@example.test' FROM generate_series(1, {rows // 10}) g;
        INSERT INTO app.orders (customer_id, amount, payload)
          SELECT 1 + g % {rows // 10}, g * 1.25, decode(md5(g::text), 'hex') FROM generate_series(1, {rows}) g;
        INSERT INTO app."Odd Name" VALUES ('ünïcödé'), (NULL);
        SELECT setval('app.customers_id_seq', 5000);
        GRANT USAGE ON SCHEMA app TO "{READER}";
        GRANT SELECT ON app.orders TO "{READER}";
        RESET ROLE;
        """,
        dbname=DB,
    )


@pytest.fixture
def module_runner_argv(tmp_path):
    """(argv, env) that run a module the way conftest.run_module does, for tests that must kill it."""
    from conftest import PYTHON, module_env

    def make(name, args):
        args_file = tmp_path / f"{name}-args.json"
        args_file.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": args}))
        argv = [str(PYTHON), "-m", f"ansible_collections.runbook.stack.plugins.modules.{name}", str(args_file)]
        return argv, module_env()

    return make


@pytest.fixture
def app_db(lab):
    make_app_db(lab)
    yield DB
    for name in [r[0] for r in sql(lab, "SELECT datname FROM pg_database WHERE datname LIKE %s", args=[DB + "%"])]:
        drop_db(lab, name)


# ------------------------------------------------------------------------------------------------
# round trip
# ------------------------------------------------------------------------------------------------


def test_backup_writes_a_sealed_private_set(lab, module, app_db, tmp_backup_root):
    res = module("postgresql_backup", pg_args(lab, name=app_db, dest=str(tmp_backup_root), jobs=2))
    assert res.get("changed") is True, res
    backup = res["backup"]
    path = backup["path"]
    assert path == os.path.join(str(tmp_backup_root), "postgresql", app_db, backup["id"])
    manifest = json.loads(Path(path, "manifest.json").read_text())
    assert manifest == backup["manifest"]
    assert manifest["facts"]["tables"] == {"app.Odd Name": 2, "app.customers": 200, "app.orders": 2000}
    facts = manifest["facts"]["database"]
    assert facts["owner"] == OWNER
    assert {"role": "", "name": "work_mem", "value": "8MB"} in facts["settings"]
    assert {"role": READER, "name": "statement_timeout", "value": "5s"} in facts["settings"]
    assert facts["connection_limit"] == 50
    assert "it's the app db" in facts["comment"]
    # every file listed, sizes add up, modes 0600 / 0700
    listed = {f["path"] for f in manifest["files"]}
    on_disk = set()
    for dirpath, dirnames, filenames in os.walk(path):
        for d in dirnames:
            assert stat.S_IMODE(os.stat(os.path.join(dirpath, d)).st_mode) == 0o700
        for f in filenames:
            full = os.path.join(dirpath, f)
            assert stat.S_IMODE(os.stat(full).st_mode) == 0o600, full
            if f != "manifest.json":
                on_disk.add(os.path.relpath(full, path))
    assert listed == on_disk and "data/toc.dat" in listed
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o700
    assert backup["size_bytes"] == sum(f["size"] for f in manifest["files"])
    assert [st["step"].split()[0] for st in backup["steps"]] == ["pg_dump", "row", "fsync"]
    assert all(st["duration_s"] >= 0 for st in backup["steps"])
    assert res["steps"] == backup["steps"]  # top level, as every module returns them
    assert any(c.startswith(res["commands"][0].split()[0]) and "--jobs=2" in c for c in res["commands"])


def test_dump_drop_restore_is_identical(lab, module, app_db, tmp_backup_root):
    before = fingerprint(lab, app_db)
    res = module("postgresql_backup", pg_args(lab, name=app_db, dest=str(tmp_backup_root)))
    assert res.get("changed"), res
    drop_db(lab, app_db)
    assert not db_exists(lab, app_db)

    res = module("postgresql_restore", pg_args(lab, name=app_db, backup_root=str(tmp_backup_root)))
    assert res.get("changed"), res
    assert res["restore"]["target_existed"] is False
    assert res["restore"]["previous_database"] is None
    assert fingerprint(lab, app_db) == before
    # no temporary database left behind
    assert not db_exists(lab, res["restore"]["temporary_database"])


def test_swap_keeps_previous_and_rolls_back_later_writes(lab, module, app_db, tmp_backup_root):
    before = fingerprint(lab, app_db)
    b = module("postgresql_backup", pg_args(lab, name=app_db, dest=str(tmp_backup_root)))
    assert b.get("changed"), b
    sql(lab, "INSERT INTO app.orders (customer_id, amount) VALUES (1, 99.99)", dbname=app_db)
    sql(lab, "ALTER DATABASE rb_it_app SET work_mem = '64MB'")
    # a client holding a session on the live database must not block the swap
    holder = pg(lab, app_db)
    try:
        res = module("postgresql_restore", pg_args(lab, name=app_db, path=b["backup"]["path"]))
    finally:
        try:
            holder.close()
        except psycopg2.Error:
            pass
    assert res.get("changed"), res
    prev = res["restore"]["previous_database"]
    assert prev == f"{app_db}_pre_restore_{b['backup']['id'].lower()}"
    assert [s["step"] for s in res["steps"]][:2] == ["find backup set", "verify checksums"], res["steps"]
    assert res["steps"] == res["restore"]["steps"] and all(s["duration_s"] >= 0 for s in res["steps"])
    assert fingerprint(lab, app_db) == before
    # the replaced database is kept, with the write made after the backup, and accepts connections
    assert sql(lab, "SELECT count(*) FROM app.orders", dbname=prev)[0][0] == 2001
    assert sql(lab, "SELECT datallowconn FROM pg_database WHERE datname = %s", args=[prev])[0][0] is True

    # the same set again (a second attempt): the first kept database stays, this one keeps <prev>_2
    sql(lab, "INSERT INTO app.orders (customer_id, amount) VALUES (2, 1.00), (3, 2.00)", dbname=app_db)
    plan = module("postgresql_restore", pg_args(lab, name=app_db, path=b["backup"]["path"]), check_mode=True)
    assert plan["restore"]["previous_database"] == f"{prev}_2", plan
    again = module("postgresql_restore", pg_args(lab, name=app_db, path=b["backup"]["path"]))
    assert again.get("changed"), again
    assert again["restore"]["previous_database"] == f"{prev}_2"
    assert sql(lab, "SELECT count(*) FROM app.orders", dbname=prev)[0][0] == 2001
    assert sql(lab, "SELECT count(*) FROM app.orders", dbname=f"{prev}_2")[0][0] == 2002
    assert fingerprint(lab, app_db) == before


def test_restore_keep_previous_false_drops_replaced_db(lab, module, app_db, tmp_backup_root):
    b = module("postgresql_backup", pg_args(lab, name=app_db, dest=str(tmp_backup_root)))
    res = module("postgresql_restore", pg_args(lab, name=app_db, path=b["backup"]["path"], keep_previous=False))
    assert res.get("changed"), res
    assert res["restore"]["previous_database"] is None
    assert not db_exists(lab, f"{app_db}_pre_restore_{b['backup']['id'].lower()}")
    assert db_exists(lab, app_db)


def test_restore_in_place(lab, module, app_db, tmp_backup_root):
    before = fingerprint(lab, app_db)
    b = module("postgresql_backup", pg_args(lab, name=app_db, dest=str(tmp_backup_root)))
    sql(lab, "CREATE TABLE app.created_later (x int)", dbname=app_db)
    refused = module("postgresql_restore", pg_args(lab, name=app_db, path=b["backup"]["path"], strategy="in_place"))
    assert_clean_failure(refused, "keep_previous: false")
    assert sql(lab, "SELECT to_regclass('app.created_later') IS NOT NULL", dbname=app_db)[0][0] is True
    res = module(
        "postgresql_restore",
        pg_args(lab, name=app_db, path=b["backup"]["path"], strategy="in_place", keep_previous=False),
    )
    assert res.get("changed"), res
    assert fingerprint(lab, app_db) == before


def test_restore_into_other_name_from_source(lab, module, app_db, tmp_backup_root):
    module("postgresql_backup", pg_args(lab, name=app_db, dest=str(tmp_backup_root)))
    copy = app_db + "_copy"
    res = module("postgresql_restore", pg_args(lab, name=copy, source=app_db, backup_root=str(tmp_backup_root)))
    assert res.get("changed"), res
    assert sql(lab, "SELECT count(*) FROM app.orders", dbname=copy)[0][0] == 2000
    assert db_exists(lab, app_db)


# ------------------------------------------------------------------------------------------------
# check mode
# ------------------------------------------------------------------------------------------------


def test_backup_check_mode_writes_nothing(lab, module, app_db, tmp_backup_root):
    res = module("postgresql_backup", pg_args(lab, name=app_db, dest=str(tmp_backup_root / "new")), check_mode=True)
    assert res.get("changed") is True, res
    assert "app.orders" in res["backup"]["tables"]
    assert res["backup"]["size_bytes"] > 0
    assert res["steps"] == []
    assert not (tmp_backup_root / "new").exists()


def test_restore_check_mode_changes_nothing(lab, module, app_db, tmp_backup_root):
    b = module("postgresql_backup", pg_args(lab, name=app_db, dest=str(tmp_backup_root)))
    sql(lab, "INSERT INTO app.orders (customer_id, amount) VALUES (1, 1)", dbname=app_db)
    before = fingerprint(lab, app_db)
    dbs_before = sql(lab, "SELECT datname FROM pg_database ORDER BY 1")
    res = module("postgresql_restore", pg_args(lab, name=app_db, backup_root=str(tmp_backup_root)), check_mode=True)
    assert res.get("changed") is True, res
    plan = res["restore"]
    assert plan["backup_id"] == b["backup"]["id"]
    assert plan["verified_files"] == len(b["backup"]["manifest"]["files"])
    assert [s["step"] for s in plan["steps"]][-2:] == [
        f"stop sessions on {app_db} and rename it to {plan['previous_database']}",
        f"rename {plan['temporary_database']} to {app_db}",
    ]
    assert res["steps"] == plan["steps"]  # top level, as every module returns them
    assert fingerprint(lab, app_db) == before
    assert sql(lab, "SELECT datname FROM pg_database ORDER BY 1") == dbs_before


# ------------------------------------------------------------------------------------------------
# faults: corruption, interruption
# ------------------------------------------------------------------------------------------------


def _largest_data_file(path):
    files = [os.path.join(path, "data", f) for f in os.listdir(os.path.join(path, "data"))]
    return max(files, key=os.path.getsize)


def test_flipped_byte_is_refused_and_live_db_untouched(lab, module, app_db, tmp_backup_root):
    b = module("postgresql_backup", pg_args(lab, name=app_db, dest=str(tmp_backup_root)))
    victim = _largest_data_file(b["backup"]["path"])
    with open(victim, "r+b") as fh:
        fh.seek(os.path.getsize(victim) // 2)
        byte = fh.read(1)
        fh.seek(-1, os.SEEK_CUR)
        fh.write(bytes([byte[0] ^ 0x01]))
    sql(lab, "INSERT INTO app.orders (customer_id, amount) VALUES (1, 42)", dbname=app_db)
    before = fingerprint(lab, app_db)
    dbs_before = sql(lab, "SELECT datname FROM pg_database ORDER BY 1")
    for check_mode in (True, False):
        res = module("postgresql_restore", pg_args(lab, name=app_db, path=b["backup"]["path"]), check_mode=check_mode)
        assert_clean_failure(res, "checksum mismatch on data/" + os.path.basename(victim), "nothing was changed")
    assert fingerprint(lab, app_db) == before
    assert sql(lab, "SELECT datname FROM pg_database ORDER BY 1") == dbs_before


def test_tampered_row_count_fails_before_swap(lab, module, app_db, tmp_backup_root):
    """A manifest whose facts disagree with the data stops the restore before the live db is replaced."""
    b = module("postgresql_backup", pg_args(lab, name=app_db, dest=str(tmp_backup_root)))
    mpath = os.path.join(b["backup"]["path"], "manifest.json")
    manifest = json.loads(Path(mpath).read_text())
    manifest["facts"]["tables"]["app.orders"] = 1999
    with open(mpath, "w") as fh:
        json.dump(manifest, fh)
    sql(lab, "INSERT INTO app.orders (customer_id, amount) VALUES (1, 7)", dbname=app_db)
    before = fingerprint(lab, app_db)
    res = module("postgresql_restore", pg_args(lab, name=app_db, path=b["backup"]["path"]))
    assert_clean_failure(res, "app.orders has 2000 rows, manifest says 1999")
    assert fingerprint(lab, app_db) == before
    assert not db_exists(lab, f"{app_db}_restore_{b['backup']['id'].lower()}")


def test_kill_9_during_backup_leaves_no_valid_set(lab, module_runner_argv, app_db, tmp_backup_root):
    # enough data that pg_dump runs for a while at max compression on one job
    sql(
        lab,
        "INSERT INTO app.orders (customer_id, amount, payload) "
        "SELECT 1, g, decode(repeat(md5(g::text), 64), 'hex') FROM generate_series(1, 300000) g",
        dbname=app_db,
    )
    argv, env = module_runner_argv(
        "postgresql_backup", pg_args(lab, name=app_db, dest=str(tmp_backup_root), jobs=1, compress=9)
    )
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    set_parent = tmp_backup_root / "postgresql" / app_db
    deadline = time.time() + 30
    data_dir = None
    while time.time() < deadline:
        dirs = list(set_parent.glob("*/data")) if set_parent.exists() else []
        if dirs and any(dirs[0].iterdir()):
            data_dir = dirs[0]
            break
        time.sleep(0.05)
    assert data_dir is not None, "pg_dump never started writing"
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=30)
    # pg_dump must not outlive the module (it gets SIGTERM when its parent dies)
    deadline = time.time() + 10
    while time.time() < deadline:
        busy = sql(
            lab,
            "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND application_name = 'pg_dump'",
            args=[app_db],
        )
        if busy[0][0] == 0:
            break
        time.sleep(0.2)
    assert busy[0][0] == 0, "pg_dump kept running after the module was killed"
    set_dir = data_dir.parent
    assert not (set_dir / "manifest.json").exists()
    sys.path.insert(0, str(lab["root"] / ".cache" / "collections"))
    from ansible_collections.runbook.stack.plugins.module_utils import _backup_set as bs

    sets = bs.list_sets(bs.open_storage(str(tmp_backup_root)), "postgresql", app_db)
    assert [s.valid for s in sets] == [False]
    with pytest.raises(bs.BackupSetError):
        bs.find_set(bs.open_storage(str(tmp_backup_root)), "postgresql", app_db, "latest")


def test_failed_pg_dump_removes_partial_set(lab, module, app_db, tmp_backup_root):
    # a table the backup role may not read makes pg_dump fail part-way
    sql(
        lab,
        f'CREATE TABLE app.secret (x int); REVOKE ALL ON app.secret FROM PUBLIC; ALTER TABLE app.secret OWNER TO "{OWNER}"',
        dbname=app_db,
    )
    res = module(
        "postgresql_backup",
        pg_args(lab, name=app_db, dest=str(tmp_backup_root), login_user=READER, login_password=f"{READER}-pw"),
    )
    assert "permission denied" in res.get("msg", ""), res
    assert res.get("failed"), res
    parent = tmp_backup_root / "postgresql" / app_db
    assert not parent.exists() or list(parent.iterdir()) == []


# ------------------------------------------------------------------------------------------------
# bad input
# ------------------------------------------------------------------------------------------------


def test_unknown_database(lab, module, tmp_backup_root):
    res = module("postgresql_backup", pg_args(lab, name="rb_no_such_db", dest=str(tmp_backup_root)))
    assert_clean_failure(res, "rb_no_such_db", "does not exist", lab=lab)
    assert not (tmp_backup_root / "postgresql").exists()


def test_wrong_password_is_named_and_not_echoed(lab, module, app_db, tmp_backup_root):
    secret = "definitely-wrong-pw-1234"
    for mod, extra in (
        ("postgresql_backup", {"dest": str(tmp_backup_root)}),
        ("postgresql_restore", {"backup_root": str(tmp_backup_root)}),
    ):
        if mod == "postgresql_restore":
            module("postgresql_backup", pg_args(lab, name=app_db, dest=str(tmp_backup_root)))
        res = module(mod, pg_args(lab, name=app_db, login_password=secret, **extra))
        assert_clean_failure(res, "password authentication failed", "postgres")
        assert secret not in res["_stdout"] + res["_stderr"]


def test_unreachable_port_fails_fast(lab, module, tmp_backup_root):
    t0 = time.time()
    res = module(
        "postgresql_backup", pg_args(lab, name="x", dest=str(tmp_backup_root), login_port=1, connect_timeout=3)
    )
    assert_clean_failure(res, "cannot connect to PostgreSQL at 127.0.0.1:1", lab=lab)
    assert time.time() - t0 < 30


def test_unknown_backup_id(lab, module, app_db, tmp_backup_root):
    module("postgresql_backup", pg_args(lab, name=app_db, dest=str(tmp_backup_root)))
    res = module(
        "postgresql_restore",
        pg_args(lab, name=app_db, backup_root=str(tmp_backup_root), backup_id="20000101T000000Z"),
    )
    assert_clean_failure(res, "no postgresql backup set 20000101T000000Z", lab=lab)
    res = module(
        "postgresql_restore", pg_args(lab, name=app_db, backup_root=str(tmp_backup_root), backup_id="yesterday")
    )
    assert_clean_failure(res, "invalid backup id 'yesterday'")
    res = module("postgresql_restore", pg_args(lab, name=app_db, backup_root=str(tmp_backup_root / "empty")))
    assert_clean_failure(res, "no valid postgresql backup set")


def test_unwritable_dest(lab, module, app_db, tmp_backup_root):
    blocker = tmp_backup_root / "a-file"
    blocker.write_text("not a directory")
    for check_mode in (True, False):
        res = module(
            "postgresql_backup", pg_args(lab, name=app_db, dest=str(blocker / "backups")), check_mode=check_mode
        )
        assert_clean_failure(res, str(blocker), "not a directory")


def test_negative_jobs_and_bad_options(lab, module, app_db, tmp_backup_root):
    res = module("postgresql_backup", pg_args(lab, name=app_db, dest=str(tmp_backup_root), jobs=-2))
    assert_clean_failure(res, "jobs must be 1 or more, got -2")
    res = module("postgresql_backup", pg_args(lab, name=app_db, dest=str(tmp_backup_root), compress=12))
    assert_clean_failure(res, "compress must be a level from 0 to 9")
    res = module("postgresql_restore", pg_args(lab, name=app_db, backup_root=str(tmp_backup_root), jobs=0))
    assert_clean_failure(res, "jobs must be 1 or more")
    res = module("postgresql_restore", pg_args(lab, name=app_db, backup_root=str(tmp_backup_root), path="/x"))
    assert_clean_failure(res, "mutually exclusive")
    res = module("postgresql_restore", pg_args(lab, name=app_db))
    assert_clean_failure(res, "path", "backup_root")


# ------------------------------------------------------------------------------------------------
# copies left by earlier restores: retention of kept copies, leftover temporary databases (issue 10, point 4)
# ------------------------------------------------------------------------------------------------


def _databases(lab, prefix):
    return [
        r[0]
        for r in sql(lab, "SELECT datname FROM pg_database WHERE datname LIKE %s ORDER BY oid", args=[prefix + "%"])
    ]


def _kept(lab, db):
    return _databases(lab, f"{db}_pre_restore_")


def test_repeated_restores_keep_at_most_n_copies(lab, module, app_db, tmp_backup_root):
    b = module("postgresql_backup", pg_args(lab, name=app_db, dest=str(tmp_backup_root)))
    prev = f"{app_db}_pre_restore_{b['backup']['id'].lower()}"
    made, results = [], []
    for n in range(4):
        sql(lab, f"INSERT INTO app.orders (customer_id, amount) VALUES (1, {n})", dbname=app_db)
        res = module("postgresql_restore", pg_args(lab, name=app_db, path=b["backup"]["path"]))
        assert res.get("changed"), res
        just = res["restore"]["previous_database"]
        made.append(just)
        kept = _kept(lab, app_db)
        assert len(kept) <= 2, f"restore {n + 1} left {kept}"
        assert just in kept and kept[-1] == just, "the copy just made is never dropped"
        results.append((res["restore"], kept))
    assert made == [prev, f"{prev}_2", f"{prev}_3", f"{prev}_4"]
    for n, (restore, kept) in enumerate(results):
        assert restore["kept_copies"] == kept
        assert restore["dropped"] == ([made[n - 2]] if n >= 2 else []), restore
    # the newest copy holds the write made just before the last restore
    assert sql(lab, "SELECT count(*) FROM app.orders", dbname=made[-1])[0][0] == 2001

    # keep_previous_count: 1 keeps only the copy just made; 0 keeps every copy
    one = module("postgresql_restore", pg_args(lab, name=app_db, path=b["backup"]["path"], keep_previous_count=1))
    assert one["restore"]["dropped"] == made[-2:] and _kept(lab, app_db) == [one["restore"]["previous_database"]]
    for _rerun in range(2):
        every = module("postgresql_restore", pg_args(lab, name=app_db, path=b["backup"]["path"], keep_previous_count=0))
        assert every["restore"]["dropped"] == []
    assert len(_kept(lab, app_db)) == 3
    bad = module("postgresql_restore", pg_args(lab, name=app_db, path=b["backup"]["path"], keep_previous_count=-1))
    assert_clean_failure(bad, "keep_previous_count must be 0 (keep every copy) or more, got -1")


def test_check_mode_predicts_the_drops_and_drops_nothing(lab, module, app_db, tmp_backup_root):
    b = module("postgresql_backup", pg_args(lab, name=app_db, dest=str(tmp_backup_root)))
    old = [f"{app_db}_pre_restore_2026010{n}t000000z" for n in (1, 2, 3)]
    leftover = f"{app_db}_restore_20260101t000000z"
    for name in [*old, leftover]:
        sql(lab, f'CREATE DATABASE "{name}"')
    before = _databases(lab, app_db)
    res = module("postgresql_restore", pg_args(lab, name=app_db, path=b["backup"]["path"]), check_mode=True)
    assert res.get("changed"), res
    plan = res["restore"]
    # three older copies + the one this run would keep, at most two stay: the two oldest would go
    assert plan["dropped"] == [leftover, *old[:2]], plan
    # the live database, renamed to the copy, was created before the three: it stays first
    assert plan["kept_copies"] == [plan["previous_database"], old[2]], plan
    steps = [s["step"] for s in plan["steps"]]
    assert steps[0] == f"drop leftover {leftover}" and f"drop database {old[0]} (keep_previous_count)" in steps
    assert _databases(lab, app_db) == before, "check mode dropped something"

    real = module("postgresql_restore", pg_args(lab, name=app_db, path=b["backup"]["path"]))
    assert real["restore"]["dropped"] == plan["dropped"], real["restore"]
    assert _databases(lab, f"{app_db}_") == real["restore"]["kept_copies"] == plan["kept_copies"]


def test_crashed_swap_leftovers_are_named_then_cleaned_up(lab, module, app_db, tmp_backup_root):
    """A restore killed between its two renames leaves the live database as <db>_pre_restore_<id>,
    no <db>, and the verified temporary database <db>_restore_<id>."""
    b = module("postgresql_backup", pg_args(lab, name=app_db, dest=str(tmp_backup_root)))
    bid = b["backup"]["id"].lower()
    kept, scratch = f"{app_db}_pre_restore_{bid}", f"{app_db}_restore_{bid}"
    other_scratch = f"{app_db}_restore_20200101t000000z"
    sql(lab, "INSERT INTO app.orders (customer_id, amount) VALUES (1, 5)", dbname=app_db)
    sql(lab, f'ALTER DATABASE "{app_db}" RENAME TO "{kept}"')
    sql(lab, f'CREATE DATABASE "{scratch}"')
    sql(lab, f'CREATE DATABASE "{other_scratch}"')

    # a restore that fails (here: a role the set needs is missing) names the state the crash left
    mpath = Path(b["backup"]["path"]) / "manifest.json"
    original = mpath.read_bytes()
    manifest = json.loads(original)
    manifest["facts"]["database"]["owner"] = "rb_it_nobody"
    mpath.write_text(json.dumps(manifest))
    try:
        res = module("postgresql_restore", pg_args(lab, name=app_db, path=b["backup"]["path"]))
    finally:
        mpath.write_bytes(original)
    assert_clean_failure(
        res,
        f"database '{app_db}' does not exist: a restore stopped during its swap; the database it replaced is kept as {kept}",
        f"databases kept by earlier restores of '{app_db}': {kept}",
        f"left over by an interrupted restore (restored from a backup, never live data, safe to drop): "
        f"{scratch}, {other_scratch}",
    )
    assert db_exists(lab, kept) and db_exists(lab, scratch) and db_exists(lab, other_scratch)

    # the rerun drops both scratch copies, restores, and keeps the copy (no retention: the target was missing)
    res = module("postgresql_restore", pg_args(lab, name=app_db, path=b["backup"]["path"], keep_previous_count=1))
    assert res.get("changed"), res
    assert res["restore"]["dropped"] == [scratch, other_scratch], res["restore"]
    assert not db_exists(lab, scratch) and not db_exists(lab, other_scratch)
    assert res["restore"]["kept_copies"] == [kept]
    assert sql(lab, "SELECT count(*) FROM app.orders", dbname=kept)[0][0] == 2001
    assert sql(lab, "SELECT count(*) FROM app.orders", dbname=app_db)[0][0] == 2000


def test_a_kept_copy_named_like_a_scratch_copy_is_never_dropped(lab, module, app_db, tmp_backup_root):
    # restoring database "<db>_pre" would use the temporary name <db>_pre_restore_<id>: the copy a
    # restore of <db> kept under that name must not be dropped as a leftover
    b = module("postgresql_backup", pg_args(lab, name=app_db, dest=str(tmp_backup_root)))
    other = f"{app_db}_pre"
    copy = f"{other}_restore_{b['backup']['id'].lower()}"
    sql(lab, f'CREATE DATABASE "{copy}"')
    res = module("postgresql_restore", pg_args(lab, name=other, source=app_db, path=b["backup"]["path"]))
    assert_clean_failure(res, f"database {copy} exists and is named like a copy", "nothing was changed")
    assert db_exists(lab, copy) and not db_exists(lab, other)

# Copyright: runbook.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""redis_restore_to_time's last step, the AOF rewrite, when the restored server stops answering
between its start and the rewrite (pure logic: the server is a fake)."""

from __future__ import annotations

import pytest

from ansible_collections.runbook.stack.plugins.module_utils._redis import ConnInfo, RedisError
from ansible_collections.runbook.stack.plugins.modules import redis_restore_to_time as mod

INFO = ConnInfo(host="127.0.0.1", port=6399)
RESULT = {"dbsize": 7, "aof_path": "/data/appendonlydir", "previous_aof": "/data/appendonlydir.pre-restore-X"}


class FakeClient:
    def __init__(self, calls):
        self.calls = calls

    def bgrewriteaof(self):
        self.calls.append("bgrewriteaof")

    def close(self):
        self.calls.append("close")


def test_a_server_that_answers_again_is_rewritten(monkeypatch):
    answers = iter([None, None, {"loading": 0}])
    calls: list[str] = []
    monkeypatch.setattr(mod, "ready", lambda info: next(answers))
    monkeypatch.setattr(mod, "connect", lambda info: FakeClient(calls))
    monkeypatch.setattr(mod, "wait_rewrite_idle", lambda client, timeout: calls.append("idle"))
    mod.rewrite({"timeout": 5}, INFO, RESULT)
    assert calls == ["bgrewriteaof", "idle", "close"]


def test_a_server_that_stays_down_gets_an_error_saying_the_restore_is_in_place(monkeypatch):
    monkeypatch.setattr(mod, "ready", lambda info: None)
    monkeypatch.setattr(mod, "connect", lambda info: pytest.fail("connected to a server that does not answer"))
    with pytest.raises(RedisError) as err:
        mod.rewrite({"timeout": 0.3}, INFO, RESULT)
    msg = str(err.value)
    assert "127.0.0.1:6399" in msg and "stopped answering before the AOF rewrite" in msg
    assert "the restore is in place in /data/appendonlydir" in msg
    assert "/data/appendonlydir.pre-restore-X" in msg and "run BGREWRITEAOF" in msg

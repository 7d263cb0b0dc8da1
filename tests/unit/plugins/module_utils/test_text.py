"""The shared operator-message helper every service's module_utils uses."""

from __future__ import annotations

from ansible_collections.runbook.stack.plugins.module_utils._common.text import one_line


def test_one_line_folds_whitespace_and_masks_every_secret():
    msg = "FATAL:  password hunter2\n  rejected\tfor token tok-9 (hunter2)"
    assert one_line(msg, "hunter2", "tok-9") == "FATAL: password ******** rejected for token ******** (********)"


def test_one_line_ignores_empty_or_missing_secrets():
    assert one_line(ValueError("a  b"), "", None) == "a b"

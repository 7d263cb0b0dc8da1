# Copyright: runbook.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Operator-facing message text shared by every service's module_utils (private)."""

from __future__ import annotations

from typing import Any

MASK = "********"


def one_line(msg: Any, *secrets: str | None) -> str:
    """``msg`` as one line (whitespace runs folded), every non-empty secret replaced by ``********``."""
    text = " ".join(str(msg).split())
    for secret in secrets:
        if secret:
            text = text.replace(secret, MASK)
    return text

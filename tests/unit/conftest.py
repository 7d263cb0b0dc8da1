# Copyright: runbook.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit-test setup: make ``ansible_collections.runbook.stack`` importable.

The bootstrap links this checkout as ``.cache/collections/ansible_collections/runbook/stack``; the
tests import the collection through that link, exactly as Ansible does.
"""

from __future__ import annotations

import sys
from pathlib import Path

COLLECTIONS = Path(__file__).resolve().parents[2] / ".cache" / "collections"

if str(COLLECTIONS) not in sys.path:
    sys.path.insert(0, str(COLLECTIONS))

"""What a hint's body may say, and nothing more. Pure.

A hint is a JSON object naming one record to read again::

    {"table": "change_request", "sys_id": "<the change>"}               an insert or update
    {"table": "task_ci", "task": "<the change>", "sys_id": "<the row>"}  an affected CI added/removed

``sys_updated_on``, ``sys_mod_count``, ``nonce``, ``op`` and any other key may be present and are never read:
the connector reads the record (and, for ``task_ci`` or a change it does not know yet, its
``task_ci`` rows) through the Table API with its own credentials, and applies what it reads. A
``task_ci`` hint names the *parent change* in ``task`` (a deleted row can no longer be read, its
parent can); its own ``sys_id`` is optional and ignored.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

#: a record id the connector will put in a ``sys_idIN`` query (ServiceNow's are 32 hex digits)
_SYS_ID = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
TASK_CI = "task_ci"


@dataclass(frozen=True)
class Hint:
    """Read ``sys_id`` again; ``cis``: its ``task_ci`` rows too (they changed)."""

    sys_id: str
    cis: bool = False


def parse_hint(body: bytes, table: str) -> Hint | None:
    """The hint in ``body`` for a source whose changes live in ``table``, or None when the body is
    not one (not JSON, not an object, another table, no usable id)."""
    try:
        data = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None
    if not isinstance(data, dict):
        return None
    kind = data.get("table")
    if kind == table:
        sys_id, cis = data.get("sys_id"), False
    elif kind == TASK_CI:
        sys_id, cis = data.get("task"), True
    else:
        return None
    if not isinstance(sys_id, str) or not _SYS_ID.fullmatch(sys_id):
        return None
    return Hint(sys_id, cis)

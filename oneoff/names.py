"""What a name may look like: hosts, groups, roles, tasks, locks and run ids, checked once.

All start with a letter or digit, so a name is never read as an option (``-x``) or a
hidden file, and none holds a slash, a space or a shell character, so a name can go
into a path on the host or an argv without surprises. Task names may also hold ``:``
(``db:migrate``); run ids may not hold ``.`` because they name folders under
``state_dir`` and ``..`` must never be one. Imports nothing of oneoff: any layer may
use it.
"""

from __future__ import annotations

import re

__all__ = [
    "LOCK_NAME_RULE",
    "NAME",
    "NAME_RULE",
    "RUN_ID",
    "RUN_ID_RULE",
    "TASK_NAME",
    "TASK_NAME_RULE",
    "is_lock_name",
    "is_name",
    "is_run_id",
    "is_task_name",
]

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
"""Hosts, groups, roles and locks."""
TASK_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]*")
RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")

NAME_RULE = "letters, digits, '_', '.', '-', starting with a letter or digit"
TASK_NAME_RULE = "letters, digits, '_', '.', ':', '-', starting with a letter or digit"
LOCK_NAME_RULE = f"{NAME_RULE} (no slashes)"
"""A lock is the file ``state_dir/locks/NAME.lock``, hence the reminder about slashes."""
RUN_ID_RULE = "letters, digits, '_', '-', starting with a letter or digit"


def is_name(text: str) -> bool:
    """A host, group or role name."""
    return NAME.fullmatch(text) is not None


def is_task_name(text: str) -> bool:
    return TASK_NAME.fullmatch(text) is not None


def is_lock_name(text: str) -> bool:
    return NAME.fullmatch(text) is not None


def is_run_id(text: str) -> bool:
    return RUN_ID.fullmatch(text) is not None

"""Named admin commands, wherever they are defined."""

from __future__ import annotations

import re
import shlex
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from oneoff.release import ResolvedRelease

RunPolicy = Literal["once", "each"]
_TASK_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]*")
_LOCK_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


@dataclass(frozen=True)
class Task:
    """One named admin command, e.g. ``migrate`` -> ``python manage.py migrate --noinput``.

    ``source`` says where it was defined (``inventory.yaml:42``, ``pyproject.toml``,
    ``Procfile``, ``preset: django``) so ``oneoff tasks`` can show it and collisions
    can be explained.
    """

    name: str
    command: tuple[str, ...]
    source: str
    run: RunPolicy = "once"
    lock: str | None = None
    timeout: float | None = None
    tty: bool | None = None
    description: str | None = None


@dataclass(frozen=True)
class ReleaseTasks:
    """Tasks a release brings: shipped in its files, or presets for its framework.

    ``problems`` are task-file errors (``file:line: why``); the other tasks keep working.
    """

    shipped: dict[str, Task]
    presets: dict[str, Task]
    problems: tuple[str, ...] = ()


_RUN_POLICIES = ("once", "each")


def release_tasks(release: ResolvedRelease) -> ReleaseTasks:
    """Read ``[tool.oneoff.tasks]`` and the ``Procfile`` the probe brought back, and the presets."""
    problems: list[str] = []
    shipped: dict[str, Task] = {}
    procfile = release.files.get("Procfile")
    if procfile is not None:
        shipped.update(_procfile_tasks(procfile.decode("utf-8", "replace"), problems))
    pyproject = release.files.get("pyproject.toml")
    if pyproject is not None:
        shipped.update(_pyproject_tasks(pyproject.decode("utf-8", "replace"), problems))
    return ReleaseTasks(shipped, _presets(release), tuple(problems))


def _procfile_tasks(text: str, problems: list[str]) -> dict[str, Task]:
    tasks: dict[str, Task] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, command = line.partition(":")
        name = name.strip()
        try:
            argv = tuple(shlex.split(command))
        except ValueError as exc:
            problems.append(f"Procfile:{number}: {exc}")
            continue
        if not sep or not _TASK_NAME.fullmatch(name) or not argv:
            problems.append(f"Procfile:{number}: expected 'name: command'")
            continue
        tasks[name] = Task(name, argv, source=f"Procfile:{number}")
    return tasks


def _pyproject_tasks(text: str, problems: list[str]) -> dict[str, Task]:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        problems.append(f"pyproject.toml: {exc}")
        return {}
    table = data.get("tool", {}).get("oneoff", {}).get("tasks", {})
    if not isinstance(table, dict):
        problems.append("pyproject.toml: [tool.oneoff.tasks] must be a table")
        return {}
    tasks: dict[str, Task] = {}
    for name, value in table.items():
        where = f"pyproject.toml [tool.oneoff.tasks] {name}"
        try:
            tasks[name] = _task_from_value(name, value, where)
        except ValueError as exc:
            problems.append(f"{where}: {exc}")
    return tasks


def _task_from_value(name: str, value: object, source: str) -> Task:
    if not _TASK_NAME.fullmatch(name):
        raise ValueError("task names are letters, digits and _ . : -")
    if isinstance(value, str):
        value = {"command": value}
    if not isinstance(value, dict):
        raise ValueError("expected a command string or a table with `command`")
    unknown = set(value) - {"command", "run", "lock", "timeout", "tty", "description"}
    if unknown:
        raise ValueError(f"unknown key(s): {', '.join(sorted(unknown))}")
    command = value.get("command")
    argv = tuple(shlex.split(command)) if isinstance(command, str) else command
    if not isinstance(argv, (tuple, list)) or not argv or not all(isinstance(w, str) for w in argv):
        raise ValueError("`command` must be a non-empty string or list of strings")
    run = value.get("run", "once")
    if run not in _RUN_POLICIES:
        raise ValueError("`run` must be once or each")
    lock = value.get("lock")
    if lock is not None and (not isinstance(lock, str) or not _LOCK_NAME.fullmatch(lock)):
        raise ValueError("`lock` must be a name (letters, digits, _ . -)")
    timeout = value.get("timeout")
    tty = value.get("tty")
    description = value.get("description")
    if tty is not None and not isinstance(tty, bool):
        raise ValueError("`tty` must be true or false")
    from oneoff.durations import parse_duration

    return Task(
        name,
        tuple(argv),
        source=source,
        run=run,
        lock=lock,
        timeout=parse_duration(timeout) if timeout is not None else None,
        tty=tty,
        description=str(description) if description is not None else None,
    )


def _presets(release: ResolvedRelease) -> dict[str, Task]:
    """Zero-configuration tasks for common frameworks, recognised from the release's files."""
    markers = release.markers
    presets: dict[str, Task] = {}
    if "manage.py" in markers:
        presets["migrate"] = Task(
            "migrate",
            ("python", "manage.py", "migrate", "--noinput"),
            source="preset: django",
            lock="migrate",
            description="apply Django migrations",
        )
        presets["shell"] = Task(
            "shell",
            ("python", "manage.py", "shell"),
            source="preset: django",
            tty=True,
            description="Django shell with the release's settings",
        )
    elif "alembic.ini" in markers:
        presets["migrate"] = Task(
            "migrate",
            ("alembic", "upgrade", "head"),
            source="preset: alembic",
            lock="migrate",
            description="apply Alembic migrations",
        )
    elif "migrations" in markers:
        presets["migrate"] = Task(
            "migrate",
            ("flask", "db", "upgrade"),
            source="preset: flask-migrate",
            lock="migrate",
            description="apply Flask-Migrate migrations (needs FLASK_APP in the env file)",
        )
    if "shell" not in presets:
        repl = (
            "ipython"
            if "bin/ipython" in markers
            else "bpython"
            if "bin/bpython" in markers
            else "python"
        )
        presets["shell"] = Task(
            "shell",
            (repl,),
            source=f"preset: {repl}",
            tty=True,
            description="Python REPL in the release",
        )
    return presets

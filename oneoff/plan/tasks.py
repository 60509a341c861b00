"""Named admin commands, wherever they are defined."""

from __future__ import annotations

import re
import shlex
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from oneoff.scripts import render
from oneoff.values import Task

if TYPE_CHECKING:
    from oneoff.plan.probe import ResolvedRelease

_TASK_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]*")
_LOCK_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


@dataclass(frozen=True)
class ReleaseTasks:
    """Tasks a release brings: shipped in its files, or presets for its framework.

    ``problems`` are task-file errors (``file:line: why``); the other tasks keep working.
    """

    pyproject: dict[str, Task]
    procfile: dict[str, Task]
    presets: dict[str, Task]
    problems: tuple[str, ...] = ()

    @property
    def shipped(self) -> dict[str, Task]:
        """Tasks defined in the release's files; ``pyproject.toml`` wins over the Procfile."""
        return {**self.procfile, **self.pyproject}


_RUN_POLICIES = ("once", "each")


_PARSED: dict[int, tuple[ResolvedRelease, ReleaseTasks]] = {}
_PARSED_KEPT = 4096


def release_tasks(release: ResolvedRelease) -> ReleaseTasks:
    """The tasks a release brings, parsed once per probed release.

    Host selection, spec building and the task-file warning all ask; a ResolvedRelease
    is one probe's answer (immutable), so its parse is kept by identity for this process.
    """
    kept = _PARSED.get(id(release))
    if kept is not None and kept[0] is release:
        return kept[1]
    found = _parse_release_tasks(release)
    if len(_PARSED) >= _PARSED_KEPT:  # a long-lived API process probes without end
        _PARSED.clear()
    _PARSED[id(release)] = (release, found)
    return found


def _parse_release_tasks(release: ResolvedRelease) -> ReleaseTasks:
    """Read ``[tool.oneoff.tasks]`` and the ``Procfile`` the probe brought back, and the presets."""
    problems: list[str] = []
    procfile = release.files.get("Procfile")
    pyproject = release.files.get("pyproject.toml")
    return ReleaseTasks(
        pyproject=_pyproject_tasks(pyproject.decode("utf-8", "replace"), problems)
        if pyproject is not None
        else {},
        procfile=_procfile_tasks(procfile.decode("utf-8", "replace"), problems)
        if procfile is not None
        else {},
        presets=_presets(release),
        problems=tuple(problems),
    )


def definitions(
    inventory_tasks: Mapping[str, Task], found: ReleaseTasks | None
) -> dict[str, tuple[Task, ...]]:
    """Every definition of every task name, by name, the one that wins first.

    Admin code ships with the release, so the release's own files win (``pyproject.toml``
    over the ``Procfile``), then the inventory, then the framework presets.
    """
    layers: tuple[Mapping[str, Task], ...] = (inventory_tasks,)
    if found is not None:
        layers = (found.pyproject, found.procfile, inventory_tasks, found.presets)
    names = sorted({name for layer in layers for name in layer})
    return {name: tuple(layer[name] for layer in layers if name in layer) for name in names}


def task_lines(tasks: Mapping[str, Task]) -> list[str]:
    """One aligned line per task (name, command, where from, description), for messages."""
    rows = [
        (t.name, render(t.command), t.source, t.description or "")
        for t in sorted(tasks.values(), key=lambda t: t.name)
    ]
    if not rows:
        return []
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    return [
        "  ".join([*(cell.ljust(w) for cell, w in zip(row, widths, strict=False)), row[3]]).rstrip()
        for row in rows
    ]


# A Procfile line is a shell command (Heroku and foreman run it with sh). Unquoted, these
# need the shell; within double quotes, only $ ` and \ do.
_SHELL_SYNTAX = frozenset("$;&|<>`()*?[]{}~#\n")
_DOUBLE_QUOTED_SYNTAX = frozenset("$`\\")


def needs_shell(line: str) -> bool:
    """True when *line* uses shell syntax (``&&``, ``$VAR``, globs, ``VAR=x cmd``...), so it
    must run as ``sh -c LINE``; False when splitting it into an argv means the same."""
    quote = ""
    for char in line:
        if quote == "'":
            quote = "" if char == "'" else quote
        elif quote == '"':
            if char in _DOUBLE_QUOTED_SYNTAX:
                return True
            quote = "" if char == '"' else quote
        elif char in "'\"":
            quote = char
        elif char in _SHELL_SYNTAX or char == "\\":
            return True
    first = line.split(maxsplit=1)[0] if line.strip() else ""
    return "=" in first.split("'", 1)[0].split('"', 1)[0]


def _procfile_tasks(text: str, problems: list[str]) -> dict[str, Task]:
    tasks: dict[str, Task] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, command = line.partition(":")
        name, command = name.strip(), command.strip()
        if not sep or not _TASK_NAME.fullmatch(name) or not command:
            problems.append(f"Procfile:{number}: expected 'name: command'")
            continue
        try:
            argv = tuple(shlex.split(command))
        except ValueError as exc:
            problems.append(f"Procfile:{number}: {exc}")
            continue
        if needs_shell(command):
            tasks[name] = Task(name, ("sh", "-c", command), f"Procfile:{number}", shell=True)
        else:
            tasks[name] = Task(name, argv, source=f"Procfile:{number}")
    return tasks


_TOML_WHERE = re.compile(r"\s*\(at (?:line (\d+), column (\d+)|end of document)\)$")


def _pyproject_tasks(text: str, problems: list[str]) -> dict[str, Task]:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        problems.append(_toml_problem(str(exc), text))
        return {}
    table: object = data
    for key in ("tool", "oneoff", "tasks"):
        table = table.get(key, {}) if isinstance(table, dict) else None
    lines = _task_line_numbers(text)

    def at(name: str) -> str:
        return f"pyproject.toml:{lines[name]}" if name in lines else "pyproject.toml"

    if not isinstance(table, dict):
        problems.append(f"{at('')}: [tool.oneoff.tasks] must be a table")
        return {}
    tasks: dict[str, Task] = {}
    for name, value in table.items():
        where = at(name)
        try:
            tasks[name] = _task_from_value(name, value, where)
        except ValueError as exc:
            problems.append(f"{where}: [tool.oneoff.tasks] {name}: {exc}")
    return tasks


def _toml_problem(message: str, text: str) -> str:
    """``pyproject.toml:LINE: why``, from tomllib's ``why (at line L, column C)``."""
    match = _TOML_WHERE.search(message)
    if match is None:
        return f"pyproject.toml: {message}"
    why = message[: match.start()]
    if match.group(1) is None:
        return f"pyproject.toml:{text.count(chr(10)) + 1}: {why} (at the end of the file)"
    return f"pyproject.toml:{match.group(1)}: {why} (column {match.group(2)})"


_TOML_KEY = re.compile(r"""\s*(?:"([^"]*)"|'([^']*)'|([A-Za-z0-9_-]+))\s*=""")


def _task_line_numbers(text: str) -> dict[str, int]:
    """Where each task of ``[tool.oneoff.tasks]`` is defined, so problems name a line.

    tomllib gives values without positions; this reads the usual spellings (a key under
    ``[tool.oneoff.tasks]``, or a ``[tool.oneoff.tasks.NAME]`` table) and skips the rest.
    """
    found: dict[str, int] = {}
    section = ""
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if line.startswith("["):
            section = re.sub(r"\s+", "", line.split("#", 1)[0]).strip("[]").replace('"', "")
            if section == "tool.oneoff.tasks":
                found.setdefault("", number)
            elif section.startswith("tool.oneoff.tasks."):
                found.setdefault(section.removeprefix("tool.oneoff.tasks."), number)
            continue
        if section == "tool.oneoff.tasks" and (match := _TOML_KEY.match(line)):
            found.setdefault(next(g for g in match.groups() if g is not None), number)
    return found


def _task_from_value(name: str, value: object, source: str) -> Task:
    if not _TASK_NAME.fullmatch(name):
        raise ValueError("task names are letters, digits and _ . : -")
    if isinstance(value, (str, list)):
        value = {"command": value}
    if not isinstance(value, dict):
        raise ValueError("expected a command (a string or a list) or a table with `command`")
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
    elif "migrations/alembic.ini" in markers:
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

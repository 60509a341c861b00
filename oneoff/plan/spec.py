"""From what the user asked and a pinned release to one immutable RunSpec per host.

Pure functions: no I/O, no Fabric. The argv of a run is decided here and rendered
for display with the same quoting function the remote shell text uses.
"""

from __future__ import annotations

import posixpath
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from oneoff.errors import UsageError
from oneoff.plan.probe import ProbeRequest, ResolvedRelease
from oneoff.plan.tasks import definitions, release_tasks, task_lines
from oneoff.scripts import render
from oneoff.values import Masked, Mode, RunSpec, Task

if TYPE_CHECKING:
    from oneoff.config.model import HostSettings

Kind = Literal["task", "command", "script"]


@dataclass(frozen=True)
class Invocation:
    """What the user typed, independent of any host. ``None`` means "not given"."""

    kind: Kind
    words: tuple[str, ...]  # task: (NAME, *ARGS); command: argv; script: (PATH, *ARGS)
    extra_env: Masked = field(default_factory=Masked)
    release_id: str | None = None
    timeout: float | None = None
    lock: str | None = None
    lock_wait: float = 0.0
    tty: bool | None = None  # -t / -T; None: the task's `tty`, else `interactive`
    interactive: bool = False  # our stdin and stdout are terminals and one host runs
    one_host: bool = True
    audit: bool = True
    mode: Mode = "run"
    term: str | None = None
    detach: bool = False
    winsize: tuple[int, int] | None = None

    @property
    def task_name(self) -> str | None:
        return self.words[0] if self.kind == "task" else None


def probe_request(settings: HostSettings, invocation: Invocation | None = None) -> ProbeRequest:
    return ProbeRequest(
        app_root=settings.app_root,
        current=settings.current,
        release_id=invocation.release_id if invocation else None,
        venv=settings.venv,
        env_files=settings.env_files,
    )


def find_task(
    name: str, inventory_tasks: Mapping[str, Task], release: ResolvedRelease | None
) -> Task:
    """Release-shipped tasks win over the inventory's, which win over presets.

    An unknown name is refused with the list ``oneoff tasks`` would show, and with the
    release's task-file problems, which may be why the task is missing.
    """
    found = release_tasks(release) if release is not None else None
    tasks = {n: d[0] for n, d in definitions(inventory_tasks, found).items()}
    if name in tasks:
        return tasks[name]
    where = f"release {release.release_id}" if release is not None else "the inventory"
    lines = [f"unknown task {name!r}; known tasks on {where}:", *(task_lines(tasks) or ["(none)"])]
    lines += [f"skipped: {problem}" for problem in (found.problems if found else ())]
    lines.append("or run any command: oneoff -H HOST -- COMMAND [ARGS...]")
    raise UsageError("\n  ".join(lines), host=release.host if release else None)


def all_tasks(
    inventory_tasks: Mapping[str, Task], release: ResolvedRelease | None
) -> dict[str, Task]:
    """Every task visible on a release, by precedence (release > inventory > preset)."""
    found = release_tasks(release) if release is not None else None
    return {name: tasks[0] for name, tasks in definitions(inventory_tasks, found).items()}


def task_argv(task: Task, args: tuple[str, ...], host: str | None = None) -> tuple[str, ...]:
    """A task's command with ARGS appended; a shell-line task refuses them rather than
    pass them to the last command of the line only (``--dry-run`` reaching ``b`` of
    ``a && b`` would let ``a`` run for real)."""
    if task.shell and args:
        raise UsageError(
            f"task {task.name!r} ({task.source}) is a shell line and takes no arguments",
            host=host,
            hint="run the command with its arguments: oneoff -H HOST -- COMMAND [ARGS...]",
        )
    return (*task.command, *args)


def script_argv(path: str, args: tuple[str, ...]) -> tuple[str, ...]:
    """A script shipped in the release; a path that leaves the release is refused.

    The check is on the path as written (the agent runs it from the release folder), so
    ``..`` and absolute paths are refused before anything connects to run.
    """
    normal = posixpath.normpath(path)
    if not path or normal == ".":
        raise UsageError("run needs a script path", hint="e.g. oneoff -H HOST run scripts/fix.py")
    if posixpath.isabs(path) or normal == ".." or normal.startswith("../"):
        raise UsageError(
            f"script {path!r} is outside the release",
            hint="give a path relative to the release, e.g. scripts/fix.py",
        )
    if normal.endswith(".py"):
        return ("python", normal, *args)
    return ("./" + normal, *args)


def build_spec(
    invocation: Invocation,
    settings: HostSettings,
    release: ResolvedRelease,
    inventory_tasks: Mapping[str, Task],
    *,
    run_id: str,
    operator: Mapping[str, str],
) -> RunSpec:
    task: Task | None = None
    if invocation.kind == "task":
        task = find_task(invocation.words[0], inventory_tasks, release)
        argv = task_argv(task, invocation.words[1:], host=release.host)
    elif invocation.kind == "script":
        argv = script_argv(invocation.words[0], invocation.words[1:])
    else:
        argv = invocation.words
    if not argv:
        raise UsageError("no command to run", hint="oneoff -H HOST TASK, or -- COMMAND")
    timeout = (
        invocation.timeout if invocation.timeout is not None else (task.timeout if task else None)
    )
    lock = invocation.lock or (task.lock if task else None)
    if invocation.detach:
        pty = False
    elif invocation.tty is not None:
        pty = invocation.tty
    elif task is not None and task.tty is False:
        pty = False  # `tty: false`: never; `true` (or unset): when our terminal allows it
    else:
        pty = invocation.interactive
    return RunSpec(
        host=settings.name,
        run_id=run_id,
        argv=tuple(argv),
        display=render(argv),
        release_path=release.path,
        release_id=release.release_id,
        revision=release.revision,
        venv=release.venv,
        env_files=release.env_files,
        state_dir=settings.state_dir,
        extra_env=invocation.extra_env,
        task=task.name if task else None,
        task_source=task.source if task else None,
        mode=invocation.mode,
        timeout=timeout,
        kill_after=settings.kill_after,
        lock=lock,
        lock_wait=invocation.lock_wait,
        pty=pty,
        term=invocation.term,
        winsize=invocation.winsize,
        detach=invocation.detach,
        runs_keep=settings.runs_keep,
        audit=invocation.audit,
        alive_interval=settings.alive_interval,
        alive_count_max=settings.alive_count_max,
        operator=operator,
    )

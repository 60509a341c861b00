"""The probe: what it asks (ProbeRequest) and its answer parsed (ResolvedRelease).

The script is :func:`oneoff.scripts.probe_script`, one POSIX ``sh`` script that assumes
nothing about the host but ``sh`` and coreutils-like tools: it resolves ``current``
(or a pinned ``--release``) to a physical path, checks it lies inside the app root,
finds the venv interpreter, checks each env file, and prints the release's task files.
Its output is ``key=value`` lines (``key:SIZE``, SIZE bytes and a newline for a value
that holds a newline), files as ``file=NAME SIZE`` followed by exactly SIZE bytes, and
a closing marker. In a run, the same script then ``exec``s the venv's Python with the
agent's BOOT, so probe and run cost one exec on one connection, and the run uses the
path the probe pinned, never ``current`` again.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

from oneoff import scripts
from oneoff.errors import AgentError, ReleaseError, UsageError

END_MARKER = scripts.PROBE_END.encode() + b"\n"
TASK_FILES = ("pyproject.toml", "Procfile")
# Flask-Migrate's `flask db init` writes migrations/alembic.ini: a bare migrations/ folder
# could belong to any tool, so that file is the marker.
MARKERS = ("manage.py", "alembic.ini", "migrations/alembic.ini", "bin/ipython", "bin/bpython")
MAX_TASK_FILE = 256 * 1024

ProbeMode = Literal["probe", "run"]


@dataclass(frozen=True)
class ProbeRequest:
    """What to resolve on one host; every string here is quoted into the script."""

    app_root: str
    current: str = "current"
    release_id: str | None = None
    venv: str | None = None
    env_files: tuple[str, ...] = (".env",)


@dataclass(frozen=True)
class ResolvedRelease:
    """A release pinned on one host: the absolute paths a run will use."""

    host: str
    app_root: str
    path: str
    release_id: str
    venv: str
    python: str
    env_files: tuple[str, ...]
    revision: str | None = None
    deployed_at: int | None = None
    python_version: str | None = None
    files: dict[str, bytes] = field(default_factory=dict)
    markers: frozenset[str] = frozenset()
    releases: tuple[str, ...] = ()


def probe_script(request: ProbeRequest, mode: ProbeMode, boot: str = "") -> str:
    """The probe for *request* (and, for a run, the exec of the agent with *boot*) as sh."""
    return scripts.probe_script(
        app_root=request.app_root,
        current=request.current,
        release_id=request.release_id or "",
        venv=request.venv or "",
        env_files=request.env_files,
        markers=MARKERS,
        task_files=TASK_FILES,
        max_file=MAX_TASK_FILE,
        boot=boot if mode == "run" else None,
    )


_MESSAGES = {
    "app_root_missing": ("app root {path} does not exist", "check app_root in the inventory"),
    "app_root_not_dir": ("app root {path} is not a directory", "check app_root in the inventory"),
    "app_root_unreadable": ("cannot enter app root {path}", "check its permissions"),
    "release_bad_id": ("{path!r} is not a release id", "pass a folder name under releases/"),
    "release_unknown": (
        "no release {path!r} in {detail}",
        "releases there, newest first: {releases}",
    ),
    "release_unreadable": ("cannot enter release {path}", "check its permissions"),
    "current_dangling": (
        "{path} is a dangling symlink (-> {detail})",
        "the release it points to is gone; redeploy or repoint it",
    ),
    "current_missing": ("{path} does not exist", "deploy a release first, or set `current`"),
    "current_not_dir": ("{path} is not a directory", "point `current` at a release folder"),
    "current_unreadable": ("cannot enter {path}", "check its permissions"),
    "release_outside": (
        "{path} resolves to {detail}, outside the app root",
        "a release must live under app_root",
    ),
    "venv_missing": (
        "no virtualenv interpreter at {path}",
        "check `venv` in the inventory, or build the release's venv",
    ),
    "venv_not_found": (
        "no virtualenv interpreter in {path}",
        "tried {detail}; set `venv` in the inventory, or build the release's venv",
    ),
    "venv_broken": (
        "{path} is a dangling symlink (-> {detail})",
        "the venv's base Python is gone; rebuild the venv",
    ),
    "env_dangling": (
        "env file {path} is a dangling symlink (-> {detail})",
        "create the file it points to, or fix env_file",
    ),
    "env_missing": ("env file {path} does not exist", "create it, or fix env_file"),
    "env_not_file": ("env file {path} is not a regular file", "fix env_file"),
    "env_unreadable": ("env file {path} is not readable by the SSH user", "check its owner/mode"),
}

_USER_ERRORS = frozenset({"release_bad_id", "release_unknown"})


def parse_probe(host: str, data: bytes) -> ResolvedRelease:
    """Turn the probe's output into a ResolvedRelease, or raise ReleaseError naming host and path."""
    fields: dict[str, list[str]] = {}
    files: dict[str, bytes] = {}
    for kind, key, value in _scan(data)[0]:
        if kind == "file":
            files[key] = value
        else:
            fields.setdefault(key, []).append(value.decode("utf-8", "replace"))

    def one(key: str) -> str | None:
        values = fields.get(key)
        return values[0] if values else None

    if "error" in fields:
        code = one("error") or "unknown"
        message, hint = _MESSAGES.get(code, ("probe failed: {path}", "see --debug"))
        releases = ", ".join(fields.get("releases", [])) or "(none)"
        values = {"path": one("path") or "", "detail": one("detail") or "?", "releases": releases}
        # a release id the user typed that is not there is their mistake (exit 2, like an
        # unknown task); anything else is the host's release failing to resolve (255)
        error = UsageError if code in _USER_ERRORS else ReleaseError
        raise error(message.format(**values), host=host, hint=hint.format(**values))
    release = one("release")
    if release is None:
        raise AgentError("the probe printed no release", host=host, hint="run with --debug")
    deployed = one("deployed_at")
    return ResolvedRelease(
        host=host,
        app_root=one("app_root") or "",
        path=release,
        release_id=one("release_id") or release.rsplit("/", 1)[-1],
        venv=one("venv") or "",
        python=one("python") or "",
        env_files=tuple(fields.get("env_file", [])),
        revision=one("revision") or None,
        deployed_at=int(deployed) if deployed and deployed.isdigit() else None,
        python_version=one("python_version") or None,
        files=files,
        markers=frozenset(fields.get("marker", [])),
        releases=tuple(fields.get("releases", [])),
    )


_FRAMED = re.compile(rb"(?P<key>[a-z_]+):(?P<size>\d+)")
_Record = tuple[Literal["field", "file"], str, bytes]


def _scan(data: bytes) -> tuple[list[_Record], int | None]:
    """The probe's records in *data*, and where the end marker starts (None until it has come).

    A record is a ``key=value`` line, a ``key:SIZE`` line followed by SIZE bytes and a
    newline (a value holding a newline), or a ``file=NAME SIZE`` line followed by SIZE
    bytes. Stops at a record that is still incomplete.
    """
    records: list[_Record] = []
    pos = 0
    while (end := data.find(b"\n", pos)) >= 0:
        line = data[pos:end]
        if line + b"\n" == END_MARKER:
            return records, pos
        body = end + 1
        key, sep, value = line.partition(b"=")
        framed = None if sep else _FRAMED.fullmatch(line)
        if sep and key == b"file":
            name, _, size = value.rpartition(b" ")
            stop = body + int(size)
            if len(data) < stop:
                break
            records.append(("file", name.decode("utf-8", "replace"), data[body:stop]))
            pos = stop
        elif framed:
            stop = body + int(framed["size"])
            if len(data) < stop + 1:
                break
            records.append(("field", framed["key"].decode(), data[body:stop]))
            pos = stop + 1
        else:
            records.append(("field", key.decode("utf-8", "replace"), value))
            pos = body
    return records, None


def split_probe_output(buffer: bytes) -> tuple[bytes, bytes] | None:
    """Split probe output from what follows it (agent frames); None until the marker arrives.

    The marker is searched only at line starts outside file bodies and framed values, so a
    task file or a value that happens to contain it cannot end the probe early.
    """
    marker = _scan(buffer)[1]
    if marker is None:
        return None
    return buffer[:marker], buffer[marker + len(END_MARKER) :]

"""The probe: one POSIX ``sh`` script that resolves and pins a host's release.

It assumes nothing about the host but ``sh`` and coreutils-like tools: it resolves
``current`` (or a pinned ``--release``) to a physical path, checks it lies inside
the app root, finds the venv interpreter, checks each env file, and prints the
release's task files. Its output is ``key=value`` lines, files as
``file=NAME SIZE`` followed by exactly SIZE bytes, and a closing marker. In a run,
the same script then ``exec``s the venv's Python with the agent's BOOT, so probe and
run cost one exec on one connection, and the run uses the path the probe pinned,
never ``current`` again.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from oneoff.errors import AgentError, ReleaseError, UsageError
from oneoff.scripts import quote

END_MARKER = b"--oneoff-probe-end--\n"
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


_PROBE = r"""
say() { printf '%s=%s\n' "$1" "$2"; }
fail() { say error "$1"; say path "$2"; [ $# -gt 2 ] && say detail "$3"; printf '%s\n' "$END"; exit 0; }
emit() { [ -f "$2" ] && [ -r "$2" ] || return 0
  n=$(wc -c < "$2" | tr -d ' ')
  if [ "$n" -gt MAX_TASK_FILE ]; then say too_big "$1"; return 0; fi
  printf 'file=%s %s\n' "$1" "$n"; head -c "$n" "$2"; }
list_releases() { [ -d "$root/releases" ] && ls -1t "$root/releases" 2>/dev/null | while IFS= read -r r; do [ -d "$root/releases/$r" ] && say releases "$r"; done; }
END=--oneoff-probe-end--
[ -e "$app" ] || fail app_root_missing "$app"
[ -d "$app" ] || fail app_root_not_dir "$app"
root=$(cd -P -- "$app" 2>/dev/null && pwd -P) || fail app_root_unreadable "$app"
say app_root "$root"
case $cur in /*) ;; *) cur=$root/$cur ;; esac
if [ -n "$rid" ]; then
  case $rid in */*|.|..) fail release_bad_id "$rid" ;; esac
  rel=$root/releases/$rid
  [ -d "$rel" ] || { list_releases; fail release_unknown "$rid" "$root/releases"; }
  rel=$(cd -P -- "$rel" && pwd -P) || fail release_unreadable "$rel"
else
  if [ -L "$cur" ] && [ ! -e "$cur" ]; then fail current_dangling "$cur" "$(readlink "$cur" 2>/dev/null)"; fi
  [ -e "$cur" ] || fail current_missing "$cur"
  [ -d "$cur" ] || fail current_not_dir "$cur"
  rel=$(cd -P -- "$cur" 2>/dev/null && pwd -P) || fail current_unreadable "$cur"
fi
case $rel in "$root"/?*) ;; *) fail release_outside "$cur" "$rel" ;; esac
if [ -n "$venv" ]; then
  case $venv in /*) ;; *) venv=$rel/$venv ;; esac
else
  for v in .venv venv; do
    if [ -x "$rel/$v/bin/python" ] || [ -L "$rel/$v/bin/python" ]; then venv=$rel/$v; break; fi
  done
  [ -n "$venv" ] || fail venv_not_found "$rel" "$rel/.venv/bin/python, $rel/venv/bin/python"
fi
py=$venv/bin/python
if [ -L "$py" ] && [ ! -e "$py" ]; then fail venv_broken "$py" "$(readlink "$py" 2>/dev/null)"; fi
[ -x "$py" ] || fail venv_missing "$py"
for f in ENV_FILES; do
  case $f in /*) p=$f ;; *) p=$rel/$f ;; esac
  if [ -L "$p" ] && [ ! -e "$p" ]; then fail env_dangling "$p" "$(readlink "$p" 2>/dev/null)"; fi
  [ -e "$p" ] || fail env_missing "$p"
  [ -f "$p" ] || fail env_not_file "$p"
  [ -r "$p" ] || fail env_unreadable "$p"
  say env_file "$p"
done
say release "$rel"
say release_id "${rel##*/}"
say venv "$venv"
say python "$py"
if [ -f "$rel/REVISION" ]; then say revision "$(head -n 1 "$rel/REVISION")"
elif [ -f "$rel/.git/HEAD" ]; then
  h=$(head -n 1 "$rel/.git/HEAD")
  case $h in "ref: "*)
    ref=${h#ref: }
    if [ -f "$rel/.git/$ref" ]; then h=$(head -n 1 "$rel/.git/$ref")
    else h=$(awk -v r="$ref" '$2 == r { print $1; exit }' "$rel/.git/packed-refs" 2>/dev/null); fi ;;
  esac
  say revision "$h"
fi
say deployed_at "$(stat -c %Y "$rel" 2>/dev/null || stat -f %m "$rel" 2>/dev/null)"
[ -f "$venv/pyvenv.cfg" ] && say python_version "$(sed -n 's/^version[_info]* *= *//p' "$venv/pyvenv.cfg" | head -n 1)"
for m in MARKERS; do
  case $m in bin/*) t=$venv/$m ;; *) t=$rel/$m ;; esac
  [ -e "$t" ] && say marker "$m"
done
for f in TASK_FILES; do emit "$f" "$rel/$f"; done
[ "$mode" = probe ] && list_releases
printf '%s\n' "$END"
"""


def probe_script(request: ProbeRequest, mode: ProbeMode, boot: str = "") -> str:
    """Build the probe (and, for a run, the exec of the agent) as one POSIX sh script."""
    assignments = {
        "app": request.app_root,
        "cur": request.current,
        "rid": request.release_id or "",
        "venv": request.venv or "",
        "mode": mode,
    }
    head = "".join(f"{name}={quote(value)}\n" for name, value in assignments.items())
    body = (
        _PROBE.replace("MAX_TASK_FILE", str(MAX_TASK_FILE))
        .replace("ENV_FILES", " ".join(quote(path) for path in request.env_files) or "''")
        .replace("MARKERS", " ".join(MARKERS))
        .replace("TASK_FILES", " ".join(TASK_FILES))
    )
    script = "set -u\n" + head + body
    if mode == "run":
        # -I -S: the agent's own interpreter ignores PYTHONPATH/PYTHONHOME and the venv's
        # site-packages (.pth files run code); the command still gets the full environment
        script += f'cd -- "$rel" || exit 97\nexec "$py" -I -S -c {quote(boot)}\n'
    return script


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
    pos = 0
    while pos < len(data):
        end = data.find(b"\n", pos)
        if end < 0:
            break
        line = data[pos:end].decode("utf-8", "replace")
        pos = end + 1
        key, _, value = line.partition("=")
        if key == "file":
            name, _, size = value.rpartition(" ")
            files[name] = data[pos : pos + int(size)]
            pos += int(size)
            continue
        fields.setdefault(key, []).append(value)

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


def split_probe_output(buffer: bytes) -> tuple[bytes, bytes] | None:
    """Split probe output from what follows it (agent frames); None until the marker arrives.

    The marker is searched only at line starts outside file bodies, so a task file
    that happens to contain it cannot end the probe early.
    """
    pos = 0
    while True:
        end = buffer.find(b"\n", pos)
        if end < 0:
            return None
        line = buffer[pos : end + 1]
        if line == END_MARKER:
            return buffer[:pos], buffer[end + 1 :]
        pos = end + 1
        if line.startswith(b"file="):
            size = int(line.rstrip(b"\n").rpartition(b" ")[2])
            if len(buffer) < pos + size:
                return None
            pos += size

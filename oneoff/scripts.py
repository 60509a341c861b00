"""Every piece of POSIX sh text oneoff sends to a host, and the one quote()/render().

One rule for all of it: a script is **quoted assignments, then a constant body**.
User data (paths, run ids, env-file names, the agent's boot code) only ever appears
in the head as ``name=<quote(value)>``; a list is one assignment of quoted words
(``render(words)``, quoted again) that the body turns into positional parameters
with ``eval "set -- $list"``. Bodies are module constants: nothing is ever
formatted or ``replace()``-d into them, so no value can change what the script
does, whatever words or characters it contains.

The builders are pure (data in, ``str`` out) and import nothing of oneoff (at most
:mod:`oneoff.errors`): this module sits at the bottom of the layers. What the
scripts print is parsed elsewhere: the probe by :mod:`oneoff.plan.probe`, the
detached runs' status frames by :mod:`oneoff.plan.runstatus`.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Sequence

SH = "/bin/sh"
PROBE_END = "--oneoff-probe-end--"
"""The probe's last line: what follows it on stdout is the agent's."""

_NAME = re.compile(r"[a-z_][a-z0-9_]*")


def quote(word: str) -> str:
    """Quote one word for a POSIX shell so it is passed through literally.

    ``shlex.quote`` single-quotes anything unsafe; a NUL cannot be passed in an
    argv at all, so it is refused instead of being silently truncated.
    """
    if "\0" in word:
        raise ValueError("an argument cannot contain a NUL byte")
    return shlex.quote(word)


def render(argv: Sequence[str]) -> str:
    """Render an argv list as shell text that the remote ``sh`` splits back into *argv*."""
    return " ".join(quote(word) for word in argv)


def sh_exec(script: str) -> str:
    """The SSH exec request that runs *script* with ``/bin/sh``, not the login shell.

    sshd hands the request to the user's login shell as ``$SHELL -c REQUEST``; a
    POSIX-style login shell (sh, dash, bash, ksh, zsh) only undoes one level of single
    quotes and starts ``/bin/sh`` on the script's exact text. (csh and fish read
    quotes differently; an account with one of those needs ``sh`` as its shell.)
    """
    return f"exec {SH} -c {quote(script)}"


def sh_argv(script: str) -> list[str]:
    """The argv that runs *script* with ``/bin/sh`` on this machine (no shell in between)."""
    return [SH, "-c", script]


def assign(name: str, value: str) -> str:
    """One head line: ``name=<value quoted>``. *name* is ours (a constant), never user data."""
    if not _NAME.fullmatch(name):
        raise ValueError(f"{name!r} is not a shell variable name for a script head")
    return f"{name}={quote(value)}\n"


def assign_words(name: str, words: Sequence[str]) -> str:
    """A list as one head line; the body gets it back with ``eval "set -- $name"``."""
    return assign(name, render(words))


# --- the probe ---------------------------------------------------------------------------

_PROBE = r"""
nl='
'
say() {
  case $2 in
    *"$nl"*) printf '%s:%s\n%s\n' "$1" "$(printf '%s' "$2" | wc -c | tr -d ' ')" "$2" ;;
    *) printf '%s=%s\n' "$1" "$2" ;;
  esac
}
fail() { say error "$1"; say path "$2"; [ $# -gt 2 ] && say detail "$3"; printf '%s\n' "$end"; exit 0; }
emit() { [ -f "$2" ] && [ -r "$2" ] || return 0
  n=$(wc -c < "$2" | tr -d ' ')
  if [ "$n" -gt "$max_file" ]; then say too_big "$1"; return 0; fi
  printf 'file=%s %s\n' "$1" "$n"; head -c "$n" "$2"; }
list_releases() { [ -d "$root/releases" ] && ls -1t "$root/releases" 2>/dev/null | while IFS= read -r r; do [ -d "$root/releases/$r" ] && say releases "$r"; done; }
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
eval "set -- $env_files"
for f in ${1+"$@"}; do
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
eval "set -- $markers"
for m in ${1+"$@"}; do
  case $m in bin/*) t=$venv/$m ;; *) t=$rel/$m ;; esac
  [ -e "$t" ] && say marker "$m"
done
eval "set -- $task_files"
for f in ${1+"$@"}; do emit "$f" "$rel/$f"; done
[ "$mode" = probe ] && list_releases
printf '%s\n' "$end"
"""

# -I -S: the agent's own interpreter ignores PYTHONPATH/PYTHONHOME and the venv's
# site-packages (.pth files run code); the command still gets the full environment.
_PROBE_THEN_RUN = """cd -- "$rel" || exit 97
exec "$py" -I -S -c "$boot"
"""


def probe_script(
    *,
    app_root: str,
    current: str,
    release_id: str,
    venv: str,
    env_files: Sequence[str],
    markers: Sequence[str],
    task_files: Sequence[str],
    max_file: int,
    boot: str | None = None,
) -> str:
    """Resolve and pin a release; with *boot*, then ``exec`` the venv's Python on it.

    Prints ``key=value`` lines (``key:SIZE`` then SIZE bytes and a newline when a value
    holds a newline), each task file as ``file=NAME SIZE`` then its bytes, and
    :data:`PROBE_END`. Empty *release_id* / *venv* mean "follow *current*" / "find the
    venv". Without *boot* (a probe only) it also lists the releases, newest first.
    """
    for name in task_files:
        if "\n" in name:
            raise ValueError(f"a task file name cannot hold a newline: {name!r}")
    head = (
        "set -u\n"
        + assign("app", app_root)
        + assign("cur", current)
        + assign("rid", release_id)
        + assign("venv", venv)
        + assign("mode", "probe" if boot is None else "run")
        + assign("end", PROBE_END)
        + assign("max_file", str(int(max_file)))
        + assign_words("env_files", env_files)
        + assign_words("markers", markers)
        + assign_words("task_files", task_files)
    )
    if boot is None:
        return head + _PROBE
    return head + assign("boot", boot) + _PROBE + _PROBE_THEN_RUN


# --- detached runs: ps, logs, kill -------------------------------------------------------

# What oneoff reads of a status file on the host is only what liveness needs, the PID and
# its kernel start time: whitespace and key order do not matter, and everything else of
# the JSON is parsed on the client (oneoff.plan.runstatus). A status goes back framed as
# "status=ID ALIVE SIZE", SIZE bytes of the file as read (trailing newlines dropped), and
# a newline; ALIVE is 1 when that PID still runs and started when the file says.
_RUNS = r"""
ids() {
  j=$(printf '%s' "$1" | tr -d '[:space:]')
  case $j in *'"pid":'[0-9]*) pid=${j##*'"pid":'}; pid=${pid%%[!0-9]*} ;; *) pid= ;; esac
  case $j in *'"starttime":"'[0-9]*) st=${j##*'"starttime":"'}; st=${st%%[!0-9]*} ;; *) st= ;; esac
}
alive() {
  [ -n "$pid" ] && [ -n "$st" ] || return 1
  { read -r s < "/proc/$pid/stat"; } 2>/dev/null || return 1
  s=${s##*') '}
  case $s in Z*|X*) return 1 ;; esac
  set -f; set -- $s; set +f
  [ "${20:-}" = "$st" ]
}
frame() {
  doc=$(cat -- "$1" 2>/dev/null) || return 0
  ids "$doc"
  if alive; then a=1; else a=0; fi
  n=${1##*/}; n=${n%.json}
  printf 'status=%s %s %s\n%s\n' "$n" "$a" "${#doc}" "$doc"
}
known() {
  js=$d/$id.json; log=$d/$id.log
  [ -f "$js" ] && return 0
  echo unknown >&2
  ls -t "$d" 2>/dev/null | sed -n 's/\.json$//p' | head -n 10 >&2
  exit 3
}
"""

_PS = r"""[ -d "$d" ] || exit 0
for f in "$d"/*.json; do
  [ -f "$f" ] || continue
  n=${f##*/}; n=${n%.json}
  case $n in ''|*[!0-9A-Za-z_-]*) continue ;; esac
  frame "$f"
done
"""

_LOGS = r"""known
doc=$(cat -- "$js" 2>/dev/null); ids "$doc"
if [ "$follow" = 1 ]; then
  off=0
  while :; do
    if alive; then more=1; else more=0; fi
    size=$(wc -c < "$log" 2>/dev/null | tr -d ' '); size=${size:-0}
    if [ "$size" -gt "$off" ]; then
      tail -c +$((off + 1)) "$log" | head -c $((size - off)); off=$size
    fi
    [ "$more" = 1 ] || break
    sleep 0.3
  done
else
  [ -f "$log" ] && cat -- "$log"
fi
frame "$js" >&2
"""

_KILL = r"""known
doc=$(cat -- "$js" 2>/dev/null); ids "$doc"
if alive; then
  kill -TERM "$pid" 2>/dev/null
  i=0
  while alive && [ "$i" -lt "$limit" ]; do sleep 0.2; i=$((i + 1)); done
  echo signalled
fi
frame "$js"
"""

# Bytes and framing only (wc -c, ${#doc}): the C locale makes ${#doc} count bytes in
# every sh. None of these scripts runs user code, so the locale goes nowhere else.
_C_LOCALE = "LC_ALL=C; export LC_ALL\n"


def ps_script(runs_dir: str) -> str:
    """One status frame per run in *runs_dir* (nothing if it does not exist)."""
    return _C_LOCALE + assign("d", runs_dir) + _RUNS + _PS


def logs_script(runs_dir: str, run_id: str, follow: bool) -> str:
    """The run's log on stdout (with *follow*, until its process is gone), then its
    status frame on stderr; exit 3 and ``unknown`` + the newest run ids on stderr
    when there is no such run."""
    head = assign("d", runs_dir) + assign("id", run_id) + assign("follow", "1" if follow else "0")
    return _C_LOCALE + head + _RUNS + _LOGS


def kill_script(runs_dir: str, run_id: str, wait: float) -> str:
    """SIGTERM to the run's supervisor if it still runs (it stops its process group,
    SIGKILL after kill_after), wait up to *wait* seconds for it to go, print
    ``signalled`` if it was signalled, then the status frame; exit 3 as for logs."""
    head = assign("d", runs_dir) + assign("id", run_id) + assign("limit", str(int(wait * 5) + 1))
    return _C_LOCALE + head + _RUNS + _KILL


# --- the audit trail ---------------------------------------------------------------------

_AUDIT_READ = """[ -r "$f" ] && tail -n "$n" -- "$f"
exit 0
"""


def audit_read_script(state_dir: str, lines: int) -> str:
    """The last *lines* records of ``state_dir/audit.jsonl`` (nothing if there are none)."""
    path = state_dir.rstrip("/") + "/audit.jsonl"
    return assign("f", path) + assign("n", str(int(lines))) + _AUDIT_READ

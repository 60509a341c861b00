"""Every sh script oneoff sends, against hostile values: the exact text, then the real thing.

The text tests pin the rule of :mod:`oneoff.scripts`: user data only in quoted
assignments at the top, a constant body below. The run tests execute each script with
the local shells (dash as /bin/sh, bash when present) on a temporary release tree or
runs directory and show each hostile value arriving literally.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from oneoff import scripts
from oneoff.errors import ReleaseError, UsageError
from oneoff.plan.probe import (
    ProbeRequest,
    ResolvedRelease,
    parse_probe,
    probe_script,
    split_probe_output,
)
from oneoff.plan.runstatus import run_records, status_frames

# Each of these once broke, or could break, a shell string built by pasting or replace().
HOSTILE = [
    "with space",
    "it's",
    'say "hi"',
    "$HOME",
    "${HOME:-x}",
    "$(touch pwned)",
    "`touch pwned`",
    "a;b",
    "a&b|c",
    "line\nbreak",
    "tab\there",
    "-leading",
    "--",
    "*",
    "~",
    "back\\slash",
    "#hash",
    "MARKERS",
    "TASK_FILES",
    "ENV_FILES",
    "MAX_TASK_FILE",
    "ünïcödé",
]
# As file names: each one, and one in the words the old template replaced.
HOSTILE_NAMES = [*HOSTILE, "MARKERS.env", "x TASK_FILES y", "ENV_FILES;MAX_TASK_FILE"]

_shells: dict[str, str] = {}
for _candidate in ("/bin/sh", "/bin/dash", "/bin/bash"):
    if os.path.exists(_candidate):
        _shells.setdefault(os.path.realpath(_candidate), _candidate)
SHELLS = sorted(_shells.values())


@pytest.fixture(params=SHELLS)
def shell(request: pytest.FixtureRequest) -> str:
    """Each POSIX shell on this machine (by its real binary): dash, bash."""
    return str(request.param)


def run_sh(shell: str, script: str, check: bool = True) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [shell, "-c", script],
        capture_output=True,
        check=check,
        timeout=30,
        stdin=subprocess.DEVNULL,
    )


# --- quote, render, assignments, sh_exec ---------------------------------------------------


def test_render_gives_sh_back_every_hostile_word(shell: str, tmp_path: Path) -> None:
    words = [*HOSTILE, ""]
    out = run_sh(
        shell, f"cd {scripts.quote(str(tmp_path))} && printf '%s\\0' " + scripts.render(words)
    )
    assert out.stdout.decode().split("\0")[:-1] == words
    assert not (tmp_path / "pwned").exists()


def test_quote_refuses_a_nul_byte() -> None:
    with pytest.raises(ValueError, match="NUL"):
        scripts.quote("a\0b")


@pytest.mark.parametrize("value", HOSTILE)
def test_an_assignment_holds_the_value_literally(shell: str, value: str) -> None:
    out = run_sh(shell, scripts.assign("v", value) + 'printf %s "$v"')
    assert out.stdout.decode() == value


def test_a_word_list_assignment_comes_back_as_positional_parameters(shell: str) -> None:
    script = scripts.assign_words("list", HOSTILE) + 'eval "set -- $list"\nprintf \'%s\\0\' "$@"'
    assert run_sh(shell, script).stdout.decode().split("\0")[:-1] == HOSTILE


def test_an_empty_word_list_gives_no_parameters(shell: str) -> None:
    script = scripts.assign_words("list", []) + 'eval "set -- $list"\necho $#'
    assert run_sh(shell, script).stdout == b"0\n"


@pytest.mark.parametrize("name", ["", "A", "1x", "x-y", "x;y", "x=y"])
def test_an_assignment_name_must_be_a_plain_lowercase_variable(name: str) -> None:
    with pytest.raises(ValueError):
        scripts.assign(name, "v")


def test_sh_exec_text() -> None:
    assert scripts.sh_exec("echo 'hi'") == "exec /bin/sh -c 'echo '\"'\"'hi'\"'\"''"
    assert scripts.sh_argv("echo hi") == ["/bin/sh", "-c", "echo hi"]


@pytest.mark.parametrize("value", HOSTILE)
def test_sh_exec_survives_the_login_shell(shell: str, value: str, tmp_path: Path) -> None:
    """sshd runs ``$SHELL -c REQUEST``: the script must reach /bin/sh unchanged."""
    script = scripts.assign("v", value) + 'printf %s "$v"; printf "\\n%s" "$0"'
    out = subprocess.run(
        [shell, "-c", scripts.sh_exec(script)],
        capture_output=True,
        check=True,
        timeout=30,
        cwd=tmp_path,
    )
    assert out.stdout.decode() == value + "\n/bin/sh"
    assert not (tmp_path / "pwned").exists()


def test_sh_argv_runs_the_script_text_as_is(tmp_path: Path) -> None:
    script = scripts.assign("v", "it's $HOME `x`") + 'printf %s "$v"'
    out = subprocess.run(scripts.sh_argv(script), capture_output=True, check=True, cwd=tmp_path)
    assert out.stdout == b"it's $HOME `x`"


# --- the probe: text ------------------------------------------------------------------------

PLAIN_HEAD = (
    "set -u\napp=/a\ncur=current\nrid=''\nvenv=''\nmode=probe\nend=--oneoff-probe-end--\n"
    "max_file=262144\nenv_files=.env\n"
    "markers='manage.py alembic.ini migrations/alembic.ini bin/ipython bin/bpython'\n"
    "task_files='pyproject.toml Procfile'\n"
)


def test_probe_script_text_is_quoted_assignments_then_the_constant_body() -> None:
    request = ProbeRequest(
        app_root="/srv/it's $HOME",
        current="-cur;rm",
        release_id="r`id`",
        venv="v env",
        env_files=("config/MARKERS.env", "a b", "TASK_FILES"),
    )
    head = (
        "set -u\n"
        "app='/srv/it'\"'\"'s $HOME'\n"
        "cur='-cur;rm'\n"
        "rid='r`id`'\n"
        "venv='v env'\n"
        "mode=probe\n"
        "end=--oneoff-probe-end--\n"
        "max_file=262144\n"
        "env_files='config/MARKERS.env '\"'\"'a b'\"'\"' TASK_FILES'\n"
        "markers='manage.py alembic.ini migrations/alembic.ini bin/ipython bin/bpython'\n"
        "task_files='pyproject.toml Procfile'\n"
    )
    script = probe_script(request, "probe")
    assert script.startswith(head)
    assert (
        script[len(head) :] == probe_script(ProbeRequest(app_root="/a"), "probe")[len(PLAIN_HEAD) :]
    )


def _body(script: str) -> str:
    """The script after its head: everything from the first blank line on."""
    return script[script.index("\n\n") :]


@pytest.mark.parametrize("value", HOSTILE)
def test_probe_body_is_the_same_whatever_the_values(value: str) -> None:
    plain = probe_script(ProbeRequest(app_root="/a"), "probe")
    assert plain.startswith(PLAIN_HEAD)
    request = ProbeRequest(
        app_root=f"/srv/{value}",
        current=value,
        release_id=value,
        venv=value,
        env_files=(value, f"config/{value}.env"),
    )
    hostile = probe_script(request, "probe")
    assert hostile.endswith(plain[len(PLAIN_HEAD) :])
    # the head is one assignment per variable: sh parses it back to exactly the values
    head = hostile[: len(hostile) - len(plain) + len(PLAIN_HEAD)]
    out = subprocess.run(
        [
            "/bin/sh",
            "-c",
            head + 'eval "set -- $env_files"\nprintf "%s\\0" "$app" "$cur" "$rid" "$venv" "$@"',
        ],
        capture_output=True,
        check=True,
    )
    assert out.stdout.decode().split("\0")[:-1] == [
        f"/srv/{value}",
        value,
        value,
        value,
        value,
        f"config/{value}.env",
    ]


def test_probe_for_a_run_puts_the_boot_code_in_the_head_not_the_body() -> None:
    boot = "print('MARKERS $HOME `x`')"
    script = probe_script(ProbeRequest(app_root="/a"), "run", boot)
    assert "mode=run\n" in script
    assert "boot=" + scripts.quote(boot) + "\n" in script
    assert script.endswith('\ncd -- "$rel" || exit 97\nexec "$py" -I -S -c "$boot"\n')
    assert script.count(scripts.quote(boot)) == 1


def test_probe_refuses_a_task_file_name_with_a_newline() -> None:
    with pytest.raises(ValueError):
        scripts.probe_script(
            app_root="/a",
            current="current",
            release_id="",
            venv="",
            env_files=(),
            markers=(),
            task_files=("a\nb",),
            max_file=1,
        )


# --- the probe: run on a release tree ------------------------------------------------------

RELEASE = "20260101T000000"


def make_tree(tmp_path: Path, root_name: str = "app") -> tuple[Path, Path]:
    """<root>/current -> releases/<id>; the release's .venv/bin/python is this Python."""
    root = tmp_path / root_name
    release = root / "releases" / RELEASE
    (release / ".venv" / "bin").mkdir(parents=True)
    (release / ".venv" / "bin" / "python").symlink_to(sys.executable)
    (release / ".venv" / "pyvenv.cfg").write_text("home = /usr/bin\nversion = 3.12.1\n")
    (root / "current").symlink_to(f"releases/{RELEASE}")
    return root, release.resolve()


def probe(shell: str, request: ProbeRequest) -> ResolvedRelease:
    out = run_sh(shell, probe_script(request, "probe")).stdout
    split = split_probe_output(out)
    assert split is not None, out
    assert split[1] == b""
    return parse_probe("web1", split[0])


def test_an_env_file_named_markers_keeps_its_name(shell: str, tmp_path: Path) -> None:
    """The old template replaced MARKERS after inserting the env files: this path became
    ``config/manage.py alembic.ini ... bin/bpython.env``."""
    root, release = make_tree(tmp_path)
    (release / "config").mkdir()
    (release / "config" / "MARKERS.env").write_text("A=1\n")
    (release / "manage.py").write_text("")
    found = probe(shell, ProbeRequest(app_root=str(root), env_files=("config/MARKERS.env",)))
    assert found.env_files == (f"{release}/config/MARKERS.env",)
    assert found.markers == {"manage.py"}
    assert found.path == str(release)
    assert found.python == f"{release}/.venv/bin/python"
    assert found.python_version == "3.12.1"


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_a_hostile_env_file_name_arrives_literally(shell: str, tmp_path: Path, name: str) -> None:
    root, release = make_tree(tmp_path)
    (release / "config").mkdir()
    (release / "config" / name).write_text("A=1\n")
    (release / name).write_text("A=1\n")
    elsewhere = tmp_path / f"shared {name}"
    elsewhere.mkdir()
    (elsewhere / "x.env").write_text("A=1\n")
    env_files = (f"config/{name}", name, f"{elsewhere}/x.env")
    found = probe(shell, ProbeRequest(app_root=str(root), env_files=env_files))
    assert found.env_files == (
        f"{release}/config/{name}",
        f"{release}/{name}",
        f"{elsewhere.resolve()}/x.env",
    )
    assert set(found.files) == set() and found.markers == frozenset()
    assert not (tmp_path / "pwned").exists() and not Path("pwned").exists()


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_a_missing_hostile_env_file_is_named_exactly(shell: str, tmp_path: Path, name: str) -> None:
    root, release = make_tree(tmp_path)
    with pytest.raises(ReleaseError) as caught:
        probe(shell, ProbeRequest(app_root=str(root), env_files=(f"config/{name}",)))
    assert caught.value.message == f"env file {release}/config/{name} does not exist"


@pytest.mark.parametrize("value", HOSTILE)
def test_hostile_app_root_venv_and_current_arrive_literally(
    shell: str, tmp_path: Path, value: str
) -> None:
    root, release = make_tree(tmp_path, root_name=f"app {value}")
    (release / value).mkdir()
    (release / value / "bin").mkdir()
    (release / value / "bin" / "python").symlink_to(sys.executable)
    os.rename(release.parent, root / value)
    os.symlink(f"{value}/{RELEASE}", root / f"cur {value}")
    request = ProbeRequest(app_root=str(root), current=f"cur {value}", venv=value, env_files=())
    found = probe(shell, request)
    moved = (root / value / RELEASE).resolve()
    assert found.app_root == str(root.resolve())
    assert found.path == str(moved)
    assert found.venv == f"{moved}/{value}"
    assert found.env_files == ()


@pytest.mark.parametrize("value", [v for v in HOSTILE if "/" not in v])
def test_an_unknown_hostile_release_id_is_named_exactly(
    shell: str, tmp_path: Path, value: str
) -> None:
    root, _ = make_tree(tmp_path)
    with pytest.raises(UsageError) as caught:
        probe(shell, ProbeRequest(app_root=str(root), release_id=value))
    assert caught.value.message == f"no release {value!r} in {root.resolve()}/releases"
    assert caught.value.hint == f"releases there, newest first: {RELEASE}"


def test_a_release_id_with_a_slash_is_refused_by_the_probe(shell: str, tmp_path: Path) -> None:
    root, _ = make_tree(tmp_path)
    with pytest.raises(UsageError, match="is not a release id"):
        probe(shell, ProbeRequest(app_root=str(root), release_id="../../etc"))


def test_no_env_files_means_none_checked(shell: str, tmp_path: Path) -> None:
    """The old template turned an empty list into ``for f in ''``: 'env file <release>/
    is not a regular file'."""
    root, release = make_tree(tmp_path)
    found = probe(shell, ProbeRequest(app_root=str(root), env_files=()))
    assert found.env_files == ()
    assert found.path == str(release)


def test_a_value_holding_the_end_marker_does_not_end_the_probe(shell: str, tmp_path: Path) -> None:
    root, release = make_tree(tmp_path)
    name = f"x\n{scripts.PROBE_END}\ny"
    (release / name).write_text("")
    (release / "Procfile").write_bytes(f"web: run\n{scripts.PROBE_END}\n".encode())
    found = probe(shell, ProbeRequest(app_root=str(root), env_files=(name,)))
    assert found.env_files == (f"{release}/{name}",)
    assert found.files == {"Procfile": f"web: run\n{scripts.PROBE_END}\n".encode()}


def test_a_run_execs_the_venv_python_with_the_boot_code_in_the_release(
    shell: str, tmp_path: Path
) -> None:
    root, release = make_tree(tmp_path)
    boot = "import os, sys; print('MARKERS $HOME `x`;', os.getcwd(), sys.flags.isolated)"
    out = run_sh(shell, probe_script(ProbeRequest(app_root=str(root), env_files=()), "run", boot))
    split = split_probe_output(out.stdout)
    assert split is not None
    assert parse_probe("web1", split[0]).path == str(release)
    assert split[1] == f"MARKERS $HOME `x`; {release} 1\n".encode()


# --- the probe's output parser ----------------------------------------------------------------


def test_probe_output_parser_reads_framed_values_and_files() -> None:
    data = (
        b"app_root=/a\nrelease=/a/r/1\nenv_file:5\na\nb c\nenv_file=/a/.env\n"
        b"file=Procfile 4\nx\ny\nmarker=manage.py\n"
    )
    found = parse_probe("h", data)
    assert found.env_files == ("a\nb c", "/a/.env")
    assert found.files == {"Procfile": b"x\ny\n"}
    assert found.markers == {"manage.py"}


def test_probe_output_is_not_split_until_a_framed_value_is_whole() -> None:
    end = scripts.PROBE_END.encode() + b"\n"
    assert split_probe_output(b"release=/r\nenv_file:30\nx\n" + end) is None
    assert split_probe_output(b"release=/r\n" + end + b"AGENT") == (b"release=/r\n", b"AGENT")


# --- detached runs: ps, logs, kill ------------------------------------------------------------


def starttime(pid: int) -> str:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    """A live process to be the run's supervisor."""
    process = subprocess.Popen(["sleep", "60"], start_new_session=True)
    try:
        yield process
    finally:
        process.kill()
        process.wait()


def status(pid: int, start: str, style: str, **extra: object) -> str:
    """A status document as the agent writes it (``agent``) or with other spacing/layout."""
    record: dict[str, object] = {
        "run_id": "r1",
        "pid": pid,
        "starttime": start,
        "state": "running",
        "start": "2026-01-01T00:00:00Z",
        # a command that says "pid": 1 must not be taken for the PID
        "command": 'echo "pid": 1, "starttime": "2"',
        **extra,
    }
    if style == "agent":
        return json.dumps(record, sort_keys=True) + "\n"
    if style == "compact":
        return json.dumps(record, separators=(",", ":"))
    if style == "indented":
        return json.dumps(record, indent=2) + "\n"
    if style == "tabs-crlf":
        return json.dumps(dict(reversed(record.items())), indent="\t").replace("\n", "\r\n")
    if style == "spaced":
        return json.dumps(record, separators=(" , ", " : "))
    raise AssertionError(style)


STYLES = ["agent", "compact", "indented", "tabs-crlf", "spaced"]
HOSTILE_DIR = "runs 'x' \"y\" $z `w`;\n-v MARKERS"


def runs_dir(tmp_path: Path) -> Path:
    path = tmp_path / HOSTILE_DIR
    path.mkdir()
    return path


def test_ps_script_text() -> None:
    script = scripts.ps_script("/srv/it's")
    assert script.startswith("LC_ALL=C; export LC_ALL\nd='/srv/it'\"'\"'s'\n\n")
    assert _body(script) == _body(scripts.ps_script("/a"))


@pytest.mark.parametrize("style", STYLES)
def test_ps_tells_running_from_lost_whatever_the_json_spacing(
    shell: str, tmp_path: Path, sleeper: subprocess.Popen[bytes], style: str
) -> None:
    runs = runs_dir(tmp_path)
    start = starttime(sleeper.pid)
    (runs / "live.json").write_text(status(sleeper.pid, start, style, run_id="live"))
    (runs / "reused.json").write_text(status(sleeper.pid, "1", style, run_id="reused"))
    (runs / "gone.json").write_text(status(2**22 + 1, start, style, run_id="gone"))
    (runs / "done.json").write_text(status(sleeper.pid, start, style, run_id="done", state="ended"))
    out = run_sh(shell, scripts.ps_script(str(runs)))
    states = {r["run_id"]: r["state"] for r in run_records(out.stdout)}
    assert states == {"live": "running", "reused": "lost", "gone": "lost", "done": "ended"}
    # the host sends the file as it is (but for trailing newlines)
    frames = {f.run_id: f.document for f in status_frames(out.stdout)}
    assert frames["live"] == (runs / "live.json").read_bytes().rstrip(b"\n")


def test_ps_skips_files_that_are_not_runs_and_an_absent_dir(shell: str, tmp_path: Path) -> None:
    runs = runs_dir(tmp_path)
    (runs / "a b.json").write_text('{"state": "ended"}')
    (runs / "r1.json.tmp").write_text('{"state": "ended"}')
    (runs / "r2.json").write_text('{"state": "ended", "run_id": "r2"}')
    assert [
        r["run_id"] for r in run_records(run_sh(shell, scripts.ps_script(str(runs))).stdout)
    ] == ["r2"]
    out = run_sh(shell, scripts.ps_script(str(tmp_path / "none")))
    assert out.stdout == b""


def test_logs_script_text() -> None:
    script = scripts.logs_script("/srv/a b", "r;1", True)
    assert script.startswith("LC_ALL=C; export LC_ALL\nd='/srv/a b'\nid='r;1'\nfollow=1\n\n")
    assert _body(script) == _body(scripts.logs_script("/a", "x", False))


@pytest.mark.parametrize("run_id", ["r1", "it's a;b $x", "MARKERS"])
def test_logs_prints_the_log_and_then_the_status_frame(
    shell: str, tmp_path: Path, run_id: str
) -> None:
    runs = runs_dir(tmp_path)
    log = "2026-01-01T00:00:00.000Z o it's `x` $HOME\n2026-01-01T00:00:00.001Z e done\n"
    (runs / f"{run_id}.log").write_text(log)
    (runs / f"{run_id}.json").write_text(status(1, "1", "indented", state="ended", status=0))
    out = run_sh(shell, scripts.logs_script(str(runs), run_id, follow=False))
    assert out.stdout.decode() == log
    [record] = run_records(out.stderr)
    assert record["state"] == "ended" and record["status"] == 0


def test_logs_follow_stops_when_the_process_is_gone(shell: str, tmp_path: Path) -> None:
    runs = runs_dir(tmp_path)
    process = subprocess.Popen(["sleep", "0.5"])
    try:
        (runs / "r1.json").write_text(status(process.pid, starttime(process.pid), "spaced"))
        (runs / "r1.log").write_text("2026-01-01T00:00:00.000Z o hello\n")
        began = time.monotonic()
        out = run_sh(shell, scripts.logs_script(str(runs), "r1", follow=True))
        assert 0.3 < time.monotonic() - began < 10
    finally:
        process.wait()
    assert out.stdout == b"2026-01-01T00:00:00.000Z o hello\n"
    # it said running, its process is gone and nobody wrote an end: lost
    assert [r["state"] for r in run_records(out.stderr)] == ["lost"]


@pytest.mark.parametrize("command", ["logs", "kill"])
def test_an_unknown_run_exits_3_and_lists_recent_ones(
    shell: str, tmp_path: Path, command: str
) -> None:
    runs = runs_dir(tmp_path)
    (runs / "old.json").write_text("{}")
    script = (
        scripts.logs_script(str(runs), "nope", follow=True)
        if command == "logs"
        else scripts.kill_script(str(runs), "nope", 1)
    )
    out = run_sh(shell, script, check=False)
    assert out.returncode == 3
    assert out.stderr == b"unknown\nold\n"


def test_kill_script_text() -> None:
    script = scripts.kill_script("/srv/a b", "-r1", 2.5)
    assert script.startswith("LC_ALL=C; export LC_ALL\nd='/srv/a b'\nid=-r1\nlimit=13\n\n")
    assert _body(script) == _body(scripts.kill_script("/a", "x", 0))


@pytest.mark.parametrize("style", STYLES)
def test_kill_signals_the_live_supervisor_and_waits_for_it(
    shell: str, tmp_path: Path, sleeper: subprocess.Popen[bytes], style: str
) -> None:
    runs = runs_dir(tmp_path)
    (runs / "r1.json").write_text(status(sleeper.pid, starttime(sleeper.pid), style))
    out = run_sh(shell, scripts.kill_script(str(runs), "r1", 5))
    assert sleeper.wait(timeout=5) == -15
    assert out.stdout.startswith(b"signalled\nstatus=r1 0 ")
    assert [r["state"] for r in run_records(out.stdout)] == ["lost"]


def test_kill_leaves_a_reused_pid_alone(
    shell: str, tmp_path: Path, sleeper: subprocess.Popen[bytes]
) -> None:
    runs = runs_dir(tmp_path)
    (runs / "r1.json").write_text(status(sleeper.pid, "1", "agent"))
    out = run_sh(shell, scripts.kill_script(str(runs), "r1", 0.2))
    assert out.stdout.startswith(b"status=r1 0 ")
    assert sleeper.poll() is None


# --- the audit trail -----------------------------------------------------------------------


def test_audit_read_script_text() -> None:
    assert scripts.audit_read_script("/srv/it's/", 10) == (
        'f=\'/srv/it\'"\'"\'s/audit.jsonl\'\nn=10\n[ -r "$f" ] && tail -n "$n" -- "$f"\nexit 0\n'
    )


@pytest.mark.parametrize("name", ["state", *HOSTILE])
def test_audit_read_tails_the_hosts_trail(shell: str, tmp_path: Path, name: str) -> None:
    state = tmp_path / name
    state.mkdir(exist_ok=True)
    (state / "audit.jsonl").write_text("".join(f'{{"n": {i}}}\n' for i in range(5)))
    out = run_sh(shell, scripts.audit_read_script(str(state), 2))
    assert out.stdout == b'{"n": 3}\n{"n": 4}\n'
    missing = run_sh(shell, scripts.audit_read_script(str(tmp_path / "none"), 2))
    assert missing.stdout == b"" and missing.returncode == 0

"""Releases and tasks: admin code ships with the release. Real release trees on real sshd.

Layouts (``current`` symlink or plain directory, ``--release``), revisions (``REVISION``,
git), venv detection, several env files and ``-e``, every task source and its
precedence, the framework presets with a real Django and a real Alembic migration
applied on the host, ``oneoff tasks``, ``oneoff releases`` and ``--dry-run``.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.release import (
    DEFAULT_RELEASE_ID,
    AppTree,
    PackageInstallFailed,
    make_app,
    make_venv,
    make_venv_with,
)
from support.run import oneoff
from support.sshd import SshHost, WriteInventory

from oneoff.plan.probe import ResolvedRelease
from oneoff.plan.tasks import ReleaseTasks, release_tasks

SECRET = "s3cret"  # part of the default shared/.env's DATABASE_URL
PRINT_CWD = ["python", "-c", "import os, sys; print(os.getcwd()); print(sys.prefix)"]
DEPLOYED = 1_795_862_400  # 2026-11-28 08:00 UTC: release folders' mtime, so tables are exact


def web1(write_inventory: WriteInventory, app: AppTree, **top: object) -> Path:
    """An inventory with one host ``web1`` on the session sshd, serving *app*."""
    return write_inventory({"web1": {"hostname": "127.0.0.1", "app_root": str(app.root)}}, **top)


def line_of(path: Path, text: str) -> int:
    """The 1-based number of the first line of *path* that contains *text*."""
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if text in line:
            return number
    raise AssertionError(f"{text!r} not in {path}")


def deployed(epoch: int = DEPLOYED) -> str:
    """The DEPLOYED column as ``oneoff releases`` shows it (local time)."""
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(epoch))


def python_version() -> str:
    """What a venv made from this interpreter records in its ``pyvenv.cfg``."""
    import platform

    return platform.python_version()


def columns(*rows: tuple[str, ...]) -> str:
    """Rows as oneoff's tables lay them out: left-aligned columns two spaces apart, no
    trailing blanks, one line each."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = (
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )
    return "".join(line + "\n" for line in lines)


def records(stdout: bytes) -> list[dict[str, object]]:
    return [json.loads(line) for line in stdout.decode().splitlines()]


def git(cwd: Path, *args: str) -> str:
    result = subprocess.run(
        ["git", "-c", "user.name=Deploy", "-c", "user.email=deploy@example.invalid", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout.strip()


# -- layouts and --release -------------------------------------------------------------


def test_current_symlink_pins_the_release_it_points_to(
    app: AppTree, write_inventory: WriteInventory
) -> None:
    newer = app.add_release("20261201T090000", make_current=False)  # deployed, not live
    inventory = web1(write_inventory, app)
    result = oneoff("-H", "web1", "--", *PRINT_CWD, inventory=inventory)
    assert result.returncode == 0, result.stderr
    live = app.release(DEFAULT_RELEASE_ID)
    assert result.stdout.decode() == f"{live}\n{live / '.venv'}\n"
    assert str(newer) not in result.stdout.decode()


def test_current_as_a_plain_directory_is_the_release(
    tmp_path: Path, write_inventory: WriteInventory
) -> None:
    app = make_app(tmp_path, make_current=False)
    checkout = app.root / "current"  # a single checkout updated in place, no releases/
    os.rename(app.release(DEFAULT_RELEASE_ID), checkout)
    app.releases.rmdir()
    (checkout / ".env").unlink()
    (checkout / ".env").symlink_to("../shared/.env")
    (checkout / "REVISION").write_text("0123456789abcdef\n")
    os.utime(checkout, (DEPLOYED, DEPLOYED))
    inventory = web1(write_inventory, app)

    result = oneoff("-H", "web1", "--", *PRINT_CWD, inventory=inventory)
    assert result.returncode == 0, result.stderr
    assert result.stdout.decode() == f"{checkout}\n{checkout / '.venv'}\n"

    listing = oneoff("releases", "-H", "web1", "--json", inventory=inventory)
    assert listing.returncode == 0, listing.stderr
    assert records(listing.stdout) == [
        {
            "host": "web1",
            "release": "current",
            "revision": "0123456789abcdef",
            "deployed_at": DEPLOYED,
            "path": str(checkout),
            "python": python_version(),
            "drift": False,
        }
    ]


def test_release_flag_pins_a_release_that_is_not_current(
    app: AppTree, write_inventory: WriteInventory
) -> None:
    older = app.add_release(
        "20261115T080000", make_current=False, files={"scripts/which.py": "print('old script')"}
    )
    inventory = web1(write_inventory, app)

    ran = oneoff(
        "-H", "web1", "--release", "20261115T080000", "--", *PRINT_CWD, inventory=inventory
    )
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.decode() == f"{older}\n{older / '.venv'}\n"

    script = oneoff(
        "-H", "web1", "--release", "20261115T080000", "run", "scripts/which.py", inventory=inventory
    )
    assert script.returncode == 0, script.stderr
    assert script.stdout == b"old script\n"

    listing = oneoff("releases", "-H", "web1", "--release", "20261115T080000", inventory=inventory)
    assert listing.returncode == 0, listing.stderr
    assert listing.stdout.decode().splitlines()[1].split()[:2] == ["web1", "20261115T080000"]


def test_unknown_release_is_refused_with_the_ids_newest_first(
    tmp_path: Path, write_inventory: WriteInventory
) -> None:
    # Deployer numbers its releases: 10 is newer than 9, which name order gets wrong
    app = make_app(tmp_path, release_id="1")
    for number, release_id in enumerate(["1", "9", "10"]):
        if release_id != "1":
            app.add_release(release_id)
        os.utime(app.release(release_id), (DEPLOYED + number, DEPLOYED + number))
    (app.releases / "notes.txt").write_text("not a release\n")
    flag = tmp_path / "ran"
    inventory = web1(write_inventory, app)

    result = oneoff("-H", "web1", "--release", "11", "--", "touch", str(flag), inventory=inventory)
    assert result.returncode == 2
    assert result.stderr.decode() == (
        f"oneoff: web1: no release '11' in {app.releases} "
        "(releases there, newest first: 10, 9, 1)\n"
    )
    assert result.stdout == b""
    assert not flag.exists()


@pytest.mark.parametrize("bad", ["..", "10/../9"])
def test_release_id_that_is_a_path_is_refused(
    app: AppTree, write_inventory: WriteInventory, bad: str
) -> None:
    result = oneoff(
        "-H", "web1", "--release", bad, "--", "true", inventory=web1(write_inventory, app)
    )
    assert result.returncode == 2
    assert result.stderr.decode() == (
        f"oneoff: web1: {bad!r} is not a release id (pass a folder name under releases/)\n"
    )


# -- revisions ---------------------------------------------------------------------------


def test_revision_from_the_REVISION_file_is_shown_by_releases_and_dry_run(
    tmp_path: Path, write_inventory: WriteInventory
) -> None:
    sha = "9fceb02d0ae598e95dc970b74767f19372d61af8"
    app = make_app(tmp_path, revision=sha)
    release = app.release(DEFAULT_RELEASE_ID)
    os.utime(release, (DEPLOYED, DEPLOYED))
    inventory = web1(write_inventory, app)

    table = oneoff("releases", "-H", "web1", inventory=inventory)
    assert table.returncode == 0, table.stderr
    version = python_version()
    assert table.stdout.decode() == columns(
        ("HOST", "RELEASE", "REVISION", "DEPLOYED", "PYTHON", "PATH"),
        ("web1", DEFAULT_RELEASE_ID, "9fceb02d0ae5", deployed(), version, str(release)),
    )

    as_json = oneoff("releases", "-H", "web1", "--json", inventory=inventory)
    assert records(as_json.stdout) == [
        {
            "host": "web1",
            "release": DEFAULT_RELEASE_ID,
            "revision": sha,
            "deployed_at": DEPLOYED,
            "path": str(release),
            "python": version,
            "drift": False,
        }
    ]

    plan = oneoff("-H", "web1", "--dry-run", "--", "true", inventory=inventory)
    assert plan.returncode == 0, plan.stderr
    assert f"  release:     {DEFAULT_RELEASE_ID} ({release}) revision {sha}\n" in (
        plan.stdout.decode()
    )


@pytest.mark.parametrize("refs", ["loose", "packed", "detached"])
def test_revision_of_a_git_checkout_is_its_head(
    app: AppTree, write_inventory: WriteInventory, refs: str
) -> None:
    release = app.release(DEFAULT_RELEASE_ID)
    git(release, "init", "-q")
    (release / "app.py").write_text("print('app')\n")
    git(release, "add", "app.py")
    git(release, "commit", "-q", "-m", "first")
    (release / "app.py").write_text("print('app v2')\n")
    git(release, "commit", "-q", "-a", "-m", "second")
    head = git(release, "rev-parse", "HEAD")
    if refs == "packed":
        git(release, "pack-refs", "--all")
        assert not list((release / ".git" / "refs" / "heads").iterdir())
    elif refs == "detached":
        git(release, "checkout", "-q", "--detach")
    inventory = web1(write_inventory, app)

    listing = oneoff("releases", "-H", "web1", "--json", inventory=inventory)
    assert listing.returncode == 0, listing.stderr
    assert [r["revision"] for r in records(listing.stdout)] == [head]
    table = oneoff("releases", "-H", "web1", inventory=inventory)
    assert table.stdout.decode().splitlines()[1].split()[2] == head[:12]
    plan = oneoff("-H", "web1", "--dry-run", "--", "true", inventory=inventory)
    assert f") revision {head}\n" in plan.stdout.decode()


# -- the venv ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("venvs", "chosen"), [([".venv", "venv"], ".venv"), (["venv"], "venv"), ([".venv"], ".venv")]
)
def test_venv_is_detected_dot_venv_first_then_venv(
    tmp_path: Path, write_inventory: WriteInventory, venvs: list[str], chosen: str
) -> None:
    app = make_app(tmp_path, venv=venvs[0])
    release = app.release(DEFAULT_RELEASE_ID)
    for other in venvs[1:]:
        make_venv(release / other)
    result = oneoff("-H", "web1", "--", *PRINT_CWD, inventory=web1(write_inventory, app))
    assert result.returncode == 0, result.stderr
    assert result.stdout.decode() == f"{release}\n{release / chosen}\n"


def test_no_venv_is_refused_with_what_was_tried(
    tmp_path: Path, write_inventory: WriteInventory
) -> None:
    app = make_app(tmp_path, venv=None)
    flag = tmp_path / "ran"
    release = app.release(DEFAULT_RELEASE_ID)
    result = oneoff("-H", "web1", "--", "touch", str(flag), inventory=web1(write_inventory, app))
    assert result.returncode == 255
    assert result.stderr.decode() == (
        f"oneoff: web1: no virtualenv interpreter in {release} (tried "
        f"{release}/.venv/bin/python, {release}/venv/bin/python; set `venv` in the inventory, "
        "or build the release's venv)\n"
    )
    assert not flag.exists()


def test_configured_venv_is_used_even_when_dot_venv_exists(
    tmp_path: Path, write_inventory: WriteInventory
) -> None:
    app = make_app(tmp_path)
    release = app.release(DEFAULT_RELEASE_ID)
    make_venv(app.shared / "venv")
    inventory = write_inventory(
        {"web1": {"hostname": "127.0.0.1", "app_root": str(app.root)}},
        defaults={"venv": str(app.shared / "venv")},
    )
    result = oneoff("-H", "web1", "--", *PRINT_CWD, inventory=inventory)
    assert result.returncode == 0, result.stderr
    assert result.stdout.decode() == f"{release}\n{app.shared / 'venv'}\n"


# -- env files and -e --------------------------------------------------------------------

PRINT_ENV = ["python", "-c", "import os, sys; print(*(os.environ.get(k) for k in sys.argv[1:]))"]


def two_env_files(tmp_path: Path, write_inventory: WriteInventory) -> tuple[AppTree, Path]:
    """shared/base.env (absolute path) then the release's .env.production: later wins."""
    app = make_app(tmp_path, shared_env=None)
    base = app.shared / "base.env"
    base.write_text(f"A=base\nB=base\nPASSWORD={SECRET}\n")
    production = app.release(DEFAULT_RELEASE_ID) / ".env.production"
    production.write_text("B=production\nC=production\n")
    inventory = write_inventory(
        {"web1": {"hostname": "127.0.0.1", "app_root": str(app.root)}},
        defaults={"env_file": [str(base), ".env.production"]},
    )
    return app, inventory


def test_env_files_are_read_in_order_and_later_ones_win(
    tmp_path: Path, write_inventory: WriteInventory
) -> None:
    _app, inventory = two_env_files(tmp_path, write_inventory)
    result = oneoff("-H", "web1", "--", *PRINT_ENV, "A", "B", "C", inventory=inventory)
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"base production production\n"


def test_extra_env_overrides_every_env_file_and_key_alone_passes_ours(
    tmp_path: Path, write_inventory: WriteInventory
) -> None:
    _app, inventory = two_env_files(tmp_path, write_inventory)
    result = oneoff(
        "-H", "web1", "-e", "A=cli", "-e", "C=cli", "-e", "D", "-e", "E=x=y",
        "--", *PRINT_ENV, "A", "B", "C", "D", "E",
        inventory=inventory,
        env={"D": "from-our-env"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"cli production cli from-our-env x=y\n"


def test_extra_env_key_that_is_not_set_here_is_a_usage_error(ssh_host: SshHost) -> None:
    assert "ONEOFF_NOT_SET" not in os.environ
    result = oneoff(
        "-H", "web1", "-e", "ONEOFF_NOT_SET", "--", "true", inventory=ssh_host.inventory
    )
    assert result.returncode == 2
    assert b"ONEOFF_NOT_SET is not set in this environment" in result.stderr


# -- tasks: sources and precedence -------------------------------------------------------

PYPROJECT = """\
[project]
name = "shop"
version = "1.0"

[tool.oneoff.tasks]
hello = "python -c 'print(\\"hello from pyproject\\")'"

[tool.oneoff.tasks.reindex]
command = ["python", "-c", "import time; print('indexing', flush=True); time.sleep(60)"]
run = "each"
lock = "search-index"
timeout = "1s"
tty = false
description = "rebuild the search index"
"""


def test_pyproject_task_in_string_form_runs(
    tmp_path: Path, write_inventory: WriteInventory
) -> None:
    app = make_app(tmp_path, files={"pyproject.toml": PYPROJECT})
    result = oneoff("-H", "web1", "hello", inventory=web1(write_inventory, app))
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"hello from pyproject\n"


def test_pyproject_task_table_sets_run_lock_timeout_tty_and_description(
    tmp_path: Path, write_inventory: WriteInventory
) -> None:
    app = make_app(tmp_path, files={"pyproject.toml": PYPROJECT})
    inventory = web1(write_inventory, app)

    listing = oneoff("tasks", "-H", "web1", "--json", inventory=inventory)
    assert listing.returncode == 0, listing.stderr
    reindex = next(r for r in records(listing.stdout) if r["task"] == "reindex")
    assert reindex == {
        "host": "web1",
        "task": "reindex",
        "command": "python -c 'import time; print('\"'\"'indexing'\"'\"', flush=True); "
        "time.sleep(60)'",
        "source": "pyproject.toml:8",
        "overrides": [],
        "run": "each",
        "lock": "search-index",
        "timeout": 1.0,
        "tty": False,
        "description": "rebuild the search index",
    }

    started = time.monotonic()
    ran = oneoff("-H", "web1", "reindex", inventory=inventory)
    assert ran.returncode == 124, ran.stderr  # the task's own timeout stopped it
    assert ran.stdout == b"indexing\n"
    assert time.monotonic() - started < 15
    audit = [json.loads(line) for line in (app.state_dir / "audit.jsonl").read_text().splitlines()]
    assert [(r["type"], r["task"], r["lock"]) for r in audit] == [
        ("start", "reindex", "search-index"),
        ("end", "reindex", "search-index"),
    ]


def test_release_task_with_run_each_runs_on_every_host_of_the_target(
    tmp_path: Path, write_inventory: WriteInventory
) -> None:
    files = {
        "pyproject.toml": '[tool.oneoff.tasks]\nwhere = { command = "python -c '
        '\'import os; print(os.getcwd())\'", run = "each" }\n'
    }
    one = make_app(tmp_path / "one", files=files)
    two = make_app(tmp_path / "two", files=files)
    inventory = write_inventory(
        {
            "web1": {"hostname": "127.0.0.1", "app_root": str(one.root), "primary": True},
            "web2": {"hostname": "127.0.0.1", "app_root": str(two.root)},
        },
        groups={"prod": {"hosts": ["web1", "web2"]}},
    )
    result = oneoff("-H", "prod", "where", inventory=inventory)
    assert result.returncode == 0, result.stderr
    assert sorted(result.stdout.decode().splitlines()) == [
        f"[web1] {one.release(DEFAULT_RELEASE_ID)}",
        f"[web2] {two.release(DEFAULT_RELEASE_ID)}",
    ]


def test_procfile_process_types_are_tasks(tmp_path: Path, write_inventory: WriteInventory) -> None:
    procfile = (
        "# process types\n"
        "web: gunicorn shop.wsgi --bind 0.0.0.0:$PORT\n"
        "release: python -c 'import sys; print(\"release phase\", sys.argv[1:])'\n"
        'greet: echo "$GREETING from $(basename "$PWD")" && echo done\n'
    )
    app = make_app(tmp_path, files={"Procfile": procfile})
    inventory = web1(write_inventory, app)

    release = oneoff("-H", "web1", "release", "--fake", inventory=inventory)
    assert release.returncode == 0, release.stderr
    assert release.stdout == b"release phase ['--fake']\n"

    # a line with shell syntax runs with sh on the host, as Heroku and foreman run it
    greet = oneoff("-H", "web1", "greet", inventory=inventory)
    assert greet.returncode == 0, greet.stderr
    assert greet.stdout == f"hello from {DEFAULT_RELEASE_ID}\ndone\n".encode()

    listing = oneoff("tasks", "-H", "web1", "--json", inventory=inventory)
    assert [(r["task"], r["command"], r["source"]) for r in records(listing.stdout)] == [
        (
            "greet",
            """sh -c 'echo "$GREETING from $(basename "$PWD")" && echo done'""",
            "Procfile:4",
        ),
        ("release", "python -c 'import sys; print(\"release phase\", sys.argv[1:])'", "Procfile:3"),
        ("shell", "python", "preset: python"),
        ("web", "sh -c 'gunicorn shop.wsgi --bind 0.0.0.0:$PORT'", "Procfile:2"),
    ]


def test_shell_line_task_refuses_arguments_it_could_only_pass_to_its_last_command(
    tmp_path: Path, write_inventory: WriteInventory
) -> None:
    flag = tmp_path / "migrated"
    procfile = f"release: touch {flag} && echo collected\n"
    app = make_app(tmp_path, files={"Procfile": procfile})
    result = oneoff("-H", "web1", "release", "--dry-run", inventory=web1(write_inventory, app))
    assert result.returncode == 2
    assert result.stderr.decode() == (
        "oneoff: web1: task 'release' (Procfile:1) is a shell line and takes no arguments "
        "(run the command with its arguments: oneoff -H HOST -- COMMAND [ARGS...])\n"
    )
    assert not flag.exists()


@pytest.mark.parametrize("winner", ["pyproject", "procfile", "inventory", "preset"])
def test_task_precedence_release_then_inventory_then_preset(
    tmp_path: Path, write_inventory: WriteInventory, winner: str
) -> None:
    """Every layer at and below *winner* defines ``migrate``; the top one runs and
    ``oneoff tasks`` says what it overrides."""
    layers = ["pyproject", "procfile", "inventory", "preset"]
    present = layers[layers.index(winner) :]
    files: dict[str, str] = {}
    if "pyproject" in present:
        files["pyproject.toml"] = (
            '[tool.oneoff.tasks]\nmigrate = { command = "echo from pyproject", '
            'description = "shipped migration" }\n'
        )
    if "procfile" in present:
        files["Procfile"] = "migrate: echo from Procfile\n"
    # a manage.py that echoes what it is asked: the Django preset, observable without Django
    files["manage.py"] = "import sys\nprint('from manage.py:', *sys.argv[1:])\n"
    app = make_app(tmp_path, files=files)
    tasks = {"migrate": {"command": "echo from inventory"}} if "inventory" in present else {}
    inventory = web1(write_inventory, app, tasks=tasks)
    inventory_line = line_of(inventory, '"migrate"') if tasks else 0
    sources = {
        "pyproject": "pyproject.toml:2",
        "procfile": "Procfile:1",
        "inventory": f"oneoff.yaml:{inventory_line}",
        "preset": "preset: django",
    }

    ran = oneoff("-H", "web1", "migrate", inventory=inventory)
    assert ran.returncode == 0, ran.stderr
    expected = {
        "pyproject": b"from pyproject\n",
        "procfile": b"from Procfile\n",
        "inventory": b"from inventory\n",
        "preset": b"from manage.py: migrate --noinput\n",
    }
    assert ran.stdout == expected[winner]

    listing = oneoff("tasks", "-H", "web1", "--json", inventory=inventory)
    migrate = next(r for r in records(listing.stdout) if r["task"] == "migrate")
    assert migrate["source"] == sources[winner]
    assert migrate["overrides"] == [sources[layer] for layer in present[1:]]


def test_release_task_wins_over_inventory_task_and_tasks_says_so(
    tmp_path: Path, write_inventory: WriteInventory
) -> None:
    files = {
        "pyproject.toml": "[tool.oneoff.tasks]\nmigrate = \"python -c 'print(1)'\"\n",
        "manage.py": "print('manage')\n",
    }
    app = make_app(tmp_path, files=files)
    inventory = web1(
        write_inventory,
        app,
        tasks={
            "migrate": {"command": "python manage.py migrate --noinput"},
            "clear-cache": {"command": ["python", "manage.py", "clear_cache"]},
        },
    )
    migrate_line = line_of(inventory, '"migrate"')
    cache_line = line_of(inventory, '"clear-cache"')
    result = oneoff("tasks", "-H", "web1", inventory=inventory)
    assert result.returncode == 0, result.stderr
    assert result.stderr == b""
    assert result.stdout.decode() == columns(
        ("HOST", "TASK", "COMMAND", "FROM", "DESCRIPTION"),
        ("web1", "clear-cache", "python manage.py clear_cache", f"oneoff.yaml:{cache_line}", ""),
        (
            "web1",
            "migrate",
            "python -c 'print(1)'",
            f"pyproject.toml:2 (over oneoff.yaml:{migrate_line}, preset: django)",
            "",
        ),
        (
            "web1",
            "shell",
            "python manage.py shell",
            "preset: django",
            "Django shell with the release's settings",
        ),
    )


def test_unknown_task_is_refused_with_the_task_list(
    tmp_path: Path, write_inventory: WriteInventory
) -> None:
    files = {
        "pyproject.toml": PYPROJECT,
        "Procfile": "release: python manage.py migrate\n",
    }
    app = make_app(tmp_path, files=files)
    inventory = web1(write_inventory, app)
    result = oneoff("-H", "web1", "deploy", inventory=inventory)
    assert result.returncode == 2
    assert result.stdout == b""
    reindex = "python -c 'import time; print('\"'\"'indexing'\"'\"', flush=True); time.sleep(60)'"
    known = columns(
        ("hello", "python -c 'print(\"hello from pyproject\")'", "pyproject.toml:6", ""),
        ("reindex", reindex, "pyproject.toml:8", "rebuild the search index"),
        ("release", "python manage.py migrate", "Procfile:1", ""),
        ("shell", "python", "preset: python", "Python REPL in the release"),
    )
    assert result.stderr.decode() == (
        f"oneoff: web1: unknown task 'deploy'; known tasks on release {DEFAULT_RELEASE_ID}:\n"
        + "".join(f"  {line}\n" for line in known.splitlines())
        + "  or run any command: oneoff -H HOST -- COMMAND [ARGS...]\n"
    )


# -- malformed task files ----------------------------------------------------------------


def test_malformed_pyproject_is_reported_with_its_line_and_other_tasks_still_work(
    tmp_path: Path, write_inventory: WriteInventory
) -> None:
    files = {
        "pyproject.toml": '[tool.oneoff.tasks]\nhello = "echo hi"\n[tool.oneoff.tasks.x\n',
        "Procfile": "release: echo from Procfile\n",
    }
    app = make_app(tmp_path, files=files)
    inventory = web1(write_inventory, app, tasks={"ping": {"command": "echo pong"}})
    problem = "pyproject.toml:3: Expected ']' at the end of a table declaration (column 21)"

    listing = oneoff("tasks", "-H", "web1", inventory=inventory)
    assert listing.returncode == 0, listing.stderr
    assert listing.stderr.decode() == f"oneoff: web1: {problem} (other tasks still work)\n"
    assert [line.split()[1] for line in listing.stdout.decode().splitlines()[1:]] == [
        "ping",
        "release",
        "shell",
    ]

    for task, output in [("release", b"from Procfile\n"), ("ping", b"pong\n")]:
        ran = oneoff("-H", "web1", task, inventory=inventory)
        assert ran.returncode == 0, ran.stderr
        assert ran.stdout == output
        # the broken file may have held the definition meant to win: say so at every run
        assert f"web1: {problem}; running {task} from ".encode() in ran.stderr

    missing = oneoff("-H", "web1", "hello", inventory=inventory)
    assert missing.returncode == 2
    assert f"\n  skipped: {problem}\n".encode() in missing.stderr


def test_bad_task_entry_in_pyproject_is_reported_and_its_neighbours_work(
    tmp_path: Path, write_inventory: WriteInventory
) -> None:
    pyproject = (
        "[tool.oneoff.tasks]\n"
        'good = "echo good"\n'
        'bad = { command = "echo bad", colour = "blue" }\n'
        "\n"
        "[tool.oneoff.tasks.slow]\n"
        'command = "sleep 1"\n'
        'timeout = "soon"\n'
    )
    app = make_app(tmp_path, files={"pyproject.toml": pyproject})
    inventory = web1(write_inventory, app)
    listing = oneoff("tasks", "-H", "web1", inventory=inventory)
    assert listing.returncode == 0
    assert listing.stderr.decode() == (
        "oneoff: web1: pyproject.toml:3: [tool.oneoff.tasks] bad: unknown key(s): colour "
        "(other tasks still work)\n"
        "oneoff: web1: pyproject.toml:5: [tool.oneoff.tasks] slow: 'soon' is not a duration "
        "(write e.g. 30, 30s, 5m, 1h30m, 2d) (other tasks still work)\n"
    )
    ran = oneoff("-H", "web1", "good", inventory=inventory)
    assert (ran.returncode, ran.stdout) == (0, b"good\n")


def test_malformed_procfile_line_is_reported_and_other_lines_work(
    tmp_path: Path, write_inventory: WriteInventory
) -> None:
    procfile = "release: echo released\nthis line has no colon\nquote: echo 'unterminated\n"
    app = make_app(tmp_path, files={"Procfile": procfile})
    inventory = web1(write_inventory, app)
    listing = oneoff("tasks", "-H", "web1", inventory=inventory)
    assert listing.returncode == 0
    assert listing.stderr.decode() == (
        "oneoff: web1: Procfile:2: expected 'name: command' (other tasks still work)\n"
        "oneoff: web1: Procfile:3: No closing quotation (other tasks still work)\n"
    )
    ran = oneoff("-H", "web1", "release", inventory=inventory)
    assert (ran.returncode, ran.stdout) == (0, b"released\n")


# -- presets: real frameworks ------------------------------------------------------------

DJANGO = {
    "manage.py": """\
import os
import sys

if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "shop.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
""",
    "shop/__init__.py": "",
    "shop/settings.py": """\
import os

SECRET_KEY = os.environ["DJANGO_SECRET_KEY"]
DEBUG = False
ALLOWED_HOSTS: list[str] = []
INSTALLED_APPS = ["orders"]
DATABASES = {
    "default": {"ENGINE": "django.db.backends.sqlite3", "NAME": os.environ["DATABASE_PATH"]}
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
USE_TZ = True
""",
    "orders/__init__.py": "",
    "orders/models.py": """\
from django.db import models


class Order(models.Model):
    number = models.CharField(max_length=20, unique=True)
    placed_at = models.DateTimeField()
""",
    "orders/migrations/__init__.py": "",
    "orders/migrations/0001_initial.py": """\
from django.db import migrations, models


class Migration(migrations.Migration):
    initial = True
    dependencies: list[tuple[str, str]] = []
    operations = [
        migrations.CreateModel(
            name="Order",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("number", models.CharField(max_length=20, unique=True)),
                ("placed_at", models.DateTimeField()),
            ],
        ),
    ]
""",
}

ALEMBIC = {
    "alembic.ini": "[alembic]\nscript_location = alembic\n",
    "alembic/env.py": """\
import os

from alembic import context
from sqlalchemy import create_engine

engine = create_engine(os.environ["DATABASE_URL"])
with engine.connect() as connection:
    context.configure(connection=connection)
    with context.begin_transaction():
        context.run_migrations()
""",
    "alembic/versions/0001_create_items.py": """\
import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "items",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(50), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("items")
""",
}


@pytest.fixture(scope="session")
def framework_venv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One venv with Django, Alembic and SQLAlchemy for the session (pip takes seconds);
    releases link ``.venv`` to it, as deploys that keep the venv in ``shared/`` do."""
    path = tmp_path_factory.mktemp("framework") / "venv"
    try:
        make_venv_with(path, ["django>=4.2", "alembic>=1.12", "sqlalchemy>=2"])
    except PackageInstallFailed as exc:
        pytest.skip(f"cannot install the frameworks from the package index: {exc}")
    yield path


def framework_app(
    tmp_path: Path, venv: Path, files: dict[str, str], shared_env: str
) -> tuple[AppTree, Path]:
    app = make_app(tmp_path, venv=None, files=files, shared_env=shared_env)
    release = app.release(DEFAULT_RELEASE_ID)
    (release / ".venv").symlink_to(venv)
    return app, release


def test_django_preset_applies_a_real_migration_on_the_host(
    tmp_path: Path, write_inventory: WriteInventory, framework_venv: Path
) -> None:
    database = tmp_path / "app" / "shared" / "shop.sqlite3"
    env = f"DJANGO_SECRET_KEY={SECRET}-django\nDATABASE_PATH={database}\n"
    app, _release = framework_app(tmp_path, framework_venv, DJANGO, env)
    inventory = web1(write_inventory, app)

    listing = oneoff("tasks", "-H", "web1", inventory=inventory)
    assert listing.returncode == 0, listing.stderr
    assert listing.stdout.decode() == (
        "HOST  TASK     COMMAND                             FROM            DESCRIPTION\n"
        "web1  migrate  python manage.py migrate --noinput  preset: django  "
        "apply Django migrations\n"
        "web1  shell    python manage.py shell              preset: django  "
        "Django shell with the release's settings\n"
    )

    # the hand-written migration is the one Django would write for the model
    check = oneoff(
        "-H", "web1", "--", "python", "manage.py", "makemigrations", "--check", "--dry-run",
        inventory=inventory,
    )  # fmt: skip
    assert (check.returncode, check.stdout) == (0, b"No changes detected\n"), check.stderr

    migrate = oneoff("-H", "web1", "migrate", inventory=inventory)
    assert migrate.returncode == 0, migrate.stderr
    assert migrate.stdout == (
        b"Operations to perform:\n"
        b"  Apply all migrations: orders\n"
        b"Running migrations:\n"
        b"  Applying orders.0001_initial... OK\n"
    )
    with sqlite3.connect(database) as db:
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master")}
        applied = db.execute("SELECT app, name FROM django_migrations").fetchall()
    assert "orders_order" in tables
    assert applied == [("orders", "0001_initial")]

    shown = oneoff("-H", "web1", "--", "python", "manage.py", "showmigrations", inventory=inventory)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout == b"orders\n [X] 0001_initial\n"
    audit = (app.state_dir / "audit.jsonl").read_text()
    assert '"lock": "migrate"' in audit  # the preset serialises migrations
    assert SECRET not in migrate.stderr.decode() + listing.stdout.decode() + audit


def test_alembic_preset_upgrades_to_head_on_the_host(
    tmp_path: Path, write_inventory: WriteInventory, framework_venv: Path
) -> None:
    database = tmp_path / "app" / "shared" / "alembic.sqlite3"
    app, _release = framework_app(
        tmp_path, framework_venv, ALEMBIC, f"DATABASE_URL=sqlite:///{database}\n"
    )
    inventory = web1(write_inventory, app)

    listing = oneoff("tasks", "-H", "web1", "--json", inventory=inventory)
    assert [(r["task"], r["command"], r["source"]) for r in records(listing.stdout)] == [
        ("migrate", "alembic upgrade head", "preset: alembic"),
        ("shell", "python", "preset: python"),
    ]

    migrate = oneoff("-H", "web1", "migrate", inventory=inventory)
    assert migrate.returncode == 0, migrate.stderr
    with sqlite3.connect(database) as db:
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master")}
        version = db.execute("SELECT version_num FROM alembic_version").fetchall()
    assert "items" in tables
    assert version == [("0001",)]

    current = oneoff("-H", "web1", "--", "alembic", "current", inventory=inventory)
    assert (current.returncode, current.stdout) == (0, b"0001 (head)\n"), current.stderr


def test_flask_migrate_preset_is_listed_for_a_migrations_folder(
    tmp_path: Path, write_inventory: WriteInventory
) -> None:
    files = {  # what `flask db init` writes
        "migrations/alembic.ini": "[alembic]\n",
        "migrations/env.py": "",
        "migrations/script.py.mako": "",
        "migrations/versions/.keep": "",
        "app.py": "",
    }
    app = make_app(tmp_path, files=files)
    listing = oneoff("tasks", "-H", "web1", "--json", inventory=web1(write_inventory, app))
    assert [(r["task"], r["command"], r["source"]) for r in records(listing.stdout)] == [
        ("migrate", "flask db upgrade", "preset: flask-migrate"),
        ("shell", "python", "preset: python"),
    ]


def test_a_migrations_folder_of_another_tool_is_no_flask_preset(
    tmp_path: Path, write_inventory: WriteInventory
) -> None:
    app = make_app(tmp_path, files={"migrations/0001_init.sql": "CREATE TABLE t (id int);\n"})
    listing = oneoff("tasks", "-H", "web1", "--json", inventory=web1(write_inventory, app))
    assert [r["task"] for r in records(listing.stdout)] == ["shell"]


# -- oneoff releases: drift ----------------------------------------------------------------


def fleet(
    tmp_path: Path, write_inventory: WriteInventory, release_ids: list[str]
) -> tuple[Path, list[AppTree]]:
    """Hosts web1..webN on the one sshd, each with an app tree of its own on *release_ids*."""
    apps = [
        make_app(tmp_path / f"host{n}", release_id=rid, revision=f"rev-{rid}")
        for n, rid in enumerate(release_ids, start=1)
    ]
    for tree in apps:
        os.utime(tree.current.resolve(), (DEPLOYED, DEPLOYED))
    hosts = {
        f"web{n}": {"hostname": "127.0.0.1", "app_root": str(tree.root)}
        for n, tree in enumerate(apps, start=1)
    }
    inventory = write_inventory(hosts, groups={"prod": {"hosts": list(hosts)}})
    return inventory, apps


def test_releases_marks_the_host_on_a_different_release(
    tmp_path: Path, write_inventory: WriteInventory
) -> None:
    inventory, apps = fleet(
        tmp_path, write_inventory, ["20261201T090000", "20261128T120000", "20261201T090000"]
    )
    result = oneoff("releases", "-H", "prod", inventory=inventory)
    assert result.returncode == 0, result.stderr
    version, when = python_version(), deployed()
    paths = [str(tree.current.resolve()) for tree in apps]
    assert result.stdout.decode() == columns(
        ("HOST", "RELEASE", "REVISION", "DEPLOYED", "PYTHON", "PATH"),
        ("web1", "20261201T090000", "rev-20261201", when, version, paths[0]),
        ("web2", "20261128T120000 *", "rev-20261128", when, version, paths[1]),
        ("web3", "20261201T090000", "rev-20261201", when, version, paths[2]),
    ) + ("* not on 20261201T090000 (run by 2 of 3 hosts)\n")

    as_json = oneoff("releases", "-H", "prod", "--json", inventory=inventory)
    assert [(r["host"], r["release"], r["drift"]) for r in records(as_json.stdout)] == [
        ("web1", "20261201T090000", False),
        ("web2", "20261128T120000", True),
        ("web3", "20261201T090000", False),
    ]


def test_releases_of_two_hosts_marks_the_one_behind(
    tmp_path: Path, write_inventory: WriteInventory
) -> None:
    """One host each: the tie goes to the release deployed last (Deployer's 10 after 9)."""
    inventory, apps = fleet(tmp_path, write_inventory, ["10", "9"])
    os.utime(apps[1].current.resolve(), (DEPLOYED - 3600, DEPLOYED - 3600))
    result = oneoff("releases", "-H", "prod", "--json", inventory=inventory)
    assert result.returncode == 0, result.stderr
    assert [
        (r["host"], r["release"], r["revision"], r["deployed_at"], r["drift"])
        for r in records(result.stdout)
    ] == [
        ("web1", "10", "rev-10", DEPLOYED, False),
        ("web2", "9", "rev-9", DEPLOYED - 3600, True),
    ]
    table = oneoff("releases", "-H", "prod", inventory=inventory)
    assert table.stdout.decode().endswith("* not on 10 (run by 1 of 2 hosts)\n")


def test_releases_reports_a_broken_host_and_still_lists_the_others(
    tmp_path: Path, write_inventory: WriteInventory
) -> None:
    inventory, apps = fleet(tmp_path, write_inventory, ["20261201T090000", "20261201T090000"])
    apps[1].current.unlink()
    result = oneoff("releases", "-H", "prod", "--json", inventory=inventory)
    assert result.returncode == 255
    web1_record, web2_record = records(result.stdout)
    assert web1_record["release"] == "20261201T090000"
    assert web2_record == {
        "host": "web2",
        "error": f"{apps[1].current} does not exist",
        "hint": "deploy a release first, or set `current`",
    }


# -- --dry-run ---------------------------------------------------------------------------


def test_dry_run_shows_each_hosts_plan_without_values_and_runs_nothing(
    tmp_path: Path, write_inventory: WriteInventory
) -> None:
    apps = [
        make_app(tmp_path / name, shared_env=None, revision=f"rev-{name}") for name in ("a", "b")
    ]
    for tree in apps:
        (tree.shared / "base.env").write_text(f"DATABASE_URL=postgres://u:{SECRET}@db/shop\nA=1\n")
        (tree.release(DEFAULT_RELEASE_ID) / ".env.production").write_text(
            f"API_TOKEN={SECRET}-token\nB=2\nC=3\n"
        )
    hosts = {
        f"web{n}": {
            "hostname": "127.0.0.1",
            "app_root": str(tree.root),
            "env_file": [str(tree.shared / "base.env"), ".env.production"],
        }
        for n, tree in enumerate(apps, start=1)
    }
    inventory = write_inventory(hosts, groups={"prod": {"hosts": list(hosts)}})
    flag = tmp_path / "ran"

    result = oneoff(
        "-H", "prod", "--all", "--dry-run", "-e", f"EXTRA={SECRET}-extra",
        "--", "touch", str(flag), "it's",
        inventory=inventory,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    blocks = []
    for n, tree in enumerate(apps, start=1):
        release = tree.release(DEFAULT_RELEASE_ID)
        blocks.append(
            f"web{n}:\n"
            f"  release:     {DEFAULT_RELEASE_ID} ({release}) revision rev-{'ab'[n - 1]}\n"
            f"  interpreter: {release}/.venv/bin/python\n"
            f"  cwd:         {release}\n"
            f"  env file:    {tree.shared / 'base.env'} (2 keys)\n"
            f"  env file:    {release}/.env.production (3 keys)\n"
            "  extra env:   EXTRA=***\n"
            f"  command:     touch {flag} 'it'\"'\"'s'\n"
        )
    assert result.stdout.decode() == "".join(blocks)
    everything = result.stdout.decode() + result.stderr.decode()
    assert SECRET not in everything
    assert not flag.exists()
    for tree in apps:  # not even an audit record or a lock: nothing ran
        assert list(tree.state_dir.iterdir()) == []


def test_dry_run_of_a_task_shows_the_command_it_resolves_to(
    tmp_path: Path, write_inventory: WriteInventory
) -> None:
    app = make_app(tmp_path, files={"manage.py": "open('migrated', 'w').close()\n"})
    release = app.release(DEFAULT_RELEASE_ID)
    result = oneoff("-H", "web1", "--dry-run", "migrate", inventory=web1(write_inventory, app))
    assert result.returncode == 0, result.stderr
    assert "  command:     python manage.py migrate --noinput\n" in result.stdout.decode()
    assert f"  env file:    {release}/.env (2 keys)\n" in result.stdout.decode()
    assert SECRET not in result.stdout.decode() + result.stderr.decode()
    assert not (release / "migrated").exists()


# -- run SCRIPT ----------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["../shared/evil.py", ""])
def test_run_script_outside_the_release_is_refused_and_nothing_runs(
    tmp_path: Path, write_inventory: WriteInventory, path: str
) -> None:
    app = make_app(tmp_path)
    (app.shared / "evil.py").write_text("open('ran', 'w').close()\n")
    result = oneoff("-H", "web1", "run", path, inventory=web1(write_inventory, app))
    assert result.returncode == 2
    expected = (
        "run needs a script path (e.g. oneoff -H HOST run scripts/fix.py)"
        if path == ""
        else f"script {path!r} is outside the release "
        "(give a path relative to the release, e.g. scripts/fix.py)"
    )
    assert result.stderr.decode().endswith(expected + "\n")
    assert not list(tmp_path.rglob("ran"))


def test_run_script_inside_the_release_gets_its_arguments(
    ssh_host: SshHost,
) -> None:
    release = ssh_host.app.release(DEFAULT_RELEASE_ID)
    (release / "scripts").mkdir()
    (release / "scripts" / "fix.py").write_text(
        "import os, sys; print(os.getcwd(), sys.argv[1:])\n"
    )
    result = oneoff(
        "-H", "web1", "run", "./scripts/../scripts/fix.py", "--limit", "5",
        inventory=ssh_host.inventory,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.decode() == f"{release} ['--limit', '5']\n"


# -- pure pieces: task files as the probe brings them back --------------------------------


def shipped(files: dict[str, str]) -> ReleaseTasks:
    release = ResolvedRelease(
        host="web1",
        app_root="/srv/shop",
        path="/srv/shop/releases/1",
        release_id="1",
        venv="/srv/shop/releases/1/.venv",
        python="/srv/shop/releases/1/.venv/bin/python",
        env_files=(),
        files={name: text.encode() for name, text in files.items()},
    )
    return release_tasks(release)


def test_pyproject_task_sources_name_the_line_for_every_spelling() -> None:
    found = shipped(
        {
            "pyproject.toml": "[tool.oneoff.tasks]  # admin\n"
            'a = "echo a"\n'
            '"db:seed" = ["python", "seed.py"]\n'
            "  'c' = { command = \"echo c\" }\n"
            "\n"
            '[tool.oneoff.tasks."d.e"]\n'
            'command = "echo d"\n'
            "[ tool.oneoff.tasks.f ]\n"
            'command = "echo f"\n'
        }
    )
    assert found.problems == ()
    assert {name: task.source for name, task in found.pyproject.items()} == {
        "a": "pyproject.toml:2",
        "db:seed": "pyproject.toml:3",
        "c": "pyproject.toml:4",
        "d.e": "pyproject.toml:6",
        "f": "pyproject.toml:8",
    }


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (
            '[tool.oneoff.tasks]\na = "echo\n',
            "pyproject.toml:2: Illegal character '\\n' (column 10)",
        ),
        (
            "[tool.oneoff.tasks]\na = [\n",
            "pyproject.toml:3: Invalid value (at the end of the file)",
        ),
        ("[tool]\noneoff = 1\n", "pyproject.toml: [tool.oneoff.tasks] must be a table"),
        ("[tool.oneoff]\ntasks = 1\n", "pyproject.toml: [tool.oneoff.tasks] must be a table"),
        (
            '[tool.oneoff.tasks]\n"bad name" = "echo"\n',
            "pyproject.toml:2: [tool.oneoff.tasks] bad name: task names are letters, digits "
            "and _ . : -",
        ),
        (
            '[tool.oneoff.tasks.x]\ncommand = "echo"\nrun = "twice"\n',
            "pyproject.toml:1: [tool.oneoff.tasks] x: `run` must be once or each",
        ),
        (
            '[tool.oneoff.tasks]\nx = { command = "echo", tty = "yes" }\n',
            "pyproject.toml:2: [tool.oneoff.tasks] x: `tty` must be true or false",
        ),
    ],
)
def test_pyproject_problems_name_file_and_line(text: str, problem: str) -> None:
    assert shipped({"pyproject.toml": text}).problems == (problem,)


@pytest.mark.parametrize(
    ("line", "argv"),
    [
        ("python manage.py migrate --noinput", ("python", "manage.py", "migrate", "--noinput")),
        ("python -c 'print(\"a; b\")'", ("python", "-c", 'print("a; b")')),
        ('echo "plain words"', ("echo", "plain words")),
        ("bin/release && bin/notify", ("sh", "-c", "bin/release && bin/notify")),
        ("gunicorn app --bind :$PORT", ("sh", "-c", "gunicorn app --bind :$PORT")),
        ('echo "at $HOSTNAME"', ("sh", "-c", 'echo "at $HOSTNAME"')),
        (
            "DJANGO_DEBUG=0 python manage.py check",
            ("sh", "-c", "DJANGO_DEBUG=0 python manage.py check"),
        ),
        ("rm -f tmp/*.pid", ("sh", "-c", "rm -f tmp/*.pid")),
        ("python manage.py migrate > log", ("sh", "-c", "python manage.py migrate > log")),
    ],
)
def test_procfile_line_is_an_argv_unless_it_needs_the_shell(
    line: str, argv: tuple[str, ...]
) -> None:
    task = shipped({"Procfile": f"release: {line}\n"}).procfile["release"]
    assert (task.command, task.shell) == (argv, argv[0] == "sh")

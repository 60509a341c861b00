"""The command line: parse, pick hosts, hand over to the fleet, render, exit. Thin.

Only this module imports click, and only what a command needs is imported
(paramiko only when a host is reached over SSH), so ``--help`` starts fast.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import click

from oneoff import __version__
from oneoff.errors import ExitStatus, OneoffError, UsageError

if TYPE_CHECKING:
    from oneoff.config.model import Inventory
    from oneoff.output.reporters import Terminal
    from oneoff.plan.spec import Invocation

BUILTINS = ("releases", "tasks", "hosts", "audit", "ps", "logs", "kill")
RAW = "raw_command"


def _duration(_ctx: click.Context, param: click.Parameter, value: str | None) -> float | None:
    if value is None:
        return None
    from oneoff.durations import parse_duration

    try:
        return parse_duration(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param=param) from None


def _extra_env(
    _ctx: click.Context, param: click.Parameter, values: tuple[str, ...]
) -> dict[str, str]:
    """``-e KEY=VALUE``, or ``-e KEY`` to pass KEY's value from our environment (as docker
    does), which keeps the value out of oneoff's own argv too."""
    env: dict[str, str] = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not key.isidentifier() or not key.isascii():
            # never echo the value: it may be a secret
            raise click.BadParameter(
                f"{key!r} is not a variable name (KEY=VALUE or KEY)", param=param
            )
        if not sep:
            if key not in os.environ:
                raise click.BadParameter(f"{key} is not set in this environment", param=param)
            value = os.environ[key]
        env[key] = value
    return env


class _Main(click.Command):
    """Remembers whether the command words came after ``--`` (a raw command, not a task)."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        original = list(args)
        rest = super().parse_args(ctx, args)
        words = ctx.params.get("words") or ()
        cut = len(original) - len(words)
        ctx.meta[RAW] = bool(words) and cut > 0 and original[cut - 1] == "--"
        return rest


@click.command(
    cls=_Main,
    context_settings={"allow_interspersed_args": False, "help_option_names": ["-h", "--help"]},
    epilog="""\b
Examples:
  oneoff --host prod migrate
  oneoff --host web1 shell
  oneoff --host prod run scripts/fix_bad_records.py --dry-run
  oneoff --host prod --all -- python -c 'import socket; print(socket.gethostname())'
  oneoff releases -H prod      oneoff tasks -H web1      oneoff hosts
""",
)
@click.option(
    "-H",
    "--host",
    "targets",
    multiple=True,
    metavar="TARGET",
    help="Host, group, comma list, glob (web*) or role:NAME. Repeatable.",
)
@click.option(
    "-i",
    "--inventory",
    metavar="PATH",
    help="Inventory file (else $ONEOFF_INVENTORY, ./oneoff.yaml, ...).",
)
@click.option("--all", "every", is_flag=True, help="Run on every host of the target.")
@click.option("--one", is_flag=True, help="Run on the target's primary host only.")
@click.option(
    "-t", "--tty", "tty", flag_value=True, default=None, help="Allocate a terminal for the command."
)
@click.option("-T", "--no-tty", "tty", flag_value=False, help="Never allocate a terminal.")
@click.option(
    "--release", "release_id", metavar="ID", help="Pin this release instead of `current`."
)
@click.option(
    "-e",
    "--env",
    "extra_env",
    multiple=True,
    metavar="KEY=VALUE",
    callback=_extra_env,
    help="Extra variable KEY=VALUE, or KEY to pass ours (never logged). Repeatable.",
)
@click.option(
    "--timeout",
    metavar="DURATION",
    callback=_duration,
    help="Stop the command after this long (exit 124).",
)
@click.option(
    "--kill-after",
    metavar="DURATION",
    callback=_duration,
    help="Grace period between SIGTERM and SIGKILL (default 10s).",
)
@click.option("--lock", metavar="NAME", help="Hold this lock on the host while the command runs.")
@click.option(
    "--lock-wait", metavar="DURATION", callback=_duration, help="Wait this long for a busy lock."
)
@click.option(
    "--parallel", type=click.IntRange(min=1), default=32, show_default=True, help="Hosts at once."
)
@click.option("--batch", metavar="N|P%", help="Rolling: run N hosts (or P% of them) at a time.")
@click.option(
    "--pause", metavar="DURATION", callback=_duration, help="Wait this long between batches."
)
@click.option("--fail-fast", is_flag=True, help="Start no new host after a failure.")
@click.option(
    "--max-fail", metavar="N|P%", help="Start no new host once more than N (or P%) have failed."
)
@click.option(
    "--retries",
    type=click.IntRange(min=0),
    default=0,
    help="Retry a failed connection this many times, with backoff (never a started command).",
)
@click.option(
    "--since", metavar="DURATION", callback=_duration, help="audit: only runs started since."
)
@click.option(
    "--detach", is_flag=True, help="Start the run in the background on the host; print its id."
)
@click.option("-f", "--follow", is_flag=True, help="logs: follow until the run ends.")
@click.option("--timestamps", is_flag=True, help="logs: show each line's time and stream.")
@click.option("--json", "as_json", is_flag=True, help="JSON Lines events on stdout.")
@click.option("--dry-run", is_flag=True, help="Print the resolved plan per host; run nothing.")
@click.option(
    "--allow-drift", is_flag=True, help="Run a `once` task even if hosts are on different releases."
)
@click.option(
    "--accept-new-host-keys",
    is_flag=True,
    help="Record unknown host keys (changed keys are still refused).",
)
@click.option(
    "--no-audit", is_flag=True, help="Run even though the host's audit trail cannot be written."
)
@click.option("-q", "--quiet", is_flag=True, help="Only the command's output and errors.")
@click.option("-v", "--verbose", count=True, help="Say more about what oneoff does.")
@click.option("--debug", is_flag=True, help="Show tracebacks.")
@click.version_option(__version__, "-V", "--version")
@click.argument("words", nargs=-1, type=click.UNPROCESSED)
@click.pass_context
def cli(ctx: click.Context, /, **opts: Any) -> None:
    """Run a twelve-factor app's admin processes on its hosts, in the live release.

    \b
    oneoff [OPTIONS] TASK [ARGS...]          a task; ARGS are appended
    oneoff [OPTIONS] -- COMMAND [ARGS...]    any command, with the release's venv and env
    oneoff [OPTIONS] run SCRIPT [ARGS...]    a script shipped in the release
    oneoff [OPTIONS] shell                   an interactive REPL in the release
    oneoff releases|tasks|hosts -H TARGET    what is deployed, what can run, where
    """
    words: tuple[str, ...] = opts.pop("words")
    raw = bool(ctx.meta.get(RAW))
    if not raw and words and words[0] in BUILTINS:
        sub = cli.make_context(
            f"oneoff {words[0]}", list(words[1:]), parent=ctx, allow_interspersed_args=True
        )
        for name, value in sub.params.items():
            if (
                sub.get_parameter_source(name) != click.core.ParameterSource.DEFAULT
                and name != "words"
            ):
                opts[name] = value
        ctx.exit(_builtin(words[0], opts, tuple(sub.params.get("words") or ())))
    if not words:
        raise UsageError(
            "nothing to run", hint="oneoff -H HOST TASK, or oneoff -H HOST -- COMMAND (see --help)"
        )
    ctx.exit(_run(words, raw, opts))


def _terminal() -> Terminal:
    from oneoff.output.reporters import Terminal

    return Terminal()


def _inventory(opts: dict[str, Any]) -> Inventory:
    from oneoff.config.model import find_inventory, load_inventory

    path = find_inventory(opts.get("inventory"), os.environ, Path.cwd(), Path.home())
    return load_inventory(path)


def _overrides(opts: dict[str, Any]) -> Any:
    from oneoff.config.model import Overrides

    return Overrides(
        host_key_policy="accept-new" if opts.get("accept_new_host_keys") else None,
        kill_after=opts.get("kill_after"),
    )


def _invocation(words: tuple[str, ...], raw: bool, opts: dict[str, Any]) -> Invocation:
    from oneoff.plan.spec import Invocation
    from oneoff.values import Masked

    if raw:
        kind, rest = "command", words
    elif words[0] == "run":
        if len(words) < 2:
            raise UsageError(
                "run needs a script path", hint="oneoff -H HOST run scripts/fix.py [ARGS]"
            )
        kind, rest = "script", words[1:]
    else:
        kind, rest = "task", words
    tty = opts.get("tty")
    term = os.environ.get("TERM")
    from oneoff.output.terminal import window_size

    winsize = window_size() if tty is not False else None
    return Invocation(
        kind=kind,  # type: ignore[arg-type]
        words=tuple(rest),
        extra_env=Masked(opts.get("extra_env") or {}),
        release_id=opts.get("release_id"),
        timeout=opts.get("timeout"),
        lock=_lock_name(opts.get("lock")),
        lock_wait=opts.get("lock_wait") or 0.0,
        tty=tty,
        audit=not opts.get("no_audit"),
        mode="plan" if opts.get("dry_run") else "run",
        detach=bool(opts.get("detach")),
        term=term,
        winsize=winsize,
    )


def _lock_name(name: str | None) -> str | None:
    import re

    if name is not None and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name):
        raise UsageError(
            f"--lock {name!r} is not a lock name",
            hint="letters, digits, '_', '.', '-' (no slashes)",
        )
    return name


def _run(words: tuple[str, ...], raw: bool, opts: dict[str, Any]) -> int:
    from dataclasses import replace

    from oneoff.client import fleet
    from oneoff.output.reporters import make_reporter

    terminal = _terminal()
    inventory = _inventory(opts)
    invocation = _invocation(words, raw, opts)
    if not opts["targets"]:
        raise UsageError("no target", hint="pass -H HOST|GROUP (see `oneoff hosts`)")
    if opts["every"] and opts["one"]:
        raise UsageError("--all and --one exclude each other")
    targets = inventory.select(opts["targets"])
    overrides = _overrides(opts)

    def settings(host: str) -> Any:
        return inventory.settings(host, overrides)

    policy = fleet.Policy(
        parallel=opts["parallel"],
        batch=fleet.count_or_percent(opts["batch"], "--batch") if opts["batch"] else None,
        pause=opts["pause"] or 0.0,
        fail_fast=opts["fail_fast"],
        max_fail=fleet.count_or_percent(opts["max_fail"], "--max-fail")
        if opts["max_fail"] is not None
        else None,
        allow_drift=opts["allow_drift"],
        accept_new_host_keys=bool(opts.get("accept_new_host_keys")),
        retries=opts["retries"],
    )
    scope: fleet.Scope = "all" if opts["every"] else "one" if opts["one"] else None
    selection = fleet.choose_hosts(inventory, targets, invocation, scope, policy, settings)
    hosts = selection.hosts
    if invocation.detach and invocation.tty:
        raise UsageError(
            "--detach runs without a terminal: nobody is there to type into it",
            hint="drop -t (or use `oneoff logs -f` to watch the run)",
        )
    if invocation.tty and len(hosts) > 1:
        raise UsageError(
            "a terminal (-t) cannot be shared by several hosts", hint="pick one host, or drop -t"
        )
    # design §3: a terminal when ours are terminals and one host runs; a task's `tty` and
    # -t/-T decide otherwise (see plan.build_spec); the terminal goes raw once it is known
    invocation = replace(
        invocation,
        interactive=sys.stdin.isatty() and sys.stdout.isatty() and len(hosts) == 1,
        one_host=len(hosts) == 1,
    )
    reporter = make_reporter(
        terminal, hosts, as_json=opts["as_json"], quiet=opts["quiet"], verbose=opts["verbose"] > 0
    )
    interrupts = fleet.Interrupts()
    stdin = sys.stdin.buffer if len(hosts) == 1 and invocation.mode == "run" else None
    terminal_mode = _TerminalMode(sys.stdin.isatty() and len(hosts) == 1)
    with _signals(interrupts), terminal_mode:
        results = fleet.run_hosts(
            selection,
            settings,
            invocation,
            inventory.tasks,
            reporter,
            policy,
            interrupts,
            stdin=stdin,
            on_spec=terminal_mode.spec_ready,
        )
    refused = fleet.drift_refusal(results)
    if refused is not None:
        if opts["as_json"]:
            reporter.summary(results, int(refused.exit_status))
        raise refused
    status = fleet.exit_code(results)
    if invocation.mode == "plan":
        _show_plans(results, terminal, opts["as_json"])
    if invocation.detach and not opts["as_json"]:
        # the id alone, so `id=$(oneoff ... --detach ...)` works; host<TAB>id for several
        lines = [
            r.run_id if len(results) == 1 else f"{r.host}\t{r.run_id}"
            for r in results
            if r.detached
        ]
        if lines:
            terminal.write("stdout", ("\n".join(str(x) for x in lines) + "\n").encode())
        if len(results) == 1 and results[0].error is not None:  # several: the reporter said it
            terminal.message(str(results[0].error))
        return status
    reporter.summary(results, status)
    return status


def _show_plans(results: Sequence[Any], terminal: Terminal, as_json: bool) -> None:
    if as_json:
        return
    for r in results:
        if r.plan is None:
            continue
        plan = r.plan
        lines = [
            f"{r.host}:",
            f"  release:     {r.release_id} ({plan.get('cwd')})"
            + (f" revision {r.revision}" if r.revision else ""),
            f"  interpreter: {plan.get('path_head')}/python",
            f"  cwd:         {plan.get('cwd')}",
        ]
        for f in plan.get("env_files", []):
            lines.append(f"  env file:    {f['path']} ({f['keys']} keys)")
        extra = plan.get("extra_env_keys") or []
        if extra:
            lines.append(f"  extra env:   {', '.join(k + '=***' for k in extra)}")
        if plan.get("task"):
            lines.append(f"  task:        {plan['task']} ({plan.get('task_source')})")
        lines.append(f"  command:     {r.display}")
        if plan.get("lock"):
            lines.append(f"  lock:        {plan['lock']}")
        if plan.get("timeout"):
            lines.append(f"  timeout:     {plan['timeout']:g}s")
        if plan.get("tty"):
            lines.append("  terminal:    yes (PTY)")
        terminal.write("stdout", ("\n".join(lines) + "\n").encode())


class _TerminalMode:
    """Raw mode for our terminal once a run's spec says it has a PTY; restored on exit."""

    def __init__(self, possible: bool) -> None:
        self.possible = possible
        self.raw: contextlib.ExitStack | None = None

    def spec_ready(self, spec: Any) -> bool:
        """Called by the session before streaming; True when keystrokes go raw (and ~. works)."""
        if not (self.possible and spec.pty) or self.raw is not None:
            return False
        from oneoff.output.terminal import raw_mode

        self.raw = contextlib.ExitStack()
        self.raw.enter_context(raw_mode(True))
        return True

    def __enter__(self) -> _TerminalMode:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.raw is not None:
            self.raw.close()


class _signals:
    """Ctrl-C and SIGTERM go to the remote commands, not to a Python traceback."""

    def __init__(self, interrupts: Any) -> None:
        self.interrupts = interrupts
        self.saved: dict[int, Any] = {}

    def __enter__(self) -> None:
        def handler(signum: int, _frame: object) -> None:
            self.interrupts.interrupt()

        def resized(_signum: int, _frame: object) -> None:
            from oneoff.output.terminal import window_size

            size = window_size()
            if size is not None:
                self.interrupts.resize(*size)

        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            self.saved[signum] = signal.signal(signum, handler)
        self.saved[signal.SIGWINCH] = signal.signal(signal.SIGWINCH, resized)

        def not_suspending(_signum: int, _frame: object) -> None:
            # a stopped client sends no heartbeats, and the agent would stop the command
            os.write(2, b"\r\noneoff: not suspending: the remote command would be stopped\r\n")

        self.saved[signal.SIGTSTP] = signal.signal(signal.SIGTSTP, not_suspending)

    def __exit__(self, *exc: object) -> None:
        for signum, previous in self.saved.items():
            signal.signal(signum, previous)


def _builtin(name: str, opts: dict[str, Any], args: tuple[str, ...]) -> int:
    from oneoff.app import listings

    inventory = _inventory(opts)
    terminal = _terminal()
    overrides = _overrides(opts)
    if name in ("ps", "logs", "kill"):
        from oneoff.app import runs

        return runs.command(name, inventory, opts, overrides, terminal, args)
    if args:
        raise UsageError(f"unexpected argument {args[0]!r} after {name!r}")
    return int(listings.run(name, inventory, opts, overrides, terminal))


def main(argv: Sequence[str] | None = None) -> NoReturn:
    """Entry point: every user error is one line on stderr and its exit status."""
    debug = "--debug" in (argv if argv is not None else sys.argv[1:])
    try:
        status = cli.main(
            args=list(argv) if argv is not None else None, prog_name="oneoff", standalone_mode=False
        )
    except OneoffError as exc:
        if debug:
            import traceback

            traceback.print_exc()
        click.echo(f"oneoff: {exc}", err=True)
        sys.exit(exc.exit_status)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(ExitStatus.USAGE)
    except click.exceptions.Abort:
        sys.exit(ExitStatus.INTERRUPTED)
    except KeyboardInterrupt:
        sys.exit(ExitStatus.INTERRUPTED)
    sys.exit(status if isinstance(status, int) else 0)

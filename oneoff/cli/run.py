"""The default command: ``oneoff [OPTIONS] TASK | -- COMMAND | run SCRIPT | shell``.

Options come first; parsing stops at the first word that is not one, and everything
from there on is the task's (``oneoff -H prod migrate --fake 0001``). This module only
turns the words and flags into an ``app.run.RunRequest``, sets up our terminal's side
(signals, the reporter) and hands over.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from typing import TYPE_CHECKING

import click

from oneoff.cli import options as o
from oneoff.version import VERSION

if TYPE_CHECKING:
    from oneoff.app.run import RunReporter, RunRequest
    from oneoff.client.fleet import Scope
    from oneoff.plan.spec import Kind

NAME = "default"  # never typed: the group routes every non-builtin word here
RAW = "raw_command"


class DefaultCommand(click.Command):
    """Remembers whether the words came after ``--`` (a raw command, not a task), and
    shows the whole program's help and usage, since to the user it *is* ``oneoff``."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        original = list(args)
        rest = super().parse_args(ctx, args)
        words = ctx.params.get("words") or ()
        cut = len(original) - len(words)
        ctx.meta[RAW] = bool(words) and cut > 0 and original[cut - 1] == "--"
        return rest

    def get_help(self, ctx: click.Context) -> str:
        root = ctx.find_root()
        return root.command.get_help(root)

    def get_usage(self, ctx: click.Context) -> str:
        root = ctx.find_root()
        return root.command.get_usage(root)


@click.command(
    NAME,
    cls=DefaultCommand,
    hidden=True,
    context_settings={"allow_interspersed_args": False, "help_option_names": ["-h", "--help"]},
)
@o.TARGETS
@o.INVENTORY
@o.SCOPE
@o.TTY
@o.RELEASE
@o.EXTRA_ENV
@o.LIMITS
@o.FAN_OUT
@o.RUN_MODES
@o.QUIET
@o.VERBOSE
@o.DEBUG
@click.version_option(VERSION, "-V", "--version", prog_name="oneoff")
@click.argument("words", nargs=-1, type=click.UNPROCESSED)
@click.pass_context
def default(
    ctx: click.Context,
    /,
    words: tuple[str, ...],
    targets: tuple[str, ...],
    inventory: str | None,
    every: bool,
    one: bool,
    tty: bool | None,
    release_id: str | None,
    extra_env: dict[str, str],
    timeout: float | None,
    kill_after: float | None,
    lock: str | None,
    lock_wait: float | None,
    parallel: int,
    batch: int | float | None,
    pause: float | None,
    fail_fast: bool,
    max_fail: int | float | None,
    retries: int,
    detach: bool,
    as_json: bool,
    dry_run: bool,
    allow_drift: bool,
    accept_new_host_keys: bool,
    no_audit: bool,
    quiet: bool,
    verbose: int,
    debug: bool,
) -> int:
    """Run a task, a command, a release script or a shell on the target's hosts."""
    from oneoff.app.run import RunRequest

    raw = bool(ctx.meta.get(RAW))
    if not words:
        raise click.UsageError("nothing to run", ctx)
    if not targets:
        _no_target(ctx, words, raw)
    kind, rest = _what(words, raw)
    request = RunRequest(
        targets=targets,
        kind=kind,
        words=rest,
        scope=_scope(every, one),
        env=extra_env,
        release=release_id,
        timeout=timeout,
        kill_after=kill_after,
        lock=lock,
        lock_wait=lock_wait or 0.0,
        tty=tty,
        detach=detach,
        dry_run=dry_run,
        audit=not no_audit,
        parallel=parallel,
        batch=batch,
        pause=pause or 0.0,
        fail_fast=fail_fast,
        max_fail=max_fail,
        allow_drift=allow_drift,
        accept_new_host_keys=accept_new_host_keys,
        retries=retries,
    )
    return _run(request, inventory, as_json=as_json, quiet=quiet, verbose=verbose > 0)


def _no_target(ctx: click.Context, words: tuple[str, ...], raw: bool) -> None:
    """No -H: if one of our options came after the task, that is the mistake to name."""
    at = _misplaced(ctx.command, words, raw)
    if at is None:
        from oneoff.errors import UsageError

        raise UsageError("no target", hint="pass -H HOST|GROUP; `oneoff hosts` lists them")
    what = "the command" if raw else "the script" if words[0] == "run" else repr(words[0])
    moved = shlex.join(words[at:]) + (" -- " if raw else " ") + shlex.join(words[:at])
    raise click.UsageError(
        f"options go before the task: {words[at]} after {what} is passed to it, "
        f"and no target was given; try: oneoff {moved}",
        ctx,
    )


def _misplaced(command: click.Command, words: tuple[str, ...], raw: bool) -> int | None:
    """Where the first of oneoff's own options is among the task's words, if anywhere.

    After ``--`` only ``-H``/``--host`` counts: ``-i``, ``-e``, ``-t``, ``-v`` are
    as often the command's own options."""
    ours = _option_words(command)
    if raw:
        ours = {w: takes for w, takes in ours.items() if w in ("-H", "--host")}
    return next((i for i, w in enumerate(words) if (i > 0 or raw) and _is_ours(w, ours)), None)


def _option_words(command: click.Command) -> dict[str, bool]:
    """Each option string of *command*, and whether it takes a value."""
    found: dict[str, bool] = {}
    for param in command.params:
        if isinstance(param, click.Option):
            for opt in (*param.opts, *param.secondary_opts):
                found[opt] = not (param.is_flag or param.count)
    return found


def _is_ours(word: str, ours: dict[str, bool]) -> bool:
    """``-H``, ``--host=prod``, ``-Hprod``: one of oneoff's options as written."""
    if word in ours:
        return True
    if word.startswith("--"):
        return word.partition("=")[0] in ours
    return len(word) > 2 and word[0] == "-" and ours.get(word[:2], False)


def _scope(every: bool, one: bool) -> Scope:
    if every and one:
        from oneoff.errors import UsageError

        raise UsageError("--all and --one exclude each other")
    return "all" if every else "one" if one else None


def _what(words: tuple[str, ...], raw: bool) -> tuple[Kind, tuple[str, ...]]:
    if raw:
        return "command", words
    if words[0] == "run":
        return "script", words[1:]
    return "task", words


def _run(
    request: RunRequest, inventory: str | None, *, as_json: bool, quiet: bool, verbose: bool
) -> int:
    """Our terminal's side of the run (signals, the reporter), then ``app.run``."""
    from oneoff.app import run as app
    from oneoff.cli.signals import Signals
    from oneoff.client.fleet import Interrupts
    from oneoff.output.reporters import make_reporter
    from oneoff.output.terminal import Terminal

    terminal = Terminal()
    console = app.Console(
        stdin=terminal.stdin,
        stdin_is_terminal=terminal.is_tty("stdin"),
        interactive=terminal.interactive,
        term=terminal.term,
        winsize=terminal.window_size() if request.tty is not False else None,
    )
    interrupts = Interrupts()
    with Signals(interrupts, terminal) as signals:

        def reporters(hosts: Sequence[str]) -> RunReporter:
            # the hosts are chosen and the run starts: from here Ctrl-C goes to them
            signals.install()
            return make_reporter(
                terminal,
                hosts,
                as_json=as_json,
                quiet=quiet,
                verbose=verbose,
                detach=request.detach,
            )

        outcome = app.run(
            request,
            inventory=inventory,
            reporters=reporters,
            interrupts=interrupts,
            console=console,
        )
    return outcome.status

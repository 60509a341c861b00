"""Every option oneoff has, declared once; each command picks the ones that mean something
to it. Values are parsed here (durations, ``-e``, ``N|P%``), so commands get typed values."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])
Decorator = Callable[[F], F]


def _duration(_ctx: click.Context, param: click.Parameter, value: str | None) -> float | None:
    if value is None:
        return None
    from oneoff.durations import parse_duration

    try:
        return parse_duration(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param=param) from None


def _count_or_percent(
    _ctx: click.Context, param: click.Parameter, value: str | None
) -> int | float | None:
    """``5`` -> 5 hosts; ``25%`` -> 0.25 of the hosts."""
    if value is None:
        return None
    from oneoff.client.fleet import count_or_percent

    return count_or_percent(value, param.opts[0])


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


def apply(*decorators: Decorator[F]) -> Decorator[F]:
    """Several option decorators as one, in the order given (the order ``--help`` shows)."""

    def decorate(f: F) -> F:
        for decorator in reversed(decorators):
            f = decorator(f)
        return f

    return decorate


# -- global: every command takes them ---------------------------------------------------

TARGETS = click.option(
    "-H",
    "--host",
    "targets",
    multiple=True,
    metavar="TARGET",
    help="Host, group, comma list, glob (web*) or role:NAME. Repeatable.",
)
INVENTORY = click.option(
    "-i", "--inventory", metavar="PATH", help="Inventory file (else $ONEOFF_INVENTORY, ...)."
)
QUIET = click.option("-q", "--quiet", is_flag=True, help="Only the command's output and errors.")
VERBOSE = click.option("-v", "--verbose", count=True, help="Say more about what oneoff does.")
DEBUG = click.option("--debug", is_flag=True, help="Show tracebacks.")
GLOBAL = apply(TARGETS, INVENTORY, QUIET, VERBOSE, DEBUG)

# -- shared by some ---------------------------------------------------------------------

JSON = click.option("--json", "as_json", is_flag=True, help="JSON Lines on stdout.")
ACCEPT_NEW_HOST_KEYS = click.option(
    "--accept-new-host-keys",
    is_flag=True,
    help="Record unknown host keys (changed keys are still refused).",
)
RELEASE = click.option(
    "--release", "release_id", metavar="ID", help="Pin this release instead of `current`."
)
PARALLEL = click.option(
    "--parallel",
    type=click.IntRange(min=1),
    default=32,
    show_default=True,
    metavar="N",
    help="Hosts at once.",
)

# -- a run ------------------------------------------------------------------------------

SCOPE = apply(
    click.option("--all", "every", is_flag=True, help="Run on every host of the target."),
    click.option("--one", is_flag=True, help="Run on the target's primary host only."),
)
TTY = apply(
    click.option(
        "-t",
        "--tty",
        "tty",
        flag_value=True,
        default=None,
        help="Allocate a terminal for the command.",
    ),
    click.option("-T", "--no-tty", "tty", flag_value=False, help="Never allocate a terminal."),
)
EXTRA_ENV = click.option(
    "-e",
    "--env",
    "extra_env",
    multiple=True,
    metavar="KEY=VALUE",
    callback=_extra_env,
    help="Extra variable KEY=VALUE, or KEY to pass ours (never logged). Repeatable.",
)
LIMITS = apply(
    click.option(
        "--timeout",
        metavar="DURATION",
        callback=_duration,
        help="Stop the command after this long (exit 124).",
    ),
    click.option(
        "--kill-after",
        metavar="DURATION",
        callback=_duration,
        help="Grace period between SIGTERM and SIGKILL (default 10s).",
    ),
    click.option(
        "--lock", metavar="NAME", help="Hold this lock on the host while the command runs."
    ),
    click.option(
        "--lock-wait",
        metavar="DURATION",
        callback=_duration,
        help="Wait this long for a busy lock.",
    ),
)
FAN_OUT = apply(
    PARALLEL,
    click.option(
        "--batch",
        metavar="N|P%",
        callback=_count_or_percent,
        help="Rolling: run N hosts (or P% of them) at a time.",
    ),
    click.option(
        "--pause", metavar="DURATION", callback=_duration, help="Wait this long between batches."
    ),
    click.option("--fail-fast", is_flag=True, help="Start no new host after a failure."),
    click.option(
        "--max-fail",
        metavar="N|P%",
        callback=_count_or_percent,
        help="Start no new host once more than N (or P%) have failed.",
    ),
    click.option(
        "--retries",
        type=click.IntRange(min=0),
        metavar="N",
        default=0,
        help="Retry a failed connection this many times, with backoff (never a started command).",
    ),
)
RUN_MODES = apply(
    click.option(
        "--detach", is_flag=True, help="Start the run in the background on the host; print its id."
    ),
    JSON,
    click.option("--dry-run", is_flag=True, help="Print the resolved plan per host; run nothing."),
    click.option(
        "--allow-drift",
        is_flag=True,
        help="Run a `once` task even if hosts are on different releases.",
    ),
    ACCEPT_NEW_HOST_KEYS,
    click.option(
        "--no-audit", is_flag=True, help="Run even though the host's audit trail cannot be written."
    ),
)

# -- one command each -------------------------------------------------------------------

SINCE = click.option(
    "--since", metavar="DURATION", callback=_duration, help="Only runs started since."
)
FOLLOW = click.option("-f", "--follow", is_flag=True, help="Follow until the run ends.")
TIMESTAMPS = click.option("--timestamps", is_flag=True, help="Show each line's time and stream.")
RUN_ID = click.argument("run_id")

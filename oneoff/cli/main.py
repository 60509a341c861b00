"""The entry point: run the ``oneoff`` group; every failure is one line and its status.

Only ``oneoff.cli`` imports click, and each command imports what it uses when it
runs (paramiko only when a host is reached over SSH), so ``--help`` starts fast.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any, NoReturn

import click

from oneoff.errors import ExitStatus, OneoffError


def main(argv: Sequence[str] | None = None) -> NoReturn:
    """``oneoff``'s console script."""
    from oneoff.cli.group import oneoff

    sys.exit(run_group(oneoff, argv, "oneoff"))


def run_group(
    group: click.Group,
    argv: Sequence[str] | None,
    prog_name: str,
    complete_var: str | None = None,
    **extra: Any,
) -> int:
    """Run *group* on *argv*; the exit status, every error said on stderr."""
    args = list(argv) if argv is not None else sys.argv[1:]
    try:
        status = click.Group.main(
            group, args, prog_name, complete_var, standalone_mode=False, **extra
        )
    except OneoffError as exc:
        if "--debug" in args:
            import traceback

            traceback.print_exc()
        click.echo(f"oneoff: {exc}", err=True)
        return int(exc.exit_status)
    except click.exceptions.NoArgsIsHelpError as exc:
        exc.show()  # bare `oneoff`: the help, on stderr, exit 2 (as click and git do)
        return ExitStatus.USAGE
    except click.UsageError as exc:
        click.echo(usage_error(exc), err=True)
        return ExitStatus.USAGE
    except click.ClickException as exc:
        click.echo(f"oneoff: {exc.format_message()}", err=True)
        return exc.exit_code
    except (click.exceptions.Abort, KeyboardInterrupt):
        return ExitStatus.INTERRUPTED
    return status if isinstance(status, int) else ExitStatus.OK


def usage_error(exc: click.UsageError) -> str:
    """``oneoff: what is wrong``, then the usage and where to find help."""
    message = exc.format_message()
    if isinstance(exc, click.NoSuchOption) and exc.ctx is not None:
        command = _command_path(exc.ctx)
        if command != "oneoff":
            message = f"`{command}` has no option {exc.option_name}"
            if exc.possibilities:
                message += f" (did you mean {', '.join(sorted(exc.possibilities))}?)"
    lines = [f"oneoff: {message[:1].lower()}{message[1:]}"]
    if exc.ctx is not None:
        lines.append(exc.ctx.get_usage().rstrip())
        lines.append(f"Try '{_command_path(exc.ctx)} -h' for help.")
    return "\n".join(lines)


def _command_path(ctx: click.Context) -> str:
    """``oneoff releases`` for a built-in; plain ``oneoff`` for the default command."""
    from oneoff.cli.run import DefaultCommand

    return (
        ctx.find_root().command_path
        if isinstance(ctx.command, DefaultCommand)
        else ctx.command_path
    )

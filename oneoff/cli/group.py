"""``oneoff``: a click Group whose default command runs things.

The first word that is not an option decides: a built-in's name (``releases``,
``tasks``, ``hosts``, ``audit``, ``ps``, ``logs``, ``kill``) selects that command;
anything else, or ``--``, is the default command (a task, ``run SCRIPT``, ``shell`` or
a raw command), which gets every word. Options written before a built-in's name are
handed to it as if written after (``oneoff -H prod releases`` is ``oneoff releases -H
prod``), so each built-in parses only its own options and refuses the others.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import click

from oneoff.cli.builtins import COMMANDS
from oneoff.cli.run import NAME as DEFAULT
from oneoff.cli.run import default

HELP_OPTIONS = ("-h", "--help", "-V", "--version")

USAGE = """\
Usage: oneoff [OPTIONS] TASK [ARGS]...
       oneoff [OPTIONS] -- COMMAND [ARGS]...
       oneoff [OPTIONS] run SCRIPT [ARGS]...
       oneoff [OPTIONS] shell
       oneoff COMMAND [OPTIONS] [ARGS]...
"""

RUNS = (
    ("TASK [ARGS]...", "a task; ARGS are appended (`oneoff tasks -H TARGET` lists them)"),
    ("-- COMMAND [ARGS]...", "any command, with the release's venv and env"),
    ("run SCRIPT [ARGS]...", "a script shipped in the release"),
    ("shell", "an interactive REPL in the release"),
)

EPILOG = """\
Options go before the task: everything after it is the task's.

\b
Examples:
  oneoff -H prod migrate
  oneoff -H web1 shell
  oneoff -H prod run scripts/fix_bad_records.py --dry-run
  oneoff -H prod --all -- python -c 'import socket; print(socket.gethostname())'
  oneoff releases -H prod      oneoff tasks -H web1      oneoff hosts
"""


def first_word(args: Sequence[str], takes_value: dict[str, bool]) -> int | None:
    """Where the first word that is not an option (nor an option's value) is; ``--``
    counts as a word. None when there is none."""
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--" or not arg.startswith("-") or arg == "-":
            return i
        i += 2 if _value_follows(arg, takes_value) else 1
    return None


def _value_follows(arg: str, takes_value: dict[str, bool]) -> bool:
    """Whether the option *arg* takes the next word as its value."""
    if arg.startswith("--"):
        return "=" not in arg and takes_value.get(arg, False)
    for at in range(1, len(arg)):  # a cluster of short flags: -qv, -Hweb1, -qH web1
        if takes_value.get("-" + arg[at], False):
            return at == len(arg) - 1
    return False


class OneoffGroup(click.Group):
    """Routes to a built-in or to the default command (see the module docstring)."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if not args:
            return super().parse_args(ctx, args)  # bare `oneoff`: the help, as a usage error
        at = first_word(args, self._takes_value(ctx))
        word = args[at] if at is not None else None
        before = args[:at] if at is not None else args
        helped = any(a in HELP_OPTIONS for a in before)
        if at is not None and word in self.commands and word != DEFAULT and not helped:
            return super().parse_args(ctx, [args[at], *before, *args[at + 1 :]])
        return super().parse_args(ctx, [DEFAULT, *args])

    def _takes_value(self, ctx: click.Context) -> dict[str, bool]:
        found: dict[str, bool] = {}
        for command in self.commands.values():
            for param in command.get_params(ctx):
                if isinstance(param, click.Option):
                    for opt in (*param.opts, *param.secondary_opts):
                        found[opt] = not (param.is_flag or param.count)
        return found

    # -- help: the default command's options, what can be run, then the built-ins -------

    def format_usage(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        formatter.write(USAGE)

    def format_options(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        params = [p for p in default.get_params(ctx) if isinstance(p, click.Option)]
        rows = [r for p in params if (r := p.get_help_record(ctx)) is not None]
        with formatter.section("Options"):
            formatter.write_dl(rows)
        with formatter.section("What to run"):
            formatter.write_dl(list(RUNS))
        self.format_commands(ctx, formatter)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(c.name or "", c.get_short_help_str(80)) for c in COMMANDS]
        with formatter.section("Commands (each has --help)"):
            formatter.write_dl(rows)

    # -- errors: one line, then the usage --------------------------------------------------

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        """As click's, but every error is ``oneoff: ...`` (then the usage, for a
        usage error) and its exit status; *standalone_mode* exits with it."""
        from oneoff.cli.main import run_group

        status = run_group(self, args, prog_name or "oneoff", complete_var, **extra)
        if standalone_mode:
            raise SystemExit(status)
        return status


def _make() -> OneoffGroup:
    group = OneoffGroup(
        "oneoff",
        help="Run a twelve-factor app's admin processes on its hosts, in the live release.",
        epilog=EPILOG,
        context_settings={"help_option_names": ["-h", "--help"]},
    )
    group.add_command(default)
    for command in COMMANDS:
        group.add_command(command)
    return group


oneoff = _make()

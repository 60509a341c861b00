"""Validation of the inventory file: strict pydantic models and YAML line numbers.

Imported only when an inventory must be (re)validated; the result is a plain
:class:`oneoff.config.model.Inventory`. Every problem is reported as
``file:line: dotted.path: what was expected``, with the line taken from ruamel.yaml's
round-trip loader.
"""

from __future__ import annotations

import difflib
import re
import shlex
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from oneoff.config.model import (
    HOST_KEY_POLICIES,
    Inventory,
    _listing,
    _suggest,
)
from oneoff.durations import parse_duration
from oneoff.errors import InventoryError
from oneoff.plan.tasks import Task

__all__ = ["MODELS", "SETTINGS_KEYS", "validate"]

Transport = Literal["ssh", "local"]
HostKeyPolicy = Literal["strict", "accept-new"]

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_TASK_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]*")
_NAME_RULE = "letters, digits, '_', '.', '-', starting with a letter or digit"

# --------------------------------------------------------------------------- field types


def _show(value: object) -> str:
    """A value as the user wrote it in YAML, short enough for a one-line error."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _check_name(value: str) -> str:
    if not _NAME.fullmatch(value):
        raise ValueError(f"expected a name of {_NAME_RULE}, got {_show(value)}")
    return value


def _check_task_name(value: str) -> str:
    if not _TASK_NAME.fullmatch(value):
        raise ValueError(
            f"expected a task name of letters, digits, '_', '.', ':', '-', "
            f"starting with a letter or digit, got {_show(value)}"
        )
    return value


def _check_lock(value: str) -> str:
    if not _NAME.fullmatch(value):
        raise ValueError(f"expected a lock name of {_NAME_RULE} (no slashes), got {_show(value)}")
    return value


def _check_nonempty(value: str) -> str:
    if not value:
        raise ValueError("expected a non-empty string, got ''")
    return value


def _check_absolute(value: str) -> str:
    if not value.startswith("/"):
        raise ValueError(
            f"expected an absolute path on the host (starting with /), got {_show(value)}"
        )
    return value.rstrip("/") or "/"


def _duration(value: object) -> float:
    if not isinstance(value, str | int | float) or isinstance(value, bool):
        raise ValueError(f"expected a duration (e.g. 30, 30s, 5m, 1h30m, 2d), got {_show(value)}")
    return parse_duration(value)


def _positive(value: float) -> float:
    if value <= 0:
        raise ValueError("expected a duration of more than 0")
    return value


def _host_key_policy(value: object) -> object:
    if value not in HOST_KEY_POLICIES:
        raise ValueError(
            f"expected one of: {', '.join(HOST_KEY_POLICIES)}, got {_show(value)} "
            "(accepting any host key is not offered; accept-new trusts a host's key "
            "on first connection only)"
        )
    return value


def _split_command(value: object) -> object:
    if isinstance(value, str):
        try:
            return shlex.split(value)
        except ValueError as exc:
            raise ValueError(f"cannot split command {_show(value)}: {exc}") from None
    if isinstance(value, list):
        return value
    raise ValueError(f"expected a command string or a list of strings, got {_show(value)}")


def _check_command(value: list[str]) -> list[str]:
    if not value:
        raise ValueError("command is empty")
    return value


def _env_files(value: object) -> object:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return value
    raise ValueError(f"expected a path or a list of paths, got {_show(value)}")


Name = Annotated[str, AfterValidator(_check_name)]
TaskName = Annotated[str, AfterValidator(_check_task_name)]
NonEmpty = Annotated[str, AfterValidator(_check_nonempty)]
AbsPath = Annotated[str, AfterValidator(_check_absolute)]
Duration = Annotated[float, BeforeValidator(_duration)]
PositiveDuration = Annotated[float, BeforeValidator(_duration), AfterValidator(_positive)]
Port = Annotated[int, Strict(), Field(ge=1, le=65535)]
AtLeastOne = Annotated[int, Strict(), Field(ge=1)]
StrictBool = Annotated[bool, Strict()]
EnvFiles = Annotated[list[NonEmpty], BeforeValidator(_env_files)]
Command = Annotated[list[str], BeforeValidator(_split_command), AfterValidator(_check_command)]
LockName = Annotated[str, AfterValidator(_check_lock)]
PolicyField = Annotated[HostKeyPolicy, BeforeValidator(_host_key_policy)]

# What a key's value must look like, for rewriting pydantic's type errors.
_EXPECTED: dict[str, str] = {
    "user": "a user name",
    "port": "an integer between 1 and 65535",
    "transport": "one of: ssh, local",
    "app_root": "an absolute path",
    "current": "a path",
    "venv": "a path, or null to look for .venv then venv",
    "identity_file": "a path",
    "known_hosts": "a path",
    "ssh_config": "a path",
    "state_dir": "a path",
    "alive_count_max": "an integer of at least 1",
    "hostname": "a host name or address",
    "roles": "a list of role names",
    "primary": "true or false",
    "hosts": "a list of host names",
    "run": "one of: once, each",
    "lock": "a lock name",
    "tty": "true, false or null",
    "description": "a string",
}
_TOP_EXPECTED: dict[str, str] = {
    "defaults": "a mapping of settings",
    "hosts": "a mapping of host name to its settings",
    "groups": "a mapping of group name to its hosts and settings",
    "tasks": "a mapping of task name to its command and options",
}
_ENTRY_EXPECTED: dict[str, str] = {
    "hosts": "a mapping of the host's settings (or nothing)",
    "groups": "a mapping with hosts: and settings",
    "tasks": "a mapping with command: and options",
}
_EXPECTED_BY_TYPE: dict[str, str] = {
    "string_type": "a string",
    "int_type": "an integer",
    "int_parsing": "an integer",
    "int_from_float": "an integer",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "list_type": "a list",
    "dict_type": "a mapping",
    "model_type": "a mapping of settings",
    "model_attributes_type": "a mapping of settings",
    "float_type": "a number",
}


# --------------------------------------------------------------------------- models


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # Keys where null means something (venv: auto-detect; task options: unset).
    nullable: ClassVar[frozenset[str]] = frozenset()
    expected: ClassVar[Mapping[str, str]] = _EXPECTED

    @field_validator("*", mode="before")
    @classmethod
    def _refuse_null(cls, value: object, info: ValidationInfo) -> object:
        """``key: null`` would be indistinguishable from an absent key; say so instead."""
        name = info.field_name or ""
        if value is None and name not in cls.nullable:
            expected = cls.expected.get(name, "a value")
            field = cls.model_fields.get(name)
            hint = (
                ""
                if field is None or field.is_required()
                else " (leave the key out for the default)"
            )
            raise ValueError(f"expected {expected}, got null{hint}")
        return value


class Settings(_Strict):
    """Connection and layout settings; usable in ``defaults``, in a group and on a host."""

    nullable: ClassVar[frozenset[str]] = frozenset({"venv"})

    user: str | None = Field(
        default=None,
        description="SSH login user. Default: ssh_config's User for the host, else the local user.",
    )
    port: Port | None = Field(
        default=None,
        description="SSH port, 1..65535. Default: ssh_config's Port for the host, else 22.",
    )
    transport: Transport | None = Field(
        default=None,
        description="How to reach the host: ssh, or local (this machine, no SSH). Default ssh.",
    )
    app_root: AbsPath | None = Field(
        default=None,
        description="The app's deploy folder on the host (absolute). Required for every host, "
        "from defaults, a group or the host.",
    )
    current: NonEmpty | None = Field(
        default=None,
        description="The symlink to the live release, relative to app_root or absolute. "
        "Default: current.",
    )
    venv: NonEmpty | None = Field(
        default=None,
        description="The release's virtualenv, relative to the release or absolute. "
        "Default (or null): .venv, else venv, whichever exists.",
    )
    env_file: EnvFiles | None = Field(
        default=None,
        description="Dotenv file(s), relative to the release or absolute; a list is read in "
        "order, later values win. Default: .env.",
    )
    identity_file: NonEmpty | None = Field(
        default=None,
        description="Private key on this machine (~ expanded; relative to the inventory's "
        "folder). Default: ssh_config's IdentityFile, else the SSH agent and ~/.ssh keys.",
    )
    known_hosts: NonEmpty | None = Field(
        default=None,
        description="known_hosts file on this machine (~ expanded). Default: ~/.ssh/known_hosts.",
    )
    host_key_policy: PolicyField | None = Field(
        default=None,
        description="strict: refuse hosts whose key is not in known_hosts; accept-new: trust "
        "and record a new host's key, refuse a changed one. Default: strict.",
    )
    ssh_config: NonEmpty | None = Field(
        default=None,
        description="OpenSSH client config on this machine (~ expanded); HostName, Port, User, "
        "IdentityFile and ProxyJump are honoured. Default: ~/.ssh/config when it exists.",
    )
    connect_timeout: PositiveDuration | None = Field(
        default=None,
        description="How long to wait for the SSH connection (a duration). Default: 10s.",
    )
    state_dir: NonEmpty | None = Field(
        default=None,
        description="oneoff's folder on the host (locks, audit log, detached runs), absolute "
        "or relative to app_root. Default: <app_root>/shared/oneoff.",
    )
    alive_interval: Duration | None = Field(
        default=None,
        description="Heartbeat period: oneoff and its agent each send one every half of this "
        "over the SSH channel; 0 turns heartbeats off. Default: 10s.",
    )
    alive_count_max: AtLeastOne | None = Field(
        default=None,
        description="Intervals of silence before either end counts the connection as lost "
        "(the agent then stops the command). Default: 3.",
    )
    kill_after: Duration | None = Field(
        default=None,
        description="After stopping a command (timeout, Ctrl-C, lost client), wait this long "
        "before SIGKILL. Default: 10s.",
    )
    runs_keep: Duration | None = Field(
        default=None, description="How long detached runs' logs stay under state_dir. Default: 30d."
    )

    @model_validator(mode="before")
    @classmethod
    def _empty_is_empty_mapping(cls, data: object) -> object:
        """``defaults:`` or ``web1:`` with nothing after it means "no settings"."""
        return {} if data is None else data


SETTINGS_KEYS: tuple[str, ...] = tuple(Settings.model_fields)


class Host(Settings):
    """One host: the settings plus its address, roles and whether it is the primary."""

    hostname: NonEmpty | None = Field(
        default=None,
        description="Address or name to connect to. Default: the host's name in this file "
        "(which ssh_config may map to a HostName).",
    )
    roles: list[Name] = Field(
        default_factory=list, description="Roles, for targets like role:web. Default: none."
    )
    primary: StrictBool = Field(
        default=False,
        description="Run `run: once` tasks here when it is targeted with other hosts. "
        "Default: false (the target's first host).",
    )


class Group(Settings):
    """A named set of hosts; its settings apply to each of them."""

    hosts: list[str] = Field(description="The group's hosts, each defined under hosts:.")


class TaskSpec(_Strict):
    """A named admin command."""

    nullable: ClassVar[frozenset[str]] = frozenset({"lock", "timeout", "tty", "description"})

    command: Command = Field(
        description="The command: a string (split like a shell would, never run by one) or a "
        "list of arguments. Required.",
    )
    run: Literal["once", "each"] = Field(
        default="once",
        description="once: on the target's primary host (or its first); each: on every host. "
        "Default: once.",
    )
    lock: LockName | None = Field(
        default=None,
        description="Hold this named lock on the host while running (no two runs at once). "
        "Default: no lock.",
    )
    timeout: PositiveDuration | None = Field(
        default=None,
        description="Stop the command after this long (a duration). Default: no limit.",
    )
    tty: StrictBool | None = Field(
        default=None,
        description="false: never a PTY; true or null: a PTY when stdin and stdout are "
        "terminals and one host runs it (-t forces one). Default: null.",
    )
    description: str | None = Field(default=None, description="One line shown by `oneoff tasks`.")


class InventoryFile(_Strict):
    """The whole file."""

    nullable: ClassVar[frozenset[str]] = frozenset({"defaults", "groups", "tasks"})
    expected: ClassVar[Mapping[str, str]] = _TOP_EXPECTED

    defaults: Settings = Field(
        default_factory=Settings, description="Settings for every host. Default: none."
    )
    hosts: dict[Name, Host] = Field(description="Host name -> its settings. Required, non-empty.")
    groups: dict[Name, Group] = Field(
        default_factory=dict, description="Group name -> its hosts and settings. Default: none."
    )
    tasks: dict[TaskName, TaskSpec] = Field(
        default_factory=dict, description="Task name -> its command and options. Default: none."
    )

    @field_validator("defaults", "groups", "tasks", mode="before")
    @classmethod
    def _empty_section(cls, value: object) -> object:
        return {} if value is None else value

    @field_validator("hosts", mode="after")
    @classmethod
    def _hosts_given(cls, value: dict[str, Host]) -> dict[str, Host]:
        if not value:
            raise ValueError("expected at least one host")
        return value


MODELS: tuple[type[BaseModel], ...] = (InventoryFile, Settings, Host, Group, TaskSpec)
_HOST_ONLY = ("hostname", "roles", "primary")


def _model_at(loc: tuple[object, ...]) -> type[BaseModel] | None:
    """The model whose keys live at *loc* (a pydantic loc without its last part)."""
    if not loc:
        return InventoryFile
    if loc == ("defaults",):
        return Settings
    if len(loc) == 2:
        models: dict[str, type[BaseModel]] = {"hosts": Host, "groups": Group, "tasks": TaskSpec}
        return models.get(str(loc[0]))
    return None


# --------------------------------------------------------------------------- loading


def validate(path: Path, data: bytes) -> Inventory:
    """Validate the inventory *data* read from *path*; one line per problem in the error."""
    from ruamel.yaml import YAML
    from ruamel.yaml.error import MarkedYAMLError, YAMLError

    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InventoryError(f"{path}: cannot read the inventory: {exc}") from None
    try:
        node = YAML(typ="rt").load(text)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = f":{mark.line + 1}" if mark is not None else ""
        problem = exc.problem or exc.context or "invalid YAML"
        raise InventoryError(f"{path}{line}: YAML syntax error: {problem}") from None
    except YAMLError as exc:
        raise InventoryError(f"{path}: YAML syntax error: {exc}") from None
    if node is None:
        raise InventoryError(f"{path}: the inventory is empty; it needs at least a hosts: mapping")
    if not isinstance(node, dict):
        raise InventoryError(
            f"{path}:1: expected a mapping at the top level (defaults:, hosts:, groups:, "
            f"tasks:), got {_show(_plain(node))}"
        )
    lines = _Lines(path, node)
    try:
        model = InventoryFile.model_validate(_plain(node))
    except ValidationError as exc:
        problems = [(tuple(err["loc"]), _message(err)) for err in exc.errors()]
        raise InventoryError(lines.report(problems)) from None
    return _build(path, model, lines)


def _plain(node: Any) -> Any:
    """ruamel's round-trip containers and scalar subclasses as plain Python values."""
    if isinstance(node, dict):
        return {_plain(k): _plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_plain(v) for v in node]
    if isinstance(node, bool) or node is None:
        return node
    for kind in (str, int, float):
        if isinstance(node, kind):
            return kind(node)
    return node


class _Lines:
    """Maps a pydantic ``loc`` to ``file:line: dotted.path`` using ruamel's line info."""

    def __init__(self, path: Path, root: Any) -> None:
        self.path = path
        self.root = root

    def line(self, loc: tuple[object, ...]) -> int:
        """1-based line of the deepest part of *loc* present in the file."""
        node = self.root
        line = getattr(getattr(node, "lc", None), "line", 0) or 0
        for part in loc:
            try:
                if isinstance(node, dict) and part in node:
                    child = node[part]
                    scalar = child is not None and not isinstance(child, dict | list)
                    line = (_lc(node).value(part) if scalar else _lc(node).key(part))[0]
                    node = child
                elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
                    line = _lc(node).item(part)[0]
                    node = node[part]
                else:
                    break
            except (AttributeError, KeyError, TypeError):
                break  # e.g. keys brought in by a YAML merge (<<) carry no line of their own
        return int(line) + 1

    def dotted(self, loc: tuple[object, ...]) -> str:
        """``groups.prod.hosts[2]``: list positions in brackets, mapping keys after dots."""
        node, out = self.root, ""
        for part in loc:
            if part == "[key]":
                continue
            in_list = isinstance(node, list) and isinstance(part, int)
            out += f"[{part}]" if in_list else f"{'.' if out else ''}{part}"
            try:
                node = node[part]
            except (IndexError, KeyError, TypeError):
                node = None
        return out

    def report(self, problems: Iterable[tuple[tuple[object, ...], str]]) -> str:
        located = sorted(
            ((self.line(loc), self.dotted(loc), message) for loc, message in problems),
            key=lambda p: p[0],
        )
        out: list[str] = []
        for line, dotted, message in located:
            entry = f"{self.path}:{line}: {dotted + ': ' if dotted else ''}{message}"
            if entry not in out:
                out.append(entry)
        return "\n".join(out)


def _lc(node: Any) -> Any:
    """ruamel's line/column record of a round-trip mapping or sequence."""
    return node.lc


def _message(err: Mapping[str, Any]) -> str:
    """pydantic's error, rewritten the way a person editing YAML needs it."""
    kind: str = err["type"]
    loc: tuple[object, ...] = tuple(err["loc"])
    last = loc[-1] if loc else None
    if kind == "value_error":
        return str(err["msg"]).removeprefix("Value error, ")
    if kind == "extra_forbidden":
        return _unknown_key(loc)
    if kind == "missing":
        return "required key is missing"
    if kind == "literal_error":
        allowed = re.findall(r"'([^']*)'", str(err.get("ctx", {}).get("expected", "")))
        return f"expected one of: {', '.join(allowed)}, got {_show(err['input'])}"
    if len(loc) == 1 and last in _TOP_EXPECTED:
        expected = _TOP_EXPECTED[str(last)]
    elif len(loc) == 2 and kind in ("model_type", "model_attributes_type"):
        expected = _ENTRY_EXPECTED.get(str(loc[0]), "a mapping")
    elif isinstance(last, str) and last in _EXPECTED and last != "[key]":
        expected = _EXPECTED[last]
    elif kind in _EXPECTED_BY_TYPE:
        expected = _EXPECTED_BY_TYPE[kind]
    else:
        text = str(err["msg"])
        return text[:1].lower() + text[1:] + f", got {_show(err['input'])}"
    quote = " (write it in quotes)" if kind == "string_type" and _is_number(err["input"]) else ""
    return f"expected {expected}, got {_show(err['input'])}{quote}"


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _unknown_key(loc: tuple[object, ...]) -> str:
    key = str(loc[-1])
    model = _model_at(loc[:-1])
    if model is None:
        return "unknown key"
    if key in _HOST_ONLY and model is not Host:
        return f"unknown key here: {key} can only be set on a host"
    if model is InventoryFile and key in SETTINGS_KEYS:
        return f"unknown key at the top level: {key} belongs under defaults:, a group or a host"
    known = sorted(model.model_fields)
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    hint = f", did you mean {close[0]}?" if close else ""
    return f"unknown key{hint} (known keys: {', '.join(known)})"


def _build(path: Path, model: InventoryFile, lines: _Lines) -> Inventory:
    """Cross-check names and merge each host's layers; refuse conflicts and gaps."""
    problems: list[tuple[tuple[object, ...], str]] = []
    host_names = list(model.hosts)

    for gname, group in model.groups.items():
        if gname in model.hosts:
            problems.append(
                (("groups", gname), f"a host is also named {gname}; a target must mean one thing")
            )
        seen: set[str] = set()
        for i, member in enumerate(group.hosts):
            if member not in model.hosts:
                problems.append(
                    (
                        ("groups", gname, "hosts", i),
                        f"unknown host {member!r}{_suggest(member, host_names)} "
                        f"(known hosts: {_listing(host_names)})",
                    )
                )
            elif member in seen:
                problems.append((("groups", gname, "hosts", i), f"{member} is listed twice"))
            seen.add(member)

    layers: dict[str, dict[str, Any]] = {}
    # (key, first group, second group) -> hosts, so one line reports a whole group pair.
    conflicts: dict[tuple[str, str, str], list[str]] = {}
    for name, host in model.hosts.items():
        merged = {k: getattr(model.defaults, k) for k in model.defaults.model_fields_set}
        from_group: dict[str, tuple[str, Any]] = {}
        for gname, group in model.groups.items():
            if name not in group.hosts:
                continue
            for key in sorted(group.model_fields_set - {"hosts"}):
                value = getattr(group, key)
                earlier = from_group.get(key)
                if earlier is not None and earlier[1] != value:
                    if key not in host.model_fields_set:
                        conflicts.setdefault((key, earlier[0], gname), []).append(name)
                    continue
                from_group[key] = (gname, value)
        merged.update({k: v for k, (_, v) in from_group.items()})
        merged.update({k: getattr(host, k) for k in host.model_fields_set if k in SETTINGS_KEYS})
        if "hostname" in host.model_fields_set:
            merged["hostname"] = host.hostname
        if "app_root" not in merged:
            problems.append(
                (
                    ("hosts", name),
                    "no app_root for this host: set app_root under defaults:, on the host, "
                    "or in one of its groups",
                )
            )
        layers[name] = merged

    for (key, first, second), hosts in conflicts.items():
        first_value = getattr(model.groups[first], key)
        second_value = getattr(model.groups[second], key)
        problems.append(
            (
                ("groups", second, key),
                f"host{'s' if len(hosts) > 1 else ''} {', '.join(hosts)} "
                f"{'are' if len(hosts) > 1 else 'is'} in groups {first} and {second}, which set "
                f"{key} differently ({_show(first_value)} and {_show(second_value)}); "
                f"set {key} on the host instead",
            )
        )

    if problems:
        raise InventoryError(lines.report(problems))

    tasks = {
        name: Task(
            name=name,
            command=tuple(spec.command),
            source=f"{path.name}:{lines.line(('tasks', name))}",
            run=spec.run,
            lock=spec.lock,
            timeout=spec.timeout,
            tty=spec.tty,
            description=spec.description,
        )
        for name, spec in model.tasks.items()
    }
    return Inventory(
        path=path,
        hosts=host_names,
        groups={g: group.hosts for g, group in model.groups.items()},
        tasks=tasks,
        layers=layers,
        roles={h: host.roles for h, host in model.hosts.items()},
        primary=[h for h, host in model.hosts.items() if host.primary],
    )

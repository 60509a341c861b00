"""The inventory file's shape: strict pydantic models, one per kind of mapping.

``extra="forbid"`` everywhere (an unknown key is an error, never ignored), a
description on every field (a test holds ``inventory.example.yaml`` to them), and
``key: null`` refused where it would mean nothing. What each key must hold is also
written in words (``EXPECTED``), for :mod:`oneoff.config.messages`. Imported only
when an inventory must be (re)validated.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from typing import Annotated, ClassVar, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
    ValidationInfo,
    field_validator,
    model_validator,
)

from oneoff.config.hints import show
from oneoff.defaults import (
    DEFAULT_ALIVE_COUNT_MAX,
    DEFAULT_ALIVE_INTERVAL,
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_CURRENT,
    DEFAULT_ENV_FILES,
    DEFAULT_HOST_KEY_POLICY,
    DEFAULT_KILL_AFTER,
    DEFAULT_KNOWN_HOSTS,
    DEFAULT_RUNS_KEEP,
    DEFAULT_SSH_CONFIG,
    DEFAULT_STATE_DIR,
    DEFAULT_TRANSPORT,
    HOST_KEY_POLICIES,
    TRANSPORTS,
    VENV_CANDIDATES,
    HostKeyPolicy,
    TransportKind,
)
from oneoff.durations import parse_duration
from oneoff.names import (
    LOCK_NAME_RULE,
    NAME_RULE,
    TASK_NAME_RULE,
    is_lock_name,
    is_name,
    is_task_name,
)

__all__ = [
    "ENTRY_EXPECTED",
    "EXPECTED",
    "HOST_ONLY",
    "MODELS",
    "SETTINGS_KEYS",
    "TOP_EXPECTED",
    "Group",
    "Host",
    "InventoryFile",
    "Settings",
    "TaskSpec",
    "model_at",
]


def _spoken(seconds: float) -> str:
    """A default duration as a user would write it (``10s``, ``30d``), for descriptions."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g}{unit}"
    return f"{seconds:g}s"


# --------------------------------------------------------------------------- field types


def _check_name(value: str) -> str:
    if not is_name(value):
        raise ValueError(f"expected a name of {NAME_RULE}, got {show(value)}")
    return value


def _check_task_name(value: str) -> str:
    if not is_task_name(value):
        raise ValueError(f"expected a task name of {TASK_NAME_RULE}, got {show(value)}")
    return value


def _check_lock(value: str) -> str:
    if not is_lock_name(value):
        raise ValueError(f"expected a lock name of {LOCK_NAME_RULE}, got {show(value)}")
    return value


def _check_nonempty(value: str) -> str:
    if not value:
        raise ValueError("expected a non-empty string, got ''")
    return value


def _check_absolute(value: str) -> str:
    if not value.startswith("/"):
        raise ValueError(
            f"expected an absolute path on the host (starting with /), got {show(value)}"
        )
    return value.rstrip("/") or "/"


def _duration(value: object) -> float:
    if not isinstance(value, str | int | float) or isinstance(value, bool):
        raise ValueError(f"expected a duration (e.g. 30, 30s, 5m, 1h30m, 2d), got {show(value)}")
    return parse_duration(value)


def _positive(value: float) -> float:
    if value <= 0:
        raise ValueError("expected a duration of more than 0")
    return value


def _host_key_policy(value: object) -> object:
    if value not in HOST_KEY_POLICIES:
        raise ValueError(
            f"expected one of: {', '.join(HOST_KEY_POLICIES)}, got {show(value)} "
            "(accepting any host key is not offered; accept-new trusts a host's key "
            "on first connection only)"
        )
    return value


def _split_command(value: object) -> object:
    if isinstance(value, str):
        try:
            return shlex.split(value)
        except ValueError as exc:
            raise ValueError(f"cannot split command {show(value)}: {exc}") from None
    if isinstance(value, list):
        return value
    raise ValueError(f"expected a command string or a list of strings, got {show(value)}")


def _check_command(value: list[str]) -> list[str]:
    if not value:
        raise ValueError("command is empty")
    return value


def _env_files(value: object) -> object:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return value
    raise ValueError(f"expected a path or a list of paths, got {show(value)}")


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
EXPECTED: dict[str, str] = {
    "user": "a user name",
    "port": "an integer between 1 and 65535",
    "transport": f"one of: {', '.join(TRANSPORTS)}",
    "app_root": "an absolute path",
    "current": "a path",
    "venv": f"a path, or null to look for {' then '.join(VENV_CANDIDATES)}",
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
TOP_EXPECTED: dict[str, str] = {
    "defaults": "a mapping of settings",
    "hosts": "a mapping of host name to its settings",
    "groups": "a mapping of group name to its hosts and settings",
    "tasks": "a mapping of task name to its command and options",
}
ENTRY_EXPECTED: dict[str, str] = {
    "hosts": "a mapping of the host's settings (or nothing)",
    "groups": "a mapping with hosts: and settings",
    "tasks": "a mapping with command: and options",
}


# --------------------------------------------------------------------------- models


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # Keys where null means something (venv: auto-detect; task options: unset).
    nullable: ClassVar[frozenset[str]] = frozenset()
    expected: ClassVar[Mapping[str, str]] = EXPECTED

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
    transport: TransportKind | None = Field(
        default=None,
        description="How to reach the host: ssh, or local (this machine, no SSH). "
        f"Default {DEFAULT_TRANSPORT}.",
    )
    app_root: AbsPath | None = Field(
        default=None,
        description="The app's deploy folder on the host (absolute). Required for every host, "
        "from defaults, a group or the host.",
    )
    current: NonEmpty | None = Field(
        default=None,
        description="The symlink to the live release, relative to app_root or absolute. "
        f"Default: {DEFAULT_CURRENT}.",
    )
    venv: NonEmpty | None = Field(
        default=None,
        description="The release's virtualenv, relative to the release or absolute. "
        f"Default (or null): {', else '.join(VENV_CANDIDATES)}, whichever exists.",
    )
    env_file: EnvFiles | None = Field(
        default=None,
        description="Dotenv file(s), relative to the release or absolute; a list is read in "
        f"order, later values win. Default: {', '.join(DEFAULT_ENV_FILES)}.",
    )
    identity_file: NonEmpty | None = Field(
        default=None,
        description="Private key on this machine (~ expanded; relative to the inventory's "
        "folder). Default: ssh_config's IdentityFile, else the SSH agent and ~/.ssh keys.",
    )
    known_hosts: NonEmpty | None = Field(
        default=None,
        description="known_hosts file on this machine (~ expanded). "
        f"Default: {DEFAULT_KNOWN_HOSTS}.",
    )
    host_key_policy: PolicyField | None = Field(
        default=None,
        description="strict: refuse hosts whose key is not in known_hosts; accept-new: trust "
        f"and record a new host's key, refuse a changed one. Default: {DEFAULT_HOST_KEY_POLICY}.",
    )
    ssh_config: NonEmpty | None = Field(
        default=None,
        description="OpenSSH client config on this machine (~ expanded); HostName, Port, User, "
        f"IdentityFile and ProxyJump are honoured. Default: {DEFAULT_SSH_CONFIG} when it exists.",
    )
    connect_timeout: PositiveDuration | None = Field(
        default=None,
        description="How long to wait for the SSH connection (a duration). "
        f"Default: {_spoken(DEFAULT_CONNECT_TIMEOUT)}.",
    )
    state_dir: NonEmpty | None = Field(
        default=None,
        description="oneoff's folder on the host (locks, audit log, detached runs), absolute "
        f"or relative to app_root. Default: <app_root>/{DEFAULT_STATE_DIR}.",
    )
    alive_interval: Duration | None = Field(
        default=None,
        description="Heartbeat period: oneoff and its agent each send one every half of this "
        "over the SSH channel; 0 turns heartbeats off. "
        f"Default: {_spoken(DEFAULT_ALIVE_INTERVAL)}.",
    )
    alive_count_max: AtLeastOne | None = Field(
        default=None,
        description="Intervals of silence before either end counts the connection as lost "
        f"(the agent then stops the command). Default: {DEFAULT_ALIVE_COUNT_MAX}.",
    )
    kill_after: Duration | None = Field(
        default=None,
        description="After stopping a command (timeout, Ctrl-C, lost client), wait this long "
        f"before SIGKILL. Default: {_spoken(DEFAULT_KILL_AFTER)}.",
    )
    runs_keep: Duration | None = Field(
        default=None,
        description="How long detached runs' logs stay under state_dir. "
        f"Default: {_spoken(DEFAULT_RUNS_KEEP)}.",
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
    expected: ClassVar[Mapping[str, str]] = TOP_EXPECTED

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
HOST_ONLY: tuple[str, ...] = tuple(k for k in Host.model_fields if k not in SETTINGS_KEYS)
"""Keys only a host may set (``hostname``, ``roles``, ``primary``), for a precise error."""


def model_at(loc: tuple[object, ...]) -> type[BaseModel] | None:
    """The model whose keys live at *loc* (a pydantic loc without its last part)."""
    if not loc:
        return InventoryFile
    if loc == ("defaults",):
        return Settings
    if len(loc) == 2:
        models: dict[str, type[BaseModel]] = {"hosts": Host, "groups": Group, "tasks": TaskSpec}
        return models.get(str(loc[0]))
    return None

"""Every inventory default, written once, and the closed sets of choices they come from.

The cascade (:mod:`oneoff.config.model`), the schema's field descriptions and whoever
else needs "the value when the inventory says nothing" import it from here, so a
changed default cannot leave a stale copy behind. Imports nothing of oneoff: any
layer may use it.
"""

from __future__ import annotations

from typing import Literal, get_args

__all__ = [
    "DEFAULT_ALIVE_COUNT_MAX",
    "DEFAULT_ALIVE_INTERVAL",
    "DEFAULT_CONNECT_TIMEOUT",
    "DEFAULT_CURRENT",
    "DEFAULT_ENV_FILES",
    "DEFAULT_HOST_KEY_POLICY",
    "DEFAULT_KILL_AFTER",
    "DEFAULT_KNOWN_HOSTS",
    "DEFAULT_RUNS_KEEP",
    "DEFAULT_SSH_CONFIG",
    "DEFAULT_STATE_DIR",
    "DEFAULT_TRANSPORT",
    "HOST_KEY_POLICIES",
    "TRANSPORTS",
    "VENV_CANDIDATES",
    "HostKeyPolicy",
    "TransportKind",
]

HostKeyPolicy = Literal["strict", "accept-new"]
"""How an unknown host key is met; "accept anything" is deliberately not a choice."""
HOST_KEY_POLICIES: tuple[str, ...] = get_args(HostKeyPolicy)
TransportKind = Literal["ssh", "local"]
TRANSPORTS: tuple[str, ...] = get_args(TransportKind)

DEFAULT_TRANSPORT: TransportKind = "ssh"
DEFAULT_HOST_KEY_POLICY: HostKeyPolicy = "strict"
DEFAULT_KNOWN_HOSTS = "~/.ssh/known_hosts"
DEFAULT_SSH_CONFIG = "~/.ssh/config"
"""Used only when the file exists: a missing ~/.ssh/config is not an error."""
DEFAULT_CONNECT_TIMEOUT = 10.0

DEFAULT_CURRENT = "current"
"""The live-release symlink, relative to ``app_root``."""
VENV_CANDIDATES: tuple[str, ...] = (".venv", "venv")
"""Looked for in the release, in this order, when ``venv`` is not set."""
DEFAULT_ENV_FILES: tuple[str, ...] = (".env",)
DEFAULT_STATE_DIR = "shared/oneoff"
"""Relative to ``app_root``: under ``shared/`` so it survives every release."""

DEFAULT_ALIVE_INTERVAL = 10.0
DEFAULT_ALIVE_COUNT_MAX = 3
DEFAULT_KILL_AFTER = 10.0
DEFAULT_RUNS_KEEP = 30 * 86400.0

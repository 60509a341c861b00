"""The plain inventory record: cascade defaults, selection, primary, the cache round trip.

Built directly, without YAML or pydantic: the record must work on its own, since a
cached inventory never meets the schema.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

from oneoff import defaults
from oneoff.config import cache
from oneoff.config.model import Inventory, Overrides
from oneoff.errors import UsageError
from oneoff.values import Task


def make(tmp_path: Path) -> Inventory:
    return Inventory(
        path=tmp_path / "inv.yaml",
        hosts=("web1", "web2", "worker1"),
        groups={"prod": ("web2", "web1"), "empty": ()},
        tasks={"migrate": Task(name="migrate", command=("python", "m.py"), source="inv.yaml:9")},
        layers={
            "web1": {"app_root": "/srv/shop"},
            "web2": {"app_root": "/srv/shop", "identity_file": "keys/id", "env_file": ["a", "b"]},
            "worker1": {"app_root": "/srv/shop", "state_dir": "/var/oneoff"},
        },
        roles={"web1": ("web",), "web2": ("web",), "worker1": ("worker",)},
        primaries=frozenset({"web2"}),
    )


def test_unset_keys_take_the_defaults(tmp_path: Path) -> None:
    s = make(tmp_path).settings("web1")
    assert (s.transport, s.current, s.env_files) == (
        defaults.DEFAULT_TRANSPORT,
        defaults.DEFAULT_CURRENT,
        defaults.DEFAULT_ENV_FILES,
    )
    assert s.host_key_policy == defaults.DEFAULT_HOST_KEY_POLICY
    assert s.known_hosts == Path(defaults.DEFAULT_KNOWN_HOSTS).expanduser()
    assert s.state_dir == f"/srv/shop/{defaults.DEFAULT_STATE_DIR}"
    assert (s.connect_timeout, s.alive_interval, s.alive_count_max) == (
        defaults.DEFAULT_CONNECT_TIMEOUT,
        defaults.DEFAULT_ALIVE_INTERVAL,
        defaults.DEFAULT_ALIVE_COUNT_MAX,
    )
    assert (s.kill_after, s.runs_keep) == (defaults.DEFAULT_KILL_AFTER, defaults.DEFAULT_RUNS_KEEP)
    assert (s.hostname, s.hostname_set, s.user, s.port, s.venv) == ("web1", False, None, None, None)


def test_local_paths_are_relative_to_the_inventory_and_remote_ones_kept(tmp_path: Path) -> None:
    inventory = make(tmp_path)
    assert inventory.settings("web2").identity_file == tmp_path / "keys/id"
    assert inventory.settings("web2").env_files == ("a", "b")
    assert inventory.settings("worker1").state_dir == "/var/oneoff"


def test_an_override_wins_and_a_bad_policy_is_refused(tmp_path: Path) -> None:
    inventory = make(tmp_path)
    assert inventory.settings("web1", Overrides(kill_after=1.0)).kill_after == 1.0
    with pytest.raises(UsageError, match="accepting any host key is not offered"):
        inventory.settings("web1", Overrides(host_key_policy="yes"))


def test_selection_keeps_first_appearance_and_group_order(tmp_path: Path) -> None:
    inventory = make(tmp_path)
    assert inventory.select(["prod,worker1", "web1"]) == ["web2", "web1", "worker1"]
    assert inventory.select(["role:worker", "web*"]) == ["worker1", "web1", "web2"]
    assert inventory.select(["all"]) == ["web1", "web2", "worker1"]


@pytest.mark.parametrize(
    ("target", "says"),
    [
        ("empty", "group 'empty' has no hosts"),
        ("role:db", "no host has role 'db' (roles: web, worker)"),
        ("db*", "no host matches 'db*'"),
        ("wbe1", "did you mean web1?"),
        (" , ", "no target"),
    ],
)
def test_a_target_that_matches_nothing_is_an_error(tmp_path: Path, target: str, says: str) -> None:
    with pytest.raises(UsageError, match=re.escape(says)):
        make(tmp_path).select([target])


def test_primary_is_the_marked_host_else_the_first(tmp_path: Path) -> None:
    inventory = make(tmp_path)
    assert inventory.primary(["web1", "web2"]) == "web2"
    assert inventory.primary(["worker1", "web1"]) == "worker1"


def test_the_cache_gives_back_an_equal_inventory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    inventory = make(tmp_path)
    cache.write_cached("k", inventory)
    again = cache.read_cached("k")
    assert again is not None
    assert (again.path, again.hosts, again.groups, again.tasks) == (
        inventory.path,
        inventory.hosts,
        inventory.groups,
        inventory.tasks,
    )
    assert (again.roles, again.primaries) == (inventory.roles, inventory.primaries)
    for host in inventory.hosts:
        assert again.settings(host) == inventory.settings(host)


def test_a_cache_entry_of_another_shape_is_a_miss(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    folder = tmp_path / "cache/oneoff/inventories"
    folder.mkdir(parents=True)
    (folder / "k.json").write_text(json.dumps({"hosts": []}))
    assert cache.read_cached("k") is None


def test_the_record_side_imports_no_validation_library() -> None:
    import subprocess

    code = (
        "import sys, oneoff.config.model, oneoff.config.find, oneoff.config.load, "
        "oneoff.names, oneoff.defaults; "
        "bad = [m for m in ('pydantic', 'ruamel', 'paramiko', 'fabric') if m in sys.modules]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)

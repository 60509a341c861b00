"""Inventory: loading with line numbers, the settings cascade, discovery, target selection."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from oneoff.config.find import INVENTORY_ENV, find_inventory
from oneoff.config.load import load_inventory
from oneoff.config.model import Inventory, Overrides
from oneoff.config.schema import MODELS
from oneoff.errors import InventoryError, UsageError
from oneoff.values import Task

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "inventory.example.yaml"

MINIMAL = """\
defaults:
  app_root: /srv/shop
hosts:
  web1: {}
"""


def load(tmp_path: Path, text: str, name: str = "inv.yaml") -> Inventory:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return load_inventory(path)


def load_error(tmp_path: Path, text: str) -> str:
    with pytest.raises(InventoryError) as info:
        load(tmp_path, text)
    return str(info.value)


# --------------------------------------------------------------------------- the example file


def test_example_inventory_loads_and_every_host_resolves() -> None:
    inventory = load_inventory(EXAMPLE)
    assert inventory.hosts == ("web1", "web2", "worker1", "staging1", "local")
    assert inventory.groups == {"prod": ("web1", "web2", "worker1"), "staging": ("staging1",)}
    assert set(inventory.tasks) == {"migrate", "shell", "clear-cache", "reindex"}
    for host in inventory.hosts:
        settings = inventory.settings(host)
        assert settings.app_root.startswith("/")
    assert inventory.settings("staging1").app_root == "/srv/shop-staging"
    assert inventory.settings("staging1").host_key_policy == "accept-new"
    assert inventory.settings("worker1").env_files == (".env", ".env.worker")
    assert inventory.settings("local").transport == "local"
    assert inventory.settings("web1").state_dir == "/srv/shop/shared/oneoff"
    assert inventory.settings("web1").kill_after == 10.0
    assert inventory.settings("web1").runs_keep == 30 * 86400.0
    assert inventory.primary(inventory.select(["prod"])) == "web1"
    assert inventory.tasks["migrate"].command == ("python", "manage.py", "migrate", "--noinput")
    assert inventory.tasks["reindex"].timeout == 7200.0


def test_every_model_key_is_documented_in_the_example() -> None:
    text = EXAMPLE.read_text()
    for model in MODELS:
        for key in model.model_fields:
            assert re.search(rf"(^|[\s{{,]){re.escape(key)}:", text, re.M), (
                f"{model.__name__}.{key} is not in inventory.example.yaml"
            )


def test_every_model_field_has_a_description() -> None:
    for model in MODELS:
        for key, field in model.model_fields.items():
            assert field.description, f"{model.__name__}.{key} has no description"


def test_importing_inventory_does_not_import_ssh_libraries() -> None:
    code = (
        "import sys, oneoff.config.model; "
        "bad = [m for m in ('paramiko', 'fabric', 'invoke') if m in sys.modules]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)


# --------------------------------------------------------------------------- the cascade

CASCADE = """\
defaults:
  app_root: /srv/shop
  user: from-defaults
  port: 2201
  connect_timeout: 1
  kill_after: 1
  alive_count_max: 7
hosts:
  web1: {user: from-host}
  web2: {}
  web3: {}
groups:
  prod:
    hosts: [web1, web2]
    user: from-group
    port: 2202
    connect_timeout: 2
"""


def test_group_settings_override_defaults(tmp_path: Path) -> None:
    web2 = load(tmp_path, CASCADE).settings("web2")
    assert (web2.user, web2.port, web2.connect_timeout) == ("from-group", 2202, 2.0)
    assert web2.alive_count_max == 7


def test_host_settings_override_groups(tmp_path: Path) -> None:
    web1 = load(tmp_path, CASCADE).settings("web1")
    assert (web1.user, web1.port) == ("from-host", 2202)


def test_hosts_outside_groups_get_defaults(tmp_path: Path) -> None:
    web3 = load(tmp_path, CASCADE).settings("web3")
    assert (web3.user, web3.port, web3.connect_timeout) == ("from-defaults", 2201, 1.0)


def test_command_line_overrides_win_over_everything(tmp_path: Path) -> None:
    overrides = Overrides(
        user="root",
        port=2222,
        identity_file=Path("/keys/id"),
        host_key_policy="accept-new",
        connect_timeout=30.0,
        kill_after=3.0,
    )
    web1 = load(tmp_path, CASCADE).settings("web1", overrides)
    assert (web1.user, web1.port, web1.identity_file) == ("root", 2222, Path("/keys/id"))
    assert (web1.host_key_policy, web1.connect_timeout, web1.kill_after) == (
        "accept-new",
        30.0,
        3.0,
    )


def test_unset_overrides_leave_the_file_values(tmp_path: Path) -> None:
    inventory = load(tmp_path, CASCADE)
    assert inventory.settings("web1", Overrides()) == inventory.settings("web1")


def test_a_bad_host_key_policy_override_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="accepting any host key is not offered"):
        load(tmp_path, MINIMAL).settings("web1", Overrides(host_key_policy="no"))


def test_groups_that_agree_on_a_value_are_not_a_conflict(tmp_path: Path) -> None:
    inventory = load(
        tmp_path,
        """\
        defaults: {app_root: /srv/shop}
        hosts: {web1: {}}
        groups:
          a: {hosts: [web1], user: deploy, kill_after: 60}
          b: {hosts: [web1], user: deploy, kill_after: 1m}
        """,
    )
    assert inventory.settings("web1").user == "deploy"
    assert inventory.settings("web1").kill_after == 60.0


def test_built_in_defaults_when_nothing_is_set(tmp_path: Path) -> None:
    web1 = load(tmp_path, MINIMAL).settings("web1")
    assert web1.name == "web1"
    assert web1.transport == "ssh"
    assert (web1.hostname, web1.hostname_set) == ("web1", False)
    assert (web1.port, web1.user, web1.identity_file) == (None, None, None)
    assert (web1.current, web1.venv, web1.env_files) == ("current", None, (".env",))
    assert web1.host_key_policy == "strict"
    assert web1.state_dir == "/srv/shop/shared/oneoff"
    assert (web1.connect_timeout, web1.alive_interval, web1.alive_count_max) == (10.0, 10.0, 3)
    assert (web1.kill_after, web1.runs_keep) == (10.0, 2592000.0)
    assert (web1.roles, web1.primary) == ((), False)


def test_explicit_hostname_is_marked_as_set(tmp_path: Path) -> None:
    inventory = load(tmp_path, MINIMAL.replace("web1: {}", "web1: {hostname: 10.0.0.1}"))
    web1 = inventory.settings("web1")
    assert (web1.hostname, web1.hostname_set) == ("10.0.0.1", True)


def test_host_with_no_settings_may_be_written_bare(tmp_path: Path) -> None:
    inventory = load(tmp_path, MINIMAL.replace("web1: {}", "web1:\n  web2:"))
    assert inventory.hosts == ("web1", "web2")


def test_durations_accept_numbers_and_unit_strings(tmp_path: Path) -> None:
    inventory = load(
        tmp_path,
        """\
        defaults: {app_root: /srv/shop, connect_timeout: 2.5, alive_interval: 90s,
                   kill_after: 1h30m, runs_keep: 2d}
        hosts: {web1: {}}
        """,
    )
    web1 = inventory.settings("web1")
    assert (web1.connect_timeout, web1.alive_interval) == (2.5, 90.0)
    assert (web1.kill_after, web1.runs_keep) == (5400.0, 172800.0)


def test_env_file_list_is_kept_in_order(tmp_path: Path) -> None:
    inventory = load(tmp_path, MINIMAL.replace("web1: {}", "web1: {env_file: [b.env, /etc/a]}"))
    assert inventory.settings("web1").env_files == ("b.env", "/etc/a")


def test_venv_null_on_a_host_means_auto_detect_again(tmp_path: Path) -> None:
    inventory = load(
        tmp_path,
        """\
        defaults: {app_root: /srv/shop, venv: env}
        hosts: {web1: {venv: null}, web2: {}}
        """,
    )
    assert inventory.settings("web1").venv is None
    assert inventory.settings("web2").venv == "env"


def test_state_dir_may_be_absolute_or_relative_to_app_root(tmp_path: Path) -> None:
    inventory = load(
        tmp_path,
        """\
        defaults: {app_root: /srv/shop/}
        hosts: {web1: {state_dir: /var/lib/oneoff}, web2: {state_dir: state}}
        """,
    )
    assert inventory.settings("web1").state_dir == "/var/lib/oneoff"
    assert inventory.settings("web2").state_dir == "/srv/shop/state"
    assert inventory.settings("web2").app_root == "/srv/shop"


def test_local_paths_expand_tilde(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "home"
    monkeypatch.setenv("HOME", str(home))
    inventory = load(
        tmp_path,
        """\
        defaults: {app_root: /srv/shop, identity_file: ~/.ssh/deploy,
                   known_hosts: ~/kh, ssh_config: ~/sshcfg}
        hosts: {web1: {}}
        """,
    )
    web1 = inventory.settings("web1")
    assert web1.identity_file == home / ".ssh/deploy"
    assert web1.known_hosts == home / "kh"
    assert web1.ssh_config == home / "sshcfg"  # given explicitly: kept even if missing
    overridden = inventory.settings("web1", Overrides(identity_file=Path("~/other")))
    assert overridden.identity_file == home / "other"


def test_relative_local_paths_are_relative_to_the_inventory_folder(tmp_path: Path) -> None:
    inventory = load(tmp_path, MINIMAL.replace("web1: {}", "web1: {identity_file: keys/id}"))
    assert inventory.settings("web1").identity_file == tmp_path / "keys/id"


def test_default_known_hosts_and_ssh_config_live_in_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home"
    monkeypatch.setenv("HOME", str(home))
    inventory = load(tmp_path, MINIMAL)
    assert inventory.settings("web1").known_hosts == home / ".ssh/known_hosts"
    assert inventory.settings("web1").ssh_config is None  # default path does not exist
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh/config").write_text("Host *\n")
    assert inventory.settings("web1").ssh_config == home / ".ssh/config"


def test_settings_for_an_unknown_host_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="unknown host 'web2'; did you mean web1"):
        load(tmp_path, MINIMAL).settings("web2")


def test_groups_of_lists_groups_in_file_order(tmp_path: Path) -> None:
    inventory = load(tmp_path, SELECT)
    assert inventory.groups_of("web1") == ["prod", "web"]
    assert inventory.groups_of("db1") == []


# --------------------------------------------------------------------------- discovery


@pytest.fixture
def places(tmp_path: Path) -> tuple[Path, Path]:
    cwd, home = tmp_path / "cwd", tmp_path / "home"
    (home / ".config/oneoff").mkdir(parents=True)
    cwd.mkdir()
    for path in (
        cwd / "oneoff.yaml",
        cwd / "inventory.yaml",
        home / ".config/oneoff/inventory.yaml",
        cwd / "explicit.yaml",
        cwd / "from-env.yaml",
    ):
        path.write_text(MINIMAL)
    return cwd, home


def test_discovery_prefers_the_explicit_path(places: tuple[Path, Path]) -> None:
    cwd, home = places
    env = {INVENTORY_ENV: "from-env.yaml"}
    assert find_inventory("explicit.yaml", env, cwd, home) == cwd / "explicit.yaml"


def test_discovery_expands_tilde_in_the_explicit_path(places: tuple[Path, Path]) -> None:
    cwd, home = places
    found = find_inventory("~/.config/oneoff/inventory.yaml", {}, cwd, home)
    assert found == home / ".config/oneoff/inventory.yaml"


def test_discovery_uses_the_environment_variable_next(places: tuple[Path, Path]) -> None:
    cwd, home = places
    env = {INVENTORY_ENV: "from-env.yaml"}
    assert find_inventory(None, env, cwd, home) == cwd / "from-env.yaml"


def test_discovery_then_oneoff_yaml_in_cwd(places: tuple[Path, Path]) -> None:
    cwd, home = places
    assert find_inventory(None, {INVENTORY_ENV: ""}, cwd, home) == cwd / "oneoff.yaml"


def test_discovery_then_inventory_yaml_in_cwd(places: tuple[Path, Path]) -> None:
    cwd, home = places
    (cwd / "oneoff.yaml").unlink()
    assert find_inventory(None, {}, cwd, home) == cwd / "inventory.yaml"


def test_discovery_then_the_user_config_folder(places: tuple[Path, Path]) -> None:
    cwd, home = places
    (cwd / "oneoff.yaml").unlink()
    (cwd / "inventory.yaml").unlink()
    assert find_inventory(None, {}, cwd, home) == home / ".config/oneoff/inventory.yaml"


def test_discovery_failure_lists_every_place_tried(tmp_path: Path) -> None:
    with pytest.raises(UsageError) as info:
        find_inventory(None, {}, tmp_path / "cwd", tmp_path / "home")
    message = str(info.value)
    for place in (
        "-i",
        INVENTORY_ENV,
        str(tmp_path / "cwd/oneoff.yaml"),
        str(tmp_path / "cwd/inventory.yaml"),
        str(tmp_path / "home/.config/oneoff/inventory.yaml"),
    ):
        assert place in message


def test_a_missing_explicit_path_is_an_error_naming_it(places: tuple[Path, Path]) -> None:
    cwd, home = places
    with pytest.raises(UsageError, match=re.escape(f"{cwd / 'nope.yaml'} (from -i) does not")):
        find_inventory("nope.yaml", {}, cwd, home)


def test_a_missing_environment_path_is_an_error_not_a_fallback(places: tuple[Path, Path]) -> None:
    cwd, home = places
    with pytest.raises(UsageError, match=f"/gone.yaml \\(from {INVENTORY_ENV}\\) does not exist"):
        find_inventory(None, {INVENTORY_ENV: "/gone.yaml"}, cwd, home)


# --------------------------------------------------------------------------- load errors


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("colour: red\n" + MINIMAL, "inv.yaml:1: colour: unknown key (known keys: defaults,"),
        (
            MINIMAL.replace("defaults:\n", "defaults:\n  colour: red\n"),
            "inv.yaml:2: defaults.colour: unknown key (known keys: alive_count_max,",
        ),
        (
            MINIMAL + "  web2: {colour: red}\n",
            "inv.yaml:5: hosts.web2.colour: unknown key (known keys: alive_count_max,",
        ),
        (
            MINIMAL + "groups:\n  prod:\n    hosts: [web1]\n    colour: red\n",
            "inv.yaml:8: groups.prod.colour: unknown key (known keys: alive_count_max,",
        ),
        (
            MINIMAL + "tasks:\n  m:\n    command: x\n    colour: red\n",
            "inv.yaml:8: tasks.m.colour: unknown key (known keys: command, description, lock,",
        ),
    ],
    ids=["top", "defaults", "host", "group", "task"],
)
def test_unknown_key_is_reported_with_its_line(tmp_path: Path, text: str, expected: str) -> None:
    assert load_error(tmp_path, text).startswith(str(tmp_path / expected))


def test_unknown_key_suggests_a_close_one(tmp_path: Path) -> None:
    message = load_error(tmp_path, MINIMAL.replace("web1: {}", "web1: {hostnme: x}"))
    assert "hosts.web1.hostnme: unknown key, did you mean hostname?" in message


def test_host_only_key_in_defaults_says_where_it_belongs(tmp_path: Path) -> None:
    message = load_error(tmp_path, MINIMAL.replace("defaults:\n", "defaults:\n  roles: [x]\n"))
    assert message.endswith(
        "inv.yaml:2: defaults.roles: unknown key here: roles can only be set on a host"
    )


def test_setting_at_top_level_says_it_belongs_under_defaults(tmp_path: Path) -> None:
    message = load_error(tmp_path, MINIMAL + "user: deploy\n")
    assert "inv.yaml:5: user: unknown key at the top level: user belongs under defaults:" in message


def test_wrong_type_is_reported_with_its_line(tmp_path: Path) -> None:
    text = MINIMAL + "  web2:\n    user: deploy\n    port: abc\n"
    message = load_error(tmp_path, text)
    assert message == (
        f"{tmp_path / 'inv.yaml'}:7: hosts.web2.port: "
        "expected an integer between 1 and 65535, got 'abc'"
    )


@pytest.mark.parametrize("port", ["0", "65536", "22.5", "true"])
def test_port_out_of_range_or_not_an_integer_is_refused(tmp_path: Path, port: str) -> None:
    message = load_error(tmp_path, MINIMAL.replace("web1: {}", f"web1: {{port: {port}}}"))
    assert "inv.yaml:4: hosts.web1.port: expected an integer between 1 and 65535, got" in message


def test_a_number_where_a_string_belongs_says_to_quote_it(tmp_path: Path) -> None:
    message = load_error(tmp_path, MINIMAL.replace("web1: {}", "web1: {user: 1000}"))
    assert "hosts.web1.user: expected a user name, got 1000 (write it in quotes)" in message


def test_null_is_refused_where_it_means_nothing(tmp_path: Path) -> None:
    message = load_error(tmp_path, MINIMAL.replace("web1: {}", "web1: {user: null}"))
    assert "hosts.web1.user: expected a user name, got null (leave the key out" in message


def test_a_bad_duration_is_reported_with_the_accepted_forms(tmp_path: Path) -> None:
    message = load_error(tmp_path, MINIMAL.replace("web1: {}", "web1: {kill_after: soon}"))
    assert "inv.yaml:4: hosts.web1.kill_after: 'soon' is not a duration (write e.g. 30" in message


def test_a_relative_app_root_is_refused(tmp_path: Path) -> None:
    message = load_error(tmp_path, MINIMAL.replace("/srv/shop", "srv/shop"))
    assert "inv.yaml:2: defaults.app_root: expected an absolute path" in message


def test_a_bad_host_name_is_refused_at_its_line(tmp_path: Path) -> None:
    message = load_error(tmp_path, MINIMAL + "  web/2: {}\n")
    assert "inv.yaml:5: hosts.web/2: expected a name of letters, digits" in message


def test_several_problems_are_reported_one_per_line_in_file_order(tmp_path: Path) -> None:
    text = MINIMAL.replace("defaults:\n", "defaults:\n  port: x\n") + "  web2: {user: [a]}\n"
    lines = load_error(tmp_path, text).splitlines()
    assert [line.split(": ")[1] for line in lines] == ["defaults.port", "hosts.web2.user"]
    assert lines[0].startswith(f"{tmp_path / 'inv.yaml'}:2: ")
    assert lines[1].startswith(f"{tmp_path / 'inv.yaml'}:6: ")


def test_yaml_syntax_error_is_reported_with_its_line(tmp_path: Path) -> None:
    message = load_error(tmp_path, MINIMAL + "  web2: [oops\n  web3: {}\n")
    assert re.fullmatch(
        rf"{re.escape(str(tmp_path / 'inv.yaml'))}:6: YAML syntax error: .+", message
    )


def test_duplicate_yaml_key_is_a_syntax_error(tmp_path: Path) -> None:
    message = load_error(tmp_path, MINIMAL + "  web1: {}\n")
    assert 'inv.yaml:5: YAML syntax error: found duplicate key "web1"' in message


def test_empty_file_is_refused_clearly(tmp_path: Path) -> None:
    assert "the inventory is empty" in load_error(tmp_path, "# nothing yet\n")


def test_top_level_that_is_not_a_mapping_is_refused(tmp_path: Path) -> None:
    message = load_error(tmp_path, "- web1\n- web2\n")
    assert "inv.yaml:1: expected a mapping at the top level" in message


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("defaults: {app_root: /srv}\n", "inv.yaml:1: hosts: required key is missing"),
        ("hosts: {}\n", "inv.yaml:1: hosts: expected at least one host"),
        (
            "hosts:\n",
            "inv.yaml:1: hosts: expected a mapping of host name to its settings, got null",
        ),
    ],
)
def test_hosts_are_required(tmp_path: Path, text: str, expected: str) -> None:
    assert expected in load_error(tmp_path, text)


def test_unreadable_file_is_an_inventory_error(tmp_path: Path) -> None:
    with pytest.raises(InventoryError, match="cannot read the inventory"):
        load_inventory(tmp_path / "missing.yaml")


def test_unknown_host_in_a_group_names_it_and_lists_known_hosts(tmp_path: Path) -> None:
    text = MINIMAL + "  web2: {}\ngroups:\n  prod:\n    hosts:\n      - web1\n      - wbe2\n"
    message = load_error(tmp_path, text)
    assert message == (
        f"{tmp_path / 'inv.yaml'}:10: groups.prod.hosts[1]: unknown host 'wbe2'; "
        "did you mean web2? (known hosts: web1, web2)"
    )


def test_a_group_and_a_host_may_not_share_a_name(tmp_path: Path) -> None:
    message = load_error(tmp_path, MINIMAL + "groups:\n  web1: {hosts: [web1]}\n")
    assert "inv.yaml:6: groups.web1: a host is also named web1" in message


def test_conflicting_groups_name_the_host_the_key_and_both_groups(tmp_path: Path) -> None:
    text = """\
    defaults: {app_root: /srv/shop}
    hosts: {web1: {}, web2: {}}
    groups:
      eu: {hosts: [web1, web2], user: alice}
      web:
        hosts: [web1, web2]
        user: bob
    """
    message = load_error(tmp_path, text)
    assert message == (
        f"{tmp_path / 'inv.yaml'}:7: groups.web.user: hosts web1, web2 are in groups eu and web, "
        "which set user differently ('alice' and 'bob'); set user on the host instead"
    )


def test_a_host_setting_resolves_a_group_conflict(tmp_path: Path) -> None:
    text = """\
    defaults: {app_root: /srv/shop}
    hosts: {web1: {user: carol}}
    groups:
      eu: {hosts: [web1], user: alice}
      web: {hosts: [web1], user: bob}
    """
    assert load(tmp_path, text).settings("web1").user == "carol"


def test_missing_app_root_names_the_host_and_where_to_set_it(tmp_path: Path) -> None:
    text = "hosts:\n  web1: {app_root: /srv/a}\n  web2: {}\n"
    message = load_error(tmp_path, text)
    assert message == (
        f"{tmp_path / 'inv.yaml'}:3: hosts.web2: no app_root for this host: set app_root "
        "under defaults:, on the host, or in one of its groups"
    )


def test_app_root_from_a_group_is_enough(tmp_path: Path) -> None:
    text = "hosts: {web1: {}}\ngroups: {prod: {hosts: [web1], app_root: /srv/p}}\n"
    assert load(tmp_path, text).settings("web1").app_root == "/srv/p"


@pytest.mark.parametrize("policy", ["no", "off", "accept-any", "false", "yes"])
def test_host_key_policy_other_than_strict_or_accept_new_is_refused(
    tmp_path: Path, policy: str
) -> None:
    message = load_error(
        tmp_path, MINIMAL.replace("web1: {}", f"web1: {{host_key_policy: {policy}}}")
    )
    assert "inv.yaml:4: hosts.web1.host_key_policy: expected one of: strict, accept-new" in message
    assert "accepting any host key is not offered" in message


@pytest.mark.parametrize(("key", "value"), [("transport", "telnet"), ("run", "twice")])
def test_literal_errors_list_the_accepted_values(tmp_path: Path, key: str, value: str) -> None:
    if key == "transport":
        text = MINIMAL.replace("web1: {}", f"web1: {{transport: {value}}}")
        expected = f"hosts.web1.transport: expected one of: ssh, local, got '{value}'"
    else:
        text = MINIMAL + f"tasks:\n  m: {{command: x, run: {value}}}\n"
        expected = f"inv.yaml:6: tasks.m.run: expected one of: once, each, got '{value}'"
    assert expected in load_error(tmp_path, text)


# --------------------------------------------------------------------------- tasks


def test_task_command_string_is_split_like_a_shell(tmp_path: Path) -> None:
    text = MINIMAL + """tasks:\n  say: {command: "echo 'hello world' \\"$HOME\\" a;b"}\n"""
    task = load(tmp_path, text).tasks["say"]
    assert task.command == ("echo", "hello world", "$HOME", "a;b")


def test_task_command_list_is_kept_as_is(tmp_path: Path) -> None:
    text = MINIMAL + "tasks:\n  say: {command: [echo, 'a b', '$X', '-n', '']}\n"
    assert load(tmp_path, text).tasks["say"].command == ("echo", "a b", "$X", "-n", "")


def test_task_is_a_task_value_with_its_source_line(tmp_path: Path) -> None:
    text = MINIMAL + (
        "tasks:\n"
        "  shell: {command: python manage.py shell, tty: true, description: REPL}\n"
        "  purge:\n"
        "    command: python purge.py\n"
        "    run: each\n"
        "    lock: purge\n"
        "    timeout: 5m\n"
    )
    tasks = load(tmp_path, text).tasks
    assert tasks["shell"] == Task(
        name="shell",
        command=("python", "manage.py", "shell"),
        source="inv.yaml:6",
        tty=True,
        description="REPL",
    )
    assert tasks["purge"] == Task(
        name="purge",
        command=("python", "purge.py"),
        source="inv.yaml:7",
        run="each",
        lock="purge",
        timeout=300.0,
    )


@pytest.mark.parametrize("command", ["''", "[]", "'   '"])
def test_empty_task_command_is_refused(tmp_path: Path, command: str) -> None:
    message = load_error(tmp_path, MINIMAL + f"tasks:\n  m: {{command: {command}}}\n")
    assert "inv.yaml:6: tasks.m.command: command is empty" in message


def test_unbalanced_quote_in_task_command_is_refused(tmp_path: Path) -> None:
    message = load_error(tmp_path, MINIMAL + 'tasks:\n  m: {command: "echo \'x"}\n')
    assert 'tasks.m.command: cannot split command "echo \'x": No closing quotation' in message


def test_task_without_command_is_refused(tmp_path: Path) -> None:
    message = load_error(tmp_path, MINIMAL + "tasks:\n  m:\n    run: each\n")
    assert "inv.yaml:6: tasks.m.command: required key is missing" in message


@pytest.mark.parametrize("lock", ["a/b", "../x", "/abs", ".hidden"])
def test_lock_name_with_a_slash_or_leading_dot_is_refused(tmp_path: Path, lock: str) -> None:
    message = load_error(tmp_path, MINIMAL + f"tasks:\n  m: {{command: x, lock: '{lock}'}}\n")
    assert "inv.yaml:6: tasks.m.lock: expected a lock name" in message
    assert "(no slashes)" in message


def test_task_names_may_contain_colons(tmp_path: Path) -> None:
    text = MINIMAL + "tasks:\n  db:migrate: {command: x}\n"
    assert list(load(tmp_path, text).tasks) == ["db:migrate"]


# --------------------------------------------------------------------------- selection

SELECT = """\
defaults: {app_root: /srv/shop}
hosts:
  web1: {roles: [web]}
  web2: {roles: [web], primary: true}
  Web3: {roles: [web]}
  worker1: {roles: [worker]}
  db1: {}
groups:
  prod: {hosts: [worker1, web1, web2]}
  web: {hosts: [web2, web1]}
"""


@pytest.fixture
def inventory(tmp_path: Path) -> Inventory:
    return load(tmp_path, SELECT)


@pytest.mark.parametrize(
    ("targets", "expected"),
    [
        (["web1"], ["web1"]),
        (["prod"], ["worker1", "web1", "web2"]),
        (["web"], ["web2", "web1"]),
        (["db1,web1"], ["db1", "web1"]),
        (["db1", "web1"], ["db1", "web1"]),
        (["web1, db1 ,"], ["web1", "db1"]),
        (["web*"], ["web1", "web2"]),
        (["W*"], ["Web3"]),
        (["w?b[12]"], ["web1", "web2"]),
        (["role:web"], ["web1", "web2", "Web3"]),
        (["role:worker,db1"], ["worker1", "db1"]),
        (["all"], ["web1", "web2", "Web3", "worker1", "db1"]),
        (["web1", "prod", "web1,web2"], ["web1", "worker1", "web2"]),
        (["prod", "all"], ["worker1", "web1", "web2", "Web3", "db1"]),
    ],
)
def test_select_resolves_every_target_form(
    inventory: Inventory, targets: list[str], expected: list[str]
) -> None:
    assert inventory.select(targets) == expected


def test_a_group_named_all_wins_over_every_host(tmp_path: Path) -> None:
    text = SELECT + "  all: {hosts: [db1]}\n"
    assert load(tmp_path, text).select(["all"]) == ["db1"]


def test_a_host_named_all_wins_over_every_host(tmp_path: Path) -> None:
    text = SELECT.replace("  db1: {}\n", "  db1: {}\n  all: {}\n")
    assert load(tmp_path, text).select(["all"]) == ["all"]


@pytest.mark.parametrize("targets", [[], [""], [" , "]])
def test_select_without_a_target_is_an_error(inventory: Inventory, targets: list[str]) -> None:
    with pytest.raises(UsageError, match=r"^no target: pass -H HOST\|GROUP$"):
        inventory.select(targets)


def test_select_of_an_unknown_name_lists_what_exists_and_suggests(inventory: Inventory) -> None:
    with pytest.raises(UsageError) as info:
        inventory.select(["web1,wrker1"])
    assert str(info.value) == (
        "no host or group named 'wrker1'; did you mean worker1? "
        "(hosts: web1, web2, Web3, worker1, db1; groups: prod, web)"
    )


def test_select_of_an_unknown_name_without_close_match_has_no_suggestion(
    inventory: Inventory,
) -> None:
    with pytest.raises(UsageError, match=r"^no host or group named 'zzz' \(hosts: web1,"):
        inventory.select(["zzz"])


def test_select_of_a_glob_that_matches_nothing_is_an_error(inventory: Inventory) -> None:
    with pytest.raises(UsageError, match=r"^no host matches 'cache\*' \(hosts: web1, web2,"):
        inventory.select(["cache*"])


def test_select_of_an_unknown_role_lists_the_roles(inventory: Inventory) -> None:
    with pytest.raises(UsageError) as info:
        inventory.select(["role:wrker"])
    assert str(info.value) == (
        "no host has role 'wrker'; did you mean worker? (roles: web, worker)"
    )


def test_primary_is_the_first_marked_host_among_the_targets(inventory: Inventory) -> None:
    assert inventory.primary(inventory.select(["prod"])) == "web2"


def test_primary_falls_back_to_the_first_target_host(inventory: Inventory) -> None:
    assert inventory.primary(["db1", "web1"]) == "db1"


def test_primary_of_no_hosts_is_an_error(inventory: Inventory) -> None:
    with pytest.raises(UsageError):
        inventory.primary([])


def test_settings_carry_roles_and_primary(inventory: Inventory) -> None:
    web2 = inventory.settings("web2")
    assert (web2.roles, web2.primary) == (("web",), True)


def test_a_task_written_as_a_bare_string_asks_for_a_mapping(tmp_path: Path) -> None:
    message = load_error(tmp_path, MINIMAL + "tasks:\n  m: python manage.py migrate\n")
    assert "inv.yaml:6: tasks.m: expected a mapping with command: and options, got" in message


def test_a_numeric_host_name_is_shown_as_a_key_not_a_position(tmp_path: Path) -> None:
    message = load_error(tmp_path, MINIMAL + "  2: {}\n")
    assert "inv.yaml:5: hosts.2: expected a string, got 2 (write it in quotes)" in message


def test_unchanged_inventory_is_loaded_from_the_cache_without_pydantic(tmp_path: Path) -> None:
    import subprocess
    import sys

    path = tmp_path / "oneoff.yaml"
    path.write_text(MINIMAL)
    first = load_inventory(path)
    probe = (
        "import sys; from pathlib import Path; from oneoff.config.load import load_inventory; "
        f"inv = load_inventory(Path({str(path)!r})); "
        "print(sorted(inv.hosts), 'pydantic' in sys.modules, 'ruamel' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, check=True, text=True)
    assert out.stdout.split(maxsplit=1)[1].strip() == "False False"
    assert out.stdout.startswith(str(sorted(first.hosts)))


def test_edited_inventory_is_validated_again(tmp_path: Path) -> None:
    path = tmp_path / "oneoff.yaml"
    path.write_text(MINIMAL)
    load_inventory(path)
    path.write_text(MINIMAL + "  bad:\n    colour: blue\n")
    with pytest.raises(InventoryError, match="colour"):
        load_inventory(path)


def test_corrupt_cache_entry_is_ignored(tmp_path: Path) -> None:
    import os

    path = tmp_path / "oneoff.yaml"
    path.write_text(MINIMAL)
    expected = load_inventory(path)
    cache = Path(os.environ["XDG_CACHE_HOME"]) / "oneoff" / "inventories"
    for entry in cache.iterdir():
        entry.write_text("{not json")
    again = load_inventory(path)
    assert again.hosts == expected.hosts
    assert again.settings(expected.hosts[0]) == expected.settings(expected.hosts[0])

"""The schema tells the same defaults and choices the cascade uses."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from oneoff import defaults
from oneoff.config import schema

DESCRIBED = {
    "connect_timeout": "Default: 10s.",
    "alive_interval": "Default: 10s.",
    "kill_after": "Default: 10s.",
    "runs_keep": "Default: 30d.",
    "alive_count_max": f"Default: {defaults.DEFAULT_ALIVE_COUNT_MAX}.",
    "current": f"Default: {defaults.DEFAULT_CURRENT}.",
    "env_file": "Default: .env.",
    "state_dir": f"<app_root>/{defaults.DEFAULT_STATE_DIR}",
    "host_key_policy": f"Default: {defaults.DEFAULT_HOST_KEY_POLICY}.",
}


@pytest.mark.parametrize(("key", "text"), DESCRIBED.items())
def test_a_setting_describes_its_default(key: str, text: str) -> None:
    description = schema.Settings.model_fields[key].description
    assert description is not None and text in description


def test_the_schema_takes_exactly_the_policies_and_transports_the_model_knows() -> None:
    for policy in defaults.HOST_KEY_POLICIES:
        schema.Settings.model_validate({"host_key_policy": policy})
    for transport in defaults.TRANSPORTS:
        schema.Settings.model_validate({"transport": transport})
    for bad in ({"host_key_policy": "yes"}, {"transport": "telnet"}):
        with pytest.raises(ValidationError):
            schema.Settings.model_validate(bad)


def test_host_only_keys_are_the_host_model_minus_the_settings() -> None:
    assert schema.HOST_ONLY == ("hostname", "roles", "primary")

"""Name rules: one definition, and what each kind of name refuses."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from oneoff.names import is_lock_name, is_name, is_run_id, is_task_name

HOSTILE = ["", "-x", ".hidden", "a b", "a/b", "a'b", 'a"b', "a$b", "a`b", "a;b", "a\nb", "a&b"]
CHECKS = [is_name, is_task_name, is_lock_name, is_run_id]


@pytest.mark.parametrize("check", CHECKS)
@pytest.mark.parametrize("text", HOSTILE)
def test_no_kind_of_name_takes_a_hostile_string(check: Callable[[str], bool], text: str) -> None:
    assert not check(text)


@pytest.mark.parametrize("check", CHECKS)
def test_every_kind_of_name_takes_a_plain_word(check: Callable[[str], bool]) -> None:
    assert check("web1") and check("Web_2-b")


def test_only_task_names_take_a_colon() -> None:
    assert is_task_name("db:migrate")
    assert not is_name("db:migrate") and not is_lock_name("db:migrate")


def test_run_ids_take_no_dot_so_dotdot_is_never_a_folder() -> None:
    assert is_name("a.b") and is_lock_name("a.b")
    assert not is_run_id("a.b") and not is_run_id("..")


@given(st.text())
def test_an_accepted_name_can_go_into_a_path_and_an_argv(text: str) -> None:
    if is_name(text) or is_task_name(text) or is_run_id(text):
        assert text and text[0].isascii() and text[0].isalnum()
        assert "/" not in text and not any(c.isspace() for c in text)

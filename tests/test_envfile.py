"""Tests for oneoff.remote.envfile: it must agree with python-dotenv.

Every hard-coded expectation below is also checked against python-dotenv
itself (``_check``), so a python-dotenv upgrade that changes behaviour shows up
as a failing named test rather than a silent drift.
"""

import io
import os
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from unittest import mock

import pytest
from dotenv import dotenv_values, load_dotenv
from dotenv.parser import Binding, parse_stream
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from oneoff.remote.envfile import EnvFileError, load_env_files, parse_env

ENVIRON = {"HOME": "/home/app", "EMPTY": "", "A": "env-a"}


@contextmanager
def _os_environ(environ: Mapping[str, str]) -> Iterator[None]:
    with mock.patch.dict(os.environ, environ, clear=True):
        yield


def _dotenv(text: str, environ: Mapping[str, str]) -> tuple[dict[str, str | None], list[int]]:
    """python-dotenv's values for ``text`` and the lines of its parse errors."""
    with _os_environ(environ):
        errors = [b.original.line for b in parse_stream(io.StringIO(text)) if b.error]
        values = dict(dotenv_values(stream=io.StringIO(text)))
    return values, errors


def _check(
    text: str, expected: dict[str, str | None], environ: Mapping[str, str] = ENVIRON
) -> None:
    assert _dotenv(text, environ) == (expected, []), "expectation disagrees with python-dotenv"
    assert parse_env(text, environ) == expected


def _check_error(text: str, line: int, environ: Mapping[str, str] = ENVIRON) -> EnvFileError:
    errors = _dotenv(text, environ)[1]
    assert errors[:1] == [line], "expectation disagrees with python-dotenv"
    with pytest.raises(EnvFileError) as excinfo:
        parse_env(text, environ, path="app.env")
    assert excinfo.value.path == "app.env"
    assert excinfo.value.line == line
    return excinfo.value


# --- Named examples ----------------------------------------------------------


def test_unquoted_value_is_trimmed_and_inline_comment_dropped() -> None:
    _check("K= hello world  # note", {"K": "hello world"})


def test_hash_without_space_before_it_is_part_of_unquoted_value() -> None:
    _check("K=abc#def\nL=#x", {"K": "abc#def", "L": "#x"})


def test_space_then_hash_after_equals_is_empty_value_and_comment() -> None:
    _check("K= # comment", {"K": ""})


def test_comment_lines_and_blank_lines_are_ignored() -> None:
    _check("# comment\n\n   # indented comment\nK=v\n\n", {"K": "v"})


def test_key_without_equals_maps_to_none() -> None:
    _check("K\nL=1", {"K": None, "L": "1"})


def test_empty_values_are_empty_strings() -> None:
    _check("K=\nL=''\nM=\"\"", {"K": "", "L": "", "M": ""})


def test_export_prefix_is_ignored() -> None:
    _check("export K=1\nexport\tL=2", {"K": "1", "L": "2"})


def test_export_without_whitespace_is_part_of_the_key() -> None:
    _check("exportK=1\nexport=2", {"exportK": "1", "export": "2"})


def test_utf8_bom_is_ignored() -> None:
    _check("\ufeffK=1", {"K": "1"})


def test_crlf_line_endings_are_line_breaks() -> None:
    _check("K=1\r\nL=2 # c\r\n", {"K": "1", "L": "2"})


def test_crlf_inside_quotes_is_kept_when_parsing_text() -> None:
    _check('K="l1\r\nl2"\r\n', {"K": "l1\r\nl2"})


def test_whitespace_around_key_and_equals_is_ignored() -> None:
    _check("K=1\n L = 2 \n", {"K": "1", "L": "2"})


def test_single_quoted_key() -> None:
    _check("'my key'=v", {"my key": "v"})


def test_second_equals_sign_is_part_of_value() -> None:
    _check("K==b", {"K": "=b"})


def test_single_quoted_value_decodes_only_backslash_and_quote() -> None:
    _check(r"K='a\nb\'c\\d'", {"K": "a\\nb'c\\d"})


def test_double_quoted_value_decodes_escapes() -> None:
    _check(
        r'K="a\nb\tc\"d\\e\'f\x41\u00e9\$"',
        {"K": "a\nb\tc\"d\\e'f\\x41\\u00e9\\$"},
    )


def test_unquoted_value_keeps_backslashes() -> None:
    _check(r"K=x\ny", {"K": "x\\ny"})


def test_double_quoted_value_can_span_lines() -> None:
    _check('K="line1\nline2"\nL=2', {"K": "line1\nline2", "L": "2"})


def test_single_quoted_value_can_span_lines() -> None:
    _check("K='line1\nline2'", {"K": "line1\nline2"})


def test_comment_after_quoted_value_is_dropped() -> None:
    _check("K=\"x\" # c\nL='y'#c", {"K": "x", "L": "y"})


def test_braced_variable_is_expanded_from_environ() -> None:
    _check("K=${HOME}/x", {"K": "/home/app/x"})


def test_bare_dollar_variable_is_not_expanded() -> None:
    _check("K=$HOME", {"K": "$HOME"})


def test_single_quoted_value_is_still_interpolated() -> None:
    # python-dotenv 1.x expands ${VAR} in single quotes too (unlike a shell).
    _check("K='${HOME}'", {"K": "/home/app"})


def test_earlier_key_in_file_wins_over_environ() -> None:
    _check("HOME=/over\nK=${HOME}", {"HOME": "/over", "K": "/over"})


def test_default_is_used_when_variable_is_unset() -> None:
    _check("K=${NOPE:-d}\nL=${NOPE}", {"K": "d", "L": ""})


def test_default_is_not_used_when_variable_is_set_but_empty() -> None:
    # Unlike POSIX ${VAR:-default}: only an absent variable takes the default.
    _check("K=${EMPTY:-d}\nL=${HOME:-}x", {"K": "", "L": "/home/appx"})


def test_key_without_equals_shadows_environ_as_empty() -> None:
    _check("HOME\nK=${HOME:-d}", {"HOME": None, "K": ""})


def test_duplicate_key_sees_its_earlier_value_and_last_wins() -> None:
    _check("A=1\nA=${A}2", {"A": "12"})


def test_environ_keys_are_not_in_result() -> None:
    assert parse_env("K=1", {"OTHER": "x"}) == {"K": "1"}


def test_unparseable_line_raises_with_its_line_number() -> None:
    _check_error("K=ok\nbad line\nL=2", 2)


def test_error_line_is_where_the_statement_started_before_blank_lines() -> None:
    # python-dotenv counts from the start of the statement, which includes the
    # blank lines in front of it: the bad text is on line 3.
    _check_error("\n\nfoo bar\n", 1)


def test_unterminated_quote_raises() -> None:
    _check_error('K=ok\nL="unterminated\nM=2', 2)


def test_text_after_closing_quote_raises() -> None:
    _check_error('K="a"b', 1)


def test_missing_key_raises() -> None:
    _check_error("=x", 1)


def test_error_message_never_contains_the_value() -> None:
    secret = "sk_live_51HqLyjWDarjtT1zdp7dcXYZ"
    for text in (
        f'PASSWORD="{secret}',
        f"PASSWORD='{secret}'trailing",
        f"PASSWORD {secret}",
        f"OK=1\n{secret} {secret}\n",
    ):
        with pytest.raises(EnvFileError) as excinfo:
            parse_env(text, {}, path="/srv/app/.env")
        message = str(excinfo.value)
        assert secret not in message
        assert "sk_live" not in message
        assert not any(secret in repr(arg) for arg in excinfo.value.args)
        assert message == f"/srv/app/.env:{excinfo.value.line}: {excinfo.value.reason}"


def test_error_str_is_path_line_reason() -> None:
    err = EnvFileError("x.env", 3, "cannot parse this line")
    assert (err.path, err.line, err.reason) == ("x.env", 3, "cannot parse this line")
    assert str(err) == "x.env:3: cannot parse this line"


# --- load_env_files ----------------------------------------------------------


def test_load_env_files_overrides_expands_across_files_and_drops_none(tmp_path: Path) -> None:
    base = tmp_path / "base.env"
    local = tmp_path / "local.env"
    base.write_text("NAME=base\nDB=postgres://${HOST}/app\nKEEP=1\nLOOSE\nSHADOW=s\n")
    local.write_bytes(b"\xef\xbb\xbfNAME=local\r\nURL=${DB}?n=${NAME}\r\nKEEP\r\nE=${HOST:-x}\r\n")
    result = load_env_files([str(base), str(local)], {"HOST": "db1", "UNUSED": "u"})
    assert result == {
        "NAME": "local",
        "DB": "postgres://db1/app",
        "KEEP": "1",  # a bare key in a later file does not unset an earlier value
        "SHADOW": "s",
        "URL": "postgres://db1/app?n=local",
        "E": "db1",
    }


def test_load_env_files_missing_file_names_path_with_line_zero(tmp_path: Path) -> None:
    present = tmp_path / "a.env"
    present.write_text("A=1\n")
    missing = str(tmp_path / "missing.env")
    with pytest.raises(EnvFileError) as excinfo:
        load_env_files([str(present), missing], {})
    assert excinfo.value.path == missing
    assert excinfo.value.line == 0
    assert "No such file or directory" in excinfo.value.reason
    assert str(excinfo.value).startswith(f"{missing}:0: ")


def test_load_env_files_parse_error_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.env"
    path.write_text("A=1\nB='hunter2\n")
    with pytest.raises(EnvFileError) as excinfo:
        load_env_files([str(path)], {})
    assert (excinfo.value.path, excinfo.value.line) == (str(path), 2)
    assert "hunter2" not in str(excinfo.value)


def test_load_env_files_invalid_utf8_names_line_without_content(tmp_path: Path) -> None:
    path = tmp_path / "bad.env"
    path.write_bytes(b"A=1\r\nB=2\nSECRET=ab\xffcd\n")
    with pytest.raises(EnvFileError) as excinfo:
        load_env_files([str(path)], {})
    assert (excinfo.value.path, excinfo.value.line) == (str(path), 3)
    assert "\\xff" not in str(excinfo.value)
    assert "abcd" not in str(excinfo.value).replace(str(path), "")


def test_load_env_files_reads_lone_cr_as_newline_like_open(tmp_path: Path) -> None:
    path = tmp_path / "cr.env"
    path.write_bytes(b'A="x\r\ny"\rB=2\r')
    expected = {"A": "x\ny", "B": "2"}
    with _os_environ({}):
        assert dotenv_values(path) == expected
    assert load_env_files([str(path)], {}) == expected


# --- Differential tests against python-dotenv ---------------------------------

_NAMES = ["A", "B", "HOME", "EMPTY", "k_1", "x.y", "NOPE"]

_environs = st.dictionaries(
    st.sampled_from(["A", "HOME", "EMPTY", "k_1"]),
    st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=8),
)

_value_fragments = st.one_of(
    st.sampled_from(
        [
            "${A}",
            "${HOME}",
            "${NOPE}",
            "${EMPTY:-d}",
            "${NOPE:-x y}",
            "${k_1:-}",
            "${}",
            "${A",
            "$A",
            "\\n",
            "\\t",
            "\\\\",
            "\\'",
            '\\"',
            "\\x41",
            "\\a\\b\\f\\r\\v",
            "\\u00e9",
            "\\",
            "#",
            " #",
            " # c",
            "'",
            '"',
            " ",
            "\t",
            "=",
            "\n",
            "\r\n",
            "\r",
            "\u00e9",
            "\u2028",
            "\x0b",
            "\x0c",
            "\xa0",
            "\x85",
            "\x1c",
        ]
    ),
    st.text(st.sampled_from("ab $#{}:-=\\'\"\t"), max_size=4),
)
_values = st.lists(_value_fragments, max_size=6).map("".join)


@st.composite
def _quoted_values(draw: st.DrawFn) -> str:
    quote = draw(st.sampled_from(["", "'", '"']))
    body = draw(_values)
    if quote and draw(st.integers(0, 3)) == 0:
        body += draw(st.sampled_from(["\n", "\r\n", "\r", "\n\n"])) + draw(_values)
    close = quote if draw(st.integers(0, 9)) else ""  # sometimes unterminated
    return quote + body + close


_keys = st.one_of(
    st.sampled_from(_NAMES),
    st.sampled_from(_NAMES).map(lambda name: f"'{name}'"),
    st.sampled_from(["'a b'", "'='", "''", "#k", "k#", "export", "\u00e9t\u00e9"]),
    st.text(st.sampled_from("aZ_.-=#' \t"), min_size=1, max_size=4),
)


@st.composite
def _binding_lines(draw: st.DrawFn) -> str:
    prefix = draw(
        st.sampled_from(["", "", "export ", "export\t", "export", "export\xa0", "  ", "\t"])
    )
    key = draw(_keys)
    sep = draw(st.sampled_from(["=", "=", "=", " = ", "= ", " =", "=\t", "", "\xa0=", "\x0b=\x0c"]))
    value = draw(_quoted_values()) if sep else ""
    trailer = draw(st.sampled_from(["", "", " ", " # comment", "#c", "\t#", " x"]))
    return prefix + key + sep + value + trailer


_lines = st.one_of(
    _binding_lines(),
    _binding_lines(),
    _binding_lines(),
    st.sampled_from(["", " ", "# comment", "  # indented", "\t"]),
    st.text(max_size=12),
)


@st.composite
def _env_texts(draw: st.DrawFn) -> str:
    lines = draw(st.lists(_lines, max_size=6))
    endings = draw(st.lists(st.sampled_from(["\n", "\n", "\r\n", "\r"]), min_size=len(lines)))
    text = "".join(line + end for line, end in zip(lines, endings, strict=False))
    if draw(st.booleans()):
        text = text.rstrip("\r\n")  # no final newline
    if draw(st.integers(0, 9)) == 0:
        text = "\ufeff" + text
    return text


@st.composite
def _clean_env_texts(draw: st.DrawFn) -> str:
    """Mostly-parseable files: names that other lines and files refer to."""
    lines = []
    for _ in range(draw(st.integers(0, 5))):
        name = draw(st.sampled_from(["A", "B", "HOME", "EMPTY", "k_1"]))
        if draw(st.integers(0, 5)) == 0:
            lines.append(name)  # no value: None
            continue
        quote = draw(st.sampled_from(["", "'", '"']))
        refs = st.sampled_from(["${A}", "${B:-b}", "${HOME}", "${EMPTY:-e}", "${k_1}", "x", " "])
        body = "".join(draw(st.lists(refs, max_size=4)))
        lines.append(f"{name}={quote}{body}{quote}")
    return "\n".join(lines)


_any_texts = st.one_of(_env_texts(), _env_texts(), _env_texts(), st.text())


def _parse_file(path: str) -> list[Binding]:
    with open(path, encoding="utf-8") as handle:
        return list(parse_stream(handle))


def _assert_same_as_dotenv(text: str, environ: Mapping[str, str]) -> None:
    values, errors = _dotenv(text, environ)
    if errors:
        with pytest.raises(EnvFileError) as excinfo:
            parse_env(text, environ, path="p.env")
        assert excinfo.value.line == errors[0]
        assert excinfo.value.path == "p.env"
    else:
        assert parse_env(text, environ) == values


@settings(max_examples=1500, deadline=None)
@given(text=_any_texts, environ=_environs)
def test_parse_env_matches_python_dotenv(text: str, environ: dict[str, str]) -> None:
    _assert_same_as_dotenv(text, environ)


@settings(max_examples=300, deadline=None)
@given(
    text=st.text(st.sampled_from("ab=#'\"\\ \t\n\r${}:-xv\x0b\xa0"), max_size=30), environ=_environs
)
def test_parse_env_matches_python_dotenv_on_dense_syntax(
    text: str, environ: dict[str, str]
) -> None:
    _assert_same_as_dotenv(text, environ)


@settings(max_examples=150, deadline=None)
@given(
    texts=st.lists(st.one_of(_clean_env_texts(), _env_texts()), min_size=1, max_size=3),
    environ=_environs,
)
def test_load_env_files_matches_load_dotenv_override_in_turn(
    texts: list[str], environ: dict[str, str]
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        for index, text in enumerate(texts):
            path = os.path.join(tmp, f"{index}.env")
            with open(path, "w", encoding="utf-8", newline="") as handle:
                handle.write(text)
            paths.append(path)

        with _os_environ(environ):
            errors = [
                (path, binding.original.line)
                for path in paths
                for binding in _parse_file(path)
                if binding.error
            ]
            defined = {
                key
                for path in paths
                for key, value in dotenv_values(path).items()
                if value is not None
            }
            try:
                for path in paths:
                    load_dotenv(path, override=True)
            except ValueError:  # os.environ refuses the key or value (e.g. NUL, "=")
                assume(False)
            expected = {key: os.environ[key] for key in defined}

        if errors:
            with pytest.raises(EnvFileError) as excinfo:
                load_env_files(paths, environ)
            assert (excinfo.value.path, excinfo.value.line) == errors[0]
        else:
            assert load_env_files(paths, environ) == expected

"""Env-file (dotenv) parser that agrees with python-dotenv's ``dotenv_values``.

This module is shipped inline to remote hosts and run by the app's own Python,
which may be as old as 3.8: standard library only, no PEP 604/585 annotations,
and no imports from ``oneoff``.  It is concatenated with the agent module and
exec'd as one program, so module-level names are prefixed (``_env_``) or
specific to env files.

Values are secrets: no value, and no text of a line, ever goes into an
exception message.  Errors name only the file, the line number and a generic
reason.
"""

# Parser and variable expansion ported from python-dotenv 1.2.x (BSD-3-Clause).

import re
from typing import Dict, List, Mapping, NamedTuple, Optional, Sequence, Tuple


class EnvFileError(Exception):
    """path, line (1-based) and a generic reason; never the line's content.

    ``line`` is 0 when the file as a whole could not be read.
    """

    def __init__(self, path: str, line: int, reason: str) -> None:
        super().__init__(path, line, reason)
        self.path = path
        self.line = line
        self.reason = reason

    def __str__(self) -> str:
        return "{}:{}: {}".format(self.path, self.line, self.reason)


# --- Parser (python-dotenv parser.py) ---------------------------------------

_env_newline = re.compile(r"(\r\n|\n|\r)", re.UNICODE)
_env_multiline_whitespace = re.compile(r"\s*", re.UNICODE | re.MULTILINE)
_env_whitespace = re.compile(r"[^\S\r\n]*", re.UNICODE)
_env_export = re.compile(r"(?:export[^\S\r\n]+)?", re.UNICODE)
_env_single_quoted_key = re.compile(r"'([^']+)'", re.UNICODE)
_env_unquoted_key = re.compile(r"([^=\#\s]+)", re.UNICODE)
_env_equal_sign = re.compile(r"(=[^\S\r\n]*)", re.UNICODE)
# A backslash always escapes the character after it, so that an escaped
# backslash (`\\`) is not mistaken for the start of an escaped quote.
_env_single_quoted_value = re.compile(r"'((?:\\.|[^'\\])*)'", re.UNICODE | re.DOTALL)
_env_double_quoted_value = re.compile(r'"((?:\\.|[^"\\])*)"', re.UNICODE | re.DOTALL)
_env_unquoted_value = re.compile(r"([^\r\n]*)", re.UNICODE)
_env_inline_comment = re.compile(r"\s+#.*", re.UNICODE)
_env_comment = re.compile(r"(?:[^\S\r\n]*#[^\r\n]*)?", re.UNICODE)
_env_end_of_line = re.compile(r"[^\S\r\n]*(?:\r\n|\n|\r|$)", re.UNICODE)
_env_rest_of_line = re.compile(r"[^\r\n]*(?:\r|\n|\r\n)?", re.UNICODE)
_env_double_quote_escapes = re.compile(r"\\[\\'\"abfnrtv]", re.UNICODE)
_env_single_quote_escapes = re.compile(r"\\[\\']", re.UNICODE)

# What codecs.decode(match, "unicode-escape") gives for each escape the two
# escape regexes above can match (python-dotenv decodes them that way).
_ENV_ESCAPES = {
    "\\\\": "\\",
    "\\'": "'",
    '\\"': '"',
    "\\a": "\a",
    "\\b": "\b",
    "\\f": "\f",
    "\\n": "\n",
    "\\r": "\r",
    "\\t": "\t",
    "\\v": "\v",
}


class _EnvBinding(NamedTuple):
    key: Optional[str]
    value: Optional[str]
    line: int
    error: bool


class _EnvParseError(Exception):
    pass


class _EnvReader:
    def __init__(self, text: str) -> None:
        if text.startswith("\ufeff"):  # str.removeprefix is 3.9+
            text = text[1:]
        self.string = text
        self.chars = 0
        self.line = 1
        self.mark_line = 1

    def has_next(self) -> bool:
        return self.chars < len(self.string)

    def set_mark(self) -> None:
        self.mark_line = self.line

    def peek(self, count: int) -> str:
        return self.string[self.chars : self.chars + count]

    def read_regex(self, regex: "re.Pattern[str]") -> Tuple[str, ...]:
        match = regex.match(self.string, self.chars)
        if match is None:
            raise _EnvParseError()
        consumed = self.string[match.start() : match.end()]
        self.chars += len(consumed)
        self.line += len(_env_newline.findall(consumed))
        return match.groups()


def _env_decode_escapes(regex: "re.Pattern[str]", string: str) -> str:
    return regex.sub(lambda match: _ENV_ESCAPES[match.group(0)], string)


def _env_parse_key(reader: _EnvReader) -> Optional[str]:
    char = reader.peek(1)
    if char == "#":
        return None
    if char == "'":
        (key,) = reader.read_regex(_env_single_quoted_key)
    else:
        (key,) = reader.read_regex(_env_unquoted_key)
    return key


def _env_parse_value(reader: _EnvReader) -> str:
    char = reader.peek(1)
    if char == "'":
        (value,) = reader.read_regex(_env_single_quoted_value)
        return _env_decode_escapes(_env_single_quote_escapes, value)
    if char == '"':
        (value,) = reader.read_regex(_env_double_quoted_value)
        return _env_decode_escapes(_env_double_quote_escapes, value)
    if char in ("", "\n", "\r"):
        return ""
    (part,) = reader.read_regex(_env_unquoted_value)
    return _env_inline_comment.sub("", part).rstrip()


def _env_parse_binding(reader: _EnvReader) -> _EnvBinding:
    reader.set_mark()
    try:
        reader.read_regex(_env_multiline_whitespace)
        if not reader.has_next():
            return _EnvBinding(None, None, reader.mark_line, False)
        reader.read_regex(_env_export)
        key = _env_parse_key(reader)
        reader.read_regex(_env_whitespace)
        value: Optional[str] = None
        if reader.peek(1) == "=":
            (equal_sign,) = reader.read_regex(_env_equal_sign)
            # Whitespace after `=` then `#`: empty value and an inline comment
            # (`KEY= # comment`); `KEY=#novalue` keeps the `#` in the value.
            if len(equal_sign) > 1 and reader.peek(1) == "#":
                value = ""
            else:
                value = _env_parse_value(reader)
        reader.read_regex(_env_comment)
        reader.read_regex(_env_end_of_line)
        return _EnvBinding(key, value, reader.mark_line, False)
    except _EnvParseError:
        reader.read_regex(_env_rest_of_line)
        return _EnvBinding(None, None, reader.mark_line, True)


def _env_parse_bindings(text: str) -> List[_EnvBinding]:
    reader = _EnvReader(text)
    bindings: List[_EnvBinding] = []
    while reader.has_next():
        bindings.append(_env_parse_binding(reader))
    return bindings


# --- Variable expansion (python-dotenv variables.py, main.resolve_variables) -

_env_posix_variable = re.compile(
    r"""
    \$\{
        (?P<name>[^\}:]*)
        (?::-
            (?P<default>[^\}]*)
        )?
    \}
    """,
    re.VERBOSE,
)


def _env_expand(value: str, env: Mapping[str, Optional[str]]) -> str:
    def resolve(match: "re.Match[str]") -> str:
        default = match.group("default")
        result = env.get(match.group("name"), default if default is not None else "")
        return result if result is not None else ""

    return _env_posix_variable.sub(resolve, value)


def _env_resolve(
    pairs: Sequence[Tuple[str, Optional[str]]], environ: Mapping[str, str]
) -> Dict[str, Optional[str]]:
    # dotenv_values uses override=True: the file's own earlier keys win over
    # the environment (a key without `=` shadows it as an empty string).
    resolved: Dict[str, Optional[str]] = {}
    for name, value in pairs:
        if value is None:
            result: Optional[str] = None
        else:
            env: Dict[str, Optional[str]] = dict(environ)
            env.update(resolved)
            result = _env_expand(value, env)
        resolved[name] = result
    return resolved


# --- Public API --------------------------------------------------------------


def parse_env(
    text: str, environ: Mapping[str, str], path: str = "<env>"
) -> Dict[str, Optional[str]]:
    """Parse env-file text the way python-dotenv's ``dotenv_values`` does.

    Same as ``dotenv_values(stream=io.StringIO(text), interpolate=True)`` with
    ``os.environ == environ``.  A key with no ``=`` maps to None.  Where
    python-dotenv would warn that it could not parse the statement starting at
    line N, raise ``EnvFileError(path, N, ...)`` instead.
    """
    pairs: List[Tuple[str, Optional[str]]] = []
    for binding in _env_parse_bindings(text):
        if binding.error:
            raise EnvFileError(path, binding.line, "cannot parse this line")
        if binding.key is not None:
            pairs.append((binding.key, binding.value))
    return _env_resolve(pairs, environ)


def _env_read_file(path: str) -> str:
    """Read ``path`` as ``open(path, encoding="utf-8").read()`` would.

    That is, UTF-8 with universal newlines (CRLF and CR become LF), which is
    what ``dotenv_values(path)`` sees.  Decoding is done here so that a bad
    byte can be reported by line number without echoing any of the file.
    """
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise EnvFileError(path, 0, "cannot read file: {}".format(reason)) from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        before = data[: exc.start].decode("utf-8")
        line = _env_universal_newlines(before).count("\n") + 1
        raise EnvFileError(path, line, "not valid UTF-8") from None
    return _env_universal_newlines(text)


def _env_universal_newlines(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")


def load_env_files(paths: Sequence[str], environ: Mapping[str, str]) -> Dict[str, str]:
    """Read env files in order and return the keys they define.

    Each file is parsed like ``dotenv_values(path)``; later files override
    earlier ones.  ``${VAR}`` in file N sees ``environ``, overridden by the
    values loaded from files 1..N-1, overridden by earlier keys of file N.
    Keys whose value is None (no ``=``) are left out and do not unset a value
    from an earlier file.  This is what calling ``load_dotenv(path,
    override=True)`` on each file in turn does to ``os.environ``.  Returns
    only the keys defined in the files, not ``environ``.
    """
    loaded: Dict[str, str] = {}
    for path in paths:
        visible = dict(environ)
        visible.update(loaded)
        values = parse_env(_env_read_file(path), visible, path)
        for key, value in values.items():
            if value is not None:
                loaded[key] = value
    return loaded

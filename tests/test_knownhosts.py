"""known_hosts reading and appending, checked against real OpenSSH keys and ssh-keygen."""

from __future__ import annotations

import base64
import os
import stat
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from oneoff.transport.knownhosts import (
    KnownHosts,
    append_known_host,
    fingerprint,
    host_key_name,
)


@dataclass(frozen=True)
class Key:
    keytype: str
    b64: str
    pub: Path

    @property
    def blob(self) -> bytes:
        return base64.b64decode(self.b64)

    def entry(self, hosts: str) -> str:
        return f"{hosts} {self.keytype} {self.b64}"


def _keygen(directory: Path, name: str, keytype: str) -> Key:
    private = directory / name
    subprocess.run(
        ["ssh-keygen", "-q", "-t", keytype, "-N", "", "-C", name, "-f", str(private)],
        check=True,
        capture_output=True,
    )
    pub = private.with_suffix(".pub")
    kt, b64, _ = pub.read_text().split(" ", 2)
    return Key(kt, b64, pub)


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Key]:
    directory = tmp_path_factory.mktemp("keys")
    return {
        "a": _keygen(directory, "a", "ed25519"),
        "b": _keygen(directory, "b", "ed25519"),
        "c": _keygen(directory, "c", "ed25519"),
        "ecdsa": _keygen(directory, "ecdsa", "ecdsa"),
    }


Write = Callable[..., Path]


@pytest.fixture
def write(tmp_path: Path) -> Write:
    def _write(*lines: str, name: str = "known_hosts") -> Path:
        path = tmp_path / name
        path.write_text("".join(line + "\n" for line in lines))
        return path

    return _write


def test_host_key_name_is_bare_on_port_22_and_bracketed_elsewhere() -> None:
    assert host_key_name("web1.example.com", 22) == "web1.example.com"
    assert host_key_name("127.0.0.1", 2222) == "[127.0.0.1]:2222"
    assert host_key_name("Web1.Example.COM", 22) == "web1.example.com"
    with pytest.raises(ValueError):
        host_key_name("h", 0)


def test_fingerprint_matches_ssh_keygen_l(keys: dict[str, Key]) -> None:
    out = subprocess.run(
        ["ssh-keygen", "-l", "-E", "sha256", "-f", str(keys["a"].pub)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    assert fingerprint(keys["a"].blob) == out.split()[1]


def test_plain_entry_makes_its_key_known(keys: dict[str, Key], write: Write) -> None:
    path = write("# my hosts", "", keys["a"].entry("web1.example.com,10.0.0.1"))
    kh = KnownHosts.load([path])
    verdict = kh.check("web1.example.com", 22, keys["a"].keytype, keys["a"].blob)
    assert verdict.kind == "known"
    assert verdict.ok
    assert verdict.match is not None and (verdict.match.path, verdict.match.line) == (path, 3)
    assert kh.check("10.0.0.1", 22, keys["a"].keytype, keys["a"].blob).kind == "known"
    assert kh.skipped == ()


def test_bracketed_entry_matches_only_its_port_and_plain_entry_only_port_22(
    keys: dict[str, Key], write: Write
) -> None:
    a, b = keys["a"], keys["b"]
    kh = KnownHosts.load([write(a.entry("host1"), b.entry("[host2]:2222"))])
    assert kh.check("host1", 22, a.keytype, a.blob).kind == "known"
    assert kh.keys_for("host1", 2222) == []
    assert kh.check("host1", 2222, a.keytype, a.blob).kind == "unknown"
    assert kh.check("host2", 2222, b.keytype, b.blob).kind == "known"
    assert kh.keys_for("host2", 22) == []
    assert kh.keys_for("host2", 2223) == []


def test_entries_hashed_by_ssh_keygen_h_still_match(keys: dict[str, Key], write: Write) -> None:
    a, b = keys["a"], keys["b"]
    path = write(a.entry("host1.example.com"), b.entry("[host2]:2222"))
    subprocess.run(["ssh-keygen", "-H", "-f", str(path)], check=True, capture_output=True)
    hashed = [line for line in path.read_text().splitlines() if line and line[0] != "#"]
    assert len(hashed) == 2 and all(line.startswith("|1|") for line in hashed)

    kh = KnownHosts.load([path])
    assert kh.skipped == ()
    assert kh.check("host1.example.com", 22, a.keytype, a.blob).kind == "known"
    assert kh.check("HOST1.example.com", 22, a.keytype, a.blob).kind == "known"
    assert kh.check("host2", 2222, b.keytype, b.blob).kind == "known"
    assert kh.keys_for("host2", 22) == []
    assert kh.keys_for("host3.example.com", 22) == []


def test_wildcards_star_and_question_mark_match_including_inside_brackets(
    keys: dict[str, Key], write: Write
) -> None:
    a, b, c = keys["a"], keys["b"], keys["c"]
    kh = KnownHosts.load(
        [write(a.entry("*.example.com"), b.entry("[10.0.0.*]:2222"), c.entry("db?"))]
    )
    assert kh.check("web1.example.com", 22, a.keytype, a.blob).kind == "known"
    assert kh.keys_for("example.org", 22) == []
    assert kh.keys_for("web1.example.com", 2222) == []
    assert kh.check("10.0.0.5", 2222, b.keytype, b.blob).kind == "known"
    assert kh.keys_for("10.0.0.5", 22) == []
    assert kh.keys_for("10.0.1.5", 2222) == []
    assert kh.check("db1", 22, c.keytype, c.blob).kind == "known"
    assert kh.keys_for("db12", 22) == []


def test_negated_pattern_excludes_the_line_whatever_its_position(
    keys: dict[str, Key], write: Write
) -> None:
    a, b = keys["a"], keys["b"]
    kh = KnownHosts.load(
        [write(a.entry("*.example.com,!bad.example.com"), b.entry("!bad2.example.com,*"))]
    )
    assert [k.blob for k in kh.keys_for("good.example.com", 22)] == [a.blob, b.blob]
    assert [k.blob for k in kh.keys_for("bad.example.com", 22)] == [b.blob]
    assert [k.blob for k in kh.keys_for("bad2.example.com", 22)] == [a.blob]
    assert kh.check("bad.example.com", 22, a.keytype, a.blob).kind == "changed"


def test_host_names_compare_case_insensitively(keys: dict[str, Key], write: Write) -> None:
    a = keys["a"]
    kh = KnownHosts.load([write(a.entry("Web1.Example.COM,[DB.example.com]:2222"))])
    assert kh.check("web1.example.com", 22, a.keytype, a.blob).kind == "known"
    assert kh.check("db.EXAMPLE.com", 2222, a.keytype, a.blob).kind == "known"


def test_revoked_key_is_refused_for_every_host_even_if_also_listed_as_known(
    keys: dict[str, Key], write: Write
) -> None:
    a, b = keys["a"], keys["b"]
    path = write(a.entry("web1"), b.entry("web1"), "@revoked " + a.entry("elsewhere.invalid"))
    kh = KnownHosts.load([path])
    verdict = kh.check("web1", 22, a.keytype, a.blob)
    assert verdict.kind == "revoked"
    assert not verdict.ok
    assert verdict.match is not None and verdict.match.revoked and verdict.match.line == 3
    assert "REVOKED" in verdict.describe() and f"{path}:3" in verdict.describe()
    assert kh.check("web1", 22, b.keytype, b.blob).kind == "known"
    assert all(not k.revoked for k in kh.keys_for("elsewhere.invalid", 22))


def test_cert_authority_line_is_skipped_without_breaking_the_rest_of_the_file(
    keys: dict[str, Key], write: Write
) -> None:
    a, b = keys["a"], keys["b"]
    path = write("@cert-authority " + b.entry("*.example.com"), a.entry("web1.example.com"))
    kh = KnownHosts.load([path])
    assert kh.check("web1.example.com", 22, a.keytype, a.blob).kind == "known"
    assert [(s.path, s.line) for s in kh.skipped] == [(path, 1)]
    assert "cert-authority" in kh.skipped[0].reason
    assert kh.check("web2.example.com", 22, b.keytype, b.blob).kind == "unknown"


def test_garbled_lines_are_skipped_and_recorded_with_their_line_numbers(
    keys: dict[str, Key], tmp_path: Path
) -> None:
    a, b = keys["a"], keys["b"]
    path = tmp_path / "known_hosts"
    path.write_bytes(
        b"\n".join(
            [
                b"# comment",  # 1
                b"onlyhost ssh-ed25519",  # 2 too few fields
                b"web1 ssh-ed25519 not*base64!",  # 3
                f"web1 ssh-rsa {a.b64}".encode(),  # 4 type does not match blob
                b"@bogus " + a.entry("web1").encode(),  # 5 unknown marker
                b"web1 ssh-ed25519 \xff\xfe",  # 6 not UTF-8
                f"|1|bm90c2FsdA==|xx ssh-ed25519 {a.b64}".encode(),  # 7 malformed hash
                b"web1 ssh-ed25519 AAAA",  # 8 truncated blob
                b"   ",  # 9 blank
                b.entry("web1").encode() + b"\r",  # 10 valid, CRLF
                b"",
            ]
        )
    )
    kh = KnownHosts.load([path])
    assert [s.line for s in kh.skipped] == [2, 3, 4, 5, 6, 7, 8]
    assert all(s.path == path and s.reason for s in kh.skipped)
    verdict = kh.check("web1", 22, b.keytype, b.blob)
    assert verdict.kind == "known" and verdict.match is not None and verdict.match.line == 10


def test_changed_key_of_the_same_type_is_reported_with_path_and_line(
    keys: dict[str, Key], write: Write
) -> None:
    a, b = keys["a"], keys["b"]
    first = write("# first", name="kh1")
    second = write("# second", "", a.entry("web1"), name="kh2")
    verdict = KnownHosts.load([first, second]).check("web1", 22, b.keytype, b.blob)
    assert verdict.kind == "changed"
    assert [(k.path, k.line) for k in verdict.conflicts] == [(second, 3)]
    assert f"{second}:3" in verdict.describe()
    assert verdict.fingerprint == fingerprint(b.blob)


def test_unknown_key_reports_the_other_key_types_known_for_the_host(
    keys: dict[str, Key], write: Write
) -> None:
    a, ecdsa = keys["a"], keys["ecdsa"]
    kh = KnownHosts.load([write(ecdsa.entry("web1"))])
    verdict = kh.check("web1", 22, a.keytype, a.blob)
    assert verdict.kind == "unknown"
    assert verdict.other_types == (ecdsa.keytype,)
    assert ecdsa.keytype in verdict.describe()
    fresh = kh.check("web2", 22, a.keytype, a.blob)
    assert (fresh.kind, fresh.other_types) == ("unknown", ())


def test_keys_for_lists_matching_keys_across_files_in_file_order(
    keys: dict[str, Key], write: Write
) -> None:
    a, b, ecdsa = keys["a"], keys["b"], keys["ecdsa"]
    first = write(ecdsa.entry("web1"), b.entry("other"), name="kh1")
    second = write(a.entry("web*"), name="kh2")
    found = KnownHosts.load([first, second]).keys_for("web1", 22)
    assert [(k.path, k.line, k.keytype) for k in found] == [
        (first, 1, ecdsa.keytype),
        (second, 1, a.keytype),
    ]


def test_missing_file_is_empty_and_unreadable_file_is_recorded(tmp_path: Path) -> None:
    kh = KnownHosts.load([tmp_path / "absent"])
    assert kh.keys_for("web1", 22) == [] and kh.skipped == ()
    kh = KnownHosts.load([tmp_path])  # a directory cannot be read as a file
    assert [(s.path, s.line) for s in kh.skipped] == [(tmp_path, 0)]


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=400))
def test_load_never_raises_on_arbitrary_bytes(data: bytes) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "known_hosts"
        path.write_bytes(data)
        kh = KnownHosts.load([path])
        kh.keys_for("web1", 22)


def test_append_creates_missing_directory_0700_and_file_0600(
    keys: dict[str, Key], tmp_path: Path
) -> None:
    a = keys["a"]
    path = tmp_path / "home" / ".ssh" / "known_hosts"
    old = os.umask(0o022)
    try:
        append_known_host(path, "127.0.0.1", 2222, a.keytype, a.blob)
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text() == f"[127.0.0.1]:2222 {a.keytype} {a.b64}\n"
    assert KnownHosts.load([path]).check("127.0.0.1", 2222, a.keytype, a.blob).kind == "known"


def test_append_adds_a_newline_first_when_the_file_lacks_one(
    keys: dict[str, Key], tmp_path: Path
) -> None:
    a, b = keys["a"], keys["b"]
    path = tmp_path / "known_hosts"
    before = a.entry("web1").encode()  # no trailing newline
    path.write_bytes(before)
    append_known_host(path, "web2", 22, b.keytype, b.blob)
    assert path.read_bytes() == before + b"\n" + f"{b.entry('web2')}\n".encode()
    kh = KnownHosts.load([path])
    assert kh.check("web1", 22, a.keytype, a.blob).kind == "known"
    assert kh.check("web2", 22, b.keytype, b.blob).kind == "known"


def test_append_to_empty_file_adds_no_leading_newline(keys: dict[str, Key], tmp_path: Path) -> None:
    a = keys["a"]
    path = tmp_path / "known_hosts"
    path.touch()
    append_known_host(path, "web1", 22, a.keytype, a.blob)
    assert path.read_text() == a.entry("web1") + "\n"


def test_append_keeps_existing_content_and_mode_byte_for_byte(
    keys: dict[str, Key], tmp_path: Path
) -> None:
    a, b = keys["a"], keys["b"]
    path = tmp_path / "known_hosts"
    before = (
        b"# managed by hand -- keep this comment\n"
        b"\n"
        b"@cert-authority *.example.com " + b.entry("x").split(" ", 1)[1].encode() + b"\n"
        b"   # indented comment\twith tab\r\n"
        b"|1|c2FsdHNhbHRzYWx0c2FsdHNhbHQ=|aGFzaGhhc2hoYXNoaGFzaGhhc2g= "
        + a.entry("").encode()[1:]
        + b"\n"
    )
    path.write_bytes(before)
    path.chmod(0o644)
    append_known_host(path, "127.0.0.1", 2222, a.keytype, a.blob)
    assert path.read_bytes() == before + f"[127.0.0.1]:2222 {a.keytype} {a.b64}\n".encode()
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


def test_ssh_keygen_f_finds_the_line_we_appended(keys: dict[str, Key], tmp_path: Path) -> None:
    a, b = keys["a"], keys["b"]
    path = tmp_path / "known_hosts"
    path.write_text("# comment\n" + b.entry("other") + "\n")
    append_known_host(path, "127.0.0.1", 2222, a.keytype, a.blob)
    found = subprocess.run(
        ["ssh-keygen", "-F", "[127.0.0.1]:2222", "-f", str(path)],
        capture_output=True,
        text=True,
    )
    assert found.returncode == 0, found.stderr
    assert f"[127.0.0.1]:2222 {a.keytype} {a.b64}" in found.stdout
    assert "line 3" in found.stdout


@pytest.mark.parametrize("host", ["web1\nevil ssh-ed25519 AAAA", "a b", "*.example.com", "a,b", ""])
def test_append_refuses_host_names_that_would_inject_patterns_or_lines(
    keys: dict[str, Key], tmp_path: Path, host: str
) -> None:
    path = tmp_path / "known_hosts"
    with pytest.raises(ValueError):
        append_known_host(path, host, 22, keys["a"].keytype, keys["a"].blob)
    assert not path.exists()


@pytest.mark.parametrize(
    ("host", "port"),
    [
        ("web.example.com", 22),
        ("bad.example.com", 22),
        ("10.0.0.5", 2222),
        ("10.0.0.5", 22),
        ("db1", 22),
        ("DB1", 22),
        ("web.example.com", 2222),
        ("hashed.example.com", 22),
    ],
)
def test_matching_lines_agree_with_ssh_keygen_f(
    keys: dict[str, Key], tmp_path: Path, host: str, port: int
) -> None:
    a = keys["a"]
    path = tmp_path / "known_hosts"
    path.write_text(f"{a.entry('hashed.example.com')}\n")
    subprocess.run(["ssh-keygen", "-H", "-f", str(path)], check=True, capture_output=True)
    with path.open("a") as f:
        for patterns in ("*.example.com,!bad.example.com", "[10.0.0.*]:2222", "DB?"):
            f.write(a.entry(patterns) + "\n")
    name = host_key_name(host, port)
    out = subprocess.run(
        ["ssh-keygen", "-F", name, "-f", str(path)], capture_output=True, text=True
    ).stdout
    # ssh-keygen prints "# Host <name> found: line <n> " before each matching line.
    theirs = [
        int(line.split(" found: line ")[1].split()[0])
        for line in out.splitlines()
        if " found: line " in line
    ]
    ours = [k.line for k in KnownHosts.load([path]).keys_for(host, port)]
    assert ours == theirs


def test_bare_star_does_not_match_non_22_ports_unlike_openssh(
    keys: dict[str, Key], write: Write
) -> None:
    # Deliberately stricter than ssh(1), whose "*" globs across "[host]:2222".
    a = keys["a"]
    kh = KnownHosts.load([write(a.entry("*"))])
    assert kh.check("anything", 22, a.keytype, a.blob).kind == "known"
    assert kh.keys_for("anything", 2222) == []

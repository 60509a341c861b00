"""`make demo`: build a throwaway release tree and run admin commands through it.

First with ``transport: local`` (always), then over real SSH on loopback when an
OpenSSH sshd can be started here. Everything lives under ``.demo/`` and is rebuilt
on each run.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from support.release import make_app  # noqa: E402
from support.sshd import SshdError, make_client_key, start_sshd  # noqa: E402

MANAGE_PY = '''\
"""A stand-in for Django's manage.py: `migrate` applies numbered migrations to SQLite."""
import os, sqlite3, sys

MIGRATIONS = ["0001_initial", "0002_add_orders", "0003_index_orders"]

def migrate():
    db = sqlite3.connect(os.environ["DATABASE_PATH"])
    db.execute("create table if not exists applied (name text primary key)")
    done = {row[0] for row in db.execute("select name from applied")}
    print("Operations to perform: apply all migrations")
    for name in MIGRATIONS:
        if name in done:
            continue
        db.execute("insert into applied values (?)", (name,))
        print(f"  Applying shop.{name}... OK")
    db.commit()
    if done >= set(MIGRATIONS):
        print("  No migrations to apply.")

if __name__ == "__main__":
    command = sys.argv[1] if len(sys.argv) > 1 else "help"
    if command == "migrate":
        migrate()
    else:
        sys.exit(f"unknown command {command!r}")
'''


def oneoff(inventory: Path, *args: str) -> int:
    command = [sys.executable, "-m", "oneoff", "-i", str(inventory), *args]
    print(f"\n$ oneoff {shlex.join(args)}", flush=True)
    return subprocess.run(command, check=False).returncode


def main() -> int:
    base = ROOT / ".demo"
    shutil.rmtree(base, ignore_errors=True)
    base.mkdir()
    app = make_app(
        base,
        shared_env=f"DATABASE_PATH={base / 'shop.sqlite3'}\nSECRET_KEY=demo-not-so-secret\n",
        revision="3f2c1a9",
        files={"manage.py": MANAGE_PY},
    )
    local = base / "local.yaml"
    local.write_text(f"hosts:\n  local: {{transport: local, app_root: {app.root}}}\n")
    print(f"Built a release tree at {app.root} (release, venv, env file, current symlink).")
    statuses = [
        oneoff(local, "-H", "local", "releases"),
        oneoff(local, "-H", "local", "tasks"),
        oneoff(local, "-H", "local", "--dry-run", "migrate"),
        oneoff(local, "-H", "local", "migrate"),
        oneoff(local, "-H", "local", "--", "python", "-c", "import sys; print(sys.prefix)"),
    ]
    try:
        key = make_client_key(base / "keys")
        server = start_sshd(base / "sshd", [key.public])
    except (SshdError, OSError) as exc:
        print(f"\n(skipping the SSH part: cannot start an sshd here: {exc})")
    else:
        try:
            known_hosts = base / "known_hosts"
            known_hosts.write_text(server.known_hosts_line() + "\n")
            remote = base / "ssh.yaml"
            remote.write_text(
                "defaults:\n"
                f"  user: {server.user}\n  port: {server.port}\n"
                f"  identity_file: {key.private}\n  known_hosts: {known_hosts}\n"
                f"  ssh_config: {base / 'no-ssh-config'}\n  app_root: {app.root}\n"
                "hosts:\n  web1: {hostname: 127.0.0.1, primary: true}\n"
            )
            print(f"\nStarted OpenSSH sshd on 127.0.0.1:{server.port}; the same over SSH:")
            statuses.append(oneoff(remote, "-H", "web1", "migrate"))
            statuses.append(oneoff(remote, "-H", "web1", "--", "hostname"))
        finally:
            server.stop()
    failed = [s for s in statuses if s != 0]
    print("\ndemo: all steps succeeded" if not failed else f"\ndemo: {len(failed)} step(s) failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

"""The agent runs under the release's own Python, which may be much older than ours."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from support.run import oneoff
from support.sshd import SshServer, WriteInventory

OLD_PYTHONS = [Path(f"/root/.pyenv/versions/{v}/bin/python") for v in ("3.8.18", "3.9.18")] + [
    Path(p) for p in (shutil.which("python3.8") or "", shutil.which("python3.9") or "") if p
]


def _first_old_python() -> Path | None:
    for path in OLD_PYTHONS:
        if path.is_file():
            return path
    return None


@pytest.mark.skipif(_first_old_python() is None, reason="no Python 3.8/3.9 on this machine")
def test_agent_runs_under_an_old_venv_python(
    sshd: SshServer, tmp_path: Path, write_inventory: WriteInventory
) -> None:
    from support.release import make_app

    app = make_app(tmp_path, venv=None)
    release = app.release("20261128T120000")
    python = _first_old_python()
    assert python is not None
    subprocess.run([str(python), "-m", "venv", "--without-pip", str(release / ".venv")], check=True)
    inventory = write_inventory({"web1": {"hostname": "127.0.0.1", "app_root": str(app.root)}})
    code = "import os, sys; print(sys.version_info[:2], os.environ['GREETING'])"
    result = oneoff(
        "-H", "web1", "--timeout", "30s", "--", "python", "-c", code, inventory=inventory
    )
    assert result.returncode == 0, result.stderr
    major, minor = (int(x) for x in python.parent.parent.name.split(".")[:2])
    assert result.stdout.decode() == f"({major}, {minor}) hello\n"

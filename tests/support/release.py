"""Real app trees in the Capistrano-style layout oneoff deploys against.

    <root>/
      current -> releases/<id>            (relative symlink)
      releases/<id>/
        .venv/bin/python                  (a real virtualenv, made by the stdlib ``venv``)
        .env -> ../../shared/.env         (or a regular file)
        REVISION                          (optional)
      shared/.env                         (mode 0600)
      shared/oneoff/                      (oneoff's state_dir)

Virtualenvs are created in-process with ``venv.EnvBuilder(with_pip=False, symlinks=True)``
— the same code as ``python -m venv --without-pip`` — from the base interpreter of the
one running the tests. That takes about a millisecond, so nothing is cached: each
release gets its own venv with its own ``pyvenv.cfg`` and ``bin/python``.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import uuid
import venv
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "DEFAULT_RELEASE_ID",
    "DEFAULT_SHARED_ENV",
    "AppTree",
    "PackageInstallFailed",
    "make_app",
    "make_venv",
    "make_venv_with",
]

DEFAULT_RELEASE_ID = "20261128T120000"
DEFAULT_SHARED_ENV = "DATABASE_URL=postgres://u:s3cret@db/shop\nGREETING=hello\n"


def make_venv(path: Path) -> Path:
    """Create a real virtualenv (no pip) at ``path``; returns its ``bin/python``."""
    venv.EnvBuilder(with_pip=False, symlinks=True, clear=False).create(path)
    return path / "bin" / "python"


class PackageInstallFailed(RuntimeError):
    """pip could not install the packages (no package index reachable, typically)."""


def make_venv_with(path: Path, packages: Sequence[str]) -> Path:
    """Create a virtualenv at ``path`` with *packages* pip-installed; returns its ``bin/python``.

    Slow (seconds, from the package index or pip's cache): make one per test session and
    link releases to it (``<release>/.venv -> path``), as deploys that keep the venv in
    ``shared/`` do. The running interpreter's pip installs into it (``pip --python``), which
    saves seeding pip into the new venv; without one, the venv gets its own pip.
    """
    own_pip = importlib.util.find_spec("pip") is None
    venv.EnvBuilder(with_pip=own_pip, symlinks=True, clear=True).create(path)
    python = path / "bin" / "python"
    pip = (
        [str(python), "-m", "pip"]
        if own_pip
        else [sys.executable, "-m", "pip", "--python", str(python)]
    )
    result = subprocess.run(
        [*pip, "install", "--quiet", "--disable-pip-version-check", *packages],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise PackageInstallFailed(f"pip install {' '.join(packages)}: {result.stderr.strip()}")
    return python


@dataclass(frozen=True)
class AppTree:
    root: Path
    shared: Path
    state_dir: Path

    @property
    def releases(self) -> Path:
        return self.root / "releases"

    @property
    def current(self) -> Path:
        """The ``current`` symlink itself (not resolved)."""
        return self.root / "current"

    def release(self, release_id: str) -> Path:
        return self.releases / release_id

    def add_release(
        self,
        release_id: str,
        *,
        env: str | None = None,
        revision: str | None = None,
        venv: str | None = ".venv",
        make_current: bool = True,
        files: Mapping[str, str | bytes] | None = None,
    ) -> Path:
        """Create ``releases/<release_id>`` and return its path.

        ``venv``: where the virtualenv goes, relative to the release (None: no venv).
        ``env``: the text of a regular ``.env`` file in the release; when None, ``.env``
        is a relative symlink to ``../../shared/.env`` if that file exists.
        ``files``: relative path -> content; files starting with ``#!`` are made 0755.
        ``make_current``: point ``current`` at this release (atomically).
        """
        files = files or {}
        for relative in files:
            if Path(relative).is_absolute() or ".." in Path(relative).parts:
                raise ValueError(f"files must be relative to the release: {relative!r}")
        release = self.release(release_id)
        release.mkdir(parents=True, exist_ok=False)
        if venv is not None:
            make_venv(release / venv)
        for relative, content in files.items():
            target = release / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            data = content.encode() if isinstance(content, str) else content
            target.write_bytes(data)
            if data.startswith(b"#!"):
                target.chmod(0o755)
        if revision is not None:
            (release / "REVISION").write_text(revision + "\n")
        env_path = release / ".env"
        if env is not None:
            _write_private(env_path, env)
        elif (self.shared / ".env").exists():
            env_path.symlink_to(os.path.join("..", "..", "shared", ".env"))
        if make_current:
            self.set_current(release_id)
        return release

    def set_current(self, release_id: str) -> None:
        """Point ``current`` at ``releases/<release_id>``, replacing it atomically."""
        temporary = self.root / f".current.{uuid.uuid4().hex}"
        temporary.symlink_to(os.path.join("releases", release_id))
        os.replace(temporary, self.current)


def make_app(
    base: Path,
    *,
    release_id: str = DEFAULT_RELEASE_ID,
    shared_env: str | None = DEFAULT_SHARED_ENV,
    env: str | None = None,
    revision: str | None = None,
    venv: str | None = ".venv",
    make_current: bool = True,
    files: Mapping[str, str | bytes] | None = None,
) -> AppTree:
    """Create ``base/app`` with ``shared/.env`` (0600; none if ``shared_env`` is None),
    ``shared/oneoff/`` and one release made by ``add_release`` with the other arguments."""
    root = base / "app"
    shared = root / "shared"
    tree = AppTree(root=root, shared=shared, state_dir=shared / "oneoff")
    tree.state_dir.mkdir(parents=True)
    tree.releases.mkdir()
    if shared_env is not None:
        _write_private(shared / ".env", shared_env)
    tree.add_release(
        release_id, env=env, revision=revision, venv=venv, make_current=make_current, files=files
    )
    return tree


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    path.chmod(0o600)

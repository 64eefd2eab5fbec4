"""Writing output files atomically, with the usual permissions.

Every file gdyn_jax writes (sweep results and checkpoints, reports, summaries, indexes,
figures) goes through :func:`write_atomic`: the content is written to a temporary file in the
same directory, flushed to disk, and renamed over the target with ``os.replace``, so a reader
(or a run killed halfway) sees the old file or the new one, never a part. The temporary file
is created with mode ``0o666`` filtered by the process umask, as ``open(path, 'w')`` would
create it (``0644`` under the usual umask ``022``), not ``tempfile``'s private ``0600``.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

__all__ = [
    "check_output_directory",
    "folder_path",
    "output_directory",
    "save_figure",
    "write_atomic",
    "write_bytes",
    "write_text",
]


def folder_path(path: str | os.PathLike, argument: str = "out") -> Path:
    """``path`` as a ``Path``; an empty name (``Path('')`` is the working directory) refused."""
    if not os.fspath(path).strip():
        raise ValueError(f"{argument}: expected a folder to write into, got {os.fspath(path)!r}")
    return Path(path)


def check_output_directory(path: str | os.PathLike, argument: str = "out") -> Path:
    """``path`` as a folder ``output_directory`` could create and write in, checked without
    creating anything: not a file, and its nearest existing ancestor a directory this process
    can write in (a one-line ``ValueError`` naming ``argument`` otherwise)."""
    directory = folder_path(path, argument)
    if directory.exists() and not directory.is_dir():
        raise ValueError(f"{argument}: {path} exists and is not a directory")
    ancestor = directory.absolute()
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise ValueError(f"{argument}: cannot create {path} ({ancestor} is not a directory)")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise ValueError(f"{argument}: cannot write in {ancestor} (permission denied)")
    return directory


def output_directory(path: str | os.PathLike, argument: str = "out") -> Path:
    """``path`` as a directory (created with its parents) that this process can write in.

    A one-line ``ValueError`` naming ``argument`` otherwise (a file in the way, a missing
    permission, an empty name, which would mean the working directory), before any work is done.
    """
    directory = check_output_directory(path, argument)
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ValueError(f"{argument}: cannot create {path} ({error.strerror or error})") from None
    if not os.access(directory, os.W_OK | os.X_OK):
        raise ValueError(f"{argument}: cannot write in {path} (permission denied)")
    return directory


def write_atomic(path: str | os.PathLike, write: Callable[[BinaryIO], None]) -> Path:
    """Calls ``write(file)`` on a temporary file beside ``path``, then renames it to ``path``.

    The parent directory must exist. Returns ``path``. On any error (or interruption) the
    temporary file is removed and ``path`` is left as it was.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # umask applies
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _sync_directory(path.parent)
    return path


def _sync_directory(directory: Path) -> None:
    """Flushes a rename to disk (POSIX); a no-op where directories cannot be opened."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Writes ``data`` to ``path`` atomically (see :func:`write_atomic`)."""
    return write_atomic(path, lambda f: f.write(data))


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Writes ``text`` (UTF-8) to ``path`` atomically (see :func:`write_atomic`)."""
    return write_bytes(path, text.encode("utf-8"))


def save_figure(fig, path: str | os.PathLike, **savefig_kwargs) -> Path:
    """``fig.savefig(path)`` atomically, in the format named by ``path``'s suffix."""
    path = Path(path)
    fmt = path.suffix.lstrip(".").lower() or None
    return write_atomic(path, lambda f: fig.savefig(f, format=fmt, **savefig_kwargs))

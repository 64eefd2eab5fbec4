"""An output directory owned by one sweep at a time: a lock, and what to do with what is there.

``prepare(out)`` checks that ``out`` is (or can be created as) a directory this process can
write in, before anything is loaded or compiled. ``Lock.acquire(directory)`` takes
``DIR/sweep.lock``, a file holding the owner's pid, host and start time, locked with
``flock`` for as long as the sweep runs: the kernel (or the NFS lock manager) releases it
when the owner dies, so a lock left by a killed sweep is stale by construction and is taken
over (and said so); a lock held by a live sweep stops a second writer with a one-line
error. On a filesystem without ``flock``, the pid decides: a lock of a dead process on this
host is stale, any other is refused (delete the file by hand if its owner is gone).

``decide(out, identity, layout, resume, overwrite)`` looks at the directory (with the lock
held) and returns what the sweep does:

=========================================  ==========================================
the directory holds                        the sweep
=========================================  ==========================================
nothing of a sweep                         starts (``resume=True``: refused)
results of this sweep                      returns them (``resume=False``: refused)
a checkpoint of this sweep, cut the same   resumes from it (``resume=False``: refused)
results or a checkpoint of another sweep   is refused, unless ``overwrite``
a damaged or edited checkpoint or results  is refused (naming the file and the field)
=========================================  ==========================================

"This sweep" means the same identity (``results.identity``: config record, grid, seeds,
member group width, platform, library versions). ``overwrite=True`` deletes the results and
the checkpoint (only those) and starts afresh. So re-running the command of an interrupted
sweep resumes it: a job scheduler that requeues a preempted job continues where it stopped.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import json
import os
import socket
import sys
from pathlib import Path
from typing import Any

from gdyn_jax import extras, files
from gdyn_jax.sweep import checkpoint
from gdyn_jax.sweep import results as results_lib

LOCK_FILE = "sweep.lock"

__all__ = [
    "LOCK_FILE",
    "Decision",
    "Lock",
    "decide",
    "describe_owner",
    "prepare",
    "read_checked",
    "remove_checkpoint",
]


def prepare(out: str | Path) -> Path:
    """``out`` as a directory (created with its parents) that this process can write in."""
    return files.output_directory(out, "out")


# ---------------------------------------------------------------------------------------------
# The lock
# ---------------------------------------------------------------------------------------------


def _owner_record() -> bytes:
    record = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "command": " ".join(sys.argv)[:300],
    }
    return json.dumps(record).encode()


def _read_owner(fd: int) -> dict[str, Any] | None:
    try:
        record = json.loads(os.pread(fd, 4096, 0).decode())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return record if isinstance(record, dict) else None


def describe_owner(owner: dict[str, Any] | None) -> str:
    if owner is None:
        return "owner unknown"
    return f"pid {owner.get('pid')} on {owner.get('host')}, since {owner.get('started')}"


def _flock(fd: int) -> bool | None:
    """Takes an exclusive ``flock``: True if taken, False if another holds it, None if the
    filesystem does not support it."""
    try:
        fcntl = extras.fcntl
    except ImportError:  # not POSIX
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    except OSError:
        return None
    return True


def _alive_here(owner: dict[str, Any]) -> bool:
    """Whether ``owner`` may still run: True unless it is a dead process on this host."""
    pid = owner.get("pid")
    if owner.get("host") != socket.gethostname() or not isinstance(pid, int) or pid <= 0:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def _same_file(fd: int, path: Path) -> bool:
    try:
        return os.fstat(fd).st_ino == os.stat(path).st_ino
    except FileNotFoundError:
        return False


@dataclasses.dataclass
class Lock:
    """``DIR/sweep.lock``, held from :meth:`acquire` to :meth:`release`.

    ``stale``: the record of a previous owner whose lock was taken over (None if none).
    """

    path: Path
    fd: int
    stale: dict[str, Any] | None

    @classmethod
    def acquire(cls, directory: Path) -> Lock:
        """Takes the lock of ``directory``; a one-line ``ValueError`` if a live sweep has it."""
        path = directory / LOCK_FILE
        for _ in range(5):
            try:
                fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
            except OSError as error:
                raise ValueError(f"out: cannot write in {directory} ({error.strerror})") from None
            try:
                lock = cls._take(path, fd)
            except BaseException:
                os.close(fd)
                raise
            if lock is not None:
                return lock
            os.close(fd)  # the file was replaced under us: try again on the new one
        raise ValueError(f"out: cannot lock {path}: it keeps being replaced")

    @classmethod
    def _take(cls, path: Path, fd: int) -> Lock | None:
        taken = _flock(fd)
        owner = _read_owner(fd)
        if taken is False or (taken is None and owner is not None and _alive_here(owner)):
            hint = "" if taken is False else f"; if it is not running, delete {path}"
            raise ValueError(
                f"out: {path.parent} is in use by another sweep ({describe_owner(owner)}){hint}; "
                "wait for it to finish or choose another --out"
            )
        if not _same_file(fd, path):
            return None
        os.ftruncate(fd, 0)
        os.pwrite(fd, _owner_record(), 0)
        os.fsync(fd)
        return cls(path, fd, owner)

    def release(self) -> None:
        """Deletes the lock file (if it is still this lock's) and releases it."""
        if self.fd < 0:
            return
        if _same_file(self.fd, self.path):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)
        os.close(self.fd)
        self.fd = -1

    def __enter__(self) -> Lock:
        return self

    def __exit__(self, *exc) -> None:
        self.release()


# ---------------------------------------------------------------------------------------------
# What the directory holds, and what the sweep does with it
# ---------------------------------------------------------------------------------------------


@dataclasses.dataclass
class Decision:
    """``action``: ``'start'``, ``'resume'`` (from ``checkpoint``) or ``'finished'``
    (``results``, the saved Dataset); ``notes``: what was found, for the user."""

    action: str
    checkpoint: checkpoint.Checkpoint | None = None
    results: Any = None
    notes: list[str] = dataclasses.field(default_factory=list)


def _remove_temporaries(directory: Path) -> None:
    """Half-written files of a killed writer (this process holds the lock: no live one)."""
    for folder in (directory, directory / checkpoint.DIRECTORY):
        for tmp in folder.glob(".*.tmp") if folder.is_dir() else ():
            with contextlib.suppress(OSError):
                tmp.unlink()


def _discard(directory: Path) -> list[str]:
    """Deletes the results and the checkpoint in ``directory`` (nothing else)."""
    gone = []
    results = directory / results_lib.RESULTS_FILE
    if results.exists():
        results.unlink()
        gone.append(str(results))
    state = checkpoint.path(directory)
    if state.exists():
        state.unlink()
        gone.append(str(state))
    with contextlib.suppress(OSError):
        state.parent.rmdir()
    return gone


def read_checked(what: str, read, *args):
    """``read(*args)``, its one-line error prefixed with ``out:`` and the way out."""
    try:
        return read(*args)
    except ValueError as error:
        raise ValueError(
            f"out: {error}; this {what} cannot be used: choose another --out, or --overwrite "
            "to discard it"
        ) from None


def decide(
    out: Path,
    identity: dict[str, Any],
    layout: dict[str, int],
    resume: bool | None,
    overwrite: bool,
) -> Decision:
    """What a sweep of ``identity`` cut as ``layout`` does with ``out`` (see the module doc).

    Call it with the lock held. ``resume``: None (resume or return finished results if
    there are some of this sweep, else start), True (there must be some), False (there
    must be none).
    """
    _remove_temporaries(out)
    notes = []
    if overwrite:
        notes += [f"overwrote {name}" for name in _discard(out)]
    results_file = out / results_lib.RESULTS_FILE
    if results_file.exists():
        ds = read_checked("results file", results_lib.load_results, out)
        recorded = results_lib.identity_of(ds.attrs)
        diff = "records no sweep identity" if recorded is None else None
        diff = diff or results_lib.difference(recorded, identity)
        if diff:
            raise ValueError(
                f"out: {results_file} holds the results of another sweep ({diff}); choose "
                "another --out, or --overwrite to replace them"
            )
        if resume is False:
            raise ValueError(
                f"resume: {out} holds this sweep's finished results; load them with "
                "load_results, or pass overwrite=True to train again"
            )
        remove_checkpoint(out)
        return Decision(
            "finished",
            results=ds,
            notes=[f"{results_file} holds this sweep's results: nothing to train"],
        )
    state = checkpoint.path(out)
    if state.exists():
        ckpt = read_checked("checkpoint", checkpoint.read, state)
        diff = results_lib.difference(ckpt.identity, identity)
        if diff:
            raise ValueError(
                f"out: {state} is a checkpoint of another sweep ({diff}); choose another "
                "--out, or --overwrite to discard it"
            )
        read_checked("checkpoint", checkpoint.check_sweep, ckpt, identity, layout)
        if resume is False:
            raise ValueError(
                f"resume: {out} holds a checkpoint of this sweep; resume it (resume=None or "
                "True), or pass overwrite=True to start over"
            )
        return Decision("resume", checkpoint=ckpt, notes=notes)
    if resume:
        raise ValueError(f"resume: {out} holds no checkpoint or results of this sweep")
    return Decision("start", notes=notes)


def remove_checkpoint(out: Path) -> None:
    """Deletes the checkpoint of a finished sweep (and a leftover one: a sweep killed between
    writing its results and deleting its checkpoint left both)."""
    state = checkpoint.path(out)
    with contextlib.suppress(OSError):
        state.unlink()
        state.parent.rmdir()

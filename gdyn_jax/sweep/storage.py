"""Checked array files: an ``.npz`` with a JSON header, a SHA-256 per array, never pickled.

A file holds named numeric arrays and a header ``{"kind", "format", "meta", "arrays"}``:
``kind`` says what the file is (sweep results, a checkpoint), ``meta`` is the writer's JSON
record, and ``arrays`` gives every array's shape, dtype and SHA-256. The header is stored as
UTF-8 bytes (``__header__``) beside its own SHA-256 (``__header_sha256__``). Nothing beyond
numpy is needed to read a file (``np.load(path)`` works; no array holds Python objects).

:func:`read` checks everything before returning: the file is a readable zip archive, every
member an ``.npy`` of numbers, the header intact and of the expected kind and format, every
array present with its recorded shape, dtype and checksum, and nothing extra. Any problem is
a one-line ``ValueError`` naming the file and the field; no message ever suggests loading
the file another way.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from gdyn_jax import files

HEADER = "__header__"
HEADER_SHA256 = "__header_sha256__"
FORMAT = 1

__all__ = ["FORMAT", "read", "write"]


def _sha256(x: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(x).tobytes()).hexdigest()


def _entry(x: np.ndarray) -> dict[str, Any]:
    return {"shape": list(x.shape), "dtype": x.dtype.str, "sha256": _sha256(x)}


def _bytes_array(text: str) -> np.ndarray:
    return np.frombuffer(text.encode("utf-8"), np.uint8)


def write(path: str | Path, kind: str, meta: Mapping[str, Any], arrays: Mapping[str, Any]) -> Path:
    """Writes ``arrays`` (name -> numeric array) and ``meta`` (JSON-able) atomically."""
    arrays = {name: np.asarray(x) for name, x in arrays.items()}
    for name, x in arrays.items():
        if x.dtype.hasobject or x.dtype.kind not in "biufc":
            raise ValueError(f"{name}: cannot store an array of dtype {x.dtype}")
    header = {
        "kind": kind,
        "format": FORMAT,
        "meta": dict(meta),
        "arrays": {name: _entry(x) for name, x in arrays.items()},
    }
    text = json.dumps(header, sort_keys=True)
    members = dict(arrays)
    members[HEADER] = _bytes_array(text)
    members[HEADER_SHA256] = _bytes_array(hashlib.sha256(text.encode("utf-8")).hexdigest())
    return files.write_atomic(path, lambda f: np.savez(f, **members))


class _BadNpy(Exception):
    """An .npy member whose magic string or header numpy cannot parse."""


def _npy_header(f) -> tuple[tuple[int, ...], bool, np.dtype]:
    """(shape, fortran order, dtype) of an .npy stream (versions 1.0 and 2.0)."""
    try:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            return np.lib.format.read_array_header_1_0(f)
        if version == (2, 0):
            return np.lib.format.read_array_header_2_0(f)
    except ValueError:
        raise _BadNpy from None
    raise _BadNpy


class _Reader:
    """Reads and checks the members of one file; every error names ``path``."""

    def __init__(self, path: Path, archive: zipfile.ZipFile) -> None:
        self.path, self.archive = path, archive

    def fail(self, field: str, problem: str) -> ValueError:
        return ValueError(f"{self.path}: {field}: {problem}")

    def array(self, name: str) -> np.ndarray:
        try:
            with self.archive.open(f"{name}.npy") as f:
                shape, fortran, dtype = _npy_header(f)
                if dtype.hasobject:
                    raise self.fail(name, "holds Python objects, not numbers")
                count = int(np.prod(shape, dtype=np.int64))
                data = f.read(count * dtype.itemsize)
        except KeyError:
            raise self.fail(name, "missing") from None
        except _BadNpy:
            raise self.fail(name, "not a valid .npy array") from None
        except (zipfile.BadZipFile, OSError, EOFError) as error:
            raise self.fail(name, f"unreadable ({type(error).__name__})") from None
        if len(data) != count * dtype.itemsize:
            raise self.fail(name, "truncated")
        return np.frombuffer(data, dtype).reshape(shape, order="F" if fortran else "C")

    def header(self, kind: str) -> dict[str, Any]:
        raw = self.array(HEADER)
        digest = self.array(HEADER_SHA256)
        if raw.dtype != np.uint8 or raw.ndim != 1 or digest.dtype != np.uint8:
            raise self.fail("header", "not a gdyn_jax header")
        text = raw.tobytes()
        if hashlib.sha256(text).hexdigest().encode() != digest.tobytes():
            raise self.fail("header", "checksum mismatch (the header was edited or corrupted)")
        try:
            header = json.loads(text.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise self.fail("header", "not valid JSON") from None
        if not isinstance(header, dict) or header.get("kind") != kind:
            found = header.get("kind") if isinstance(header, dict) else None
            raise self.fail("kind", f"expected {kind!r}, found {found!r}")
        if header.get("format") != FORMAT:
            raise self.fail("format", f"expected format {FORMAT}, found {header.get('format')!r}")
        if not isinstance(header.get("meta"), dict) or not isinstance(header.get("arrays"), dict):
            raise self.fail("header", "meta or arrays missing")
        return header

    def checked(self, name: str, entry: Any) -> np.ndarray:
        if not isinstance(entry, dict) or not {"shape", "dtype", "sha256"} <= set(entry):
            raise self.fail(f"arrays.{name}", "malformed entry")
        x = self.array(name)
        if list(x.shape) != entry["shape"]:
            raise self.fail(
                name, f"shape {list(x.shape)} differs from the header's {entry['shape']}"
            )
        if x.dtype.str != entry["dtype"]:
            raise self.fail(name, f"dtype {x.dtype.str} differs from the header's {entry['dtype']}")
        if _sha256(x) != entry["sha256"]:
            raise self.fail(name, "checksum mismatch (the file is corrupted)")
        return x


def read(path: str | Path, kind: str) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """(meta, arrays) of a file written by :func:`write` with this ``kind``, all checked."""
    path = Path(path)
    what = kind.split()[-1]
    if path.is_dir():
        raise ValueError(f"{path}: is a directory, expected a {what} file")
    try:
        archive = zipfile.ZipFile(path)
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such {what} file") from None
    except PermissionError as error:
        raise ValueError(f"{path}: cannot read ({error.strerror})") from None
    except (zipfile.BadZipFile, EOFError, OSError, ValueError):
        raise ValueError(
            f"{path}: not a gdyn_jax {what} file (not a zip archive: empty, truncated or "
            "another format)"
        ) from None
    with archive:
        reader = _Reader(path, archive)
        header = reader.header(kind)
        entries = header["arrays"]
        present = {n[: -len(".npy")] for n in archive.namelist() if n.endswith(".npy")}
        extra = sorted(present - set(entries) - {HEADER, HEADER_SHA256})
        if extra or len(present) != len(archive.namelist()):
            name = (
                extra[0] if extra else next(n for n in archive.namelist() if not n.endswith(".npy"))
            )
            raise reader.fail(name, "not listed in the header")
        arrays = {name: reader.checked(name, entry) for name, entry in entries.items()}
    return header["meta"], arrays

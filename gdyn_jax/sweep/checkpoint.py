"""The checkpoint of a running sweep, ``DIR/checkpoint/state.npz``, checked on load.

After every block the sweep writes the whole ``TrainState`` of the chunk being trained (its
leaves in ``jax.tree.leaves`` order) and the metric buffers of the sweep so far, as a checked
array file (``storage``: a SHA-256 per array and for the header), atomically. The header
records:

- ``identity``: the sweep's identity (``results.identity``: config record, grid, seeds,
  member group width, platform, library versions); a checkpoint of another sweep is never
  resumed;
- ``layout``: members per chunk, number of chunks, evaluation intervals per block, number of
  blocks: how the sweep is cut (a resumed run must cut it the same way);
- ``position``: the chunk being trained and the blocks of it done, in
  ``[0, num_chunks) x [1, num_blocks]``;
- ``leaves``: the shape and dtype of every state leaf; ``buffers``: those of every buffer.

:func:`check` compares all of it with what the resuming run expects; any mismatch is a
one-line ``ValueError`` naming the file and the field.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from gdyn_jax.sweep import storage
from gdyn_jax.sweep.results import difference

DIRECTORY = "checkpoint"
FILE = "state.npz"
KIND = "gdyn sweep checkpoint"
_LEAF = "leaf/{:05d}"
_BUFFER = "buffer/"

__all__ = ["Checkpoint", "check", "check_sweep", "path", "read", "write"]


def path(out: str | Path) -> Path:
    """Where the checkpoint of a sweep writing to ``out`` lives."""
    return Path(out) / DIRECTORY / FILE


@dataclasses.dataclass(frozen=True)
class Checkpoint:
    """A checkpoint as read (and checked as a file) by :func:`read`."""

    path: Path
    identity: dict[str, Any]
    layout: dict[str, int]
    chunk: int
    block: int
    leaves: list[np.ndarray]
    buffers: dict[str, np.ndarray]


def _spec(x: Any) -> list[Any]:
    return [list(np.shape(x)), np.dtype(x.dtype).str]


def write(
    file: Path,
    identity: Mapping[str, Any],
    layout: Mapping[str, int],
    position: tuple[int, int],
    leaves: Sequence[np.ndarray],
    buffers: Mapping[str, np.ndarray],
) -> None:
    """Writes a checkpoint atomically (creating its directory)."""
    file.parent.mkdir(parents=True, exist_ok=True)
    arrays = {_LEAF.format(i): np.asarray(x) for i, x in enumerate(leaves)}
    arrays.update({_BUFFER + k: np.asarray(v) for k, v in buffers.items()})
    meta = {
        "identity": dict(identity),
        "layout": dict(layout),
        "position": {"chunk": int(position[0]), "block": int(position[1])},
        "leaves": [_spec(x) for x in leaves],
        "buffers": {k: _spec(v) for k, v in buffers.items()},
    }
    storage.write(file, KIND, meta, arrays)


def _int_field(file: Path, meta: Mapping[str, Any], group: str, name: str) -> int:
    value = meta.get(group, {}).get(name) if isinstance(meta.get(group), dict) else None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{file}: {group}.{name}: expected an integer, found {value!r}")
    return value


def read(file: Path) -> Checkpoint:
    """The checkpoint at ``file``, checked as a file (checksums, header, array list)."""
    meta, arrays = storage.read(file, KIND)
    for group in ("identity", "layout", "position", "buffers"):
        if not isinstance(meta.get(group), dict):
            raise ValueError(f"{file}: {group}: missing from the header")
    if not isinstance(meta.get("leaves"), list):
        raise ValueError(f"{file}: leaves: missing from the header")
    layout = {k: _int_field(file, meta, "layout", k) for k in sorted(meta["layout"])}
    num = len(meta["leaves"])
    try:
        leaves = [arrays[_LEAF.format(i)] for i in range(num)]
    except KeyError as missing:
        raise ValueError(f"{file}: {missing.args[0]}: missing") from None
    buffers = {k[len(_BUFFER) :]: v for k, v in arrays.items() if k.startswith(_BUFFER)}
    listed = {_LEAF.format(i) for i in range(num)} | {_BUFFER + k for k in buffers}
    extra = sorted(set(arrays) - listed)
    if extra:
        raise ValueError(f"{file}: {extra[0]}: not a leaf or buffer of the header")
    return Checkpoint(
        path=file,
        identity=meta["identity"],
        layout=layout,
        chunk=_int_field(file, meta, "position", "chunk"),
        block=_int_field(file, meta, "position", "block"),
        leaves=leaves,
        buffers=buffers,
    )


def check_sweep(ckpt: Checkpoint, identity: Mapping[str, Any], layout: Mapping[str, int]):
    """The checkpoint belongs to this sweep, cut this way, at a position inside it."""
    file = ckpt.path
    diff = difference(ckpt.identity, dict(identity))
    if diff:
        raise ValueError(f"{file}: identity.{diff}")
    for key in sorted(set(layout) | set(ckpt.layout)):
        if ckpt.layout.get(key) != layout.get(key):
            raise ValueError(
                f"{file}: layout.{key}: {ckpt.layout.get(key)} in the checkpoint, "
                f"{layout.get(key)} in this run (another chunk size, checkpoint interval or "
                "device count)"
            )
    if not 0 <= ckpt.chunk < layout["num_chunks"]:
        raise ValueError(
            f"{file}: position.chunk: {ckpt.chunk} is outside [0, {layout['num_chunks'] - 1}]"
        )
    if not 1 <= ckpt.block <= layout["num_blocks"]:
        raise ValueError(
            f"{file}: position.block: {ckpt.block} is outside [1, {layout['num_blocks']}]"
        )


def check(
    ckpt: Checkpoint,
    leaf_specs: Sequence[Any],
    buffer_specs: Mapping[str, Any],
) -> None:
    """The state leaves and buffers have the shapes and dtypes this run expects.

    ``leaf_specs``/``buffer_specs``: anything with ``shape`` and ``dtype`` (e.g. the
    ``jax.ShapeDtypeStruct``\\ s of ``jax.eval_shape`` of the chunk's initial state).
    """
    file = ckpt.path
    if len(ckpt.leaves) != len(leaf_specs):
        raise ValueError(
            f"{file}: leaves: {len(ckpt.leaves)} state leaves, this run has {len(leaf_specs)}"
        )
    pairs = [
        (_LEAF.format(i), x, s)
        for i, (x, s) in enumerate(zip(ckpt.leaves, leaf_specs, strict=True))
    ]
    if set(ckpt.buffers) != set(buffer_specs):
        raise ValueError(
            f"{file}: buffers: {sorted(ckpt.buffers)} in the checkpoint, "
            f"{sorted(buffer_specs)} in this run"
        )
    pairs += [(_BUFFER + k, ckpt.buffers[k], s) for k, s in buffer_specs.items()]
    for name, x, spec in pairs:
        if _spec(x) != _spec(spec):
            raise ValueError(
                f"{file}: {name}: {x.dtype} {list(x.shape)} in the checkpoint, "
                f"{np.dtype(spec.dtype)} {list(spec.shape)} in this run"
            )

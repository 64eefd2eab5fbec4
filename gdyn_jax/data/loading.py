r"""Load a whole dataset split into memory through tfds' ``data_source`` (array_record).

TensorFlow is never imported: reading goes through ``tfds.data_source`` and the array_record
random-access format, and the only dataset gdyn_jax prepares itself (MNIST-1D) is generated
offline by ``gdyn_jax.data.mnist1d_builder``.

Normalisation (what ``load`` returns):

- images (``mnist``, ``fashion_mnist``, ``cifar10``): uint8 pixels ``p`` become
  :math:`x = p / 255 \in [0, 1]` as float32, each image flattened in (H, W, C) order, so
  ``x.reshape(-1, H, W, C)`` gives the images back;
- ``mnist1d``: the float values ``mnist1d.make_dataset`` generates (it centres the whole set
  and scales it to unit standard deviation), as float32;
- labels: int32 class indices.

Network policy: catalogue datasets are read only when already prepared in the data dir; a
download is attempted only when the caller passes ``download=True``. Offline and unprepared,
``load`` fails at once with a ``FileNotFoundError`` that names the data dir and how to prepare
the data.
"""

from __future__ import annotations

import contextlib
import io
import logging
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from gdyn_jax import extras
from gdyn_jax.data import mnist1d_builder
from gdyn_jax.data.catalogue import check_name, default_data_dir, info

_READ_CHUNK = 10_000  # examples per __getitems__ call


def load(
    name: str = "mnist1d",
    split: str = "train",
    data_dir: str | Path | None = None,
    *,
    download: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Load split ``split`` of dataset ``name`` whole, as numpy arrays.

    Args:
      name: one of :func:`gdyn_jax.data.names` (default ``'mnist1d'``).
      split: a tfds split, ``'train'`` or ``'test'`` (tfds slices such as ``'train[:1000]'``
        work too).
      data_dir: where prepared datasets live; default :func:`default_data_dir`.
      download: allow tfds to download and prepare a catalogue dataset that is not prepared
        yet (needs network access, and TensorFlow for the image datasets). MNIST-1D is always
        generated locally on first use, whatever this flag says.

    Returns:
      ``(x, y)``: ``x`` float32 of shape (N, features), flattened and normalised as described
      in this module's docstring; ``y`` int32 of shape (N,).

    Raises:
      ValueError: unknown ``name`` or a ``split`` that is not a string.
      FileNotFoundError: a catalogue dataset that is not prepared in ``data_dir`` while
        ``download`` is False (the message names the directory and the command to prepare it).
    """
    check_name(name)
    if not isinstance(split, str) or not split:
        raise ValueError(f"split: expected a tfds split name such as 'train', got {split!r}")
    data_dir = Path(data_dir).expanduser() if data_dir is not None else default_data_dir()
    source = _data_source(name, split, data_dir, download)
    return _to_arrays(name, source)


def _data_source(name: str, split: str, data_dir: Path, download: bool) -> Sequence[Any]:
    if name == "mnist1d":
        prepare_mnist1d(data_dir)
    kwargs: dict[str, Any] = dict(split=split, data_dir=str(data_dir), try_gcs=False)
    if download and name != "mnist1d":
        kwargs.update(
            download=True,
            builder_kwargs={"file_format": "array_record"},
            download_and_prepare_kwargs={"file_format": "array_record"},
        )
    else:
        kwargs["download"] = False
    # `download` is decided above, before tfds runs: with download=False tfds only reads the
    # disk, and an unprepared dataset fails in milliseconds; its error is then replaced by
    # ours after a look at data_dir. (Checking `is_prepared()` first would reject
    # tfds.testing.mock_data's builders, which are never prepared.)
    try:
        return extras.tfds.data_source(name, **kwargs)
    except Exception as err:  # tfds raises several types here; diagnose from the disk
        if not download and not _prepared_dirs(name, data_dir):
            raise FileNotFoundError(_not_prepared_message(name, split, data_dir)) from err
        if isinstance(err, NotImplementedError):  # prepared, but not random-access
            raise FileNotFoundError(
                f"data_dir: {name} in {data_dir} is prepared in a format without random "
                f"access; prepare it again with --file_format=array_record "
                f"({_prepare_command(name, data_dir)}). Original error: {err}"
            ) from err
        if isinstance(err, ValueError) and "split" in str(err).lower():
            raise ValueError(f"split: {err}") from err
        raise


def _prepared_dirs(name: str, data_dir: Path) -> list[Path]:
    """Version directories of ``name`` under ``data_dir`` that hold a dataset_info.json."""
    return sorted(p.parent for p in (data_dir / name).glob("*/dataset_info.json"))


def _prepare_command(name: str, data_dir: Path) -> str:
    return (
        f"`tfds build {name} --data_dir={data_dir} --file_format=array_record` or "
        f"`python -m tensorflow_datasets.scripts.download_and_prepare --datasets={name} "
        f"--data_dir={data_dir} --file_format=array_record`"
    )


def _not_prepared_message(name: str, split: str, data_dir: Path) -> str:
    return (
        f"data_dir: dataset {name!r} (split {split!r}) is not prepared in {data_dir} "
        f"(searched {data_dir / name}); gdyn_jax does not download unless asked. "
        f"Prepare it once on a machine with network access: {_prepare_command(name, data_dir)} "
        f"(preparing tfds catalogue image datasets may need TensorFlow: pip install "
        f"tensorflow), or call gdyn_jax.data.load({name!r}, {split!r}, download=True); "
        f"or point $GDYN_DATA_DIR / data_dir at a directory where it is prepared."
    )


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """An exclusive advisory lock on ``path`` (no-op where ``fcntl`` is missing)."""
    try:
        fcntl = extras.fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def prepare_mnist1d(data_dir: str | Path | None = None) -> Path:
    """Generate and write MNIST-1D into ``data_dir`` unless it is there already.

    Offline: the data come from ``mnist1d.make_dataset`` (see
    ``gdyn_jax.data.mnist1d_builder``). A file lock makes concurrent first uses (several
    processes, pytest-xdist) prepare it once. Returns the prepared version directory.
    """
    data_dir = Path(data_dir).expanduser() if data_dir is not None else default_data_dir()
    with _quiet_tfds():
        builder = mnist1d_builder.Mnist1d(data_dir=str(data_dir), file_format="array_record")
        prepared = builder.is_prepared()
    if not prepared:
        with _file_lock(data_dir / ".mnist1d.lock"):
            with _quiet_tfds():
                builder = mnist1d_builder.Mnist1d(
                    data_dir=str(data_dir), file_format="array_record"
                )
                prepared = builder.is_prepared()
            if not prepared:
                print(f"gdyn_jax: generating MNIST-1D offline into {data_dir}", file=sys.stderr)
                with _quiet_tfds():
                    builder.download_and_prepare(file_format="array_record")
    return Path(str(builder.data_dir))


@contextlib.contextmanager
def _quiet_tfds() -> Iterator[None]:
    """Silences tfds while it writes MNIST-1D: its "Downloading and preparing" banner (nothing
    is downloaded), its progress bars and absl's warnings about the fresh folder."""
    absl = logging.getLogger("absl")
    level = absl.level
    absl.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            yield
    finally:
        absl.setLevel(level)


def _read_all(source: Sequence[Any]) -> list[dict[str, Any]]:
    """All examples of a tfds data source, read in batches with ``__getitems__``."""
    n = len(source)
    examples: list[dict[str, Any]] = []
    for start in range(0, n, _READ_CHUNK):
        keys = list(range(start, min(n, start + _READ_CHUNK)))
        try:
            examples.extend(source.__getitems__(keys))
        except TypeError:
            # tfds.testing.mock_data's __getitems__ mock is not bound to its data source
            # (tfds 4.9.10); read one by one there.
            examples.extend(source[k] for k in keys)
    return examples


def _to_arrays(name: str, source: Sequence[Any]) -> tuple[np.ndarray, np.ndarray]:
    examples = _read_all(source)
    features = info(name)["features"]
    if name == "mnist1d":
        x = np.stack([np.asarray(e["x"], np.float32) for e in examples]) if examples else None
        y = np.asarray([e["y"] for e in examples], np.int32)
    else:
        x = np.stack([np.asarray(e["image"]) for e in examples]) if examples else None
        y = np.asarray([e["label"] for e in examples], np.int32)
        if x is not None:
            x = x.astype(np.float32) / np.float32(255.0)
    if x is None:
        x = np.zeros((0, features), np.float32)
    x = x.reshape(len(examples), features)
    return np.ascontiguousarray(x, np.float32), y

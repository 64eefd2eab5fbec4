"""gdyn_jax.data: MNIST-1D equals mnist1d.make_dataset, catalogue datasets under
tfds.testing.mock_data, the offline error path, no TensorFlow."""

from __future__ import annotations

import socket
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow_datasets as tfds

from gdyn_jax import data


@pytest.fixture(scope="module")
def reference_mnist1d() -> dict[str, np.ndarray]:
    """The oracle: the mnist1d package's own make_dataset with its default arguments."""
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    assert (args.num_samples, args.train_split, args.final_seq_length, args.seed) == (
        5000,
        0.8,
        40,
        42,
    )
    state = np.random.get_state()  # noqa: NPY002
    try:
        return make_dataset(args)
    finally:
        np.random.set_state(state)  # noqa: NPY002


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any attempt to open a network connection fails the test loudly."""

    def refuse(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)


@pytest.mark.parametrize("split, key", [("train", "x"), ("test", "x_test")])
def test_mnist1d_equals_make_dataset(mnist1d_data_dir, reference_mnist1d, no_network, split, key):
    x, y = data.load("mnist1d", split, mnist1d_data_dir)
    ref_x, ref_y = reference_mnist1d[key], reference_mnist1d[key.replace("x", "y")]
    assert x.dtype == np.float32 and y.dtype == np.int32
    assert x.shape == (len(ref_y), 40) == (data.info("mnist1d")[f"num_{split}"], 40)
    np.testing.assert_array_equal(x, ref_x.astype(np.float32))  # same values, same order
    np.testing.assert_array_equal(y, ref_y)


def test_default_dataset_and_data_dir(mnist1d_data_dir, monkeypatch, tmp_path):
    assert data.DEFAULT_DATASET == "mnist1d" == data.names()[0]
    assert data.default_data_dir() == mnist1d_data_dir  # conftest's $GDYN_DATA_DIR
    x, y = data.load()  # mnist1d train from the default data dir, nothing regenerated
    assert x.shape == (4000, 40) and y.shape == (4000,)
    monkeypatch.delenv("GDYN_DATA_DIR")
    monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path))
    assert data.default_data_dir() == tmp_path
    monkeypatch.delenv("TFDS_DATA_DIR")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert data.default_data_dir() == tmp_path / "home" / "tensorflow_datasets"


def test_make_dataset_global_rng_is_restored(monkeypatch):
    import random

    import mnist1d.data

    from gdyn_jax.data.mnist1d_builder import generate

    def reseeding_make_dataset(args):  # stands in for make_dataset's set_seed(args.seed)
        np.random.seed(args.seed)  # noqa: NPY002
        random.seed(args.seed)
        return {"seed": args.seed}

    monkeypatch.setattr(mnist1d.data, "make_dataset", reseeding_make_dataset)
    np.random.seed(123)  # noqa: NPY002
    random.seed(123)
    before_np, before_py = np.random.get_state()[1].copy(), random.getstate()  # noqa: NPY002
    assert generate() == {"seed": 42}
    np.testing.assert_array_equal(np.random.get_state()[1], before_np)  # noqa: NPY002
    assert random.getstate() == before_py


@pytest.mark.parametrize("name", ["mnist", "fashion_mnist", "cifar10"])
def test_unprepared_catalogue_dataset_fails_at_once_offline(name, tmp_path, no_network):
    empty = tmp_path / "nothing_here"
    with pytest.raises(FileNotFoundError) as err:
        data.load(name, "train", data_dir=empty)
    message = str(err.value)
    assert message.startswith("data_dir:")
    assert str(empty) in message and f"tfds build {name}" in message
    assert "array_record" in message and "TensorFlow" in message


@pytest.mark.parametrize("name", ["mnist", "fashion_mnist", "cifar10"])
def test_catalogue_datasets_with_mock_data(name, tmp_path):
    shape = data.info(name)["input_shape"]
    with tfds.testing.mock_data(num_examples=6, policy=tfds.testing.MockPolicy.USE_CODE):
        x, y = data.load(name, "test", data_dir=tmp_path)
        raw = tfds.data_source(name, split="test", data_dir=str(tmp_path), download=False)
        images = np.stack([raw[i]["image"] for i in range(len(raw))])
        labels = np.array([raw[i]["label"] for i in range(len(raw))])
    assert images.dtype == np.uint8 and images.shape == (6, *shape)
    assert x.dtype == np.float32 and x.shape == (6, int(np.prod(shape)))
    assert y.dtype == np.int32 and y.shape == (6,)
    # documented normalisation: uint8 / 255, flattened in (H, W, C) order
    np.testing.assert_array_equal(x.reshape(6, *shape), images.astype(np.float32) / 255)
    np.testing.assert_array_equal(y, labels)
    assert 0.0 <= x.min() and x.max() <= 1.0


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match=r"^name: unknown dataset 'mnist2d'"):
        data.load("mnist2d", "train", tmp_path)
    with pytest.raises(ValueError, match=r"^split:"):
        data.load("mnist1d", None, tmp_path)


def test_unknown_split(mnist1d_data_dir):
    with pytest.raises(ValueError, match=r"^split: .*validation"):
        data.load("mnist1d", "validation", mnist1d_data_dir)
    with pytest.raises(ValueError, match=r"^name:"):
        data.info("svhn")


def test_info_matches_names():
    for name in data.names():
        entry = data.info(name)
        assert entry["num_classes"] == 10
        assert entry["features"] == int(np.prod(entry["input_shape"]))
    assert data.info("cifar10")["input_shape"] == (32, 32, 3)
    assert (data.info("mnist")["num_train"], data.info("mnist")["num_test"]) == (60000, 10000)


def test_prepared_files_are_array_record(mnist1d_data_dir: Path):
    files = sorted(p.name for p in (mnist1d_data_dir / "mnist1d").glob("*/*"))
    assert any(".array_record-" in f for f in files), files
    assert not any("tfrecord" in f for f in files), files


def test_tensorflow_never_imported(mnist1d_data_dir):
    data.load("mnist1d", "test", mnist1d_data_dir)
    assert "tensorflow" not in sys.modules


def test_first_use_says_it_generates_offline(tmp_path, no_network, capfd):
    """The first load of MNIST-1D announces an offline generation, never a download."""
    x, _ = data.load("mnist1d", "test", tmp_path)
    out, err = capfd.readouterr()
    assert x.shape == (1000, 40)
    assert f"gdyn_jax: generating MNIST-1D offline into {tmp_path}" in err
    assert "ownload" not in out + err and "WARNING" not in out + err
    data.load("mnist1d", "test", tmp_path)  # prepared: silent
    assert capfd.readouterr() == ("", "")

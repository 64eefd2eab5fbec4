"""symmetric_label_noise against numpy counts: exactly round(pN) labels change, each to another
class, the new classes uniform over the other C - 1, reproducible from the seed."""

from __future__ import annotations

import numpy as np
import pytest

from gdyn_jax.data import symmetric_label_noise


@pytest.mark.parametrize("fraction", [0.0, 0.2, 0.4, 1.0])
def test_exactly_the_fraction_changes_to_other_classes(fraction):
    labels = np.arange(4000, dtype=np.int32) % 10
    noisy, flipped = symmetric_label_noise(labels, fraction, 10, seed=3)
    assert noisy.dtype == labels.dtype and noisy.shape == labels.shape
    assert flipped.sum() == round(fraction * 4000)
    np.testing.assert_array_equal(noisy != labels, flipped)  # a flip never keeps the class
    assert np.all((noisy >= 0) & (noisy < 10))
    again, _ = symmetric_label_noise(labels, fraction, 10, seed=3)
    np.testing.assert_array_equal(noisy, again)


def test_new_classes_are_uniform_over_the_other_classes():
    labels = np.zeros(90_000, dtype=np.int64)  # all class 0: every flip lands on 1..9
    noisy, flipped = symmetric_label_noise(labels, 0.5, 10, seed=0)
    counts = np.bincount(noisy[flipped], minlength=10)
    assert counts[0] == 0
    expected = flipped.sum() / 9
    chi2 = np.sum((counts[1:] - expected) ** 2 / expected)
    assert chi2 < 27.9  # 99.9% quantile of chi-square with 8 degrees of freedom
    other, _ = symmetric_label_noise(labels, 0.5, 10, seed=1)
    assert np.any(other != noisy)


def test_bad_arguments():
    labels = np.array([0, 1, 2])
    with pytest.raises(ValueError, match=r"^fraction: expected a value in \[0, 1\]"):
        symmetric_label_noise(labels, 1.5, 3)
    with pytest.raises(ValueError, match="^num_classes: expected an integer >= 2"):
        symmetric_label_noise(labels, 0.1, 1)
    with pytest.raises(ValueError, match=r"^labels: expected values in \[0, 2\)"):
        symmetric_label_noise(labels, 0.1, 2)
    with pytest.raises(ValueError, match="^labels: expected a 1-D integer array"):
        symmetric_label_noise(labels.astype(float), 0.1, 3)

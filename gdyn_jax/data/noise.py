r"""Symmetric label noise: a seeded, exact fraction of the labels moved to another class.

The common benchmark corruption of noisy-label studies (e.g. Zhang, Bengio, Hardt, Recht,
Vinyals, "Understanding deep learning requires rethinking generalization", ICLR 2017; Patrini
et al., CVPR 2017): :math:`\lfloor pN \rceil` examples, chosen uniformly without replacement,
each get a label drawn uniformly from the :math:`C - 1` *other* classes. Exactly that many
labels are wrong (a draw over all :math:`C` classes would leave about :math:`pN/C` of them
right), and the corruption matrix is symmetric: :math:`P(\tilde y = j \mid y = i) = p/(C-1)`
for :math:`j \ne i`.
"""

from __future__ import annotations

import numpy as np

__all__ = ["symmetric_label_noise"]


def symmetric_label_noise(
    labels, fraction: float, num_classes: int, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """``labels`` with ``round(fraction * N)`` of them moved to a different, uniform class.

    Args:
      labels: integer class labels, shape ``(N,)``, in ``[0, num_classes)``.
      fraction: the fraction ``p`` in ``[0, 1]`` of labels to corrupt.
      num_classes: the number of classes ``C >= 2``.
      seed: seed of ``numpy.random.default_rng`` (the same seed gives the same labels).

    Returns:
      ``(noisy, flipped)``: the new labels (same dtype) and the boolean mask of the changed
      examples (exactly ``round(p N)`` True; ``noisy != labels`` exactly there).
    """
    y = np.asarray(labels)
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"labels: expected a 1-D integer array, got {y.dtype} {y.shape}")
    if isinstance(num_classes, bool) or int(num_classes) != num_classes or num_classes < 2:
        raise ValueError(f"num_classes: expected an integer >= 2, got {num_classes!r}")
    if y.size and (y.min() < 0 or y.max() >= num_classes):
        raise ValueError(
            f"labels: expected values in [0, {num_classes}), got [{y.min()}, {y.max()}]"
        )
    if not 0.0 <= float(fraction) <= 1.0:
        raise ValueError(f"fraction: expected a value in [0, 1], got {fraction!r}")
    rng = np.random.default_rng(seed)
    flipped = np.zeros(y.size, bool)
    flipped[rng.choice(y.size, size=round(float(fraction) * y.size), replace=False)] = True
    shift = rng.integers(1, int(num_classes), size=int(flipped.sum()))  # never 0: a new class
    noisy = y.copy()
    noisy[flipped] = (y[flipped] + shift) % int(num_classes)
    return noisy, flipped

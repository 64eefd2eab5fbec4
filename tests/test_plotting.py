"""Shared figure helpers: what they draw, read back from the matplotlib artists."""

from __future__ import annotations

import numpy as np
from matplotlib.container import BarContainer
from matplotlib.figure import Figure

from gdyn_jax import plotting


def test_plot_bar_pairs_draws_both_series_with_their_error_bars():
    ax = Figure().subplots()
    left, right, err = [1.0, 2.0, 3.0], [1.5, 2.5, 0.5], [0.1, 0.2, 0.3]
    plotting.plot_bar_pairs(ax, ["a", "b", "c"], left, right, labels=("L", "R"), right_err=err)
    first, second = (c for c in ax.containers if isinstance(c, BarContainer))
    np.testing.assert_allclose([b.get_height() for b in first], left)
    np.testing.assert_allclose([b.get_height() for b in second], right)
    centres = [b.get_x() + b.get_width() / 2 for b in first + second]
    np.testing.assert_allclose(centres, [-0.2, 0.8, 1.8, 0.2, 1.2, 2.2])
    assert first.errorbar is None  # no error given, none drawn
    (segments,) = second.errorbar.lines[2]
    np.testing.assert_allclose(
        [seg[:, 1] for seg in segments.get_segments()],
        [[r - e, r + e] for r, e in zip(right, err, strict=True)],
    )
    assert [t.get_text() for t in ax.get_xticklabels()] == ["a", "b", "c"]
    assert ax.get_legend_handles_labels()[1] == ["L", "R"]

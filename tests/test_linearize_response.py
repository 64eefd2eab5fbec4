"""Responses and step metrics against python-control and scipy on many random stable systems."""

from __future__ import annotations

import control as ct
import jax
import numpy as np
import pytest
import scipy.signal

from gdyn_jax import linearize, optimizers
from gdyn_jax.linearize import response_fast

STEPS = 400


def _random_settings(n, seed=0):
    """(name, hyperparameters, curvature) with a stable loop (spectral radius < 0.97)."""
    rng = np.random.default_rng(seed)
    out = []
    while len(out) < n:
        name = ["sgd", "momentum", "nesterov", "ema_momentum", "pid"][len(out) % 5]
        h = float(rng.uniform(0.2, 5.0))
        a = float(rng.uniform(0.01, 1.5)) / h
        hp = {"learning_rate": a}
        if name != "sgd":
            hp["beta"] = float(rng.uniform(0.0, 0.95))
        if name == "pid":
            hp["ki"] = float(rng.uniform(0.0, 2.0))
            hp["kd"] = float(rng.uniform(0.0, 2.0))
        system = linearize.linearize(optimizers.get(name)(**hp), h)
        if linearize.spectral_radius(system) < 0.97:
            out.append((name, hp, h, system))
    return out


@pytest.fixture(scope="module")
def settings():
    return _random_settings(20)


def _close(a, b):
    if np.isnan(a) or np.isnan(b):
        return np.isnan(a) and np.isnan(b)
    return abs(a - b) <= 1e-9 * max(1.0, abs(b))


def test_step_info_matches_python_control(settings):
    for name, hp, h, system in settings:
        ours = linearize.step_info(system, STEPS)
        tf = linearize.transfer_function(system)
        theirs = ct.step_info(tf.to_control(), timepts=np.arange(STEPS))
        assert ours["Stable"] is True
        for key in linearize.STEP_INFO_KEYS:
            if key == "PeakTime":  # monotone responses: the peak is a tie at rounding level
                y = ct.step_response(tf.to_control(), timepts=np.arange(STEPS)).outputs
                assert abs(abs(y[int(ours[key])]) - theirs["Peak"]) <= 1e-12
                continue
            assert _close(ours[key], theirs[key]), (name, hp, h, key, ours[key], theirs[key])
        assert list(ours)[:9] == list(theirs)


def test_batched_step_info_equals_single(settings):
    lrs = np.array([0.05, 0.3, 0.9, 2.5])
    betas = np.array([0.0, 0.5, 0.9])
    grid = linearize.linearize_grid(optimizers.momentum, {"learning_rate": lrs, "beta": betas}, 1.0)
    info = linearize.step_info(grid, 300)
    assert info["SettlingTime"].shape == (4, 3)
    for i, a in enumerate(lrs):
        for j, b in enumerate(betas):
            one = linearize.step_info(linearize.linearize(optimizers.momentum(a, b), 1.0), 300)
            for key in (*linearize.STEP_INFO_KEYS, "Stable"):
                v = info[key][i, j]
                assert (np.isnan(v) and np.isnan(one[key])) or v == pytest.approx(one[key])
    assert not info["Stable"][3, 0]  # a h = 2.5 > 2 (1 + 0) is unstable


def test_step_info_is_vmappable():
    grid = linearize.linearize_grid(optimizers.sgd, {"learning_rate": [0.3, 0.6]}, 1.0)
    with jax.enable_x64(True):
        ys = jax.vmap(lambda s: s.A)(grid)  # LinearSystem is a pytree
        y = np.asarray(jax.vmap(lambda a: 1 - a[0, 0] ** np.arange(20))(ys))
        info = jax.vmap(linearize.step_info_from_response, in_axes=(0, None))(y, 1.0)
        info = {k: np.asarray(v) for k, v in info.items()}
    single = ct.step_info(y[0], timepts=np.arange(20), final_output=1.0)
    assert info["RiseTime"][0] == single["RiseTime"]
    assert info["SettlingTime"][1] == ct.step_info(y[1], np.arange(20), 1.0)["SettlingTime"]


def test_unstable_and_marginal_give_a_clear_result():
    for opt, h in [(optimizers.sgd(1.0), 2.5), (optimizers.momentum(0.1, 0.9), 38.0)]:
        info = linearize.step_info(linearize.linearize(opt, h), 50)
        assert info["Stable"] is False
        assert all(np.isnan(info[k]) for k in linearize.STEP_INFO_KEYS)
    # sgd at a h = 2: a pole at -1 (marginal)
    info = linearize.step_info(linearize.linearize(optimizers.sgd(1.0), 2.0), 50)
    assert info["Stable"] is False


def test_step_and_impulse_equal_scipy(settings):
    for _, _, _, system in settings[:10]:
        tf = linearize.transfer_function(system)
        _, (y,) = scipy.signal.dstep(tf.to_scipy(), n=60)
        np.testing.assert_allclose(linearize.step_response(system, 60), y[:, 0], atol=1e-12)
        _, (y,) = scipy.signal.dimpulse(tf.to_scipy(), n=60)
        np.testing.assert_allclose(linearize.impulse_response(system, 60), y[:, 0], atol=1e-12)
    hessian = np.diag([1.0, 3.0])
    mimo = linearize.linearize(optimizers.momentum(0.1, 0.8), hessian)
    ys = linearize.step_response(mimo, 30)
    assert ys.shape == (30, 2)
    for i, (_, mode) in enumerate(linearize.mode_systems(optimizers.momentum(0.1, 0.8), hessian)):
        np.testing.assert_allclose(ys[:, i], linearize.step_response(mode, 30), atol=1e-12)


def test_frequency_response_equals_scipy(settings):
    omega = np.linspace(0.01, np.pi, 17)
    for _, _, _, system in settings[:5]:
        tf = linearize.transfer_function(system)
        _, ours = linearize.frequency_response(system, omega)
        _, theirs = scipy.signal.dfreqresp(tf.to_scipy(), w=omega)
        np.testing.assert_allclose(ours, theirs, rtol=1e-9)
        _, via_tf = linearize.frequency_response(tf, omega)
        np.testing.assert_allclose(via_tf, theirs, rtol=1e-9)


def test_damping_equals_control_damp(settings):
    for _, _, _, system in settings[:10]:
        tf = linearize.transfer_function(system)
        wn, zeta, poles = linearize.damping(tf)
        cwn, czeta, cpoles = ct.damp(tf.to_control(), doprint=False)
        order, corder = np.argsort(poles), np.argsort(cpoles)
        np.testing.assert_allclose(wn[order], cwn[corder], rtol=1e-9)
        np.testing.assert_allclose(zeta[order], czeta[corder], rtol=1e-9, atol=1e-12)


def test_second_order_view_of_heavy_ball():
    a, beta, h = 0.1, 0.9, 2.0
    view = linearize.second_order(linearize.linearize(optimizers.momentum(a, beta), h))
    # complex poles of z^2 - (1 + beta - a h) z + beta have modulus sqrt(beta)
    assert view["spectral_radius"] == pytest.approx(np.sqrt(beta), rel=1e-12)
    assert view["pole"].imag > 0
    s = np.log(view["pole"])
    assert view["wn"] == pytest.approx(abs(s))
    assert view["zeta"] == pytest.approx(-s.real / abs(s))
    assert view["settling_estimate"] == pytest.approx(np.log(0.02) / np.log(np.sqrt(beta)))


def _random_systems(rng, m: int, k: int, radius: tuple[float, float]):
    """m random (A, cols, C) with k states, 2 inputs, 2 outputs, spectral radius in ``radius``."""
    A = rng.normal(size=(m, k, k))
    scale = np.linspace(*radius, m) / np.max(np.abs(np.linalg.eigvals(A)), axis=-1)
    A *= scale[:, None, None]
    return A, rng.normal(size=(m, k, 2)), rng.normal(size=(m, 2, k))


@pytest.mark.parametrize("k", [1, 2, 3, 6])  # closed-form steady states, unrolled rows, matmuls
def test_fast_step_info_equals_its_plain_twin(k):
    """The fast path (metrics accumulated while simulating) against the definition on stored
    responses, simulated here in numpy: the same metrics, unstable systems included."""
    steps, settling, rise = 80, 0.02, (0.1, 0.9)
    A, cols, C = _random_systems(np.random.default_rng(k), 24, k, (0.3, 1.05))
    with jax.enable_x64(True):
        fast = np.asarray(response_fast.step_info_batch(A, cols, C, steps, settling, rise))
        x, ys = np.zeros_like(cols), []
        for _ in range(steps):
            ys.append(C @ x)
            x = A @ x + cols
        y = np.moveaxis(np.stack(ys), 0, -1)  # (m, out, in, steps)
        yinf = C @ np.linalg.solve(np.eye(k) - A, cols)
        stable = (np.max(np.abs(np.linalg.eigvals(A)), axis=-1) < 1.0)[:, None, None]
        plain = linearize.step_info_from_response(y, yinf, stable=stable)
    assert 0 < stable.sum() < stable.size
    np.testing.assert_array_equal(fast[-1].astype(bool), np.broadcast_to(stable, yinf.shape))
    for key, ours in zip(linearize.STEP_INFO_KEYS, fast[:-1], strict=True):
        theirs = np.asarray(plain[key])
        if key == "PeakTime":  # the same peak, where a tie at rounding level may pick either
            at = np.take_along_axis(y, np.nan_to_num(ours).astype(int)[..., None], -1)[..., 0]
            peak = np.abs(np.where(np.isnan(ours), np.nan, at))
            np.testing.assert_allclose(peak, plain["Peak"], rtol=1e-12)
            continue
        np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=1e-12, err_msg=key)

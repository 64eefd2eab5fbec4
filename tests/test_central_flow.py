"""Central flows (Cohen et al., ICLR 2025) against an independent port of the authors'
``minimal.py`` and against the closed-form limits, effective steps and exit modes."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import scipy.optimize

from gdyn_jax import optimizers
from gdyn_jax.errors import UsageError
from gdyn_jax.predictions import central_flow, rule_edge, solve_sdcp

BETA = 0.9


def _problem(n=32, d=4, h=6, seed=0):
    kx, ky, kp = jax.random.split(jax.random.key(seed), 3)
    x = jax.random.normal(kx, (n, d))
    y = jnp.sin(2.0 * x[:, :2]) + 0.5 * jax.random.normal(ky, (n, 2))
    k1, k2, k3 = jax.random.split(kp, 3)
    params = {
        "w1": jax.random.normal(k1, (d, h)) / np.sqrt(d),
        "w2": jax.random.normal(k2, (h, h)) / np.sqrt(h),
        "w3": jax.random.normal(k3, (h, 2)) / np.sqrt(h),
    }

    def loss(p):
        out = jnp.tanh(jnp.tanh(x @ p["w1"]) @ p["w2"]) @ p["w3"]
        return 0.5 * jnp.mean(jnp.sum((out - y) ** 2, axis=1))

    return loss, params


def _sdcp_reference(a, b):
    """min 1/2 <X, B[X]> + <A, X> over X = L L^T (an unconstrained factor, scipy BFGS)."""
    k = a.shape[0]
    bmat = b.reshape(k * k, k * k)
    if k == 1:  # the scalar problem in closed form
        return np.array([[max(0.0, -a[0, 0] / bmat[0, 0])]])

    def f(z):
        low = z.reshape(k, k)
        x = low @ low.T
        return 0.5 * x.ravel() @ bmat @ x.ravel() + np.sum(a * x)

    best = min(
        (
            scipy.optimize.minimize(f, z0, method="BFGS", options={"gtol": 1e-12})
            for z0 in np.random.default_rng(0).normal(size=(2, k * k))
        ),
        key=lambda r: r.fun,
    )
    low = best.x.reshape(k, k)
    return low @ low.T


def _minimal_port(loss, params, lr, steps, substeps=4, threshold=1.95):
    """GD's central flow written directly after minimal.py: the full Hessian by jax.hessian,
    its eigenvectors by numpy, the third derivative tensor by jax.jacfwd, the SDCP by
    _sdcp_reference; predicted loss L + tr(Sigma)/lr from the first substep of each step."""
    flat, unravel = jax.flatten_util.ravel_pytree(params)
    f = jax.jit(lambda w: loss(unravel(w)))
    grad, hess = jax.jit(jax.grad(f)), jax.jit(jax.hessian(f))
    third = jax.jit(jax.jacfwd(jax.hessian(f)))
    w, predicted, dt = np.asarray(flat, np.float64), [], 1.0 / substeps
    for _ in range(steps):
        for sub in range(substeps):
            g, value = np.asarray(grad(w)), float(f(w))
            eigs, vecs = np.linalg.eigh(np.asarray(hess(w)))
            eigs, vecs = eigs[::-1], vecs[:, ::-1]
            crit = int(np.sum(eigs > threshold / lr))
            tr = 0.0
            if crit == 0:
                w = w - dt * lr * g
            else:
                u = vecs[:, :crit]
                t3 = np.asarray(third(w))
                nabla_h = np.einsum("ijk,ia,jb->abk", t3, u, u)  # grad of u_a' H u_b
                gflat = nabla_h.reshape(crit * crit, -1)
                a = 2 / lr * np.eye(crit) - (np.diag(eigs[:crit]) + dt * nabla_h @ (-lr * g))
                b = (0.5 * dt * lr * gflat @ gflat.T).reshape(crit, crit, crit, crit)
                x = (
                    np.zeros((crit, crit))
                    if np.linalg.eigvalsh(a)[0] >= 0
                    else _sdcp_reference(a, b)
                )
                w = w + dt * (-lr * g - 0.5 * lr * gflat.T @ x.ravel())
                tr = float(np.trace(x))
            if sub == 0:
                predicted.append(value + tr / lr)
    return np.array(predicted)


def test_rule_edge_closed_forms():
    for lr in (0.05, 0.3):
        gd, hb = rule_edge(optimizers.sgd(lr)), rule_edge(optimizers.momentum(lr, beta=BETA))
        nest = rule_edge(optimizers.nesterov(lr, beta=BETA))
        np.testing.assert_allclose(gd.limit, 2 / lr, rtol=1e-9)
        np.testing.assert_allclose(hb.limit, (2 + 2 * BETA) / lr, rtol=1e-9)
        np.testing.assert_allclose(nest.limit, (2 + 2 * BETA) / ((1 + 2 * BETA) * lr), rtol=1e-9)
        np.testing.assert_allclose(gd.effective_step, lr, rtol=1e-9)
        np.testing.assert_allclose(hb.effective_step, lr / (1 - BETA), rtol=1e-9)
        np.testing.assert_allclose(nest.effective_step, lr / (1 - BETA), rtol=1e-9)
        assert gd.mode == hb.mode == nest.mode == "period-2"
        # the delay: group delay of the open loop's regular part at z = 1 (GD has none; heavy
        # ball's m = g / (1 - beta z^-1) lags beta / (1 - beta); Nesterov's lookahead takes beta)
        np.testing.assert_allclose(gd.delay, 0.0, atol=1e-9)
        np.testing.assert_allclose(hb.delay, BETA / (1 - BETA), rtol=1e-9)
        np.testing.assert_allclose(nest.delay, BETA / (1 - BETA) - BETA, rtol=1e-9)
        assert all(p.real < -1 and abs(p.imag) < 1e-9 for p in hb.poles)


def test_soft_width_closed_forms():
    # GD's pole 1 - eta h is negative down to h = S*/2; heavy ball's two poles meet at
    # eta h = (1 + sqrt(beta))^2 (the discriminant of z^2 - (1 + beta - eta h) z + beta),
    # so its width below S* = (2 + 2 beta)/eta is (1 - sqrt(beta))^2 / (2 + 2 beta)
    assert rule_edge(optimizers.sgd(0.3)).soft_width == pytest.approx(0.5, rel=0.05)
    for beta in (0.5, 0.9):
        width = rule_edge(optimizers.momentum(0.3, beta=beta)).soft_width
        closed = (1 - np.sqrt(beta)) ** 2 / (2 + 2 * beta)
        assert 0.95 * closed <= width <= closed
    # Nesterov's z^2 - (1 + beta) a z + beta a, a = 1 - eta h, has real roots of opposite
    # signs for a < 0 and a complex pair for 0 < a < 4 beta / (1 + beta)^2: its leaving pole
    # is real and negative from eta h = 1 up to its limit, a width 1 - 1/(eta S*)
    lr = 0.3
    nest = rule_edge(optimizers.nesterov(lr, beta=0.9))
    closed = 1 - 1 / (lr * nest.limit)
    assert 0.95 * closed <= nest.soft_width <= closed


def _real_losses(loss, params, opt, steps):
    p, state, out = params, opt.init(params), []
    for _ in range(steps):
        out.append(float(loss(p)))
        update, state = opt.update(jax.grad(loss)(p), state, p)
        p = optax.apply_updates(p, update)
    return np.array(out)


def test_lagged_flow_follows_a_real_heavy_ball_run():
    """Below the edge (Sigma = 0) on a quadratic, heavy ball's flow through its delay follows
    the real run; gradient flow with the same effective step but no delay runs ahead of it."""
    lam = jnp.linspace(0.02, 0.2, 8)

    def loss(p):
        return 0.5 * jnp.sum(lam * p["w"] ** 2)

    params, steps = {"w": jnp.ones(8)}, 100
    real = _real_losses(loss, params, optimizers.momentum(0.1, beta=BETA), steps)
    lagged = central_flow(loss, params, optimizers.momentum(0.1, beta=BETA), steps, num_eigs=1)
    plain = central_flow(loss, params, optimizers.sgd(1.0), steps, num_eigs=1)  # eta_eff = 1
    assert lagged.edge.effective_step == pytest.approx(plain.edge.effective_step)
    lagged_err = np.median(np.abs(lagged.loss - real) / real)
    plain_err = np.median(np.abs(plain.loss - real) / real)
    assert lagged_err < 0.1 and plain_err > 3 * lagged_err, (lagged_err, plain_err)


@pytest.mark.slow
def test_momentum_flows_hold_the_sharpness_at_their_limits():
    """The complementarity problem keeps heavy ball's and Nesterov's flows at their own S*."""
    loss, params = _problem()
    flat, unravel = jax.flatten_util.ravel_pytree(params)
    sharp = float(jnp.linalg.eigvalsh(jax.hessian(lambda w: loss(unravel(w)))(flat))[-1])
    for opt in (optimizers.momentum, optimizers.nesterov):
        limit_per_lr = rule_edge(opt(1.0, beta=BETA)).limit
        lr = limit_per_lr / (1.1 * sharp)  # S* just below the initial sharpness
        flow = central_flow(loss, params, opt(lr, beta=BETA), 30, num_eigs=2)
        limit = flow.edge.limit
        at_edge = flow.sharpness > 0.99 * limit
        assert at_edge.sum() > 15, flow.sharpness
        np.testing.assert_allclose(flow.sharpness[at_edge], limit, rtol=0.01)
        assert np.all(flow.sharpness <= limit * 1.01) and not flow.beyond_limit(0.01).any()
        assert np.isfinite(flow.predicted_loss).all() and float(flow.sdcp_residual.max()) < 1e-3


def _delayed_sgd(lr):
    """theta_{t+1} = theta_t - lr g_{t-1}: z^2 - z + lr h, a complex pair at lr h = 1."""

    def init(params):
        return jax.tree.map(jnp.zeros_like, params)

    def update(grads, state, params=None):
        return jax.tree.map(lambda g: -lr * g, state), grads

    return optax.GradientTransformation(init, update)


def test_complex_exit_and_nonaffine_refused():
    edge = rule_edge(_delayed_sgd(0.1))
    assert edge.mode == "complex" and not edge.supported
    np.testing.assert_allclose(edge.limit, 10.0, rtol=1e-9)
    np.testing.assert_allclose([abs(p) for p in edge.poles], 1.0, atol=1e-3)
    loss, params = _problem()
    with pytest.raises(UsageError, match="complex pair"):
        central_flow(loss, params, _delayed_sgd(0.1), 5)
    with pytest.raises(UsageError, match="not an affine rule") as info:
        central_flow(loss, params, optimizers.adam(0.01), 5)
    assert "RMSProp" in str(info.value) and "\n" not in str(info.value)


def test_bad_input_one_line():
    loss, params = _problem()
    relu = lambda p: jnp.mean(jax.nn.relu(p["w1"]) ** 2)  # noqa: E731
    cases = [
        (dict(loss_fn=relu), "third derivatives"),
        (dict(steps=0), "steps"),
        (dict(steps=2.5), "steps"),
        (dict(num_eigs=0), "num_eigs"),
        (dict(num_eigs=10_000), "num_eigs"),
        (dict(substeps=0), "substeps"),
        (dict(stable_substeps=-1), "substeps"),
        (dict(loss_fn="not a function"), "loss_fn"),
    ]
    for change, name in cases:
        kwargs = dict(loss_fn=loss, params=params, optimizer=optimizers.sgd(0.1), steps=3)
        kwargs.update(change)
        with pytest.raises(UsageError, match=name) as info:
            central_flow(**kwargs)
        assert "\n" not in str(info.value)


def test_sdcp_against_factored_minimisation():
    rng = np.random.default_rng(1)
    for k in (1, 2, 3):
        g = rng.normal(size=(k * k, 6))
        sym = np.stack([(m + m.T) / 2 for m in g.T.reshape(6, k, k)]).reshape(6, k * k).T
        b = (sym @ sym.T).reshape(k, k, k, k)
        m = rng.normal(size=(k, k))
        a = (m + m.T) / 2 - 1.5 * np.eye(k)
        with jax.enable_x64(True):
            x, residual = solve_sdcp(jnp.asarray(a), jnp.asarray(b), None, 3000)
        np.testing.assert_allclose(np.asarray(x), _sdcp_reference(a, b), atol=2e-4)
        assert float(residual) < 1e-5


@pytest.mark.slow
def test_gd_central_flow_matches_minimal_port():
    loss, params = _problem()
    with jax.enable_x64(True):
        params = jax.tree.map(lambda p: p.astype(jnp.float64), params)
        flat = jax.flatten_util.ravel_pytree(params)[0]
        sharp = float(
            jnp.linalg.eigvalsh(
                jax.hessian(lambda w: loss(jax.flatten_util.ravel_pytree(params)[1](w)))(flat)
            )[-1]
        )
        lr = 2.0 / (1.1 * sharp)  # the limit is reached soon after the start
        steps = 60
        ours = central_flow(loss, params, optimizers.sgd(lr), steps, num_eigs=3)
        port = _minimal_port(loss, params, lr, steps)
    at_edge = ours.sharpness > 0.99 * 2 / lr
    assert at_edge.sum() > steps // 3, "the flow never reached the edge of stability"
    rel = np.abs(ours.predicted_loss - port) / port
    print("median relative difference", np.median(rel), "steps at the edge", at_edge.sum())
    assert np.median(rel) <= 0.02, np.median(rel)
    np.testing.assert_allclose(ours.sharpness[at_edge], 2 / lr, rtol=0.01)

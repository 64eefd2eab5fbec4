"""RMSProp's central flow (Cohen et al., ICLR 2025) against a real RMSProp run at its edge of
stability, and the rules it must refuse."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from test_central_flow import _problem

from gdyn_jax import optimizers
from gdyn_jax.errors import UsageError
from gdyn_jax.predictions import central_flow

LR, DECAY, STEPS, K = 0.02, 0.9, 80, 5  # k: the real loss averaged over 2k steps, centred
WARM = 5  # the flow starts from the real run's weights and state after 5 steps, as the paper's


def _real_run(loss, params, opt, steps):
    """The real run's losses, its preconditioned sharpness lambda_max(D^-1 H) at each step
    (D = sqrt(nu_hat + eps) of the state that step uses, from the full Hessian), and its
    weights and state after ``WARM`` steps."""
    flat, unravel = jax.flatten_util.ravel_pytree(params)
    hess = jax.jit(jax.hessian(lambda w: loss(unravel(w))))
    value_grad, update = jax.jit(jax.value_and_grad(loss)), jax.jit(opt.update)
    p, state, losses, sharp = params, opt.init(params), [], []
    for t in range(steps):
        if t == WARM:
            warm = (p, state)
        value, grad = value_grad(p)
        step, state = update(grad, state, p)
        nu_hat = jax.flatten_util.ravel_pytree(state[0].nu)[0] / (1 - DECAY ** (t + 1))
        scale = np.asarray(nu_hat + 1e-8) ** -0.25
        w = jax.flatten_util.ravel_pytree(p)[0]
        sharp.append(np.linalg.eigvalsh(scale[:, None] * np.asarray(hess(w)) * scale[None, :])[-1])
        losses.append(float(value))
        p = optax.apply_updates(p, step)
    return np.array(losses), np.array(sharp), warm


def test_rmsprop_central_flow_predicts_the_averaged_loss():
    opt = optimizers.rmsprop(LR, decay=DECAY, bias_correction=True)
    with jax.enable_x64(True):
        loss, params = _problem()  # the data in float64 too
        params = jax.tree.map(lambda p: p.astype(jnp.float64), params)
        real, real_sharp, (warm, warm_state) = _real_run(loss, params, opt, WARM + STEPS + K)
        flow = central_flow(loss, warm, opt, STEPS, num_eigs=2, opt_state=warm_state)
    real = real[WARM:]
    rule, limit = flow.rmsprop, 2 / LR
    assert rule is not None and rule.bias_correction and rule.eps_in_sqrt
    np.testing.assert_allclose([rule.learning_rate, rule.decay], [LR, DECAY], rtol=1e-6)
    assert rule.count0 == WARM
    np.testing.assert_allclose(flow.edge.limit, limit, rtol=1e-9)
    # the real run sits at its edge: its preconditioned sharpness overshoots 2/eta while its
    # oscillation grows from rounding, falls back, and then hovers around it
    print("real preconditioned sharpness / limit", np.round(real_sharp[::5] / limit, 2))
    assert 0.9 <= np.median(real_sharp[40:]) / limit <= 1.2, real_sharp / limit
    # the flow reaches it early and the complementarity problem holds it there
    at_edge = np.nonzero(flow.sharpness > 0.99 * limit)[0]
    first = int(at_edge[0])
    assert first < 20 and at_edge.size == STEPS - first, flow.sharpness / limit
    np.testing.assert_allclose(flow.sharpness[first:], limit, rtol=0.01)
    assert float(flow.sdcp_residual.max()) < 1e-3 and np.trace(flow.sigma[-1]) > 0
    # the tracked eigenvalue is the top one: D^-1/2 H D^-1/2 in full at the flow's (w, nu)
    with jax.enable_x64(True):
        f = lambda w: loss(flow.unravel(w))  # noqa: E731
        hess = jax.jit(jax.hessian(f))
        for t in range(first, STEPS, 10):
            scale = (flow.nu[t] / (1 - DECAY ** (WARM + t + 1)) + 1e-8) ** -0.25
            h = scale[:, None] * np.asarray(hess(flow.params[t])) * scale[None, :]
            np.testing.assert_allclose(np.linalg.eigvalsh(h)[-1], flow.sharpness[t], rtol=1e-3)
    # predicted loss L + S*/2 <D, Sigma> against the real loss averaged over 2k steps
    averaged = np.array([real[max(0, t - K) : t + K].mean() for t in range(STEPS)])
    after = slice(first + K, STEPS)
    cf_err = np.median(np.abs(flow.predicted_loss - averaged)[after] / averaged[after])
    gf_err = np.median(np.abs(flow.stable_loss - averaged)[after] / averaged[after])
    print(f"RMSProp: central flow {cf_err:.4f}, stable flow {gf_err:.4f}, edge at step {first}")
    assert cf_err <= 0.03 and gf_err >= 5 * cf_err, (cf_err, gf_err)
    assert flow.nu.shape == (STEPS + 1, flow.params.shape[1]) and np.all(flow.nu > 0)


def test_rmsprop_variants_refused_one_line():
    """(Centred RMSProp and Adam are refused as non-affine rules: tests/test_central_flow.py.)"""
    loss, params = _problem()
    cases = [
        (optax.rmsprop(0.01, momentum=0.9), "not plain RMSProp"),
        (optax.rmsprop(optax.linear_schedule(0.01, 0.02, 10)), "not plain RMSProp"),
        (optax.chain(optax.clip_by_global_norm(1e-3), optax.rmsprop(0.01)), "not plain RMSProp"),
    ]
    for opt, match in cases:
        with pytest.raises(UsageError, match=match) as info:
            central_flow(loss, params, opt, 3)
        assert "\n" not in str(info.value), str(info.value)
    with pytest.raises(UsageError, match="steps"):
        central_flow(loss, params, optimizers.rmsprop(0.01), 0)
    with pytest.raises(UsageError, match="optimizer"):
        central_flow(loss, params, "rmsprop", 3)
    rms = optimizers.rmsprop(0.01)
    for opt, state, match in [
        (optimizers.sgd(0.01), optimizers.sgd(0.01).init(params), "only RMSProp"),
        (rms, optimizers.adam(0.01).init(params), "a state of this RMSProp"),
        (rms, rms.init({"w": jnp.ones(3)}), "entries"),
    ]:
        with pytest.raises(UsageError, match=match) as info:
            central_flow(loss, params, opt, 3, opt_state=state)
        assert "\n" not in str(info.value), str(info.value)

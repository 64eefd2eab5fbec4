"""Transfer functions from linearize against sympy derivations from the update equations.

Each test writes the optimizer's update rule as equations between z-transforms (a state
``s_{k+1}`` becomes ``z S``), closes the loop with ``G = h (Theta - R) + W`` and solves for
``Theta / R`` and ``Theta / W`` symbolically; no closed form is typed in.
"""

from __future__ import annotations

import control as ct
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import scipy.signal
import sympy as sp

from gdyn_jax import linearize, optimizers
from gdyn_jax.linearize.eig import spectral_radius_of
from gdyn_jax.linearize.transfer import _ss2tf

z = sp.Symbol("z")


def _solve(equations, unknowns, theta, source):
    """Theta / source as (num, den) float coefficient arrays, den monic, reduced."""
    sol = sp.solve(equations, unknowns, dict=True)[0]
    ratio = sp.cancel(sp.together(sol[theta] / source))
    num, den = sp.fraction(ratio)
    num_p, den_p = sp.Poly(num, z), sp.Poly(den, z)
    lead = den_p.LC()
    num_c = np.array([float(c / lead) for c in num_p.all_coeffs()])
    den_c = np.array([float(c / lead) for c in den_p.all_coeffs()])
    return num_c, den_c


def _closed_loop(rule, h):
    """rule(G, Theta) -> (equations for the state, the update U with z Theta = Theta + U)."""
    theta, r, w = sp.symbols("Theta R W")
    g = h * (theta - r) + w
    state_eqs, state_syms, update = rule(g)
    eqs = [*state_eqs, sp.Eq(z * theta, theta + update)]
    unknowns = [theta, *state_syms]
    ref = _solve([e.subs(w, 0) for e in eqs], unknowns, theta, r)
    noise = _solve([e.subs(r, 0) for e in eqs], unknowns, theta, w)
    return ref, noise


def _sgd(a):
    def rule(g):
        return [], [], -a * g

    return rule


def _heavy_ball(a, beta):
    def rule(g):  # v <- beta v + g ; theta <- theta - a v(new)
        v = sp.Symbol("V")
        return [sp.Eq(z * v, beta * v + g)], [v], -a * z * v

    return rule


def _ema(a, beta):
    def rule(g):  # v <- beta v + (1 - beta) g ; theta <- theta - a v(new)
        v = sp.Symbol("V")
        return [sp.Eq(z * v, beta * v + (1 - beta) * g)], [v], -a * z * v

    return rule


def _nesterov(a, beta):
    def rule(g):  # v <- beta v + g ; theta <- theta - a (g + beta v(new))
        v = sp.Symbol("V")
        return [sp.Eq(z * v, beta * v + g)], [v], -a * (g + beta * z * v)

    return rule


def _pid(a, beta, ki, kd):
    def rule(g):  # I <- beta I + g ; D <- beta D + (1-beta)(g - P) ; P <- g
        i, d, p = sp.symbols("I D P")
        eqs = [
            sp.Eq(z * i, beta * i + g),
            sp.Eq(z * d, beta * d + (1 - beta) * (g - p)),
            sp.Eq(z * p, g),
        ]
        return eqs, [i, d, p], -a * (g + ki * z * i + kd * z * d)

    return rule


def _rational(x):
    return sp.Rational(str(x))


CASES = [
    ("sgd", (0.1,), _sgd),
    ("sgd", (0.73,), _sgd),
    ("momentum", (0.1, 0.9), _heavy_ball),
    ("momentum", (0.37, 0.55), _heavy_ball),
    ("ema_momentum", (0.1, 0.9), _ema),
    ("ema_momentum", (0.8, 0.3), _ema),
    ("nesterov", (0.1, 0.9), _nesterov),
    ("nesterov", (0.25, 0.6), _nesterov),
    ("pid", (0.1, 0.9, 5.0, 10.0), _pid),
    ("pid", (0.03, 0.7, 1.5, 2.5), _pid),
]


def _assert_tf(tf, expected, atol=1e-12):
    num, den = expected
    scale = max(1.0, np.max(np.abs(num)), np.max(np.abs(den)))
    assert tf.den.shape == den.shape, (tf, expected)
    assert tf.num.shape == num.shape, (tf, expected)
    np.testing.assert_allclose(tf.den, den, rtol=0, atol=atol * scale)
    np.testing.assert_allclose(tf.num, num, rtol=0, atol=atol * scale)
    assert tf.den[0] == 1.0 and tf.dt == 1


@pytest.mark.parametrize("name,hp,rule", CASES)
@pytest.mark.parametrize("h", [2.0, 0.35])
def test_closed_loop_equals_sympy(name, hp, rule, h):
    system = linearize.linearize(optimizers.get(name)(*hp), h)
    assert system.exact
    ref, noise = _closed_loop(rule(*map(_rational, hp)), _rational(h))
    _assert_tf(linearize.transfer_function(system, "reference"), ref)
    _assert_tf(linearize.transfer_function(system, "noise"), noise)


@pytest.mark.parametrize("name,hp,rule", CASES)
def test_open_loop_equals_sympy(name, hp, rule):
    _, noise = _closed_loop(rule(*map(_rational, hp)), 0)
    _assert_tf(linearize.open_loop(optimizers.get(name)(*hp)), noise)


def test_open_loop_nesterov_adds_a_zero():
    a, beta = 0.2, 0.8
    mom = linearize.open_loop(optimizers.momentum(a, beta))
    nag = linearize.open_loop(optimizers.nesterov(a, beta))
    np.testing.assert_allclose(mom.poles(), nag.poles(), atol=1e-12)
    np.testing.assert_allclose(nag.zeros(), [beta / (1 + beta)], atol=1e-12)
    np.testing.assert_allclose(mom.zeros(), [0.0], atol=1e-12)


def test_optax_transforms_give_the_same_loops():
    for ours, theirs in [
        (optimizers.momentum(0.3, 0.7), optax.sgd(0.3, momentum=0.7)),
        (optimizers.nesterov(0.3, 0.7), optax.sgd(0.3, momentum=0.7, nesterov=True)),
        (optimizers.sgd(0.3), optax.sgd(0.3)),
    ]:
        a = linearize.transfer_function(linearize.linearize(ours, 1.7))
        b = linearize.transfer_function(linearize.linearize(theirs, 1.7))
        np.testing.assert_allclose(a.num, b.num, atol=1e-14)
        np.testing.assert_allclose(a.den, b.den, atol=1e-14)


def test_exports_agree_with_control_and_scipy():
    tf = linearize.transfer_function(linearize.linearize(optimizers.nesterov(0.1, 0.9), 2.0))
    ctf = tf.to_control()
    assert ct.isdtime(ctf) and ctf.dt == 1
    np.testing.assert_allclose(np.sort_complex(ctf.poles()), np.sort_complex(tf.poles()))
    np.testing.assert_allclose(np.sort_complex(ctf.zeros()), np.sort_complex(tf.zeros()))
    assert ctf.dcgain() == pytest.approx(tf.dcgain(), abs=1e-12)
    stf = tf.to_scipy()
    assert stf.dt == 1
    np.testing.assert_allclose(np.sort_complex(stf.poles), np.sort_complex(tf.poles()))
    assert tf.dcgain() == pytest.approx(1.0, abs=1e-12)  # the loop converges to r


def test_mimo_pairs_and_modes():
    hessian = np.array([[2.0, 0.5], [0.5, 1.0]])
    opt = optimizers.momentum(0.2, 0.8)
    system = linearize.linearize(opt, hessian)
    table = linearize.transfer_function(system)
    assert len(table) == 2 and len(table[0]) == 2
    pair = linearize.transfer_function(system, output=1, index=0)
    np.testing.assert_allclose(pair.num, table[1][0].num)
    lams, vecs = linearize.hessian_modes(hessian)
    modes = linearize.mode_systems(opt, hessian)
    mode_poles = np.concatenate([linearize.transfer_function(s).poles() for _, s in modes])
    np.testing.assert_allclose(
        np.sort_complex(mode_poles), np.sort_complex(np.linalg.eigvals(system.A)), atol=1e-12
    )
    # reference along q_i -> q_i^T theta equals the mode's transfer function at any z
    for (lam, mode), q in zip(modes, vecs.T, strict=True):
        assert lam == pytest.approx(float(q @ hessian @ q))
        pt = 0.3 + 0.7j
        full = sum(
            q[i] * q[j] * linearize.transfer_function(system, output=i, index=j)(pt)
            for i in range(2)
            for j in range(2)
        )
        assert full == pytest.approx(linearize.transfer_function(mode)(pt), abs=1e-12)


def test_ss2tf_dust_is_trimmed():
    tf = linearize.transfer_function(linearize.linearize(optimizers.momentum(0.1, 0.9), 2.0))
    assert tf.num.tolist()[1] == 0.0  # exact zero at the origin, no 1e-16 dust
    b, a = scipy.signal.ss2tf(*_ss(optimizers.momentum(0.1, 0.9)))
    assert b.shape[-1] == 3  # scipy keeps a leading zero that we trim
    assert tf.num.shape == (2,)


def _ss(opt):
    s = linearize.linearize(opt, 2.0)
    return s.A, s.input_matrix("reference"), s.C, np.zeros((1, 1))


@pytest.mark.parametrize("k", [1, 2, 3, 5])
def test_numpy_ss2tf_equals_scipy_bit_for_bit(k):
    # transfer.py builds num/den with numpy.poly (no scipy.signal import on the CLI's path):
    # the same formula as scipy.signal.ss2tf, so the same bits.
    rng = np.random.default_rng(k)
    for _ in range(20):
        A, b, c = rng.normal(size=(k, k)), rng.normal(size=(k, 1)), rng.normal(size=(1, k))
        num, den = _ss2tf(A, b, c)
        ref_num, ref_den = scipy.signal.ss2tf(A, b, c, np.zeros((1, 1)))
        np.testing.assert_array_equal(den, ref_den)
        np.testing.assert_array_equal(num, ref_num.ravel())


def test_numpy_spectral_radius_equals_the_traced_one():
    # The numpy fast path of one concrete 2 x 2 system against jax.numpy's (same formula) and
    # numpy.linalg.eigvals (independent), over real, complex and defective spectra.
    rng = np.random.default_rng(0)
    mats = np.concatenate(
        [rng.normal(size=(200, 2, 2)), [[[1.0, 1.0], [0.0, 1.0]], [[0.0, 0.0], [0.0, 0.0]]]]
    )
    fast = spectral_radius_of(mats)
    with jax.enable_x64(True):
        traced = np.asarray(jax.jit(spectral_radius_of)(jnp.asarray(mats)))
    assert isinstance(fast, np.ndarray) and fast.dtype == np.float64
    np.testing.assert_allclose(fast, traced, rtol=4 * np.finfo(float).eps, atol=0)
    reference = np.max(np.abs(np.linalg.eigvals(mats)), axis=-1)
    np.testing.assert_allclose(fast, reference, rtol=1e-7, atol=1e-12)

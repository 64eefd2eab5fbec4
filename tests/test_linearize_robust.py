"""linearize.robust: rates certified over S(mu, L), checked against independent references.

- the rules' open loops against realizations derived by hand from their update equations;
- each returned certificate: the LMI of Lessard, Recht, Packard (SIAM J. Optim. 2016,
  Theorem 4 with the IQCs of Lemmas 6, 8 and 10) rebuilt here from those hand realizations and
  evaluated in numpy; the dissipation inequality and the rate bound along real runs of the
  optax transforms on random smooth strongly convex functions (Huber pieces plus a quadratic);
- closed forms (gradient descent's sector rate), gdyn's quadratic rate as a lower bound, the
  Triple Momentum rate (Van Scoy et al. 2018) and the paper's published thresholds.
"""

from __future__ import annotations

import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from gdyn_jax import errors, linearize, optimizers
from gdyn_jax.linearize import robust
from gdyn_jax.linearize.lmi import sdp

M = np.array([[0.0, 1.0], [1.0, 0.0]])
LMI_TOL = 1e-9  # largest eigenvalue of the LMI over the scale of its terms


def polyak(kappa, m=1.0):
    L, sk = kappa * m, np.sqrt(kappa)
    return {"learning_rate": 4 / (np.sqrt(L) + np.sqrt(m)) ** 2, "beta": ((sk - 1) / (sk + 1)) ** 2}


def nesterov_standard(kappa, m=1.0):
    sk = np.sqrt(kappa)
    return {"learning_rate": 1 / (kappa * m), "beta": (sk - 1) / (sk + 1)}


def nesterov_optimal(kappa, m=1.0):
    s3 = np.sqrt(3 * kappa + 1)
    return {"learning_rate": 4 / (3 * kappa * m + m), "beta": (s3 - 2) / (s3 + 2)}


# ------------------------------------------------------------------ hand-derived realizations
# State [theta; v] in the order linearize uses (parameters, then the velocity leaf); input g.


def hand_realization(name: str, hp: dict):
    if name == "sgd":
        return np.array([[1.0]]), np.array([[-hp["learning_rate"]]]), np.array([[1.0]])
    if name == "triple_momentum":
        p = optimizers.triple_momentum_parameters(hp["mu"], hp["L"])
        a, beta, gamma = (float(p[k]) for k in ("alpha", "beta", "gamma"))
        # v' = beta v + g;  theta' = theta - a((1 + gamma) v' - gamma v)
        A = np.array([[1.0, -a * ((1 + gamma) * beta - gamma)], [0.0, beta]])
        return A, np.array([[-a * (1 + gamma)], [1.0]]), np.array([[1.0, 0.0]])
    a, beta = hp["learning_rate"], hp["beta"]
    if name == "momentum":  # v' = beta v + g;  theta' = theta - a v'
        A, B = np.array([[1.0, -a * beta], [0.0, beta]]), np.array([[-a], [1.0]])
    else:  # nesterov: v' = beta v + g;  theta' = theta - a (g + beta v')
        A, B = np.array([[1.0, -a * beta**2], [0.0, beta]]), np.array([[-a * (1 + beta)], [1.0]])
    return A, B, np.array([[1.0, 0.0]])


def paper_lmi(A, B, C, m, L, iqc, P, multipliers, rho):
    """The LMI (3.9)/(3.11) with the sector IQC (3.4) and the off-by-one filter of Lemma 8
    (A_psi = 0, B_psi^y = -L, B_psi^u = 1), built from the paper's definitions."""
    n = A.shape[0]
    D_y, D_u = np.array([[L], [-m]]), np.array([[-1.0], [1.0]])
    if iqc == "sector":
        A_hat, B_hat = A, B
        outputs = {"sector": np.hstack([D_y @ C, D_u])}
    else:
        A_hat = np.block([[A, np.zeros((n, 1))], [-L * C, np.zeros((1, 1))]])
        B_hat = np.vstack([B, [[1.0]]])
        C_psi = np.array([[1.0], [0.0]])
        outputs = {
            "sector": np.hstack([D_y @ C, np.zeros((2, 1)), D_u]),
            "off_by_one": np.hstack([D_y @ C, C_psi, D_u]),
        }
    AB = np.hstack([A_hat, B_hat])
    terms = [AB.T @ P @ AB, -(rho**2) * np.pad(P, ((0, 1), (0, 1)))]
    terms += [multipliers[k] * out.T @ M @ out for k, out in outputs.items()]
    return sum(terms), max(float(np.abs(t).max()) for t in terms)


def check_certificate(result, name, hp):
    A, B, C = hand_realization(name, hp)
    np.testing.assert_allclose(result.A, A, atol=1e-12)
    np.testing.assert_allclose(result.B, B, atol=1e-12)
    np.testing.assert_allclose(result.C, C, atol=1e-12)
    lmi, scale = paper_lmi(
        A, B, C, result.mu, result.L, result.iqc, result.P, result.multipliers, result.rate
    )
    assert np.linalg.eigvalsh(0.5 * (lmi + lmi.T))[-1] <= LMI_TOL * scale
    assert np.linalg.eigvalsh(result.P)[0] > 0
    lam = result.multipliers
    assert all(v >= 0 for v in lam.values())
    if result.iqc == "off_by_one":  # rho_bar <= rho (Lemma 10, Remark 11)
        assert lam["off_by_one"] <= result.rate**2 * sum(lam.values()) * (1 + 1e-9)
    assert result.lmi_residual() <= robust.LMI_RTOL
    lo, hi = result.bracket
    assert lo <= hi == result.rate


# ------------------------------------------------------------------ closed forms


@pytest.mark.parametrize("kappa", [2.0, 10.0, 100.0, 1000.0])
def test_gradient_descent_sector_rate_is_the_closed_form(kappa):
    m, L = 1.0, kappa
    hp = {"learning_rate": 2 / (L + m)}
    result = linearize.robust_rate(optimizers.sgd(**hp), m, L, iqc="sector")
    assert abs(result.rate - (kappa - 1) / (kappa + 1)) <= 1e-4
    check_certificate(result, "sgd", hp)


@pytest.mark.parametrize("a", [0.02, 0.05, 0.15])
def test_gradient_descent_sector_rate_any_step(a):
    m, L = 1.0, 10.0  # a = 0.15 > 2/(L+m): the rate is then set by L
    result = linearize.robust_rate(optimizers.sgd(a), m, L, iqc="sector")
    assert abs(result.rate - max(abs(1 - a * L), abs(1 - a * m))) <= 1e-4


def test_gradient_descent_beyond_two_over_L_has_no_certificate():
    result = linearize.robust_rate(optimizers.sgd(0.25), 1.0, 10.0)
    assert result.rate is None and result.P is None
    assert result.quadratic_rate == pytest.approx(1.5)


CASES = [
    ("momentum", 10.0, polyak),
    ("nesterov", 10.0, nesterov_standard),
    ("nesterov", 100.0, nesterov_standard),
    ("nesterov", 100.0, nesterov_optimal),
    ("momentum", 10.0, lambda k: {"learning_rate": 0.05, "beta": 0.5}),
]


@pytest.mark.parametrize("iqc", robust.IQCS)
@pytest.mark.parametrize(("name", "kappa", "tuning"), CASES)
def test_never_beats_the_quadratic_rate(name, kappa, tuning, iqc):
    hp = tuning(kappa)
    result = linearize.robust_rate(optimizers.get(name)(**hp), 1.0, kappa, iqc=iqc)
    grid = {k: np.array([v]) for k, v in hp.items()}
    rates = linearize.convergence_rate(optimizers.get(name), grid, np.linspace(1.0, kappa, 401))
    quad = float(np.max(rates))
    assert result.quadratic_rate == pytest.approx(quad, abs=1e-6)
    if result.rate is not None:
        assert result.rate >= quad - 1e-9
        check_certificate(result, name, hp)


# Relative excess (rate - target) / (1 - target), i.e. in iterations: 0.1% up to kappa = 100;
# past that the certificates (nearly singular at the optimal rate) lose float64 accuracy.
TMM_EXCESS = [(10.0, 1e-3), (30.0, 1e-3), (100.0, 1e-3), (1e3, 5e-2)]


@pytest.mark.parametrize(("kappa", "excess"), TMM_EXCESS)
def test_triple_momentum_certified_at_its_published_rate(kappa, excess):
    hp = {"mu": 1.0, "L": kappa}
    result = linearize.robust_rate(optimizers.triple_momentum(**hp), **hp, tol=1e-7)
    target = 1 - 1 / np.sqrt(kappa)
    assert -1e-9 <= (result.rate - target) / (1 - target) <= excess
    assert result.rho_bar == pytest.approx(result.rate, rel=excess)  # rho_bar = rho (Lemma 10)
    check_certificate(result, "triple_momentum", hp)
    assert linearize.robust_rate(optimizers.triple_momentum(**hp), **hp, iqc="sector").rate is None


@pytest.mark.parametrize("kappa", [25.0, 100.0])
def test_heavy_ball_polyak_has_no_certificate_but_converges_on_quadratics(kappa):
    hp = polyak(kappa)
    grid = {k: np.array([v]) for k, v in hp.items()}
    quad = np.max(linearize.convergence_rate(optimizers.momentum, grid, np.linspace(1, kappa, 401)))
    assert quad == pytest.approx((np.sqrt(kappa) - 1) / (np.sqrt(kappa) + 1), abs=1e-6)
    for iqc in robust.IQCS:
        result = linearize.robust_rate(optimizers.momentum(**hp), 1.0, kappa, iqc=iqc)
        assert result.rate is None and result.P is None and result.multipliers is None
        assert "no certificate" in result.status


# Published thresholds (LRP 2016, §4.5-4.6): the largest kappa with a certificate.
THRESHOLDS = [
    ("nesterov", nesterov_standard, "sector", 11.7),  # "approximately L/m < 11.7"
    ("nesterov", nesterov_optimal, "sector", 10.0),  # "at around L/m ~ 10"
    ("momentum", polyak, "sector", 6.0),  # "L/m ~ 6 or less"
    ("momentum", polyak, "off_by_one", 18.0),  # "L/m ~ 18 or less"
]


@pytest.mark.parametrize(("name", "tuning", "iqc", "kappa"), THRESHOLDS)
def test_published_stability_thresholds(name, tuning, iqc, kappa):
    below, above = kappa * 0.97, kappa * 1.03  # the paper reads them off its figures
    rule = optimizers.get(name)
    assert linearize.robust_rate(rule(**tuning(below)), 1.0, below, iqc=iqc).rate < 1
    assert linearize.robust_rate(rule(**tuning(above)), 1.0, above, iqc=iqc).rate is None


@pytest.mark.parametrize("kappa", [10.0, 100.0, 300.0])
def test_nesterov_off_by_one_curve(kappa):
    """Within a factor 1.4 of the quadratic rate in iterations (LRP §4.5, Fig. 3) and better
    than the estimate-sequence rate sqrt(1 - 1/sqrt(kappa)) it improves upon."""
    hp = nesterov_standard(kappa)
    result = linearize.robust_rate(optimizers.nesterov(**hp), 1.0, kappa)
    quad = 1 - 1 / np.sqrt(kappa)
    assert result.quadratic_rate == pytest.approx(quad, abs=1e-7)  # a double pole: ~sqrt(eps)
    assert 1.0 <= np.log(quad) / np.log(result.rate) < 1.45  # "1.4", to the digit given
    assert result.rate < np.sqrt(1 - 1 / np.sqrt(kappa))
    check_certificate(result, "nesterov", hp)


# ------------------------------------------------------------------ along real trajectories


def huber_function(key, dim: int, m: float, L: float, pieces: int = 6):
    """f(x) = sum_i c_i h(w_i.x - b_i) + m/2 |x|^2 with h the Huber function (h'' in [0, 1]):
    m-strongly convex with an L-Lipschitz gradient (sum_i c_i |w_i|^2 = L - m)."""
    k1, k2, k3 = jax.random.split(key, 3)
    w = jax.random.normal(k1, (pieces, dim), jnp.float64)
    b = jax.random.normal(k2, (pieces,), jnp.float64)
    c = jax.random.uniform(k3, (pieces,), jnp.float64, 0.5, 1.5)
    c = c * (L - m) / jnp.sum(c * jnp.sum(w**2, axis=1))

    def grad(x):
        s = w @ x - b
        return w.T @ (c * jnp.clip(s, -1.0, 1.0)) + m * x

    return grad


def run_rule(opt, grad, x0, steps):
    """The real optax run: parameters, the flattened state and the gradient at each step."""

    def step(carry, _):
        x, state = carry
        g = grad(x)
        updates, new_state = opt.update(g, state, x)
        flat = jnp.concatenate([jnp.zeros(0), *(jnp.ravel(v) for v in jax.tree.leaves(state))])
        return (optax.apply_updates(x, updates), new_state), (x, flat, g)

    _, (xs, states, gs) = jax.lax.scan(step, (x0, opt.init(x0)), None, length=steps)
    return np.asarray(xs), np.asarray(states), np.asarray(gs)


@pytest.mark.parametrize("iqc", robust.IQCS)
@pytest.mark.parametrize(
    ("name", "hp", "kappa"),
    [
        ("sgd", {"learning_rate": 0.15}, 10.0),
        ("nesterov", nesterov_standard(8.0), 8.0),
        ("nesterov", nesterov_standard(50.0), 50.0),
        ("triple_momentum", {"mu": 1.0, "L": 30.0}, 30.0),
        ("momentum", polyak(5.0), 5.0),
    ],
)
def test_certificate_along_trajectories(name, hp, kappa, iqc):
    m, L, dim, steps = 1.0, kappa, 3, 80
    result = linearize.robust_rate(optimizers.get(name)(**hp), m, L, iqc=iqc)
    if result.rate is None:
        assert iqc == "sector" and name in ("nesterov", "triple_momentum")
        return
    rho, P, lam = result.rate, result.P, result.multipliers
    with jax.enable_x64(True):
        for seed in range(3):
            grad = huber_function(jax.random.PRNGKey(seed), dim, m, L)
            opt = optimizers.get(name)(**hp)
            x0 = 3.0 * jax.random.normal(jax.random.PRNGKey(100 + seed), (dim,), jnp.float64)
            x_star = run_rule(optimizers.sgd(1 / L), grad, x0, 3000)[0][-1]
            xs, states, gs = run_rule(opt, grad, x0, steps)
            y, u = xs - x_star, gs  # the fixed point has u = 0 and a zero state
            xi = np.concatenate([y, states], axis=1).reshape(steps, -1, dim)  # (k, state, dim)
            # checked while the error is above rounding (x_star is only accurate to ~1e-15)
            live = int(np.sum(np.linalg.norm(y, axis=1) > 1e-9 * np.linalg.norm(y[0])))
            y, u, xi = y[:live], u[:live], xi[:live]
            sector = 2 * np.sum((L * y - u) * (u - m * y), axis=1)
            if iqc == "off_by_one":
                zeta = np.concatenate([np.zeros((1, dim)), u[:-1] - L * y[:-1]])
                xi = np.concatenate([xi, zeta[:, None, :]], axis=1)
                off = 2 * np.sum((L * y - u + zeta) * (u - m * y), axis=1)
                rho_bar2 = lam["off_by_one"] / sum(lam.values())
                terms = (1 - rho_bar2) * sector + rho_bar2 * off
                weighted = np.cumsum(rho ** (-2.0 * np.arange(live)) * terms)
                assert np.all(weighted >= -1e-9 * np.abs(weighted).max())  # Lemma 10
                supply = lam["sector"] * sector + lam["off_by_one"] * off
            else:
                supply = lam["sector"] * sector
                assert np.all(sector >= -1e-9 * np.abs(sector).max())  # Lemma 6
            V = np.einsum("kid,ij,kjd->k", xi, P, xi)
            dissipation = V[1:] - rho**2 * V[:-1] + supply[:-1]  # <= 0 by the LMI
            assert np.all(dissipation <= 1e-9 * (V[:-1] + np.abs(supply[:-1])) + 1e-300)
            if iqc == "sector":
                assert np.all(V[1:] <= rho**2 * V[:-1] * (1 + 1e-9) + 1e-300)
            norms = np.linalg.norm(xi.reshape(live, -1), axis=1)
            bound = np.sqrt(np.linalg.cond(P)) * rho ** np.arange(live) * norms[0]
            assert np.all(norms <= bound * (1 + 1e-6))  # Theorem 4
            assert live > 10


# ------------------------------------------------------------------ grids, refusals, errors


def test_grid_equals_single_points():
    grid = {"learning_rate": np.array([0.05, 0.1, 0.2]), "beta": np.array([0.0, 0.3, 0.6])}
    result = linearize.robust_rate_grid(optimizers.momentum, grid, 1.0, 10.0, tol=1e-6)
    assert result.rate.shape == (3, 3) and result.solves > 0
    for i, a in enumerate(grid["learning_rate"]):
        for j, beta in enumerate(grid["beta"]):
            single = linearize.robust_rate(optimizers.momentum(a, beta), 1.0, 10.0, tol=1e-6)
            if single.rate is None:
                assert np.isnan(result.rate[i, j])
            else:
                assert result.rate[i, j] == pytest.approx(single.rate, abs=3e-6)
                hp = {"learning_rate": a, "beta": beta}
                check_certificate(result.results[i, j], "momentum", hp)
    assert np.isnan(result.rate).any() and not np.isnan(result.rate).all()


def test_compiled_problem_is_dpp():
    assert sdp(3, ("sector", "off_by_one")).problem.is_dpp()
    assert sdp(2, ("sector",)).problem.is_dpp()


def _coupled(a: float = 0.1) -> optax.GradientTransformation:
    """A linear rule that mixes coordinates: -a (g + 0.5 roll(g))."""

    def update(g, state, params=None):
        return -a * (g + 0.5 * jnp.roll(g, 1)), state

    return optax.GradientTransformation(lambda p: optax.EmptyState(), update)


@pytest.mark.parametrize(
    ("opt", "message"),
    [
        (optax.adam(0.1), "^opt: the update rule is not linear time-invariant in the gradient"),
        (optimizers.rmsprop(0.1), "^opt: the update rule is not linear"),
        (optax.chain(optax.clip_by_global_norm(0.5), optax.sgd(0.1)), "^opt: the update rule"),
        (_coupled(), "^opt: the update rule couples parameters"),
        ("sgd", "^opt: expected an optax.GradientTransformation"),
    ],
)
def test_refuses_rules_it_cannot_certify(opt, message):
    with pytest.raises(ValueError, match=message):
        linearize.robust_rate(opt, 1.0, 10.0)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"mu": 0.0}, "^mu: expected a finite strong convexity > 0"),
        ({"mu": float("nan")}, "^mu: "),
        ({"L": 0.5}, r"^L: expected a finite smoothness >= mu = 1"),
        ({"L": float("inf")}, "^L: "),
        ({"iqc": "zames_falb"}, "^iqc: expected one of sector, off_by_one"),
        ({"tol": 0.0}, r"^tol: expected a value in \(0, 0.01\]"),
    ],
)
def test_bad_arguments(kwargs, message):
    args = {"mu": 1.0, "L": 10.0} | kwargs
    with pytest.raises(ValueError, match=message):
        linearize.robust_rate(optimizers.sgd(0.1), **args)


def test_missing_extra_is_one_line():
    """Without cvxpy, one line that says what to install (a fresh interpreter, cvxpy hidden)."""
    code = (
        "import sys; sys.modules['cvxpy'] = None\n"
        "from gdyn_jax import linearize, optimizers\n"
        "try:\n"
        "    linearize.robust_rate(optimizers.sgd(0.1), 1.0, 10.0)\n"
        "except ImportError as e:\n"
        "    assert isinstance(e, ValueError); print(e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().count("\n") == 0
    assert 'pip install -e ".[robust]"' in out.stdout
    assert robust.MissingExtraError is errors.MissingExtraError  # one class, re-exported

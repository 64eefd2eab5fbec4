r"""A network's training curve predicted from the optimizer's code, mode by mode, in discrete time.

MLPs (one and two hidden layers, ReLU and tanh) on the first MNIST-1D examples, square loss,
full batch, from the sweep's initialisation. The empirical NTK at initialisation
(``gdyn_jax.measurements.ntk``: layer by layer, Novak et al. 2022) gives the modes; each mode's
residual projection follows the rule's own closed loop at its curvature
(``gdyn_jax.predictions.ntk_loop``), for gradient descent, heavy ball (beta 0.9), Nesterov
(beta 0.9) and lookahead (GD inside, k = 5, alpha = 0.5), at fractions of each rule's stability
limit at the top curvature. The real networks are trained with the sweep's own step
(``experiments._ntk_table``). Beside the discrete prediction: the continuous-time one that
neural-tangents computes (gradient flow, or the momentum ODE in units of sqrt(eta)).

Read the errors as a statement of regime: the prediction is exact for the linearised network,
so what is left is the network's departure from it, which grows as the width shrinks and as the
run goes on (the loss falls 10^3-10^6-fold with momentum, and a relative error on that tail
measures the kernel's drift). The scored loss error is over the steps before the measured loss
first falls below 10 % of its initial value; the error over all steps is tabled beside it.
"""

from __future__ import annotations

from dataclasses import dataclass

from experiments._harness import Modes, Report
from experiments._ntk_table import RULES, network_rows

TITLE = "NTK modes: training curves predicted mode by mode through each rule's closed loop"
SOURCE = "Lee et al. NeurIPS 2019 (linearised networks); Novak et al. ICML 2022 (fast NTK)"
TOLERANCE = 0.05  # the 5 % on the loss curve and on the fast modes
CONTINUOUS_FACTOR = 4.0  # the continuous prediction's fast-mode error, at least this many times
SPEARMAN = 0.9


@dataclass(frozen=True)
class Settings(Modes):
    examples: int = 128
    steps: int = 300
    widths: tuple[int, ...] = (128, 512, 2048)
    depths: tuple[int, ...] = (1,)
    activations: tuple[str, ...] = ("relu",)
    fractions: tuple[float, ...] = (0.1, 0.5, 0.9)
    rules: tuple[str, ...] = tuple(RULES)
    seed: int = 0
    cross_entropy_widths: tuple[int, ...] = ()  # the Gauss-Newton approximation, tabled
    # wider one-hidden-layer ReLU networks for heavy ball and lookahead: the width at which
    # their error at the largest fraction falls below the tolerance (heavy ball at 0.9 of its
    # limit needs more than 2048 units: its fast modes and settling ranks are scored there)
    extra_widths: tuple[int, ...] = (8192,)
    drift_steps: int = 0  # > 0: the kernel's drift over that many steps of GD, per network

    TINY = dict(
        examples=64,
        steps=40,
        widths=(64,),
        fractions=(0.5,),
        rules=("gd", "heavy ball"),
        extra_widths=(),
    )
    FULL = dict(
        examples=256,
        steps=500,
        widths=(64, 128, 256, 512, 1024, 2048),
        depths=(1, 2),
        activations=("relu", "tanh"),
        cross_entropy_widths=(512, 2048),
        extra_widths=(4096, 8192),
        drift_steps=100,
    )


def run(s: Settings, report: Report) -> None:
    rows = []
    for depth in s.depths:
        for activation in s.activations:
            for width in s.widths:
                rows += network_rows(
                    width,
                    depth,
                    activation,
                    s.fractions,
                    s.rules,
                    steps=s.steps,
                    examples=s.examples,
                    seed=s.seed,
                    keep_curves=width == max(s.widths),
                    drift_steps=s.drift_steps,
                )
    wide = [r for r in ("heavy ball", "lookahead") if r in s.rules]
    for width in s.extra_widths if wide else ():
        rows += network_rows(
            width, 1, "relu", s.fractions, wide, steps=s.steps, examples=s.examples, seed=s.seed,
            drift_steps=s.drift_steps,
        )  # fmt: skip
    approx = []
    for width in s.cross_entropy_widths:
        approx += network_rows(
            width, 1, "relu", s.fractions, ("gd", "heavy ball"), steps=s.steps,
            examples=s.examples, seed=s.seed, loss="cross_entropy",
        )  # fmt: skip
    report.text(__doc__.split("\n\n", 1)[1])
    _table(report, rows)
    _drift_table(report, rows)
    if approx:
        report.text(
            "Cross-entropy, one hidden ReLU layer: the same construction on the loss's "
            "Gauss-Newton model in the outputs at initialisation. An approximation, not exact: "
            "its error is the model's, not only the network's departure from its linearisation."
        )
        _table(report, approx)
    _score(s, report, rows)
    _width_table(s, report, rows)
    _plot(s, report, rows)
    report.record(
        rows=[
            {k: v for k, v in r.items() if k not in ("pred", "measured", "outputs")}
            for r in rows + approx
        ]
    )


def _table(report: Report, rows: list[dict]) -> None:
    header = [
        "depth",
        "act",
        "width",
        "rule",
        "eta/limit",
        "steps to 10%",
        "error",
        "error (all)",
        "continuous",
        "continuous (all)",
        "fast modes",
        "mode error",
        "continuous mode",
        "settling Spearman",
        "Spearman (distinct envelopes)",
        "predict s",
        "train s",
    ]
    keys = [
        "depth",
        "activation",
        "width",
        "rule",
        "fraction",
        "upto",
        "error",
        "error_all",
        "continuous_error",
        "continuous_error_all",
        "fast_modes",
        "mode_error",
        "continuous_mode_error",
        "settling_spearman",
        "settling_spearman_distinct",
        "predict_seconds",
        "train_seconds",
    ]
    report.table(header, [[r[k] for k in keys] for r in rows])


def _pick(rows, **match) -> list[dict]:
    return [r for r in rows if all(r[k] == v for k, v in match.items())]


def _score(s: Settings, report: Report, rows: list[dict]) -> None:
    width, depth = max(s.widths), min(s.depths)
    act = "relu" if "relu" in s.activations else s.activations[0]
    named = _named_width(rows, "heavy ball", max(s.fractions), depth, act) or width
    for r in _pick(rows, depth=depth, activation=act):
        name = f"{r['rule']} at {r['fraction']:g} of the limit, width {r['width']}"
        valid = r["rule"] in ("gd", "nesterov") or r["fraction"] <= 0.5
        if r["width"] == width and valid:
            report.bound(f"{name}: loss error before 10 %", r["error"], upper=TOLERANCE)
            report.bound(f"{name}: settling Spearman", r["settling_spearman"], lower=SPEARMAN)
        if r["rule"] == "heavy ball" and r["width"] == named != width:
            # its underdamped modes share one envelope, sqrt(beta)^k: their settling ranks are
            # phases, which the kernel's drift at 2048 units reorders (reported at both widths)
            report.bound(f"{name}: settling Spearman", r["settling_spearman"], lower=SPEARMAN)
        # the fast modes, where discrete and continuous time differ (fractions >= 0.5): gradient
        # descent at the largest width, heavy ball at the width the width table names
        at = width if r["rule"] == "gd" else named if r["rule"] == "heavy ball" else None
        if r["fraction"] >= 0.5 and r["fast_modes"] > 1 and r["width"] == at:
            report.bound(f"{name}: fast-mode error", r["mode_error"], upper=TOLERANCE)
            ratio = r["continuous_mode_error"] / max(r["mode_error"], 1e-12)
            report.bound(
                f"{name}: continuous / discrete mode error", ratio, lower=CONTINUOUS_FACTOR
            )


def _named_width(rows, rule: str, fraction: float, depth: int, act: str):
    """The smallest width from which ``rule``'s loss error at ``fraction`` stays within the
    tolerance at every larger width measured (None if it never does)."""
    sel = _pick(rows, rule=rule, fraction=fraction, depth=depth, activation=act)
    errs = {r["width"]: r["error"] for r in sel}
    ok = [w for w in sorted(errs) if all(errs[v] <= TOLERANCE for v in errs if v >= w)]
    return ok[0] if ok else None


def _drift_table(report: Report, rows: list[dict]) -> None:
    """Per network, the kernel's drift over the first steps of gradient descent."""
    seen = {}
    for r in rows:
        if "kernel_drift" in r:
            seen[(r["depth"], r["activation"], r["width"])] = r
    if not seen:
        return
    r0 = next(iter(seen.values()))
    report.text(
        f"How far each network leaves its linearisation: the kernel after {r0['drift_steps']} "
        "steps of gradient descent at the largest fraction of its limit, against the kernel at "
        "initialisation (relative Frobenius change, and the ratio of top eigenvalues: past "
        "1/fraction the top mode has crossed the limit, the edge of stability)."
    )
    report.table(
        ["depth", "act", "width", "kernel change", "top eigenvalue ratio"],
        [[*key, r["kernel_drift"], r["top_drift"]] for key, r in sorted(seen.items())],
    )


def _width_table(s: Settings, report: Report, rows: list[dict]) -> None:
    """Heavy ball and lookahead at the largest fraction, against width: where the loss error
    first falls below the tolerance, and the error over all steps beside it."""
    frac = max(s.fractions)
    widths = sorted({r["width"] for r in rows})
    lines = []
    for rule in ("heavy ball", "lookahead"):
        for depth in s.depths:
            for act in s.activations:
                sel = _pick(rows, rule=rule, fraction=frac, depth=depth, activation=act)
                if not sel:
                    continue
                got = {r["width"]: r for r in sel}
                cells = [
                    f"{got[w]['error']:.3g} ({got[w]['error_all']:.3g})" if w in got else "-"
                    for w in widths
                ]
                named = _named_width(rows, rule, frac, depth, act)
                lines.append([rule, depth, act, *cells, named or f"not below 5 % up to {max(got)}"])
    if lines:
        report.text(
            f"Heavy ball and lookahead at {frac:g} of the limit: the loss error before 10 % "
            "(over all steps in brackets) against width, and the width from which it stays "
            "below 5 %."
        )
        report.table(["rule", "depth", "act", *map(str, widths), "width < 5 %"], lines)


def _plot(s: Settings, report: Report, rows: list[dict]) -> None:
    kept = [r for r in rows if "pred" in r and r["depth"] == min(s.depths)]
    if not kept:
        return
    frac = sorted(s.fractions)[len(s.fractions) // 2]
    with report.figure(
        "ntk_modes.png",
        f"Predicted (solid), continuous-time (dashed) and measured "
        f"(dotted) train loss at {frac:g} of each rule's limit, width "
        f"{max(s.widths)}; right: loss error against width",
        (12, 4.5),
    ) as fig:
        left, right = fig.subplots(1, 2)
        for r in _pick(kept, fraction=frac, activation=kept[0]["activation"]):
            (line,) = left.semilogy(r["pred"].train_loss, label=r["rule"])
            left.semilogy(r["pred"].continuous_train_loss, "--", color=line.get_color())
            left.semilogy(r["measured"], ":", color="k", lw=1)
        left.set(xlabel="step", ylabel="train loss")
        left.legend()
        for rule in s.rules:
            for f in s.fractions:
                sel = _pick(
                    rows,
                    rule=rule,
                    fraction=f,
                    depth=min(s.depths),
                    activation=kept[0]["activation"],
                )
                right.loglog(
                    [r["width"] for r in sel],
                    [max(r["error"], 1e-6) for r in sel],
                    "o-",
                    label=f"{rule} {f:g}",
                )
        right.axhline(TOLERANCE, color="gray", lw=0.8)
        right.set(xlabel="width", ylabel="median relative loss error (before 10 %)")
        right.legend(fontsize=6, ncol=2)

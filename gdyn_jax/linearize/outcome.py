r"""Three outcomes, never two: what an analysis that can fail numerically answers.

An analysis in floating point asks a question: *is the rate* :math:`\rho` *certified over*
:math:`S(\mu, L)`? *where does the loop stop being stable?* *is this loop stable?* It answers
with one of three :class:`Outcome` values, and a one-line ``reason``:

- ``PROVEN`` (``"proven"``): the claim holds, and what proves it was checked in float64 (a
  certificate verified in numpy, a stability edge bracketed between a stable and an unstable
  curvature, a spectral radius below 1 by more than its rounding);
- ``DISPROVEN`` (``"disproven"``): the claim fails, and that was decided too (the certificate
  SDP is infeasible by more than the solver's accuracy, the rule diverges on a quadratic of
  the class, no curvature is stable, the radius exceeds 1 by more than its rounding);
- ``UNDECIDED`` (``"undecided"``): the computation could not tell (a solver that stopped
  short, a certificate that does not verify in float64, a radius within rounding of 1, a
  limit beyond the scales float64 holds). ``reason`` names the cause: the solver's status,
  the conditioning, the scale that broke it. A numerical failure is never a verdict.

Each analysis documents what its claim is:

- :func:`~gdyn_jax.linearize.robust_rate`: *a rate below 1 is certified over*
  :math:`S(\mu, L)`. PROVEN: ``rate`` and its verified certificate; DISPROVEN: no certificate
  exists with this IQC (or the rule diverges on a quadratic of the class).
- :func:`~gdyn_jax.linearize.stability_limit`: *the loop has a first stable interval of
  curvatures, ending at* ``value``. PROVEN: the edge, bracketed to ``rtol``; DISPROVEN: no
  curvature is stable (``value = 0``).
- :func:`~gdyn_jax.linearize.decide_stable`: *the loop is stable*, :math:`\rho < 1`. DISPROVEN:
  :math:`\rho > 1` beyond its rounding.

Functions that return a plain number (:func:`~gdyn_jax.linearize.max_stable_curvature`) raise
:class:`UndecidedError` where their richer twin says ``UNDECIDED``, so a float they return is
always a decided answer. Results hold ``outcome`` and ``reason`` fields; :class:`Decision` is the
pair on its own, and ``Decision.to_dict()`` the form ``gdyn analyze --json`` prints.

>>> from gdyn_jax.linearize import Outcome, Decision
>>> Decision(Outcome.UNDECIDED, "the SDP solver failed (solver_error) at kappa = 1e+09").to_dict()
{'outcome': 'undecided', 'reason': 'the SDP solver failed (solver_error) at kappa = 1e+09'}
"""

from __future__ import annotations

import dataclasses
import enum

__all__ = ["Decision", "Outcome", "UndecidedError"]


class Outcome(enum.StrEnum):
    """The three answers of an analysis that can fail numerically (see the module doc)."""

    PROVEN = "proven"
    DISPROVEN = "disproven"
    UNDECIDED = "undecided"

    @property
    def decided(self) -> bool:
        """True for PROVEN and DISPROVEN."""
        return self is not Outcome.UNDECIDED


@dataclasses.dataclass(frozen=True)
class Decision:
    """An :class:`Outcome` and its one-line ``reason`` (why, or what could not be decided)."""

    outcome: Outcome
    reason: str = ""

    def __post_init__(self):
        object.__setattr__(self, "outcome", Outcome(self.outcome))

    @property
    def decided(self) -> bool:
        return self.outcome.decided

    def to_dict(self) -> dict[str, str]:
        """``{'outcome': ..., 'reason': ...}``, as ``gdyn analyze --json`` prints it."""
        return {"outcome": self.outcome.value, "reason": self.reason}


class UndecidedError(ArithmeticError, ValueError):
    """An analysis that returns a plain value could not decide it; the message says why.

    Raised instead of a number that would read as an answer (``max_stable_curvature`` of a rule
    whose limit lies beyond float64's range, ...). ``reason`` holds the message. An
    ``ArithmeticError``, and a ``ValueError`` too, so that the command line reports it in one
    line.
    """

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason

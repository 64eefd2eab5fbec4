"""gdyn_jax.state_structure owns which state leaves are dynamic: optimizers and linearize both
read it, neither through the other; the old paths forward for one release with a warning."""

from __future__ import annotations

import subprocess
import sys
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
import pytest

from gdyn_jax import linearize as lz
from gdyn_jax import optimizers, state_structure
from gdyn_jax.linearize import structure as old_structure
from gdyn_jax.optimizers import state as old_state
from gdyn_jax.state_structure import interpret, roles


def _modules_loaded_by(statement: str) -> set[str]:
    """The gdyn_jax modules a fresh interpreter has loaded after ``statement``."""
    code = f"import sys; {statement}; print(' '.join(sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return {name for name in out.stdout.split() if name.startswith("gdyn_jax")}


def test_layers_import_only_downward():
    foundation = _modules_loaded_by("import gdyn_jax.state_structure")
    assert foundation <= {"gdyn_jax", "gdyn_jax.errors"} | {
        m for m in foundation if m.startswith("gdyn_jax.state_structure")
    }
    rules = _modules_loaded_by("import gdyn_jax.optimizers")
    assert not any(m.startswith("gdyn_jax.linearize") for m in rules)
    assert "gdyn_jax.state_structure.roles" in rules


def test_one_mask_for_optimizers_and_linearize():
    assert optimizers.dynamic_state_mask is state_structure.dynamic_state_mask
    assert optimizers.register_bookkeeping is state_structure.register_bookkeeping
    opt = optax.inject_hyperparams(optax.adam)(learning_rate=0.1)
    params = jnp.zeros(2)
    state = opt.init(params)
    mask = state_structure.dynamic_state_mask(state, opt, params=params)
    # the loop linearize builds has exactly the dynamic leaves of the mask as its states
    system = lz.linearize(opt, jnp.eye(2))
    flags = jax.tree.leaves(mask)
    dynamic = [leaf for leaf, m in zip(jax.tree.leaves(state), flags, strict=True) if m]
    assert len(dynamic) == 2  # mu and nu; count and the injected hyperparameters are clock
    assert system.A.shape == (2 + sum(leaf.size for leaf in dynamic),) * 2


def test_deprecated_mask_warns_and_agrees():
    opt = optimizers.pid(0.1)
    params = jnp.zeros(3)
    state = opt.init(params)
    expected = jax.tree.leaves(state_structure.dynamic_state_mask(state, opt, params=params))
    with pytest.warns(DeprecationWarning, match="dynamic_state_mask"):
        assert lz.dynamic_mask(state, opt, params=params) == expected
    with pytest.warns(DeprecationWarning, match="dynamic_state_mask"):
        assert lz.dynamic_mask(state) == jax.tree.leaves(state_structure.dynamic_state_mask(state))


def test_old_module_paths_forward_with_a_warning():
    with pytest.warns(DeprecationWarning, match="gdyn_jax.state_structure.roles.analyse"):
        assert old_structure.analyse is roles.analyse
    with pytest.warns(DeprecationWarning, match="state_structure.interpret.Interpretation"):
        assert old_structure.Interpretation is interpret.Interpretation
    with pytest.warns(DeprecationWarning, match="gdyn_jax.state_structure.registered_mask"):
        assert old_state.registered_mask is state_structure.registered_mask
    with pytest.raises(AttributeError):
        old_structure.no_such_name  # noqa: B018


class _GainState(NamedTuple):
    trace: Any
    gain: Any  # a float the step rescales by the gradient: dynamic unless declared bookkeeping


def _gain_rule() -> optax.GradientTransformation:
    def init(params):
        return _GainState(jnp.zeros_like(params), jnp.ones((), params.dtype))

    def update(g, state, params=None):
        trace = 0.5 * state.trace + g
        return -0.1 * state.gain * trace, _GainState(trace, state.gain * (1.0 + 0.0 * g.sum()))

    return optax.GradientTransformation(init, update)


def test_registered_bookkeeping_is_held_by_the_mask_and_by_linearize():
    opt = _gain_rule()
    params = jnp.zeros(1)
    state = opt.init(params)
    assert state_structure.dynamic_state_mask(state, opt, params=params) == _GainState(True, True)
    assert lz.linearize(opt, 2.0).A.shape == (3, 3)
    state_structure.register_bookkeeping(_GainState, ["gain"])
    assert state_structure.dynamic_state_mask(state, opt, params=params) == _GainState(True, False)
    assert state_structure.registered_mask(state) == [False, True]
    system = lz.linearize(opt, 2.0)
    assert system.A.shape == (2, 2) and system.exact

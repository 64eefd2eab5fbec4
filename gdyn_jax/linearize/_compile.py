"""``jax.jit`` with cheaper XLA compilation on CPU for the small elementwise kernels here.

The grid functions of this package compile to a few dozen tiny elementwise kernels; on the CPU
backend their one-time compilation, not the run, dominates a first call on a grid of 10^4
systems. XLA's older elemental IR emitter (``xla_cpu_use_fusion_emitters=False``) compiles such
kernels about twice as fast and runs them as fast here, so CPU calls use it. Other backends,
and jaxlib versions that do not know the option, get a plain ``jax.jit``.
"""

from __future__ import annotations

from collections.abc import Callable

import jax

__all__ = ["jit"]

CPU_COMPILER_OPTIONS = {"xla_cpu_use_fusion_emitters": False}
_OPTIONS_OK = [True]  # set to False once XLA rejects the options


def jit(fun: Callable, **jit_kwargs) -> Callable:
    """``jax.jit(fun, **jit_kwargs)``, compiled with :data:`CPU_COMPILER_OPTIONS` on CPU."""
    plain = jax.jit(fun, **jit_kwargs)
    fast = jax.jit(fun, compiler_options=CPU_COMPILER_OPTIONS, **jit_kwargs)

    def call(*args, **kwargs):
        if _OPTIONS_OK[0] and jax.default_backend() == "cpu":
            try:
                return fast(*args, **kwargs)
            except Exception as error:  # an unknown option: fall back for good
                if not any(name in str(error) for name in CPU_COMPILER_OPTIONS):
                    raise
                _OPTIONS_OK[0] = False
        return plain(*args, **kwargs)

    call.lower = fast.lower  # for inspection, as jax.jit's
    call.__wrapped__ = fun
    call.__doc__ = fun.__doc__
    return call

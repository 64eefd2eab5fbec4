r"""The empirical neural tangent kernel of a network, layer by layer.

For outputs :math:`f(\theta, x) \in \mathbb{R}^C` the empirical NTK of two input sets is

.. math::
    \Theta_{(i,c),(j,d)} = \sum_p \frac{\partial f_c(x_i)}{\partial\theta_p}
    \frac{\partial f_d(x'_j)}{\partial\theta_p} = (J J'^\top)_{(i,c),(j,d)}.

A dense layer :math:`y = x W + b` contributes :math:`\partial f_c/\partial W_{ak} = x_a
\delta_{c,k}` with :math:`\delta_{c,k} = \partial f_c/\partial y_k` the back-propagated
cotangent, so its share of the kernel is a product of two Gram matrices, never a Jacobian:

.. math::
    \Theta^{(l)}_{(i,c),(j,d)} = \bigl(x_i^\top x'_j + 1\bigr)\,
    \delta_{i,c}^\top \delta'_{j,d}

(the ``+ 1`` is the bias). This is the "structured derivatives" method of Novak, Sohl-Dickstein
and Schoenholz, *Fast finite width neural tangent kernel*, ICML 2022: :func:`empirical_ntk`
records each ``flax.linen.Dense`` call's input and the cotangent at its output (one forward
pass, one vector-Jacobian product per output) and sums the products. A model whose parameters
are not all those of dense layers (convolutions, normalisation scales) takes the memory
fallback, :func:`ntk_implicit`: columns of :math:`J (J'^\top v)` for blocks of unit vectors
:math:`v` (one VJP and one JVP each), never holding :math:`J`. :func:`ntk_direct`, the
Jacobians themselves, is the reference the tests compare with.

Kernels are ``(N*C, N'*C)`` with example-major rows (row ``i*C + c``). The examples of a batch
must not interact (no batch statistics): the cotangent of example ``i``'s outputs is read from
one VJP over the whole batch.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from gdyn_jax.errors import UsageError

__all__ = [
    "empirical_ntk",
    "ntk_bytes",
    "ntk_direct",
    "ntk_implicit",
    "preconditioned_ntk",
    "structured_layers",
]

PyTree = Any
Apply = Callable[[PyTree, jax.Array], jax.Array]


def ntk_bytes(num_examples: int, num_outputs: int, widths=(), dtype_bytes: int = 8) -> int:
    """Bytes the kernel of ``num_examples`` with ``num_outputs`` each needs at its peak: the
    kernel and one layer's cotangent Gram (float64 on the host: ``dtype_bytes``), plus the
    cotangents of every layer of ``widths`` (float32)."""
    m = int(num_examples) * int(num_outputs)
    return 3 * m * m * dtype_bytes + 4 * m * int(sum(widths))


def ntk_direct(apply_fn: Apply, params: PyTree, x1: jax.Array, x2: jax.Array | None = None):
    """:math:`J_1 J_2^\\top` from the full Jacobians (``jax.jacrev``): the reference."""

    def flat_out(p, x):
        return apply_fn(p, x).reshape(-1)

    def jac(x):
        j = jax.jacrev(flat_out)(params, x)
        return jnp.concatenate([a.reshape(a.shape[0], -1) for a in jax.tree.leaves(j)], axis=1)

    j1 = jac(x1)
    j2 = j1 if x2 is None else jac(x2)
    return j1 @ j2.T


def ntk_implicit(
    apply_fn: Apply,
    params: PyTree,
    x1: jax.Array,
    x2: jax.Array | None = None,
    block: int = 64,
):
    r"""The kernel by blocked Jacobian-vector products: column :math:`j` is
    :math:`J_1 (J_2^\top e_j)`, ``block`` columns at a time (memory ``block`` parameter
    vectors; the memory fallback of :func:`empirical_ntk`)."""
    x2 = x1 if x2 is None else x2
    f1 = lambda p: apply_fn(p, x1).reshape(-1)  # noqa: E731
    out2, vjp2 = jax.vjp(lambda p: apply_fn(p, x2).reshape(-1), params)
    m2 = out2.shape[0]

    def column(e):
        (tangent,) = vjp2(e)
        return jax.jvp(f1, (params,), (tangent,))[1]

    columns = jax.vmap(column)
    pad = (-m2) % block
    eye = jnp.eye(m2 + pad, m2, dtype=out2.dtype).reshape(-1, block, m2)
    cols = jax.lax.map(columns, eye)  # (blocks, block, N1*C)
    return cols.reshape(-1, cols.shape[-1])[:m2].T


def _dense_calls(module: nn.Module, variables: PyTree, x: jax.Array):
    """The output shapes of every ``nn.Dense`` call of one forward pass, in call order."""
    shapes: list[tuple[int, ...]] = []

    def record(next_fun, args, kwargs, context):
        out = next_fun(*args, **kwargs)
        if isinstance(context.module, nn.Dense) and context.method_name == "__call__":
            shapes.append((out.shape, bool(context.module.use_bias), context.module.path))
        return out

    with nn.intercept_methods(record):
        jax.eval_shape(lambda v: module.apply(v, x), variables)
    return shapes


def structured_layers(module: nn.Module, variables: PyTree, x: jax.Array) -> bool:
    """Whether every parameter of ``variables['params']`` is a dense layer's, each layer
    called once on a flat (batch, features) input: the condition of the layer-by-layer kernel."""
    calls = _dense_calls(module, variables, x)
    paths = [c[2] for c in calls]
    if len(set(paths)) != len(paths) or any(len(c[0]) != 2 for c in calls):
        return False
    counted = 0
    for _shape, bias, path in calls:
        node = variables["params"]
        for name in path:
            node = node.get(name) if isinstance(node, dict) else None
            if node is None:
                return False
        counted += int(np.size(node["kernel"])) + (int(np.size(node["bias"])) if bias else 0)
    total = sum(int(np.size(a)) for a in jax.tree.leaves(variables["params"]))
    return counted == total


def _grams(module: nn.Module, variables: PyTree, x: jax.Array):
    """Per dense layer (in call order): its inputs (N, d_in) and the cotangents (C, N, d_out)."""
    calls = _dense_calls(module, variables, x)
    eps0 = [jnp.zeros(shape, x.dtype) for shape, _, _ in calls]

    def run(eps):
        inputs, k = [], iter(range(len(eps)))

        def perturb(next_fun, args, kwargs, context):
            out = next_fun(*args, **kwargs)
            if isinstance(context.module, nn.Dense) and context.method_name == "__call__":
                inputs.append(args[0])
                out = out + eps[next(k)]
            return out

        with nn.intercept_methods(perturb):
            out = module.apply(variables, x)
        return out, inputs

    out, vjp, inputs = jax.vjp(run, eps0, has_aux=True)
    num_outputs = out.shape[-1]
    eye = jnp.eye(num_outputs, dtype=out.dtype)
    (deltas,) = jax.vmap(lambda e: vjp(jnp.broadcast_to(e, out.shape)))(eye)
    return inputs, deltas


# compiled once per module (Flax modules hash by their fields) and shapes
_grams_jit = jax.jit(_grams, static_argnums=0)


def empirical_ntk(
    module: nn.Module,
    variables: PyTree,
    x1: jax.Array,
    x2: jax.Array | None = None,
    *,
    block: int = 64,
) -> np.ndarray:
    r"""The empirical NTK :math:`J_1 J_2^\top` of ``module`` at ``variables``, ``(N1*C, N2*C)``.

    Layer by layer (:mod:`gdyn_jax.measurements.ntk`) when every parameter belongs to a dense
    layer (:func:`~gdyn_jax.measurements.ntk.structured_layers`), else by blocked JVPs
    (:func:`~gdyn_jax.measurements.ntk.ntk_implicit`, ``block``
    columns at a time). Only ``variables['params']`` are differentiated; other collections
    are held fixed. Returned as a float64 numpy array.
    """
    if "params" not in variables:
        raise UsageError("variables: expected a dict with a 'params' collection")
    x1 = jnp.asarray(x1)
    x2 = x1 if x2 is None else jnp.asarray(x2)
    if structured_layers(module, variables, x1[:1]):
        return _structured(module, variables, x1, x2)
    rest = {k: v for k, v in variables.items() if k != "params"}

    def apply_fn(p, x):
        return module.apply({"params": p, **rest}, x)

    return np.asarray(ntk_implicit(apply_fn, variables["params"], x1, x2, block), np.float64)


def preconditioned_ntk(
    module: nn.Module,
    variables: PyTree,
    x1: jax.Array,
    x2: jax.Array | None = None,
    *,
    scale: jax.Array,
    block: int = 64,
) -> np.ndarray:
    r"""The preconditioned kernel :math:`J_1 P^{-1} J_2^\top` for a diagonal preconditioner
    given as ``scale`` :math:`= P^{-1/2}` (flat, in ``ravel_pytree`` order of the params): the
    plain kernel of :math:`\phi \mapsto f(\theta_0 + P^{-1/2}\phi)` at :math:`\phi = 0`, by
    blocked JVPs (:func:`ntk_implicit`; a per-parameter scale has no layer-by-layer form).
    Float64 numpy, ``(N1*C, N2*C)``."""
    if "params" not in variables:
        raise UsageError("variables: expected a dict with a 'params' collection")
    flat0, unravel = ravel_pytree(variables["params"])
    rest = {k: v for k, v in variables.items() if k != "params"}
    scale = jnp.asarray(scale, flat0.dtype)

    def apply_fn(phi, x):
        return module.apply({"params": unravel(flat0 + scale * phi), **rest}, x)

    def kernel(x1, x2):
        return ntk_implicit(apply_fn, jnp.zeros_like(flat0), x1, x2, block)

    x2 = x1 if x2 is None else x2
    return np.asarray(jax.jit(kernel)(jnp.asarray(x1), jnp.asarray(x2)), np.float64)


def _structured(module: nn.Module, variables: PyTree, x1: jax.Array, x2: jax.Array):
    biases = [bias for _, bias, _ in _dense_calls(module, variables, x1[:1])]
    in1, d1 = _grams_jit(module, variables, x1)
    in2, d2 = (in1, d1) if x2 is x1 else _grams_jit(module, variables, x2)
    n1, n2, c = x1.shape[0], x2.shape[0], d1[0].shape[0]
    kernel = np.zeros((n1 * c, n2 * c), np.float64)
    for a1, a2, e1, e2, bias in zip(in1, in2, d1, d2, biases, strict=True):
        kernel += np.asarray(_layer(a1, a2, e1, e2, bias), np.float64)
    return kernel


@jax.jit
def _layer_core(a1, a2, e1, e2, bias):
    gram_x = a1 @ a2.T + bias  # (n1, n2)
    gram_d = jnp.einsum("cik,djk->icjd", e1, e2)  # (n1, C, n2, C)
    n1, c, n2, _ = gram_d.shape
    return (gram_x[:, None, :, None] * gram_d).reshape(n1 * c, n2 * c)


def _layer(a1, a2, e1, e2, bias: bool):
    a1 = a1.reshape(a1.shape[0], -1)
    a2 = a2.reshape(a2.shape[0], -1)
    return _layer_core(a1, a2, e1, e2, jnp.float32(1.0 if bias else 0.0))

"""The primitive tables of the affinity proof (:mod:`gdyn_jax.state_structure.interpret`).

Each table says how a primitive treats affinity in its operands; a primitive in none of them is
*not proven* affine when it reads a variable.
"""

from __future__ import annotations

__all__ = [
    "CALL_PARAMS",
    "COMPARISONS",
    "COPIES",
    "INDEXED",
    "LINEAR",
    "MAX_FIXED_POINT",
    "NONLINEAR",
    "RANDOM",
    "UPDATED",
]

# Primitives that are affine in all their operands jointly (they commute with affine maps).
LINEAR = frozenset(
    {
        "add",
        "add_any",
        "sub",
        "neg",
        "reduce_sum",
        "cumsum",
        "transpose",
        "reshape",
        "broadcast_in_dim",
        "squeeze",
        "expand_dims",
        "concatenate",
        "pad",
        "slice",
        "rev",
        "copy",
        "copy_p",
        "reduce_precision",
        "real",
        "imag",
        "conj",
        "complex",
        "stop_gradient",
        "optimization_barrier",
        "device_put",
        "sharding_constraint",
        "mesh_cast",
        "split",
        "tie_in",
        "reduce_window_sum",
    }
)
# Primitives whose output is a copy of their (single) operand's value.
COPIES = frozenset({"copy", "copy_p", "device_put", "optimization_barrier", "reduce_precision"})
# Primitives whose first operand is data and the others are indices that must be constant.
INDEXED = frozenset({"dynamic_slice", "gather"})
UPDATED = {"dynamic_update_slice": (0, 1), "scatter": (0, 2), "scatter-add": (0, 2)}
# Primitives that are not affine (or are discrete) in any operand that varies.
NONLINEAR = frozenset(
    {
        "exp",
        "exp2",
        "log",
        "log1p",
        "expm1",
        "sqrt",
        "rsqrt",
        "cbrt",
        "abs",
        "sign",
        "max",
        "min",
        "clamp",
        "pow",
        "square",
        "tanh",
        "logistic",
        "sin",
        "cos",
        "tan",
        "asin",
        "acos",
        "atan",
        "atan2",
        "sinh",
        "cosh",
        "asinh",
        "acosh",
        "atanh",
        "erf",
        "erfc",
        "erf_inv",
        "lgamma",
        "digamma",
        "floor",
        "ceil",
        "round",
        "rem",
        "nextafter",
        "reduce_max",
        "reduce_min",
        "reduce_prod",
        "reduce_and",
        "reduce_or",
        "reduce_xor",
        "argmax",
        "argmin",
        "cumprod",
        "cummax",
        "cummin",
        "cumlogsumexp",
        "sort",
        "and",
        "or",
        "not",
        "xor",
        "eq",
        "ne",
        "lt",
        "le",
        "gt",
        "ge",
        "shift_left",
        "shift_right_logical",
        "shift_right_arithmetic",
        "population_count",
        "clz",
        "bitcast_convert_type",
        "iota",
        "scatter-mul",
        "scatter-min",
        "scatter-max",
        "select_and_scatter_add",
        "top_k",
    }
)
COMPARISONS = frozenset({"eq", "ne", "lt", "le", "gt", "ge"})
RANDOM = frozenset(
    {
        "random_seed",
        "random_bits",
        "random_split",
        "random_fold_in",
        "random_wrap",
        "random_unwrap",
        "random_clone",
        "threefry2x32",
        "rng_bit_generator",
        "rng_uniform",
    }
)
CALL_PARAMS = ("jaxpr", "call_jaxpr", "fun_jaxpr")
MAX_FIXED_POINT = 64

"""gdyn_jax.models: the MNIST-1D reference architectures (parameter counts and forward pass
against independent numpy re-implementations of the reference PyTorch code), output shapes,
purity under jax.vmap over parameter sets and init keys."""

from __future__ import annotations

import functools
from types import SimpleNamespace

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gdyn_jax import models

# id -> (name, kwargs, features): every model, image models in CPU-friendly sizes
CASES = {
    "logistic": ("logistic", {}, 40),
    "mlp": ("mlp", {}, 40),
    "cnn1d": ("cnn1d", {}, 40),
    "gru": ("gru", {}, 40),
    "fc": ("fc", {"widths": (16, 8)}, 40),
    "cnn2d": ("cnn2d", {}, 28 * 28),
    "resnet": ("resnet", {"input_shape": (8, 8, 3)}, 8 * 8 * 3),  # same blocks, small images
}


def n_params(params) -> int:
    return sum(int(np.prod(leaf.shape)) for leaf in jax.tree.leaves(params))


# XLA's backend optimisation level changes compile time only (flax inits with many threefry
# calls take seconds to compile at the default level on CPU), not what is computed.
jit = functools.partial(jax.jit, compiler_options={"xla_backend_optimization_level": 0})


@functools.cache
def built(case: str) -> SimpleNamespace:
    """One compiled init and apply per model, shared by the tests of this module (XLA
    compiles of flax inits are the slow part on CPU). ``looped``: params from 3 keys, one by
    one."""
    name, kwargs, features = CASES[case]
    model = models.get(name, **kwargs)
    x = jax.random.normal(jax.random.key(1), (3, features))
    keys = jax.random.split(jax.random.key(0), 3)
    init_one = jit(model.init)
    looped = [init_one(k, x) for k in keys]
    return SimpleNamespace(model=model, x=x, keys=keys, looped=looped, apply=jit(model.apply))


def param_shapes(name, features, **kwargs):
    """Parameter shapes without running anything (jax.eval_shape)."""
    model = models.get(name, **kwargs)
    return jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, features)))


# --- reference parameter counts ------------------------------------------------------------
# greydanus/mnist1d, notebooks/models.py, built as in notebooks/mnist1d-classification.ipynb
# (input_size=40, output_size=10), whose printed output is "Initialized LinearBase model with
# 410 parameters", "MLPBase ... 15210", "ConvBase ... 5210", "GRUBase ... 5134".
PUBLISHED = {"logistic": 410, "mlp": 15210, "cnn1d": 5210, "gru": 5134}


def torch_linear(i: int, o: int) -> int:  # nn.Linear(i, o): weight (o, i) + bias (o,)
    return o * i + o


def torch_conv1d(c_in: int, c_out: int, k: int) -> int:  # weight (c_out, c_in, k) + bias
    return c_out * c_in * k + c_out


def torch_gru_direction(i: int, h: int) -> int:  # weight_ih (3h, i), weight_hh (3h, h), 2 biases
    return 3 * h * i + 3 * h * h + 3 * h + 3 * h


def conv_len(length: int, k: int, stride: int = 2, pad: int = 1) -> int:
    return (length + 2 * pad - k) // stride + 1


def reference_count(name: str) -> int:
    if name == "logistic":  # LinearBase: nn.Linear(40, 10)
        return torch_linear(40, 10)
    if name == "mlp":  # MLPBase(hidden_size=100): Linear(40,100), Linear(100,100), Linear(100,10)
        return torch_linear(40, 100) + torch_linear(100, 100) + torch_linear(100, 10)
    if name == "cnn1d":  # ConvBase(channels=25, linear_in=125)
        length = conv_len(conv_len(conv_len(40, 5), 3), 3)
        assert 25 * length == 125  # the reference's hard-coded linear_in
        convs = torch_conv1d(1, 25, 5) + 2 * torch_conv1d(25, 25, 3)
        return convs + torch_linear(25 * length, 10)
    if name == "gru":  # GRUBase(input_size=1, hidden_size=6, time_steps=40, bidirectional)
        return 2 * torch_gru_direction(1, 6) + torch_linear(2 * 6 * 40, 10)
    raise AssertionError(name)


@pytest.mark.parametrize("name", list(PUBLISHED))
def test_parameter_counts_equal_reference_code(name):
    assert n_params(param_shapes(name, 40)) == reference_count(name) == PUBLISHED[name]


def test_image_model_parameter_counts():
    # LeNet-5 layer shapes: conv 5x5x1->6, conv 5x5x6->16, fc 400->120->84->10
    lenet = lambda c: (25 * c * 6 + 6) + (25 * 6 * 16 + 16) + 400 * 120 + 120 + 120 * 84 + 84 + 850  # noqa: E731
    assert n_params(param_shapes("cnn2d", 784)) == lenet(1) == 61706
    assert n_params(param_shapes("cnn2d", 3072, input_shape=(32, 32, 3))) == lenet(3)
    # ResNet-20 (He et al. 2016, Table 6: 0.27M); norm layers have 2 parameters per channel
    # like BatchNorm, so GroupNorm keeps the count.
    assert n_params(param_shapes("resnet", 3072, depth=20)) == 272474


def test_fully_connected_parameter_count():
    # Cohen et al. (2021) fc-tanh on flattened CIFAR-10: Linear(3072, 200), (200, 200), (200, 10)
    want = torch_linear(3072, 200) + torch_linear(200, 200) + torch_linear(200, 10)
    assert n_params(param_shapes("fc", 3072)) == want


# --- forward pass against numpy versions of the reference PyTorch code ----------------------
def np_conv1d(x, w, b, stride, pad):
    """torch.nn.functional.conv1d: x (N, C, L), w (O, C, K) -> (N, O, L')."""
    x = np.pad(x, ((0, 0), (0, 0), (pad, pad)))
    k = w.shape[-1]
    steps = (x.shape[-1] - k) // stride + 1
    cols = np.stack([x[:, :, t * stride : t * stride + k] for t in range(steps)], axis=1)
    return np.einsum("ntck,ock->not", cols, w) + b[None, :, None]


def np_gru(x, w_ih, w_hh, b_ih, b_hh, reverse):
    """torch.nn.GRU, one direction: x (N, T, I), weights (3H, I), (3H, H) -> (N, T, H)."""
    sig = lambda v: 1 / (1 + np.exp(-v))  # noqa: E731
    hidden = w_hh.shape[1]
    h = np.zeros((x.shape[0], hidden))
    out = np.zeros((x.shape[0], x.shape[1], hidden))
    for t in reversed(range(x.shape[1])) if reverse else range(x.shape[1]):
        gi, gh = x[:, t] @ w_ih.T + b_ih, h @ w_hh.T + b_hh
        r = sig(gi[:, :hidden] + gh[:, :hidden])
        z = sig(gi[:, hidden : 2 * hidden] + gh[:, hidden : 2 * hidden])
        n = np.tanh(gi[:, 2 * hidden :] + r * gh[:, 2 * hidden :])
        h = (1 - z) * n + z * h
        out[:, t] = h
    return out


def reference_forward(name, p, x):
    relu = lambda v: np.maximum(v, 0)  # noqa: E731
    lin = lambda q, v: v @ q["kernel"] + q["bias"]  # noqa: E731  (flax kernel = torch W.T)
    if name == "mlp":  # h = relu(l1 x); h = h + relu(l2 h); l3 h
        h = relu(lin(p["linear1"], x))
        h = h + relu(lin(p["linear2"], h))
        return lin(p["linear3"], h)
    if name == "cnn1d":  # x.view(-1, 1, 40); 3x conv+relu; view(N, -1); linear
        h = x[:, None, :]
        for i, length in enumerate((19, 10, 5)):  # kernels 5, 3, 3; stride 2; padding 1
            q = p[f"conv{i + 1}"]
            w = np.transpose(q["kernel"], (2, 1, 0))  # flax (K, C, O) -> torch (O, C, K)
            h = relu(np_conv1d(h, w, q["bias"], stride=2, pad=1))
            assert h.shape[1:] == (25, length)
        return lin(p["linear"], h.reshape(h.shape[0], -1))
    if name == "fc":  # Cohen et al.'s fc-tanh: tanh(l1 x); tanh(l2 h); l3 h
        h = np.tanh(lin(p["linear1"], x))
        h = np.tanh(lin(p["linear2"], h))
        return lin(p["linear3"], h)
    if name == "gru":  # x.view(N, T, 1); bidirectional GRU; output.reshape(N, -1); linear
        seq = x[:, :, None]
        outs = [
            np_gru(seq, *(p[d][k].T for k in ("w_ih", "w_hh")), p[d]["b_ih"], p[d]["b_hh"], rev)
            for d, rev in (("forward", False), ("backward", True))
        ]
        return lin(p["linear"], np.concatenate(outs, -1).reshape(x.shape[0], -1))
    raise AssertionError(name)


@pytest.mark.parametrize("name", ["mlp", "cnn1d", "gru", "fc"])
def test_forward_equals_reference_architecture(name):
    b = built(name)
    params, x = b.looped[0], b.x
    got = np.asarray(b.apply(params, x))
    p = jax.tree.map(lambda a: np.asarray(a, np.float64), params["params"])
    want = reference_forward(name, p, np.asarray(x, np.float64))
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", ["logistic", "mlp", "cnn1d", "gru"])
def test_pytorch_default_initialisation(name):
    # every parameter of the reference models is U(-1/sqrt(fan_in), 1/sqrt(fan_in)) in torch
    params = built(name).looped[0]
    fan_in = {"linear1": 40, "linear2": 100, "linear3": 100, "conv1": 5, "conv2": 75,
              "conv3": 75, "forward": 6, "backward": 6}  # fmt: skip
    fan_in["Dense_0"] = 40
    fan_in["linear"] = {"cnn1d": 125, "gru": 480}.get(name)
    for layer, leaves in params["params"].items():
        bound = 1 / np.sqrt(fan_in[layer])
        for leaf in jax.tree.leaves(leaves):
            leaf = np.asarray(leaf)
            assert np.abs(leaf).max() <= bound
            if leaf.size >= 100:  # spread like a uniform on [-bound, bound]
                assert np.abs(leaf).max() > 0.8 * bound


# --- shapes, purity, vmap ------------------------------------------------------------------
@pytest.mark.parametrize("case", list(CASES))
def test_vmap_over_keys_and_params_equals_loop(case):
    b = built(case)
    stacked = jit(jax.vmap(b.model.init, in_axes=(0, None)))(b.keys, b.x)
    assert set(stacked) == {"params"}  # purely functional: no batch_stats or other state
    for i, params in enumerate(b.looped):
        member = jax.tree.map(lambda s, i=i: s[i], stacked)
        jax.tree.map(np.testing.assert_array_equal, member, params)
    logits = jit(jax.vmap(b.model.apply, in_axes=(0, None)))(stacked, b.x)
    assert logits.shape == (3, 3, 10) and logits.dtype == jnp.float32
    for i, params in enumerate(b.looped):
        np.testing.assert_allclose(logits[i], b.apply(params, b.x), rtol=2e-5, atol=2e-5)


@pytest.mark.parametrize(
    "name, kwargs, features",
    [
        ("logistic", {}, 40),
        ("mlp", {"hidden_size": 32}, 40),
        ("cnn1d", {"channels": 8}, 40),
        ("gru", {"bidirectional": False}, 40),
        ("cnn2d", {}, 28 * 28),
        ("cnn2d", {"input_shape": (32, 32, 3)}, 32 * 32 * 3),
        ("resnet", {}, 32 * 32 * 3),
        ("resnet", {"input_shape": (28, 28, 1), "depth": 14}, 28 * 28),
    ],
)
def test_output_shapes(name, kwargs, features):
    model = models.get(name, num_classes=7, **kwargs)

    def logits(key, x):
        return model.apply(model.init(key, x), x)

    out = jax.eval_shape(logits, jax.random.key(0), jnp.zeros((5, features)))
    assert out.shape == (5, 7) and out.dtype == jnp.float32


def test_resnet_examples_are_independent():
    # GroupNorm normalises each example alone (BatchNorm would mix the batch)
    b = built("resnet")
    params, x = b.looped[0], b.x
    other = x.at[1].set(10.0 * x[1] + 3.0)
    np.testing.assert_allclose(
        b.apply(params, x)[0], b.apply(params, other)[0], rtol=1e-5, atol=1e-6
    )
    np.testing.assert_allclose(
        b.apply(params, x)[2], b.apply(params, other)[2], rtol=1e-5, atol=1e-6
    )
    assert not np.allclose(b.apply(params, x)[1], b.apply(params, other)[1])


def test_names_and_errors():
    assert models.names() == ("logistic", "mlp", "cnn1d", "gru", "fc", "cnn2d", "resnet")
    with pytest.raises(ValueError, match=r"^activation: expected one of"):
        models.get("fc", activation="swish").init(jax.random.key(0), jnp.zeros((1, 40)))
    with pytest.raises(ValueError, match=r"^model: unknown model 'vit'"):
        models.get("vit")
    with pytest.raises(ValueError, match=r"^hidden: not an argument"):
        models.get("mlp", hidden=3)
    with pytest.raises(ValueError, match=r"^num_classes:"):
        models.get("mlp", num_classes=0)
    model = models.get("cnn2d")
    with pytest.raises(ValueError, match=r"^x: expected a flat batch of shape \(batch, 784\)"):
        model.init(jax.random.key(0), jnp.zeros((2, 28, 28, 1)))
    with pytest.raises(ValueError, match=r"^depth:"):
        models.get("resnet", depth=9).init(jax.random.key(0), jnp.zeros((1, 3072)))


@pytest.mark.parametrize(
    ("name", "kwargs", "message"),
    [
        ("logistic", {"num_classes": 0}, "num_classes: expected a positive integer, got 0"),
        ("mlp", {"hidden_size": -5}, "hidden_size: expected an integer >= 1 for MLP, got -5"),
        ("mlp", {"hidden_size": 2.5}, "hidden_size: expected an integer >= 1 for MLP, got 2.5"),
        ("cnn1d", {"channels": 0}, "channels: expected an integer >= 1 for CNN1D, got 0"),
        ("gru", {"hidden_size": 0}, "hidden_size: expected an integer >= 1 for GRU, got 0"),
        ("gru", {"bidirectional": "no"}, "bidirectional: expected True or False for GRU"),
        ("fc", {"widths": (200, -1)}, "widths: expected a tuple of integers >= 1 for Fully"),
        ("fc", {"widths": 200}, "widths: expected a tuple of integers >= 1 for FullyConnected"),
        ("fc", {"widths": [8, 2.5]}, r"widths: expected a tuple of integers >= 1 for Fully"),
        ("fc", {"activation": "swish"}, "activation: expected one of tanh, relu, elu, gelu"),
        ("cnn2d", {"input_shape": (28, 28)}, r"input_shape: expected \(H, W, C\), 3 integers"),
        ("cnn2d", {"input_shape": (28, 8, 1)}, "input_shape: expected images of at least 12x12"),
        ("resnet", {"depth": 9}, r"depth: expected 6n \+ 2 with n >= 1"),
        ("resnet", {"depth": 2}, "depth: expected an integer >= 8 for ResNet, got 2"),
        ("resnet", {"width": 12}, "width: expected a multiple of groups=8, got 12"),
        ("resnet", {"groups": 0}, "groups: expected an integer >= 1 for ResNet, got 0"),
        ("resnet", {"input_shape": (32, 0, 3)}, r"input_shape: expected \(H, W, C\), 3 integers"),
    ],
)
def test_sizes_are_checked_when_a_model_is_built(name, kwargs, message):
    # at construction, as one line naming the field: not inside XLA at init
    with pytest.raises(ValueError, match="^" + message) as info:
        models.get(name, **kwargs)
    assert "\n" not in str(info.value)


class _UncheckedCNN2D(models.CNN2D):
    def __post_init__(self) -> None:  # skips CNN2D's size check
        nn.Module.__post_init__(self)


def test_cnn2d_size_bound_is_where_the_features_run_out():
    # Unchecked, 11 pixels wide (at H = 28) leaves no feature for fc1, and its initialiser
    # divides by a fan-in of 0. 12 wide leaves one column (5x1x16 features), and is accepted.
    x = jnp.zeros((2, 28 * 11))
    with pytest.raises(ZeroDivisionError):
        jax.eval_shape(_UncheckedCNN2D(input_shape=(28, 11, 1)).init, jax.random.key(0), x)
    with pytest.raises(ValueError, match="^input_shape: expected images of at least 12x12"):
        models.get("cnn2d", input_shape=(28, 11, 1))
    model = models.get("cnn2d", input_shape=(28, 12, 1))
    params = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((2, 28 * 12)))
    assert params["params"]["fc1"]["kernel"].shape == (5 * 1 * 16, 120)  # 5 rows, 1 column


@pytest.mark.parametrize(
    "kernel,stride,padding,length", [(5, 2, 1, 40), (3, 2, 1, 19), (3, 1, 0, 7)]
)
def test_patch_conv_equals_flax_conv(kernel, stride, padding, length):
    """The im2col convolution of the 1-D CNN against its plain twin, flax's ``nn.Conv``
    (XLA's convolution): same parameters, same outputs and parameter gradients, vmapped over
    members as the sweep runs it."""
    from gdyn_jax.models._layers import PatchConv1D

    kw = dict(kernel_init=nn.initializers.normal(0.5), bias_init=nn.initializers.normal(0.5))
    fast = PatchConv1D(6, kernel, stride=stride, padding=padding, **kw)
    plain = nn.Conv(6, (kernel,), strides=(stride,), padding=[(padding, padding)], **kw)
    x = jax.random.normal(jax.random.key(0), (3, 8, length, 4))  # (members, batch, L, C)
    keys = jax.random.split(jax.random.key(1), 3)
    params = jax.vmap(lambda k: plain.init(k, x[0]))(keys)
    assert jax.tree.map(jnp.shape, params) == jax.tree.map(
        jnp.shape, jax.vmap(lambda k: fast.init(k, x[0]))(keys)
    )

    def loss(module):
        return lambda p, xb: jnp.sum(jnp.tanh(module.apply(p, xb)) ** 2)

    out_fast, out_plain = (jax.vmap(m.apply)(params, x) for m in (fast, plain))
    np.testing.assert_allclose(out_fast, out_plain, rtol=1e-5, atol=1e-5)
    grads = [jax.vmap(jax.grad(loss(m)))(params, x) for m in (fast, plain)]
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5), *grads)

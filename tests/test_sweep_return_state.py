"""make_train(config, return_state=True): the final TrainState's parameters are those of a plain
optax loop from the same initial parameters, and the metrics are unchanged."""

from __future__ import annotations

import jax
import numpy as np
import optax

from gdyn_jax.sweep import Arrays, SweepConfig, make_train, setup, train


def test_final_params_are_the_plain_optax_loops():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(48, 6)).astype(np.float32)
    y = (x[:, 0] + x[:, 1] > 0).astype(np.int32)
    config = SweepConfig(
        dataset=Arrays(x, y, x[:8], y[:8], name="two-class"),
        model="logistic",
        optimizer="momentum",
        steps=4,
        eval_every=2,
        batch_size=None,
    )
    lrs, keys = np.array([0.1, 0.5]), jax.random.split(jax.random.key(1), 2)
    hp = {"learning_rate": lrs, "beta": np.full(2, 0.9)}
    metrics, state = jax.jit(jax.vmap(make_train(config, return_state=True)))(hp, keys)
    plain = jax.jit(jax.vmap(make_train(config)))(hp, keys)
    for name, values in plain.items():
        np.testing.assert_array_equal(metrics[name], values)

    task, data = setup.prepare(config)
    for i in range(2):
        member = {"learning_rate": lrs[i], "beta": 0.9}
        params = train.init(task, data, train.as_hparams(member), keys[i]).params

        def loss(p):
            return train.mean_loss(task, p, {}, data.x_train, data.y_train)

        opt = optax.sgd(lrs[i], momentum=0.9)  # optax's own heavy ball
        opt_state = opt.init(params)
        for _ in range(config.steps):
            updates, opt_state = opt.update(jax.grad(loss)(params), opt_state)
            params = optax.apply_updates(params, updates)
        got = jax.tree.map(lambda leaf, i=i: leaf[i], state.params)
        jax.tree.map(
            lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), got, params
        )
        np.testing.assert_allclose(metrics["train_loss"][i, -1], loss(params), rtol=1e-5)


def test_data_passed_as_an_argument_trains_as_its_own_config():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(40, 6)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int32)
    flipped = Arrays(x, 1 - y, x[:8], y[:8], name="flipped")

    def config(arrays):
        return SweepConfig(
            dataset=arrays, model="logistic", optimizer="sgd", steps=4, eval_every=2, batch_size=10
        )

    hp, keys = {"learning_rate": np.array([0.1, 0.3])}, jax.random.split(jax.random.key(0), 2)
    shared = jax.jit(jax.vmap(make_train(config(Arrays(x, y, x[:8], y[:8]))), (0, 0, None)))
    got = shared(hp, keys, setup.prepare(config(flipped))[1])
    own = jax.jit(jax.vmap(make_train(config(flipped))))(hp, keys)
    for name, values in own.items():
        np.testing.assert_allclose(got[name], values, rtol=1e-6)

"""PyTorch baselines for ``benchmarks/sweep.py``: one model eager, and many with ``torch.func``.

What a PyTorch user would write to train the sweep's workload (the MNIST-1D MLP
40-100-100(residual)-10, heavy-ball momentum with a learning rate per member and β = 0.9,
batches of 100 from a per-epoch permutation of the 4,000 training examples, drawn per member,
and, at the end of each timed block, the loss and accuracy of every member on the 4,000 + 1,000
evaluation examples, as the sweep's block does):

- ``eager_runner``: one model at a time, ``torch.optim.SGD(momentum=β)``, the per-step loop of
  PyTorch's tutorials;
- ``func_runner``: all members at once with ``torch.func``: the members' parameters stacked by
  ``stack_module_state``, the loss of one member written with ``functional_call``, its gradient
  ``torch.func.grad`` under ``torch.vmap`` (PyTorch's model-ensembling recipe, with training),
  the momentum update on the stacked tensors in place; eager, or the step and the evaluation
  under ``torch.compile`` (compiled before timing).

Each runner returns ``(run, model-steps per run)``; ``run()`` trains one block and returns when
it is done (PyTorch on CPU is synchronous). Without torch installed, the runners return None.
PyTorch is a benchmark-only extra (``pip install -e ".[bench]"``), never a package dependency.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import numpy as np

BATCH = 100
BETA = 0.9
EVAL_PIECE = 500

Runner = tuple[Callable[[], None], int]


def _torch():
    try:
        import torch
    except ImportError:
        return None
    return torch


def _mlp(torch):
    class MLP(torch.nn.Module):
        """``models.get('mlp')`` in PyTorch: same layers, residual and initialisation."""

        def __init__(self):
            super().__init__()
            self.linear1 = torch.nn.Linear(40, 100)
            self.linear2 = torch.nn.Linear(100, 100)
            self.linear3 = torch.nn.Linear(100, 10)

        def forward(self, h):
            h = torch.relu(self.linear1(h))
            h = h + torch.relu(self.linear2(h))
            return self.linear3(h)

    return MLP


def eager_runner(
    arrays: tuple[np.ndarray, np.ndarray], steps: int, lr: float, threads: int | None
) -> Runner | None:
    """One model, ``torch.optim.SGD(lr, momentum=β)``, a Python loop over ``steps`` batches.

    ``threads``: ``torch.set_num_threads`` while it runs (None: torch's default)."""
    torch = _torch()
    if torch is None:
        return None
    x, y = arrays
    xt, yt = torch.from_numpy(x), torch.from_numpy(y.astype(np.int64))
    torch.manual_seed(0)
    model = _mlp(torch)()
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=BETA)
    per_epoch = len(x) // BATCH
    default_threads = torch.get_num_threads()

    def run():
        torch.set_num_threads(threads or default_threads)
        perm = torch.randperm(len(x))
        for i in range(steps):
            if i % per_epoch == 0:
                perm = torch.randperm(len(x))
            idx = perm[(i % per_epoch) * BATCH : (i % per_epoch + 1) * BATCH]
            loss = torch.nn.functional.cross_entropy(model(xt[idx]), yt[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        torch.set_num_threads(default_threads)

    run()
    return run, steps


def func_runner(
    train: tuple[np.ndarray, np.ndarray],
    test: tuple[np.ndarray, np.ndarray],
    lrs: np.ndarray,
    steps: int,
    compiled: bool,
    threads: int | None,
) -> Runner | None:
    """``len(lrs)`` models trained at once by ``torch.func`` (eager or ``torch.compile``-d).

    One timed block: ``steps`` steps of every member (each draws its own batch of ``BATCH``
    from its own permutation of the training set, redrawn every epoch), then the mean loss and
    accuracy of every member on the training and test sets (``EVAL_PIECE`` examples at a
    time). Compilation (``torch.compile``'s tracing and code generation) happens in a warm-up
    block before the runner is returned.
    """
    torch = _torch()
    if torch is None:
        return None
    from torch.func import functional_call, grad, stack_module_state

    default_threads = torch.get_num_threads()
    torch.set_num_threads(threads or default_threads)
    members = len(lrs)
    xt, yt = torch.from_numpy(train[0]), torch.from_numpy(train[1].astype(np.int64))
    x_eval = torch.from_numpy(np.concatenate([train[0], test[0]]))
    y_eval = torch.from_numpy(np.concatenate([train[1], test[1]]).astype(np.int64))
    n = len(xt)
    per_epoch = n // BATCH

    torch.manual_seed(0)
    mlp = _mlp(torch)
    params, buffers = stack_module_state([mlp() for _ in range(members)])
    params = {k: v.detach() for k, v in params.items()}
    velocity = {k: torch.zeros_like(v) for k, v in params.items()}
    lr = torch.from_numpy(np.asarray(lrs, np.float32))
    lr_of = {k: lr.view((members,) + (1,) * (v.ndim - 1)) for k, v in params.items()}
    base = copy.deepcopy(mlp()).to("meta")

    def loss(p, b, xb, yb):
        return torch.nn.functional.cross_entropy(functional_call(base, (p, b), (xb,)), yb)

    member_grads = torch.vmap(grad(loss))

    def step(params, velocity, idx):
        """One heavy-ball step of every member on its batch ``x[idx[m]]``."""
        grads = member_grads(params, buffers, xt[idx], yt[idx])
        for k in params:
            velocity[k].mul_(BETA).add_(grads[k])
            params[k].sub_(lr_of[k] * velocity[k])

    def evaluate(params):
        """(members, 2): mean loss and accuracy on the 5,000 evaluation examples."""
        out = torch.vmap(lambda p, b, xb: functional_call(base, (p, b), (xb,)), (0, 0, None))
        loss_sum = torch.zeros(members)
        correct = torch.zeros(members)
        with torch.no_grad():
            for s in range(0, len(x_eval), EVAL_PIECE):
                xb, yb = x_eval[s : s + EVAL_PIECE], y_eval[s : s + EVAL_PIECE]
                logits = out(params, buffers, xb)
                loss_sum += torch.nn.functional.cross_entropy(
                    logits.transpose(1, 2), yb.expand(members, -1), reduction="none"
                ).sum(1)
                correct += (logits.argmax(-1) == yb).sum(1)
        return torch.stack([loss_sum, correct], 1) / len(x_eval)

    if compiled:
        step = torch.compile(step)
        evaluate = torch.compile(evaluate)
    state = {"t": 0, "perm": None}

    def run():
        torch.set_num_threads(threads or default_threads)
        for _ in range(steps):
            i = state["t"] % per_epoch
            if i == 0:
                state["perm"] = torch.argsort(torch.rand(members, n), dim=1)
            idx = state["perm"][:, i * BATCH : (i + 1) * BATCH].contiguous()
            step(params, velocity, idx)
            state["t"] += 1
        evaluate(params)
        torch.set_num_threads(default_threads)

    run()  # compile and warm up
    return run, members * steps

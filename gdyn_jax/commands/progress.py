"""The progress bar of ``gdyn reproduce``: every experiment's work, not a count of experiments.

The bar's total is the experiments' estimated work, in seconds: each experiment weighs what its
last run in this mode took (the ``--out`` folder's ``index.json``), else what its quick run
stored for the documentation took (``experiments.recorded_seconds``: the relative weights of
the experiments, whatever the mode), else the mean of the known ones (60 s if none is known).
Inside an experiment the bar moves with the sweeps it runs: every event of every sweep
(``gdyn_jax.sweep.observe``: compiling, compiled, each block) advances it by the time spent
over the experiment's estimate, scaled by the speed of the experiments finished so far (at most
95 % of its share before it ends), and its text says where the sweep is (``compiling ...``,
then its step). When an experiment ends, its whole share is counted. The time left shown is
the remaining experiments' estimates at the speed seen so far. Imported by ``gdyn --help``:
the standard library only at the top.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

from gdyn_jax import extras

#: The weight of an experiment with no estimate at all (seconds).
DEFAULT_SECONDS = 60.0
#: The share of an experiment's weight the bar may reach before the experiment ends.
CAP = 0.95
BAR_FORMAT = "{desc}: {percentage:3.0f}%|{bar}| [{elapsed}<{remaining}]{postfix}"

__all__ = ["ReproduceProgress", "estimates"]


def estimates(
    names: Sequence[str], mode: str, previous: Sequence[Mapping[str, Any]]
) -> dict[str, float]:
    """Estimated seconds per experiment (see the module doc), each at least 0.1 s."""
    last = {
        row["name"]: row.get("seconds")
        for row in previous
        if row.get("mode") == mode and row.get("status") == "ok"
    }
    found: dict[str, float] = {}
    for name in names:
        seconds = last.get(name)
        if not isinstance(seconds, int | float) or seconds < 0:
            seconds = extras.experiments.recorded_seconds(name, "quick")
        if seconds is not None:
            found[name] = max(float(seconds), 0.1)
    fill = sum(found.values()) / len(found) if found else DEFAULT_SECONDS
    return {name: found.get(name, fill) for name in names}


class ReproduceProgress:
    """One bar over the experiments ``names`` (``start``, ``sweep_event``, ``finish``);
    ``position`` is where it stands, in estimated seconds out of ``total``."""

    def __init__(
        self,
        names: Sequence[str],
        mode: str,
        previous: Sequence[Mapping[str, Any]] = (),
        disable: bool = False,
    ) -> None:
        self.tqdm = extras.tqdm.tqdm
        self.names = tuple(names)
        self.weights = estimates(self.names, mode, previous)
        self.total = sum(self.weights.values())
        self.bar = self.tqdm(
            total=self.total,
            desc=f"reproduce ({mode})",
            bar_format=BAR_FORMAT,
            disable=disable,
        )
        self.position = 0.0  # where the bar is (kept here: a disabled bar keeps nothing)
        self.base = 0.0
        self.current: str | None = None
        self.started = 0.0
        self.sweeps = 0
        # Seconds taken and estimated by the experiments finished so far (their ratio is the
        # speed of this run against the estimates).
        self.taken, self.estimated = 0.0, 0.0

    def _move_to(self, position: float) -> None:
        if position > self.position:
            self.bar.update(position - self.position)
            self.position = position

    def _label(self, text: str = "") -> None:
        index = self.names.index(self.current) + 1 if self.current in self.names else 0
        where = f"{self.current} ({index}/{len(self.names)})"
        self.bar.set_postfix_str(f"{where}: {text}" if text else where)

    def start(self, name: str) -> None:
        """Experiment ``name`` begins."""
        self.current, self.started, self.sweeps = name, time.perf_counter(), 0
        self._label()

    def sweep_event(self, info: Mapping[str, Any]) -> None:
        """A ``gdyn_jax.sweep.observe`` listener: where the experiment's sweep is."""
        if self.current is None:
            return
        event = info.get("event")
        if event == "compiling":
            self.sweeps += 1
            text = "compiling ..."
        elif event == "compiled":
            text = f"compiled in {info.get('seconds', 0.0):.1f} s"
        else:
            chunks = info.get("num_chunks", 1)
            chunk = f", chunk {info.get('chunk', 0) + 1}/{chunks}" if chunks > 1 else ""
            text = f"step {info.get('step')}/{info.get('steps')}{chunk}"
        self._label(f"sweep {self.sweeps} ({info.get('members')} members) {text}")
        weight = self.weights[self.current]
        scale = self.taken / self.estimated if self.taken > 0 and self.estimated > 0 else 1.0
        spent = (time.perf_counter() - self.started) / (weight * scale)
        self._move_to(self.base + weight * min(CAP, spent))

    def finish(self, name: str) -> None:
        """Experiment ``name`` ended (whatever its status): its whole share is done."""
        weight = self.weights.get(name, 0.0)
        if name == self.current:
            self.taken += time.perf_counter() - self.started
            self.estimated += weight
        self.base += weight
        self._move_to(self.base)
        self.current = None

    def write(self, line: str) -> None:
        """A log line above the bar."""
        self.tqdm.write(line)

    def close(self) -> None:
        self.bar.close()

"""Every core by default on CPU: one XLA CPU device per core, unless the user chose.

XLA:CPU runs one device's program on about one core at a sweep's sizes, and JAX gives one
CPU device unless told otherwise, so a sweep would use one core of many. A sweep shards its
members over all devices (``mesh``), and a member's numbers do not depend on the device
count, bit for bit (``groups``); so ``default_cpu_devices`` asks JAX for one CPU device per
core this process may use (its CPU affinity, and the cgroup's CPU quota where there is one).

It is called when ``gdyn_jax.sweep`` is imported, and the ``gdyn`` command sets the same
default (as ``JAX_NUM_CPU_DEVICES``) before a command runs. The user's setting always wins:
nothing changes when ``JAX_NUM_CPU_DEVICES`` or ``--xla_force_host_platform_device_count``
(in ``XLA_FLAGS``) is set, when ``jax_num_cpu_devices`` was configured, or once JAX's backends
are running (the count is fixed then: import ``gdyn_jax.sweep`` before the first JAX
operation, or set it yourself). ``JAX_NUM_CPU_DEVICES=1`` gives back JAX's single device.
"""

from __future__ import annotations

import math
import os

import jax

__all__ = ["default_cpu_devices", "usable_cores", "user_configured"]


def usable_cores() -> int:
    """Cores this process may run on: its CPU affinity, capped by a cgroup v2 CPU quota."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        cores = os.cpu_count() or 1
    try:
        with open("/sys/fs/cgroup/cpu.max", encoding="ascii") as f:
            quota, period = f.read().split()[:2]
        if quota != "max":
            cores = min(cores, max(1, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return max(1, cores)


def user_configured(environ=os.environ) -> bool:
    """Whether the user chose a CPU device count (environment variables or jax.config)."""
    flags = environ.get("XLA_FLAGS", "")
    return (
        "xla_force_host_platform_device_count" in flags
        or bool(environ.get("JAX_NUM_CPU_DEVICES"))
        or jax.config.jax_num_cpu_devices != -1
    )


def default_cpu_devices() -> int | None:
    """Asks JAX for one CPU device per usable core, unless the user configured a count or
    the backends already run (see the module doc); the count set, or None."""
    if user_configured():
        return None
    cores = usable_cores()
    try:
        jax.config.update("jax_num_cpu_devices", cores)
    except RuntimeError:  # the backends run already: their device count stays
        return None
    return cores

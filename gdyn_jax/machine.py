"""What this machine's memory holds, for the checks that refuse work before it starts.

One owner for the two figures the library compares its estimates with: the memory a process
may still take (``MemAvailable`` of ``/proc/meminfo`` on Linux) and the physical memory
(POSIX ``sysconf``). Both are ``None`` where the platform does not say (nothing to compare
with: nothing is refused).
"""

from __future__ import annotations

import os

__all__ = ["available_memory", "physical_memory"]


def physical_memory() -> int | None:
    """Bytes of physical memory (``SC_PHYS_PAGES`` × ``SC_PAGE_SIZE``), or None."""
    try:
        return int(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (AttributeError, ValueError, OSError):
        return None


def available_memory() -> int | None:
    """Bytes this process may still take: ``MemAvailable`` (Linux), else the physical memory,
    else None."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return physical_memory()

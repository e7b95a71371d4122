"""This CPU's model name and feature flags, read once per process from ``/proc/cpuinfo``.

Caches key on them (an optimised graph or a compiled blob is valid for one instruction
set) and so does the measured engine choice.
"""

from __future__ import annotations

import functools
import platform


@functools.lru_cache(maxsize=1)
def info() -> tuple[str, str]:
    """(model name, flags line as the kernel prints it); empty strings where unknown."""
    model = flags = ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, val = line.partition(":")
                key = key.strip()
                if key in ("model name", "Model") and not model:  # x86 / ARM
                    model = val.strip()
                elif key in ("flags", "Features") and not flags:
                    flags = val.strip()
    except OSError:
        pass
    return model, flags


def flags_or_name() -> str:
    """The flags line, or the processor's name where there is none (caches' CPU key)."""
    return info()[1] or platform.processor() or platform.machine()


def usable_cores() -> int:
    """Cores this process may run on (its affinity mask: a container's or taskset's share),
    not the machine's count."""
    import os

    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):  # not on Linux
        return os.cpu_count() or 1

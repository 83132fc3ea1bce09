"""What every benchmark prints about the machine its figures came from."""
from __future__ import annotations

import os
import platform


def cpu_model() -> str:
    """/proc/cpuinfo's model name (what docs quote), else the architecture."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            return next(line.split(":", 1)[1].strip() for line in handle if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def load_average() -> str:
    """Other work running beside a benchmark moves its figures: say how much there was."""
    return ", ".join(f"{x:.1f}" for x in os.getloadavg())

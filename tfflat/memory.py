"""Memory estimates: refuse up front a request that cannot fit, with the number, instead of being
killed (or swapping) hours later.

``available()`` is the memory this process may still use: the smaller of the kernel's
``MemAvailable`` and the container's cgroup limit minus its usage; ``TFFLAT_MEMORY_GB`` overrides
it (e.g. to keep a job well inside a shared machine).
"""

from __future__ import annotations

import os
from pathlib import Path

from tfflat.errors import UserError

GB = 1e9


def _read_int(path: str) -> int | None:
    try:
        text = Path(path).read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def available() -> int:
    """Bytes of memory available to this process (see the module docstring)."""
    override = os.environ.get("TFFLAT_MEMORY_GB")
    if override:
        try:
            return int(float(override) * GB)
        except ValueError:
            raise UserError(f"TFFLAT_MEMORY_GB={override!r} is not a number of GB") from None
    candidates = []
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                candidates.append(int(line.split()[1]) * 1024)
    except (OSError, ValueError, IndexError):
        pass
    limit, usage = _read_int("/sys/fs/cgroup/memory.max"), _read_int("/sys/fs/cgroup/memory.current")
    if limit is not None and usage is not None:
        candidates.append(max(limit - usage, 0))
    if not candidates:
        try:
            candidates.append(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
        except (ValueError, OSError, AttributeError):
            return 1 << 62            # unknown: do not refuse
    return min(candidates)


def require(nbytes: float, what: str, fix: str) -> None:
    """A :class:`UserError` when ``what`` needs more than the available memory: ``what needs about
    X GB of memory but Y GB are available; fix``."""
    have = available()
    if nbytes > have:
        raise UserError(f"{what} needs about {_gb(nbytes)} GB of memory but {_gb(have)} GB are available; {fix}")


def _gb(nbytes: float) -> str:
    v = nbytes / GB
    return f"{v:.3g}" if v < 1000 else f"{v:,.0f}"

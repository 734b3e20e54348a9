"""Numbers as people read them, for the attach tools: sizes in KiB/MiB, wall-clock ns as a
date and an age, counts with thousands separators."""
from __future__ import annotations

import time


def size(n: int) -> str:
    """1536 -> '1.5 KiB'; under 1 KiB, exact bytes."""
    if n < 1024:
        return f"{n} B"
    v = float(n)
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        v /= 1024
        if v < 1024 or unit == "TiB":
            return f"{v:.1f} {unit}" if v < 100 else f"{v:,.0f} {unit}"
    raise AssertionError("unreachable")


def age(seconds: float) -> str:
    """A duration, coarsely: '45 s', '12 min', '3.5 h', '2.0 days'."""
    s = abs(seconds)
    if s < 60:
        return f"{s:.0f} s"
    if s < 3600:
        return f"{s / 60:.0f} min"
    if s < 86400:
        return f"{s / 3600:.1f} h"
    return f"{s / 86400:,.1f} days"


def when_ns(ns: int, now_ns: int | None = None) -> str:
    """Wall-clock ns since the epoch as a local date and how long ago ('never' for 0)."""
    if ns <= 0:
        return "never"
    now_ns = time.time_ns() if now_ns is None else now_ns
    try:
        date = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ns / 1e9))
    except (OverflowError, OSError, ValueError):        # a damaged header's time: no date there
        return f"{ns:,} ns (not a date)"
    d = (now_ns - ns) / 1e9
    return f"{date} ({age(d)} ago)" if d >= 0 else f"{date} (in {age(d)})"


def count(n) -> str:
    """An integer with thousands separators (1,234,567); other values as they are."""
    return f"{n:,}" if isinstance(n, int) and not isinstance(n, bool) else str(n)

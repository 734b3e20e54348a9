"""A small progress bar for long CLI work (no dependency).

On a terminal it redraws one line; otherwise it prints a line at each 25%
so logs stay short.
"""
from __future__ import annotations

import sys
import time


class Progress:
    def __init__(self, label: str, total: int, stream=None, width: int = 30):
        self.label, self.total, self.width = label, max(int(total), 1), width
        self.stream = stream or sys.stderr
        self.tty = getattr(self.stream, "isatty", lambda: False)()
        self.done = 0
        self.t0 = time.perf_counter()
        self._last_quarter = -1
        self._last_draw = 0.0

    def update(self, n: int = 1) -> None:
        self.done = min(self.done + n, self.total)
        self._draw()

    def _draw(self, final: bool = False) -> None:
        frac = self.done / self.total
        if self.tty:
            now = time.perf_counter()
            if not final and now - self._last_draw < 0.05:
                return
            self._last_draw = now
            fill = int(frac * self.width)
            bar = "#" * fill + "-" * (self.width - fill)
            self.stream.write(f"\r  {self.label:<22} [{bar}] {self.done:>7}/{self.total:<7} {self._elapsed()}")
            if final:
                self.stream.write("\n")
            self.stream.flush()
        else:
            quarter = int(frac * 4)
            if quarter != self._last_quarter and (final or quarter < 4):
                self._last_quarter = quarter
                self.stream.write(f"  {self.label}: {self.done}/{self.total} ({frac:.0%}) {self._elapsed()}\n")
                self.stream.flush()

    def _elapsed(self) -> str:
        return f"{time.perf_counter() - self.t0:5.1f}s"

    def __enter__(self):
        self._draw()
        return self

    def __exit__(self, *exc):
        if exc[0] is None:
            self.done = self.total
        self._last_quarter = -1
        self._draw(final=True)

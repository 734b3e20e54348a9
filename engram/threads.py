"""Threads the engine starts, named for the operating system as well as for Python.

Python's thread names live only inside the interpreter: ``top -H``, ``ps -L``, perf and
py-spy's native frames read the kernel's name of a thread (``/proc/<pid>/task/<tid>/comm``),
which is "python" for every thread unless the thread itself sets it. Each engine thread
sets it as it starts. Linux keeps 15 bytes, so "engram-" is shortened to "eg-":
"engram-wal" shows as "eg-wal", "engram-ingest-0" as "eg-ingest-0".
"""
from __future__ import annotations

import ctypes
import threading

_PR_SET_NAME = 15          # <linux/prctl.h>
_COMM_BYTES = 15           # TASK_COMM_LEN less its NUL

try:
    _prctl = ctypes.CDLL(None, use_errno=True).prctl
except (OSError, AttributeError):     # not Linux (no prctl): the Python name is all there is
    _prctl = None


def os_name(name: str) -> bytes:
    """What the kernel is told to call a thread named ``name``."""
    short = "eg-" + name[len("engram-"):] if name.startswith("engram-") else name
    return short.encode("ascii", "replace")[:_COMM_BYTES]


def name_current(name: str) -> None:
    """Give the calling thread (or, from a process's main thread, the process) its OS name."""
    if _prctl is not None:
        _prctl(_PR_SET_NAME, ctypes.c_char_p(os_name(name)), 0, 0, 0)


def named_thread(target, name: str, args: tuple = ()) -> threading.Thread:
    """A daemon ``threading.Thread`` (not started) running ``target(*args)`` under ``name``,
    which it also gives itself as its OS name once it runs."""
    def run(*a):
        name_current(name)
        return target(*a)
    return threading.Thread(target=run, args=args, name=name, daemon=True)

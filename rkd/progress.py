"""Progress bars for long work, shown in the terminal and never stored in a notebook.

A notebook kernel's standard error is captured into the notebook as output cells, so a
progress bar written there ends up committed (thousands of redraw frames). ipykernel 6
captures the file descriptor too (``sys.__stderr__`` included) and keeps a copy of the
original one, the terminal of whoever started the kernel (``papermill``, ``pytest
--nbval``, ``make``): bars are written there. Outside a notebook that is plain stderr.
"""
from __future__ import annotations

import os
import sys

from tqdm import tqdm

__all__ = ["progress_bar"]

#: seconds between redraws: the environment's ``TQDM_MININTERVAL`` (the Makefile sets
#: 10 s, so a log file is not flooded), else tqdm's default
_MININTERVAL = float(os.environ.get("TQDM_MININTERVAL", "0.1"))


_TERMINAL = None


def _terminal():
    """The terminal's standard error, not the notebook's (see the module docstring)."""
    global _TERMINAL
    original = getattr(sys.stderr, "_original_stdstream_copy", None)  # ipykernel's copy of fd 2
    if original is None:
        return sys.__stderr__ if sys.__stderr__ is not None else sys.stderr
    if _TERMINAL is None:
        _TERMINAL = os.fdopen(os.dup(original), "w", buffering=1)
    return _TERMINAL


def progress_bar(total: int | None = None, *, desc: str = "", enabled: bool = True, initial: int = 0,
                 leave: bool = False) -> tqdm:
    """A tqdm bar on the terminal (see the module docstring); a silent one when not ``enabled``."""
    return tqdm(total=total, initial=initial, desc=desc, disable=not enabled, leave=leave, file=_terminal(),
                mininterval=_MININTERVAL, dynamic_ncols=True)

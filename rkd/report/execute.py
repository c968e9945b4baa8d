"""Execute one results notebook with papermill (``make book`` and ``make notebooks`` do,
two at a time with ``make -j2``).

A kernel that fails to *start* is started again (three attempts in all): two kernels launched
in the same second can be handed the same TCP port (jupyter_client picks free ports,
releases them, and the kernel binds them a moment later), and the loser dies with
"Address already in use" before running anything. Nothing has run then, so a second
start is safe; a failure inside a cell is never retried.

    python -m rkd.report.execute notebooks/table1_metric_learning.ipynb out.ipynb -p scale ci
"""
from __future__ import annotations

import argparse
import functools
import sys
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

#: what jupyter_client's ``wait_for_ready`` raises (through nbclient or nbval) when the kernel never became ready
KERNEL_START_FAILURES = ("Kernel didn't respond", "Kernel died before replying")
ATTEMPTS = 3


def kernel_failed_to_start(error: BaseException) -> bool:
    return isinstance(error, RuntimeError) and any(text in str(error) for text in KERNEL_START_FAILURES)


def start_again_if_the_kernel_fails(run: Callable[..., T], *, what: str = "a notebook") -> Callable[..., T]:
    """``run`` (which starts a kernel, then uses it), called again, up to :data:`ATTEMPTS`
    times in all, while it fails because its kernel never started; any other error, or
    the last attempt's, goes to the caller."""

    @functools.wraps(run)
    def attempt(*args, **kwargs) -> T:
        for number in range(1, ATTEMPTS + 1):
            try:
                return run(*args, **kwargs)
            except Exception as error:  # noqa: BLE001 - only a kernel that never started is retried
                if not kernel_failed_to_start(error) or number == ATTEMPTS:
                    raise
                print(f"the kernel for {what} did not start ({error}); starting it again "
                      f"(attempt {number + 1} of {ATTEMPTS})", file=sys.stderr)
        raise AssertionError("unreachable")

    return attempt


def execute(source: str, target: str, parameters: dict[str, Any], *, kernel: str = "python3") -> None:
    import papermill

    start_again_if_the_kernel_fails(papermill.execute_notebook, what=source)(
        source, target, parameters=parameters, kernel_name=kernel, progress_bar=False, log_output=False)


def parameter_value(text: str):
    """A ``-p`` value read as papermill's own command line reads it: ``True``, ``False``,
    ``None``, an int, a float, or else the string itself."""
    named = {"True": True, "False": False, "None": None}
    if text in named:
        return named[text]
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source")
    parser.add_argument("target")
    parser.add_argument("-p", "--parameter", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
                        help="a notebook parameter (papermill's -p: True, False, None and numbers are read "
                             "as such, anything else as a string)")
    parser.add_argument("--kernel", default="python3")
    args = parser.parse_args(argv)
    execute(args.source, args.target, {name: parameter_value(value) for name, value in args.parameter},
            kernel=args.kernel)


if __name__ == "__main__":
    main()

"""A pytest plugin for the nbval run of ``make test`` (``-p tests.nbval_kernel_retry``):
a notebook's kernel that fails to start is started again, as in
:mod:`rkd.report.execute`. nbval's two pytest-xdist workers start their kernels at the
same moment, and two kernels can be handed the same TCP port; the loser dies before
running any cell, so a second start is safe. A failing cell is never retried."""
from __future__ import annotations

import sys

import nbval.kernel
from jupyter_client.manager import start_new_kernel

from rkd.report.execute import ATTEMPTS, kernel_failed_to_start


def _start_new_kernel_again_if_it_fails(*args, **kwargs):
    for attempt in range(1, ATTEMPTS + 1):
        try:
            return start_new_kernel(*args, **kwargs)  # it shuts down a kernel that never became ready
        except RuntimeError as error:
            if not kernel_failed_to_start(error) or attempt == ATTEMPTS:
                raise
            print(f"nbval: a kernel did not start ({error}); starting it again", file=sys.stderr)


nbval.kernel.start_new_kernel = _start_new_kernel_again_if_it_fails

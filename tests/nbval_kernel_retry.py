"""A pytest plugin for the nbval run of ``make test`` (``-p tests.nbval_kernel_retry``):
a notebook's kernel that fails to start is started again, as in
:mod:`rkd.report.execute`. nbval's two pytest-xdist workers start their kernels at the
same moment, and two kernels can be handed the same TCP port; the loser dies before
running any cell, so a second start is safe. A failing cell is never retried."""
from __future__ import annotations

import nbval.kernel

from rkd.report.execute import start_again_if_the_kernel_fails

# nbval's own start_new_kernel (it starts the kernel of --nbval-current-env), wrapped
nbval.kernel.start_new_kernel = start_again_if_the_kernel_fails(nbval.kernel.start_new_kernel,
                                                                what="an nbval notebook")

"""Training runs as data, and the one runner that trains them.

:mod:`~rkd.runs.spec` says what a run is (:class:`~rkd.runs.spec.Run`, its batches and
its evaluation) and what every table or figure provides (:class:`~rkd.runs.spec.Experiment`);
:mod:`~rkd.runs.protocol` holds the two readings of the paper (the authors' code, the
paper's text); :func:`~rkd.runs.runner.run_experiment` trains, shares, caches and
evaluates the runs of any experiment and returns tidy rows. The paper's tables and
figures themselves are declared in :mod:`rkd.experiments`.
"""

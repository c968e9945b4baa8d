"""Training runs as data, and the one runner that trains them.

- :mod:`~rkd.runs.spec`: what a run is (:class:`~rkd.runs.spec.Run`, its
  :class:`~rkd.runs.spec.Batches` and :class:`~rkd.runs.spec.Evaluation`);
- :mod:`~rkd.runs.policies`: how each kind of batches is drawn and each kind of
  evaluation measured (registries), and what a dry run cuts;
- :mod:`~rkd.runs.protocol`: the two readings of the paper (the authors' code, the
  paper's text);
- :mod:`~rkd.runs.plan`: the runs of a table as they will train, and its protocol table;
- :mod:`~rkd.runs.jobs`: one run at one seed, with the key that names its model;
- :mod:`~rkd.runs.store`: where trained models live (the model store);
- :mod:`~rkd.runs.training`: one job trained and evaluated;
- :mod:`~rkd.runs.results`: the results store, every job's numbers kept as data;
- :mod:`~rkd.runs.convergence`: whether a run's evaluations reached a plateau;
- :mod:`~rkd.runs.rows`: trained runs as tidy result rows;
- :mod:`~rkd.runs.executors`: jobs spread over processes or a Slurm cluster (submitit);
- :mod:`~rkd.runs.runner`: :func:`run_experiment` (and :func:`prepare`), which puts them in order.

The paper's tables and figures themselves are declared in :mod:`rkd.experiments`.
"""
from .plan import RunSource, plan_table, resolve_runs
from .runner import Call, Results, prepare, run_experiment
from .spec import Batches, Evaluation, Run

__all__ = ["Batches", "Evaluation", "Run", "RunSource", "Results", "Call", "run_experiment", "prepare", "resolve_runs",
           "plan_table"]

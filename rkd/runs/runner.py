"""The one runner: everything a table or figure does besides declaring its runs.

:func:`run_experiment` resolves the runs (:mod:`rkd.runs.plan`), lists their jobs with
their keys (:mod:`rkd.runs.jobs`), obtains each job's result from the model store or by
training it (:class:`Session`, :mod:`rkd.runs.training`), and returns :class:`Results`
with tidy rows (:mod:`rkd.runs.rows`). A job's model is loaded, or trained, only when a
job that trains needs it (as teacher or initial weights) or the page draws from it.
"""
from __future__ import annotations

import datetime
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from ..cache import default_cache_dir
from ..progress import progress_bar
from ..runtime import configure_determinism
from ..data import RELEASES, DataNotReadyError, check_data_root
from ..data.splits import DataSpec
from ..train.distributed import is_main_process, rank_zero_decides
from .jobs import DataCatalog, Job, list_jobs
from .plan import Resolved, RunSource, plan_table, resolve_runs, total_steps
from .policies import DRY_RUN
from .rows import episode_rows, result_rows, tidy
from .store import ModelStore
from .results import ResultStore, default_results_dir
from .training import TeacherOutputs, TrainedRun, build_model, machine_name, train_job

__all__ = ["run_experiment", "prepare", "Call", "Results", "Session", "resolve_device"]


@dataclass
class Results:
    """What :func:`run_experiment` returns.

    ``rows``: one row per (run, seed, evaluated test set[, way]), the per-seed values a
    claim pairs. ``pretraining``: the pretrained trunks' held-out top-1. ``episodes``:
    few-shot only, one row per (run, seed, way, episode).
    ``plan``: the protocol table. ``models``: the trained models of the experiment's
    ``keep_models`` (last seed), for figures that draw from them. ``trained``: (dataset,
    run, seed) -> the :class:`~rkd.runs.training.TrainedRun` (its loss curve, its
    evaluations along training, how long it took and where).
    """

    experiment: str
    scale: str
    protocol: str
    seeds: tuple[int, ...]
    rows: pd.DataFrame
    plan: pd.DataFrame
    pretraining: pd.DataFrame = field(default_factory=pd.DataFrame)
    episodes: pd.DataFrame = field(default_factory=pd.DataFrame)
    datasets: tuple[DataSpec, ...] = ()
    device: str = "cpu"
    machine: str = ""
    date: str = ""
    pinned: bool = False
    dry_run: bool = False
    models: dict[str, Any] = field(default_factory=dict, repr=False)
    trained: dict[tuple[str, str, int], TrainedRun] = field(default_factory=dict, repr=False)
    extra: dict[str, Any] = field(default_factory=dict, repr=False)


def resolve_device(device: str) -> torch.device:
    """``"auto"`` picks CUDA when present; anything else is passed to ``torch.device``."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device={device!r} was asked for but CUDA is not available; use device='cpu' or 'auto'")
    return dev


class Session:
    """The jobs of one call and what they share: the data, the model store, the results
    store (``results``, of ``experiment``), the models loaded or trained so far (by job
    key) and the pretrained trunks' weight files."""

    def __init__(self, jobs: list[Job], catalog: DataCatalog, store: ModelStore, device: torch.device, *,
                 needed: set[str], results: ResultStore | None = None, experiment: str = "",
                 progress: bool = True, num_workers: int | None = None, dry_run: bool = False):
        self.by_key = {job.key: job for job in jobs}
        self.catalog, self.store, self.device = catalog, store, device
        self.results, self.experiment = results or ResultStore(None), experiment
        self.needed = needed  # keys of the jobs whose model another job or the page needs
        self.progress, self.num_workers, self.dry_run = progress, num_workers, dry_run
        self.models: dict[str, torch.nn.Module] = {}
        self.teacher_outputs = TeacherOutputs()

    def result(self, job: Job) -> TrainedRun:
        """The job's numbers: from the model store, the results store, or trained now (once,
        whichever process gets there first)."""
        found = self.stored(job)
        if found is not None:
            return found
        with self.store.training(job.key):
            found = self.stored(job)  # trained meanwhile by another process?
            if found is not None:
                return found
            trained = self._train(job, job.key in self.needed)
            # under torchrun rank 0 writes the entry (the others wait for it in the lock)
            self.store.put(job.key, job.config, trained.payload(), to_disk=job.run.trains and is_main_process())
            return trained

    def stored(self, job: Job) -> TrainedRun | None:
        """The job's numbers if some store has them (an evaluated-only run is never stored).
        Under torchrun every process takes rank 0's answer, so that they train together."""
        payload = self.store.get(job.key, job.config) if job.run.trains else None
        record = self.results.get(self.experiment, job.key) if job.run.trains and payload is None else None
        if not rank_zero_decides(payload is not None or record is not None):
            return None
        if payload is None and record is None:  # rank 0 found an entry this process did not see yet
            payload = self.store.get(job.key, job.config)
        return TrainedRun.from_payload(job, payload if payload is not None else record)

    def model(self, key: str) -> torch.nn.Module:
        """The trained model of job ``key``, frozen: from memory, the model store, or trained
        now (a job whose numbers come from the results store keeps no weights)."""
        if key not in self.models:
            job = self.by_key[key]
            state = self.result(job).model_state
            if key not in self.models:  # found in a store, not trained by this call
                if state is None:
                    with self.store.training(job.key):
                        trained = self._train(job, keep=True)
                        self.store.put(job.key, job.config, trained.payload(),
                                       to_disk=job.run.trains and is_main_process())
                else:
                    self.models[key] = self._frozen(job, state)
        return self.models[key]

    def _frozen(self, job: Job, state: dict[str, torch.Tensor]) -> torch.nn.Module:
        model = build_model(job, self.catalog, None)
        model.load_state_dict(state)
        return model.eval().requires_grad_(False)

    def start_from(self, job: Job) -> Path | torch.nn.Module | None:
        """What ``job`` starts from: a pretrained trunk's weights file, an earlier model, or nothing."""
        if job.init is None:
            return None
        init = self.by_key[job.init]
        if init.run.role == "pretrain":
            path = self.store.weights_path(init.key)
            if not path.is_file():
                self.store.write_weights(init.key, self.model(init.key).trunk.state_dict())
            return path
        return self.model(job.init)

    def _train(self, job: Job, keep: bool) -> TrainedRun:
        teacher = self.model(job.teacher) if job.teacher is not None else None
        trained = train_job(job, catalog=self.catalog, store=self.store, device=self.device, teacher=teacher,
                            start_from=self.start_from(job), keep_model=keep, teacher_outputs=self.teacher_outputs,
                            progress=self.progress, num_workers=self.num_workers, dry_run=self.dry_run)
        if keep:
            self.models[job.key] = self._frozen(job, trained.model_state)
        return trained


@dataclass
class Call:
    """One call of a table's runs, prepared: what resolved, the protocol table, the jobs
    with their keys, and the :class:`Session` that gives each job's result."""

    source: RunSource
    resolved: Resolved
    plan: pd.DataFrame
    jobs: list[Job]
    session: Session
    device: torch.device
    pinned: bool
    data_root: str | None

    def job(self, key: str) -> Job:
        return self.session.by_key[key]

    def gather(self, progress: bool = True) -> Results:
        """Every job's result (from the stores, or trained here), as :class:`Results`."""
        bar = progress_bar(len(self.jobs), desc=f"{self.source.title} ({self.resolved.label})", enabled=progress,
                           leave=True)
        trained = []
        for job in self.jobs:
            trained.append(self.session.result(job))
            bar.update(1)
        bar.close()
        results = _results(self, trained)
        for job in _kept(self.jobs, self.source, self.resolved):
            results.models[f"{job.run.data.display}/{job.run.name}"] = self.session.model(job.key)
        self.source.analyse(results, results.models)
        return results


def _kept(jobs: list[Job], source: RunSource, resolved: Resolved) -> list[Job]:
    """The jobs whose models the page draws from: its ``keep_models`` runs of the last
    seed (only their weights are needed; every seed's numbers come from the stores, so that
    a page read from the results store trains one seed's models, not all of them)."""
    kept, last_seed = set(source.keep_models), resolved.seeds[-1] if resolved.seeds else None
    return [job for job in jobs if job.run.name in kept and job.seed == last_seed]


def prepare(source: RunSource, *, scale: str = "ci", data_root: str | None = None, device: str = "cpu",
            seeds: tuple[int, ...] | None = None, protocol: str | None = None, progress: bool = True,
            dry_run: bool = False, cache_dir: str | None = None, num_workers: int | None = None,
            results_dir: str | Path | None = None, **params: Any) -> Call:
    """Resolve ``source``'s runs, check their data and list their jobs (see
    :func:`run_experiment` for the parameters; ``results_dir``: the results store, default
    :func:`rkd.runs.results.default_results_dir`, ``""`` none; a dry run reads none)."""
    resolved = resolve_runs(source, scale=scale, protocol=protocol, dry_run=dry_run, seeds=seeds, **params)
    preset = resolved.preset
    dev = torch.device("cpu") if dry_run else resolve_device(device)
    pinned = configure_determinism(getattr(preset, "threads", None))
    # the protocol of the full run: a dry run prints and shows it, then trains its cut-down runs
    full = resolve_runs(source, scale=scale, protocol=protocol, seeds=seeds, **params) if dry_run else resolved
    plan = plan_table(full.runs, seeds=full.seeds, protocol=resolved.protocol)
    if dry_run:
        print(f"{source.title} at scale={scale!r}, protocol={resolved.protocol!r}: {len(plan)} runs x "
              f"{len(full.seeds)} seed(s), {total_steps(plan):,} optimiser steps in a full run.")
        print(plan[["dataset", "run", "role", "network", "method", "steps", "batch"]].to_string(index=False))
        print(f"This dry run trains {len(resolved.runs)} of the {len(full.runs)} runs: {DRY_RUN.describe()}.")
    _check_data_root(resolved, data_root, dry_run=dry_run, progress=progress)
    catalog = DataCatalog(data_root, progress=progress)
    catalog.check(resolved.runs)
    jobs = list_jobs(resolved, catalog, device=dev, pinned=pinned)
    needed = {key for job in jobs for key in job.needs} | {job.key for job in _kept(jobs, source, resolved)}
    workers = 0 if dry_run or getattr(preset, "num_workers", None) == 0 else num_workers
    if results_dir is None:
        results_dir = default_results_dir(scale)
    results = ResultStore(None if dry_run or not str(results_dir or "") else results_dir)
    session = Session(jobs, catalog, ModelStore(None if dry_run else (cache_dir or default_cache_dir())), dev,
                      needed=needed, results=results, experiment=source.name, progress=progress,
                      num_workers=workers, dry_run=dry_run)
    return Call(source, resolved, plan, jobs, session, dev, pinned, data_root)


def _check_data_root(resolved: Resolved, data_root: str | None, *, dry_run: bool, progress: bool) -> None:
    """The paper's datasets of these runs checked as a whole before anything trains
    (:func:`rkd.data.check_data_root`: the official layout; for a full run also the
    official counts and every image decoded), stopping with what is missing and how to fix it."""
    names = list(dict.fromkeys(d.name for run in resolved.runs for d in (run.data, *run.evaluation.domains)
                               if d.stands_in_for is None and d.name in RELEASES))
    if not names or data_root is None:
        return
    reports = check_data_root(data_root, names, official=not dry_run, decode=not dry_run, progress=progress)
    if not all(report.ready for report in reports):
        lines = "\n".join(report.line() for report in reports)
        raise DataNotReadyError(f"the data under {data_root} is not ready for {resolved.label}:\n{lines}\n(the "
                                f"same check: python -m rkd.data check {data_root} {' '.join(names)})")


def run_experiment(source: RunSource, *, scale: str = "ci", data_root: str | None = None, device: str = "cpu",
                   seeds: tuple[int, ...] | None = None, protocol: str | None = None, progress: bool = True,
                   dry_run: bool = False, cache_dir: str | None = None, num_workers: int | None = None,
                   **params: Any) -> Results:
    """Run every run of ``source`` at ``scale`` for every seed; return :class:`Results`.

    ``seeds``: the repetitions (default: the preset's). ``protocol``: ``"authors_code"``
    or ``"paper_text"`` (default: the preset's; see :mod:`rkd.runs.protocol`).
    ``dry_run``: print the plan, then train every model for two steps on the CPU on the
    preset's data and networks (no downloads); the rows are not results.
    ``cache_dir``: where trained models are kept (default :func:`rkd.cache.default_cache_dir`;
    a dry run keeps nothing on disk). A job whose numbers are in the results store
    (:mod:`rkd.runs.results`) is not trained again. ``params``: the experiment's own parameters.
    """
    call = prepare(source, scale=scale, data_root=data_root, device=device, seeds=seeds, protocol=protocol,
                   progress=progress, dry_run=dry_run, cache_dir=cache_dir, num_workers=num_workers, **params)
    return call.gather(progress)


def _results(call: Call, trained: list[TrainedRun]) -> Results:
    resolved = call.resolved
    rows = pd.DataFrame([row for t in trained for row in result_rows(t, resolved)])
    pretraining = rows["role"] == "pretrain" if len(rows) else pd.Series(dtype=bool)
    integer_labels = {"embedding_dim", "seed", "way", "shot"} | {k for run in resolved.runs for k, _ in run.labels}
    return Results(
        experiment=call.source.name, scale=resolved.label, protocol=resolved.protocol, seeds=resolved.seeds,
        rows=tidy(rows[~pretraining], integer_labels),
        pretraining=tidy(rows[pretraining], integer_labels).drop_duplicates(["run", "seed"]).reset_index(drop=True),
        plan=call.plan, episodes=pd.DataFrame([row for t in trained for row in episode_rows(t)]),
        device=str(call.device),
        datasets=tuple(dict.fromkeys(d for run in resolved.runs if run.role != "pretrain"
                                     for d in (run.data, *run.evaluation.domains))),
        machine=machine_name(call.device), date=datetime.date.today().isoformat(), pinned=call.pinned,
        dry_run=resolved.dry_run,
        trained={(t.job.run.data.display, t.job.run.name, t.job.seed): t for t in trained},
        extra={"data_root": call.data_root, "evidence": _evidence(call, trained)},
    )


def _evidence(call: Call, trained: list[TrainedRun]) -> dict[str, Any]:
    """What the page's numbers rest on: how many training runs, their core-hours (each run
    trains on one core at ``scale="ci"``), where and when they were trained, the results
    store they were read from (if any) and one run's key (the last job: a chain's end),
    for the command that retrains it."""
    runs = [t for t in trained if t.job.run.trains]
    store = call.session.results.path(call.source.name)
    # a run the page retrained for its weights (a figure's model) counts as its stored record
    # says: the box then reads the same on every machine that executes the page
    records = [call.session.results.get(call.source.name, t.job.key) or {} for t in runs]
    seconds = [record.get("wall_seconds", t.wall_seconds) for t, record in zip(runs, records)]
    machines = [record.get("machine", t.machine) for t, record in zip(runs, records)]
    dates = [record.get("date", t.date) for t, record in zip(runs, records)]
    return {"runs": len(runs), "core_hours": sum(s or 0.0 for s in seconds) / 3600,
            "machines": sorted({m for m in machines if m}),
            "dates": sorted({d for d in dates if d}),
            "store": store.name if store is not None and store.is_file() else None,
            "example_key": runs[-1].job.key[:12] if runs else None}

"""The one runner: everything a table or figure does besides declaring its runs.

:func:`run_experiment` resolves the runs (:mod:`rkd.runs.plan`), lists their jobs with
their keys (:mod:`rkd.runs.jobs`), obtains each job's result from the model store or by
training it (:class:`Session`, :mod:`rkd.runs.training`), and returns :class:`Results`
with tidy rows (:mod:`rkd.runs.rows`). A job's model is loaded, or trained, only when a
job that trains needs it (as teacher or initial weights) or the page draws from it.
"""
from __future__ import annotations

import datetime
import platform
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from ..cache import default_cache_dir
from ..progress import progress_bar
from ..runtime import configure_determinism
from ..data.splits import DataSpec
from ..train.distributed import is_main_process, rank_zero_decides
from .jobs import DataCatalog, Job, list_jobs
from .plan import Resolved, RunSource, plan_table, resolve_runs, total_steps
from .rows import episode_rows, result_rows, tidy
from .store import ModelStore
from .training import TeacherOutputs, TrainedRun, build_model, train_job

__all__ = ["run_experiment", "Results", "Session", "resolve_device", "machine_name"]


@dataclass
class Results:
    """What :func:`run_experiment` returns.

    ``rows``: one row per (run, seed, evaluated test set[, way]), the per-seed values a
    claim pairs. ``pretraining``: the pretrained trunks' held-out top-1. ``episodes``:
    few-shot only, one row per (run, seed, way, episode).
    ``plan``: the protocol table. ``models``: the trained models of the experiment's
    ``keep_models`` (last seed), for figures that draw from them. ``training_logs``:
    (dataset, run, seed) -> the run's training log in the model store, for every run
    that trained there (none in a dry run, which keeps no store).
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
    training_logs: dict[tuple[str, str, int], Path] = field(default_factory=dict, repr=False)
    extra: dict[str, Any] = field(default_factory=dict, repr=False)


def resolve_device(device: str) -> torch.device:
    """``"auto"`` picks CUDA when present; anything else is passed to ``torch.device``."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device={device!r} was asked for but CUDA is not available; use device='cpu' or 'auto'")
    return dev


def machine_name(device: torch.device) -> str:
    """The processor (and GPU) the numbers were computed on, for the page's box."""
    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as handle:
            cpu = next((line.split(":", 1)[1].strip() for line in handle if line.startswith("model name")), cpu)
    except OSError:
        pass
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} (GPU), {cpu}"
    return cpu or "unknown CPU"


class Session:
    """The jobs of one call and what they share: the data, the model store, the models
    loaded or trained so far (by job key) and the pretrained trunks' weight files."""

    def __init__(self, jobs: list[Job], catalog: DataCatalog, store: ModelStore, device: torch.device, *,
                 needed: set[str], progress: bool = True, num_workers: int | None = None, dry_run: bool = False):
        self.by_key = {job.key: job for job in jobs}
        self.catalog, self.store, self.device = catalog, store, device
        self.needed = needed  # keys of the jobs whose model another job or the page needs
        self.progress, self.num_workers, self.dry_run = progress, num_workers, dry_run
        self.models: dict[str, torch.nn.Module] = {}
        self.teacher_outputs = TeacherOutputs()

    def result(self, job: Job) -> TrainedRun:
        """The job's result: from the store, else trained (once, whichever process gets there first)."""
        keep = job.key in self.needed
        usable: Callable[[Any], bool] = lambda found: found is not None and (not keep or "model" in found)  # noqa: E731
        payload = self.store.get(job.key, job.config) if job.run.trains else None
        # under torchrun every process takes rank 0's decision (in one process: the value
        # itself): if some trained and others did not, they would wait for each other forever
        if not rank_zero_decides(usable(payload)):
            with self.store.training(job.key):
                payload = self.store.get(job.key, job.config) if job.run.trains else None
                if not rank_zero_decides(usable(payload)):
                    trained = self._train(job, keep)
                    self.store.put(job.key, job.config, trained.payload(),
                                   to_disk=job.run.trains and is_main_process())
                    return trained
        if not usable(payload):  # under torchrun: rank 0 wrote an entry after this process looked
            payload = self.store.get(job.key, job.config)
        log = self.store.log_path(job.key) if job.run.trains else None
        return TrainedRun.from_payload(job, payload, log if log is not None and log.is_file() else None)

    def model(self, key: str) -> torch.nn.Module:
        """The trained model of job ``key``, frozen: from memory, the store, or trained now."""
        if key not in self.models:
            job = self.by_key[key]
            state = self.result(job).model_state
            if key not in self.models:  # read from the store, not trained by this call
                model = build_model(job, self.catalog, None)
                model.load_state_dict(state)
                self.models[key] = model.eval().requires_grad_(False)
        return self.models[key]

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
            model = build_model(job, self.catalog, None)
            model.load_state_dict(trained.model_state)
            self.models[job.key] = model.eval().requires_grad_(False)
        return trained


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
    a dry run keeps nothing on disk). ``params``: the experiment's own parameters.
    """
    resolved = resolve_runs(source, scale=scale, protocol=protocol, dry_run=dry_run, seeds=seeds, **params)
    preset = resolved.preset
    dev = torch.device("cpu") if dry_run else resolve_device(device)
    pinned = configure_determinism(getattr(preset, "threads", None))
    # the protocol of the full run: a dry run prints and shows it, then trains its cut-down runs
    full = resolve_runs(source, scale=scale, protocol=protocol, seeds=seeds, **params) if dry_run else resolved
    plan = plan_table(full.runs, seeds=resolved.seeds, protocol=resolved.protocol)
    if dry_run:
        print(f"{source.title} at scale={scale!r}, protocol={resolved.protocol!r}: {len(plan)} runs x "
              f"{len(resolved.seeds)} seed(s), {total_steps(plan):,} optimiser steps in a full run.")
        print(plan[["dataset", "run", "role", "network", "method", "steps", "batch"]].to_string(index=False))
    catalog = DataCatalog(data_root, progress=progress)
    catalog.check(resolved.runs)
    jobs = list_jobs(resolved, catalog, device=dev, pinned=pinned)
    kept_names = set(source.keep_models)
    needed = {key for job in jobs for key in job.needs} | {job.key for job in jobs if job.run.name in kept_names}
    workers = 0 if dry_run or getattr(preset, "num_workers", None) == 0 else num_workers
    session = Session(jobs, catalog, ModelStore(None if dry_run else (cache_dir or default_cache_dir())), dev,
                      needed=needed, progress=progress, num_workers=workers, dry_run=dry_run)
    bar = progress_bar(len(jobs), desc=f"{source.title} ({resolved.label})", enabled=progress, leave=True)
    trained = []
    for job in jobs:
        trained.append(session.result(job))
        bar.update(1)
    bar.close()
    results = _results(source, resolved, trained, plan, device=dev, pinned=pinned, data_root=data_root)
    for job in jobs:  # the kept models of the last seed
        if job.run.name in kept_names:
            results.models[f"{job.run.data.display}/{job.run.name}"] = session.model(job.key)
    source.analyse(results, results.models)
    return results


def _results(source: RunSource, resolved: Resolved, trained: list[TrainedRun], plan: pd.DataFrame, *,
             device: torch.device, pinned: bool, data_root: str | None) -> Results:
    rows = pd.DataFrame([row for t in trained for row in result_rows(t, resolved)])
    pretraining = rows["role"] == "pretrain" if len(rows) else pd.Series(dtype=bool)
    integer_labels = {"embedding_dim", "seed", "way", "shot"} | {k for run in resolved.runs for k, _ in run.labels}
    return Results(
        experiment=source.name, scale=resolved.label, protocol=resolved.protocol, seeds=resolved.seeds,
        rows=tidy(rows[~pretraining], integer_labels),
        pretraining=tidy(rows[pretraining], integer_labels).drop_duplicates(["run", "seed"]).reset_index(drop=True),
        plan=plan, episodes=pd.DataFrame([row for t in trained for row in episode_rows(t)]), device=str(device),
        datasets=tuple(dict.fromkeys(d for run in resolved.runs if run.role != "pretrain"
                                     for d in (run.data, *run.evaluation.domains))),
        machine=machine_name(device), date=datetime.date.today().isoformat(), pinned=pinned,
        dry_run=resolved.dry_run,
        training_logs={(t.job.run.data.display, t.job.run.name, t.job.seed): t.log for t in trained if t.log},
        extra={"data_root": data_root},
    )

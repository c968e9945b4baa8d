"""Jobs spread over processes or a cluster, with submitit: each job of a table (one run at
one seed, :mod:`rkd.runs.jobs`) runs as a process of its own (``local``: up to
``parallel`` at once on this machine, one GPU each where there are GPUs) or as a Slurm
job (``slurm``: one job array per wave).

Waves respect the dependencies: a job runs after the jobs whose models it needs
(pretrained trunk, then teacher, then students, then later generations). Jobs meet in
the model store (:mod:`rkd.runs.store`, on a filesystem every machine sees), whose lock
keeps two processes from training one job; a job already in the store is not submitted
again, and a job killed by the cluster is requeued by submitit and resumes from its
checkpoint. What each worker process does with a job key is the caller's (``work``,
a picklable callable; :mod:`rkd.experiments.launch` gives it the experiment).
"""
from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import submitit

from ..progress import progress_bar
from ..runtime import atomic_write
from .jobs import Job

__all__ = ["waves", "run_local", "submit_slurm", "SlurmOptions", "JobFailedError", "LaunchRecord", "FAILED_TAIL"]

#: lines of a failed job's log shown with the failure
FAILED_TAIL = 15


class JobFailedError(RuntimeError):
    """Some jobs failed; the message gives each one's name and the end of its log."""


def waves(jobs: Sequence[Job], done: Callable[[Job], bool]) -> list[list[Job]]:
    """The jobs not ``done``, in waves: a job is in the wave after the latest of the jobs
    it needs that still have to run (jobs already done need no wave)."""
    to_run = [job for job in jobs if not done(job)]
    keys = {job.key for job in to_run}
    depth: dict[str, int] = {}
    for job in to_run:  # the jobs are in training order: what a job needs comes before it
        depth[job.key] = 1 + max((depth[k] for k in job.needs if k in keys), default=-1)
    grouped: list[list[Job]] = [[] for _ in range(max(depth.values(), default=-1) + 1)]
    for job in to_run:
        grouped[depth[job.key]].append(job)
    return grouped


@dataclass
class LaunchRecord:
    """Which submitit job ran which job key (``<store>/launches/<name>.json``), read by the
    status command to say what is running, waiting or failed."""

    path: Path
    jobs: dict[str, dict[str, str]] = field(default_factory=dict)

    @classmethod
    def read(cls, path: Path) -> LaunchRecord:
        return cls(path, json.loads(path.read_text()) if path.is_file() else {})

    def add(self, key: str, job: submitit.Job, executor: str) -> None:
        self.jobs[key] = {"job_id": str(job.job_id), "folder": str(job.paths.folder), "executor": executor}
        with atomic_write(self.path, "w") as handle:
            json.dump(self.jobs, handle, indent=1, sort_keys=True)


def _tail(text: str | None, lines: int = FAILED_TAIL) -> str:
    return "\n".join((text or "").rstrip().splitlines()[-lines:])


def run_local(work: Callable[[str], Any], jobs: Sequence[Job], *, done: Callable[[Job], bool], folder: Path,
              parallel: int = 1, gpus: Sequence[int] = (), record: LaunchRecord | None = None,
              progress: bool = True, poll_seconds: float = 0.5,
              finished: Callable[[Job], None] | None = None) -> int:
    """Run every job not ``done`` as a process of its own (submitit's local executor), up to
    ``parallel`` at a time, wave after wave; return how many ran. ``gpus``: the GPUs to hand
    out, one per process (none: CPU processes). ``finished``: called here, in this process,
    with each job that ran without error as soon as it ends. Raises :class:`JobFailedError`
    after the wave in which jobs failed (the waves after it need their models)."""
    if parallel < 1:
        raise ValueError(f"parallel must be >= 1 (processes at once), got {parallel}")
    executor = submitit.LocalExecutor(folder=folder)
    executor.update_parameters(timeout_min=60 * 24 * 7)
    grouped = waves(jobs, done)
    total = sum(len(w) for w in grouped)
    bar = progress_bar(total, desc=f"jobs ({parallel} at a time)", enabled=progress, leave=True)
    try:
        for wave in grouped:
            failed = _run_wave(work, wave, executor, parallel, list(gpus), record, bar, poll_seconds, finished)
            if failed:
                raise JobFailedError(f"{len(failed)} of {len(wave)} jobs failed:\n" + "\n\n".join(failed))
    finally:
        bar.close()
    return total


def _run_wave(work, wave: list[Job], executor, parallel: int, gpus: list[int], record, bar,
              poll_seconds: float, finished: Callable[[Job], None] | None = None) -> list[str]:
    waiting, running, failed = list(wave), [], []
    free_gpus = list(gpus)
    while waiting or running:
        while waiting and len(running) < parallel and (not gpus or free_gpus):
            job = waiting.pop(0)
            gpu = free_gpus.pop(0) if gpus else None
            executor.update_parameters(gpus_per_node=1 if gpu is not None else 0,
                                       visible_gpus=(gpu,) if gpu is not None else ())
            submitted = executor.submit(work, job.key)
            if record is not None:
                record.add(job.key, submitted, "local")
            running.append((job, submitted, gpu))
        time.sleep(poll_seconds)
        for entry in [r for r in running if r[1].done()]:
            job, submitted, gpu = entry
            running.remove(entry)
            if gpu is not None:
                free_gpus.append(gpu)
            if submitted.exception() is not None:
                failed.append(f"{job.name} (job {submitted.job_id}, log {submitted.paths.stderr}):\n"
                              f"{_tail(submitted.stderr())}")
            elif finished is not None:
                finished(job)
            bar.update(1)
    return failed


@dataclass(frozen=True)
class SlurmOptions:
    """Where and how each job runs on a Slurm cluster."""

    partition: str | None = None
    gpus_per_job: int = 1
    cpus_per_job: int = 8
    time_minutes: int = 24 * 60
    account: str | None = None
    array_parallelism: int = 64
    memory_gb: int | None = None

    def parameters(self) -> dict[str, Any]:
        found: dict[str, Any] = {"timeout_min": self.time_minutes, "gpus_per_node": self.gpus_per_job,
                                 "cpus_per_task": self.cpus_per_job, "tasks_per_node": 1, "nodes": 1,
                                 "slurm_array_parallelism": self.array_parallelism}
        if self.partition:
            found["slurm_partition"] = self.partition
        if self.account:
            found["slurm_account"] = self.account
        if self.memory_gb:
            found["mem_gb"] = self.memory_gb
        return found


def submit_slurm(work: Callable[[str], Any], jobs: Sequence[Job], *, done: Callable[[Job], bool], folder: Path,
                 options: SlurmOptions, record: LaunchRecord | None = None, name: str = "rkd") -> list[str]:
    """Submit every job not ``done``: one Slurm job array per wave, each array starting
    after the previous one succeeded (``afterok``); return the array job ids. A job that
    times out or is preempted is requeued and resumes from its checkpoint (``work`` should
    be a :class:`submitit.helpers.Checkpointable`)."""
    executor = submitit.AutoExecutor(folder=folder, cluster="slurm")
    executor.update_parameters(name=name, **options.parameters())
    submitted_ids: list[str] = []
    for wave in waves(jobs, done):
        dependency = {"dependency": f"afterok:{submitted_ids[-1]}"} if submitted_ids else {}
        executor.update_parameters(slurm_additional_parameters=dependency)
        array = executor.map_array(work, [job.key for job in wave])
        for job, submitted in zip(wave, array):
            if record is not None:
                record.add(job.key, submitted, "slurm")
        submitted_ids.append(str(array[0].job_id).split("_")[0])
    return submitted_ids


def job_state(entry: dict[str, str]) -> tuple[str, str]:
    """``(state, log tail)`` of a submitted job from its :class:`LaunchRecord` entry:
    ``"running"``, ``"failed"``, ``"finished"`` or ``"unknown"`` (its files are gone)."""
    folder, job_id = Path(entry["folder"]), entry["job_id"]
    if entry.get("executor") == "slurm":
        job = submitit.SlurmJob(folder=folder, job_id=job_id)
        state = job.state.lower()
        tail = _tail(job.stderr()) if state in ("failed", "timeout", "cancelled", "out_of_memory") else ""
        return ("failed" if tail else "running" if state in ("running", "pending", "requeued") else state), tail
    paths = submitit.core.utils.JobPaths(folder, job_id=job_id, task_id=0)
    if paths.result_pickle.exists():
        outcome, value = submitit.core.utils.pickle_load(paths.result_pickle)
        return ("finished", "") if outcome == "success" else ("failed", _tail(str(value)))
    if paths.stderr.exists():
        return "running", ""
    return "unknown", ""

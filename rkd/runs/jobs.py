"""Jobs: one run at one seed, the unit every executor trains, with the key that names
its model and its stored numbers.

A job's key is the digest of everything that decides its result: the run's
configuration (its name, group and labels aside: they only say where it is shown), its
training data, the seed, the keys of its teacher and of the weights it starts from (so a
changed teacher never reuses a stale student), the device type, torch's version and
whether the CPU pin was in effect. The jobs of a call are listed in training order:
seed after seed, every run in declaration order, a fixed asset (a pretrained trunk,
``Run.seed`` set) once, for the first seed.
"""
from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from ..cache import config_digest
from ..data.splits import DataSpec, load_split
from .plan import Resolved
from .policies import BATCH_POLICIES, EVALUATION_POLICIES
from .spec import Run

__all__ = ["Job", "DataCatalog", "list_jobs"]


@dataclass(frozen=True)
class Job:
    """``run`` at ``seed``: ``config`` is its full configuration, ``key`` the digest of
    it; ``teacher`` and ``init`` are the keys of the jobs it is taught by and starts from."""

    run: Run
    seed: int
    #: JSON-able through :func:`rkd.cache.canonical_json` (it holds the run's dataclasses)
    config: Mapping[str, Any] = field(compare=False, repr=False)
    key: str = ""
    teacher: str | None = None
    init: str | None = None

    @property
    def needs(self) -> tuple[str, ...]:
        """The keys of the jobs whose models this job needs to train."""
        return tuple(k for k in (self.teacher, self.init) if k is not None)

    @property
    def name(self) -> str:
        return f"{self.run.data.display}: {self.run.name} (seed {self.seed})"


class DataCatalog:
    """The splits one call reads, each loaded once, from ``data_root``."""

    def __init__(self, data_root: str | None, *, progress: bool = False):
        self.data_root = data_root
        self.progress = progress
        self._splits: dict[tuple[DataSpec, str, bool], Any] = {}

    def split(self, spec: DataSpec, split: str, train: bool):
        key = (spec, split, train)
        if key not in self._splits:
            self._splits[key] = load_split(spec, self.data_root, split, train=train, progress=self.progress)
        return self._splits[key]

    def training_set(self, run: Run):
        return self.split(run.data, "train", True)

    def test_sets(self, run: Run) -> Iterator[tuple[DataSpec, Any]]:
        """Every test set ``run`` is evaluated on: its own data's, then its other domains'."""
        for domain in (run.data, *run.evaluation.domains):
            yield domain, self.split(domain, run.evaluation.split, False)

    def fingerprint(self, spec: DataSpec) -> dict[str, Any]:
        """What identifies the training images beyond the spec: their number, their classes
        and, for generated sets (the glyph world), the digest of their generation config,
        so a changed stand-in never reuses a stale model."""
        dataset = self.split(spec, "train", True)
        generated = getattr(dataset, "cache_path", None)
        return {"images": len(dataset), "classes": int(dataset.num_classes),
                "generated": Path(generated).stem if generated else None}

    def check(self, runs: tuple[Run, ...]) -> None:
        """Read every split and build every sampler and test episode before the first model
        is built: a missing dataset, or a split too small for its batches or episodes,
        fails at once instead of after hours of training."""
        for run in runs:
            if run.trains:
                BATCH_POLICIES.get(run.batches.kind).sampler(run.batches, self.training_set(run).targets, 0)
            if not EVALUATION_POLICIES.get(run.evaluation.kind).metrics(run.evaluation):
                continue
            for _domain, test_set in self.test_sets(run):
                EVALUATION_POLICIES.get(run.evaluation.kind).check(run.evaluation, test_set)


def list_jobs(resolved: Resolved, catalog: DataCatalog, *, device: torch.device, pinned: bool) -> list[Job]:
    """Every job of ``resolved``, in training order, with their keys."""
    jobs: list[Job] = []
    by_reference: dict[tuple[str, str, int], Job] = {}

    def reference(run: Run, name: str | None, seed: int) -> Job | None:
        if name is None:
            return None
        referenced = next(r for r in resolved.runs if r.scope == run.scope and r.name == name)
        return by_reference[(run.scope, name, referenced.seed if referenced.seed is not None else seed)]

    for seed in resolved.seeds:
        for run in resolved.runs:
            if run.seed is not None and seed != resolved.seeds[0]:
                continue  # a fixed asset (the pretrained trunk): trained once, for the first seed
            own_seed = run.seed if run.seed is not None else seed
            teacher, init = reference(run, run.teacher, seed), reference(run, run.init, seed)
            config = {
                "run": replace(run, name="", group=None, labels=()),
                "data": catalog.fingerprint(run.data) if run.trains or run.role == "pretrain" else None,
                "seed": own_seed,
                "teacher": None if teacher is None else teacher.config,
                "init": None if init is None else init.config,
                "device": device.type,
                "torch": torch.__version__,
                "numerics": "portable" if pinned else "native",
            }
            job = Job(run, own_seed, config, config_digest(config), teacher and teacher.key, init and init.key)
            by_reference[(run.scope, run.name, own_seed)] = job
            jobs.append(job)
    return jobs

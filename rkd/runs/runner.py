"""The one runner: everything a table or figure does besides declaring its runs.

:func:`run_experiment` checks the parameters, picks the preset, applies the protocol
(:mod:`rkd.runs.protocol`) and the dry run, seeds every run, trains each model
once per (full configuration, seed, package version) and shares it between the runs,
notebooks and sessions that need it (:class:`ModelStore`, on disk through
:class:`rkd.cache.ArtifactCache`, resumable through ``fit``'s checkpoints), evaluates,
and returns tidy rows: one per (run, seed, evaluated test set[, way]).
"""
from __future__ import annotations

import dataclasses
import datetime
import platform
from collections.abc import Callable, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from .. import evaluate as evaluators
from ..cache import ArtifactCache, config_digest, default_cache_dir
from ..data.samplers import EpisodeSampler, MPerClassSampler, RandomBatchSampler
from ..data.splits import DataSpec, load_split
from ..distill import Distiller, PrecomputedTeacher
from ..losses.terms import TermContext
from ..methods import Method, Stage, get_method
from ..progress import progress_bar
from ..registry import Registry
from ..runtime import atomic_torch_save, configure_determinism, exclusive, seed_everything
from ..train import TrainConfig, fit
from ..train.loader import draws_randomness
from ..train.log import default_log_path
from ..train.distributed import is_main_process, rank_zero_decides
from .protocol import get_protocol
from .spec import Batches, Evaluation, Experiment, Run

__all__ = ["run_experiment", "resolve_runs", "plan_table", "Results", "ModelStore", "BATCH_SAMPLERS",
           "resolve_device", "DRY_RUN"]


# ------------------------------------------------------------------------------ samplers

#: batch kind -> ``(batches, targets, seed) -> batch sampler``
BATCH_SAMPLERS: Registry[Callable[[Batches, Any, int], Any]] = Registry("batch kind")
BATCH_SAMPLERS.register("m_per_class", lambda b, targets, seed: MPerClassSampler(
    targets, m=b.m, batch_size=b.size, batches_per_epoch=b.per_epoch, seed=seed, **dict(b.options)))
BATCH_SAMPLERS.register("random", lambda b, targets, seed: RandomBatchSampler(
    len(targets), b.size, seed=seed, **dict(b.options)))
BATCH_SAMPLERS.register("episodes", lambda b, targets, seed: EpisodeSampler(
    targets, b.way, b.shot, b.query, episodes=b.per_epoch or 100, seed=seed))


# ------------------------------------------------------------------------------ resolving runs


@dataclass(frozen=True)
class DryRun:
    """How a dry run cuts a full run down to a CPU smoke test of the same code path:
    every model trains :attr:`steps` steps on tiny batches, evaluation is cut to what a
    generated tree can answer, no pretrained weights are downloaded."""

    steps: int = 2
    classes_per_batch: int = 2
    batch_size: int = 3
    way: int = 2
    query: int = 1
    episodes: int = 2
    lr: float = 1e-3  # a random teacher's block-4 hints can overflow at the paper's lr 0.1 within two steps
    eval_batch_size: int = 32


DRY_RUN = DryRun()


def _dry(run: Run) -> Run:
    data = run.data.for_dry_run()
    evaluation = replace(run.evaluation, batch_size=min(run.evaluation.batch_size, DRY_RUN.eval_batch_size),
                         every=0, episodes=DRY_RUN.episodes if run.evaluation.episodes else 0,
                         ways=(DRY_RUN.way,) if run.evaluation.ways else (), query=DRY_RUN.query
                         if run.evaluation.query else 0,
                         domains=tuple(d.for_dry_run() for d in run.evaluation.domains))
    changes: dict[str, Any] = {"data": data, "network": run.network.without_pretrained(), "evaluation": evaluation}
    if run.trains:
        changes["train"] = replace(run.train, steps=DRY_RUN.steps, milestones=(), checkpoint_every=0,
                                   lr=min(run.train.lr, DRY_RUN.lr))
        b = run.batches
        if b.kind == "m_per_class":
            changes["batches"] = replace(b, size=DRY_RUN.classes_per_batch * b.m, per_epoch=None,
                                         options=tuple((k, v) for k, v in b.options if k != "fill_with_partial_class"))
        elif b.kind == "random":
            changes["batches"] = replace(b, size=DRY_RUN.batch_size)
        else:
            changes["batches"] = replace(b, way=DRY_RUN.way, query=DRY_RUN.query, per_epoch=DRY_RUN.steps)
    return replace(run, **changes)


@dataclass(frozen=True)
class Resolved:
    runs: tuple[Run, ...]
    seeds: tuple[int, ...]
    protocol: str
    preset: Any
    label: str


def resolve_runs(experiment: Experiment, *, scale: str, protocol: str | None = None, dry_run: bool = False,
                 seeds: tuple[int, ...] | None = None, **params: Any) -> Resolved:
    """The runs of ``experiment`` at ``scale`` as they will train: the preset's, with
    ``params`` applied, the protocol's options and, for a dry run, cut down."""
    preset = experiment.preset(scale)
    unknown = sorted(set(params) - set(experiment.parameters))
    if unknown:
        raise TypeError(f"{experiment.title} takes no parameter(s) {unknown}; its own parameters: "
                        f"{', '.join(experiment.parameters) or 'none'}")
    chosen_protocol = get_protocol(protocol or preset.protocol)
    runs = tuple(chosen_protocol.apply(run) for run in experiment.runs(preset, **params))
    runs = tuple(r for run in runs for r in chosen_protocol.split(run))
    if dry_run:
        runs = tuple(_dry(run) for run in runs)
    _check_references(runs)
    chosen_seeds = tuple(preset.seeds if seeds is None else seeds)
    if not chosen_seeds or any(isinstance(s, bool) or not isinstance(s, int) for s in chosen_seeds):
        raise ValueError(f"seeds must be a non-empty list of ints, got {seeds!r}")
    if len(set(chosen_seeds)) != len(chosen_seeds):
        raise ValueError(f"seeds {list(chosen_seeds)} repeat a seed; each seed is one independent repetition")
    label = f"{scale} (dry run)" if dry_run else scale
    return Resolved(runs, chosen_seeds, chosen_protocol.name, preset, label)


def _check_references(runs: tuple[Run, ...]) -> None:
    seen: set[tuple[str, str]] = set()
    for run in runs:
        for kind in ("teacher", "init"):
            ref = getattr(run, kind)
            if ref is not None and (run.scope, ref) not in seen:
                raise ValueError(f"run {run.name!r} ({run.scope}) names {kind} {ref!r}, which is not an earlier "
                                 f"run of its group")
        key = (run.scope, run.name)
        if key in seen:
            raise ValueError(f"two runs of {run.scope} are named {run.name!r}")
        seen.add(key)


# ------------------------------------------------------------------------------ the plan


def _terms(method: Method, stage: int | None) -> str:
    stages = method.stages if stage is None else (method.stages[stage],)
    parts = []
    for s in stages:
        terms = " + ".join(f"{name} x{weight:g}" for name, weight in s.terms.items())
        parts.append(terms if len(stages) == 1 else f"{terms} ({s.fraction:.0%} of steps)")
    return ", then ".join(parts)


def plan_table(runs: tuple[Run, ...], *, seeds: tuple[int, ...], protocol: str) -> pd.DataFrame:
    """One row per training run: the protocol of a table, generated from its preset. A
    shared asset (a pretrained trunk, which several datasets start from) is listed once."""
    rows = []
    shared: set[Run] = set()
    for run in runs:
        if run.seed is not None:
            asset = replace(run, group=None)
            if asset in shared:
                continue
            shared.add(asset)
        options = dict(run.model_options)
        row = {
            "dataset": run.data.display,
            "run": run.name,
            "role": run.role,
            "network": run.network.name + (" (pretrained)" if run.network.pretrained else ""),
            "embedding": options.get("embedding_dim", "—"),
            "L2": {True: "yes", False: "no"}.get(options.get("normalize"), "—"),
            "teacher": run.teacher or "—",
            "starts from": run.init or ("ImageNet weights" if run.network.pretrained else "random init"),
        }
        if run.trains:
            method = get_method(run.method, task=run.task)
            t: TrainConfig = run.train
            row.update({
                "method": run.method + ("" if run.stage is None else f" (stage {method.stages[run.stage].name})"),
                "loss terms": _terms(method, run.stage),
                "term options": "; ".join(
                    f"{term}: " + ", ".join(f"{k}={v}" for k, v in options) for term, options in run.term_options
                    if term in _method(run).term_names) or "—",
                "optimiser": t.optimizer, "lr": t.lr, "weight decay": t.weight_decay, "steps": t.steps,
                "milestones": ", ".join(map(str, t.milestones)) or "—", "gamma": t.gamma,
                "batch": run.batches.describe(),
            })
        else:
            row.update({"method": "— (evaluated only)", "loss terms": "—", "term options": "—", "optimiser": "—",
                        "lr": None,
                        "weight decay": None, "steps": 0, "milestones": "—", "gamma": None, "batch": "—"})
        row.update({
            "image size": run.data.image_size or "—",
            "evaluation": _describe_evaluation(run.evaluation),
            "seeds": ", ".join(map(str, (run.seed,) if run.seed is not None else seeds)),
            "protocol": protocol,
        })
        rows.append(row)
    return pd.DataFrame(rows)


def _describe_evaluation(e: Evaluation) -> str:
    if e.kind == "recall":
        text = "Recall@" + ",".join(map(str, e.ks))
    elif e.kind == "top1":
        text = "top-1"
    elif e.kind == "episodes":
        text = f"{e.episodes} episodes of {', '.join(f'{w}-way' for w in e.ways)} {e.shot}-shot, {e.query} queries"
    else:
        return "—"
    if e.domains:
        text += " on " + ", ".join(d.display for d in e.domains) + " too"
    return text


# ------------------------------------------------------------------------------ the model store


class ModelStore:
    """Trained models and their measurements, once per (full configuration, seed,
    package version): in memory for this process, on disk (atomically) for the others.

    A key holds everything that decides the result: the run's configuration, its
    data, the seed, the keys of its teacher and initial weights (so a changed teacher
    never reuses a stale student), the device type, torch's version and whether the
    CPU pin was in effect. A killed training resumes from its checkpoint.
    """

    def __init__(self, directory: str | Path | None):
        self.directory = Path(directory) if directory is not None else None
        self.cache = ArtifactCache(self.directory / "models") if self.directory is not None else None
        self.memory: dict[str, dict[str, Any]] = {}

    def get(self, key: Mapping[str, Any]) -> dict[str, Any] | None:
        digest = config_digest(key)
        if digest in self.memory:
            return self.memory[digest]
        payload = self.cache.load(key) if self.cache is not None else None
        if payload is not None:
            self.memory[digest] = payload
        return payload

    def put(self, key: Mapping[str, Any], payload: dict[str, Any], *, to_disk: bool) -> None:
        self.memory[config_digest(key)] = payload
        if to_disk and self.cache is not None:
            self.cache.save(key, payload)

    @contextmanager
    def training(self, key: Mapping[str, Any]):
        """Held while the model of ``key`` trains: another process (a second notebook of
        the same ``make``, say) that needs the same model waits, then reads it from disk
        instead of training it again."""
        if self.directory is None or not is_main_process():
            # under torchrun (rkd.experiments.launch) the processes of one job train the model
            # together: only rank 0 locks, the others would wait for it while it waits for them
            yield
            return
        with exclusive(self.directory / "locks" / f"{config_digest(key)}.lock"):
            yield

    def checkpoint_path(self, key: Mapping[str, Any]) -> Path | None:
        return None if self.directory is None else self.directory / "checkpoints" / f"{config_digest(key)}.pt"

    def weights_file(self, key: Mapping[str, Any], trunk_state: dict[str, torch.Tensor]) -> Path:
        """A plain state_dict file of a pretrained trunk, read through ``weights_path``."""
        directory = self.directory if self.directory is not None else default_cache_dir()
        path = directory / "weights" / f"{config_digest(key)}.pt"
        if not path.is_file():
            atomic_torch_save({k: v.detach().cpu() for k, v in trunk_state.items()}, path)
        return path


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


# ------------------------------------------------------------------------------ results


@dataclass
class Results:
    """What :func:`run_experiment` returns.

    ``rows``: one row per (run, seed, evaluated test set[, way]), the per-seed values a
    claim pairs. ``pretraining``: the pretrained trunks' held-out top-1. ``episodes``:
    few-shot only, one row per (run, seed, way, episode).
    ``plan``: the protocol table. ``models``: the trained models of :attr:`Experiment.keep_models`
    (last seed), for figures that draw from them. ``training_logs``: (dataset, run, seed) ->
    the run's training log (:mod:`rkd.train.log`) in the model cache, for every run that
    trained there (none in a dry run, which keeps no cache).
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


# ------------------------------------------------------------------------------ the runner


def run_experiment(experiment: Experiment, *, scale: str = "ci", data_root: str | None = None, device: str = "cpu",
                   seeds: tuple[int, ...] | None = None, protocol: str | None = None, progress: bool = True,
                   dry_run: bool = False, cache_dir: str | None = None, num_workers: int | None = None,
                   **params: Any) -> Results:
    """Run every run of ``experiment`` at ``scale`` for every seed; return :class:`Results`.

    ``seeds``: the repetitions (default: the preset's). ``protocol``: ``"authors_code"``
    or ``"paper_text"`` (default: the preset's; see :mod:`rkd.runs.protocol`).
    ``dry_run``: print the plan, then train every model for two steps on the CPU on the
    preset's data and networks (no downloads); the rows are not results.
    ``cache_dir``: where trained models are kept (default :func:`rkd.cache.default_cache_dir`;
    a dry run keeps nothing on disk). ``params``: the experiment's own parameters.
    """
    resolved = resolve_runs(experiment, scale=scale, protocol=protocol, dry_run=dry_run, seeds=seeds, **params)
    preset = resolved.preset
    dev = torch.device("cpu") if dry_run else resolve_device(device)
    pinned = configure_determinism(getattr(preset, "threads", None))
    # the protocol of the full run: a dry run prints and shows it, then trains its cut-down runs
    full = resolve_runs(experiment, scale=scale, protocol=protocol, seeds=seeds, **params) if dry_run else resolved
    plan = plan_table(full.runs, seeds=resolved.seeds, protocol=resolved.protocol)
    if dry_run:
        print(f"{experiment.title} at scale={scale!r}, protocol={resolved.protocol!r}: {len(plan)} runs x "
              f"{len(resolved.seeds)} seed(s), {_total_steps(plan):,} optimiser steps in a full run.")
        print(plan[["dataset", "run", "role", "network", "method", "steps", "batch"]].to_string(index=False))
    store = ModelStore(None if dry_run else (cache_dir or default_cache_dir()))
    workers = 0 if dry_run or getattr(preset, "num_workers", None) == 0 else num_workers
    context = _Context(experiment, resolved, dev, data_root, store, progress, workers, pinned)
    context.check_data()

    total = sum(1 for run in resolved.runs for _ in (_seeds_of(run, resolved.seeds)))
    bar = progress_bar(total, desc=f"{experiment.title} ({resolved.label})", enabled=progress, leave=True)
    for seed in resolved.seeds:
        for run in resolved.runs:
            if run.seed is not None and seed != resolved.seeds[0]:
                continue  # a fixed asset (the pretrained trunk): trained once, for the first seed
            context.execute(run, seed)
            bar.update(1)
    bar.close()
    rows = pd.DataFrame(context.rows)
    pretraining = rows["role"] == "pretrain" if len(rows) else pd.Series(dtype=bool)
    integer_labels = {"embedding_dim", "seed", "way", "shot"} | {k for run in resolved.runs for k, _ in run.labels}
    results = Results(
        experiment=experiment.name, scale=resolved.label, protocol=resolved.protocol, seeds=resolved.seeds,
        rows=_tidy(rows[~pretraining], integer_labels),
        pretraining=_tidy(rows[pretraining], integer_labels).drop_duplicates(["run", "seed"]).reset_index(drop=True),
        plan=plan, episodes=pd.DataFrame(context.episode_rows), device=str(dev),
        datasets=tuple(dict.fromkeys(d for run in resolved.runs if run.role != "pretrain"
                                     for d in (run.data, *run.evaluation.domains))),
        machine=machine_name(dev), date=datetime.date.today().isoformat(), pinned=pinned, dry_run=dry_run,
        models=context.kept, training_logs=context.training_logs, extra={"data_root": data_root},
    )
    experiment.analyse(results, context.kept)
    return results


def _tidy(rows: pd.DataFrame, integer_labels: set[str]) -> pd.DataFrame:
    """``rows`` without the columns only other roles fill, and with integer labels
    (embedding size, generation, ...) as ints again where rows of those roles, lacking
    them, had made the column float."""
    rows = rows.dropna(axis=1, how="all").reset_index(drop=True)
    for column in integer_labels & set(rows.columns):
        values = rows[column]
        if values.dtype.kind == "f" and values.notna().all() and (values == values.round()).all():
            rows[column] = values.astype("int64")
    return rows


def _total_steps(plan: pd.DataFrame) -> int:
    """Optimiser steps of every run of ``plan`` for each of its seeds (a shared asset,
    the pretrained trunk, trains for one seed only)."""
    return int(sum(steps * len(seeds.split(", ")) for steps, seeds in zip(plan["steps"], plan["seeds"])))


def _seeds_of(run: Run, seeds: tuple[int, ...]) -> tuple[int, ...]:
    return (seeds[0],) if run.seed is not None else seeds


class _Context:
    """The state of one :func:`run_experiment` call: loaded splits, trained models, rows."""

    def __init__(self, experiment, resolved: Resolved, device, data_root, store: ModelStore, progress: bool,
                 num_workers, pinned: bool):
        self.experiment = experiment
        self.resolved = resolved
        self.device = device
        self.data_root = data_root
        self.store = store
        self.progress = progress
        self.num_workers = num_workers
        self.pinned = pinned
        self.splits: dict[tuple, Any] = {}
        self.keys: dict[tuple[str, str, int], dict[str, Any]] = {}
        self.models: dict[tuple[str, str, int], torch.nn.Module] = {}
        self.weights: dict[tuple[str, str], Path] = {}
        self.rows: list[dict[str, Any]] = []
        self.episode_rows: list[dict[str, Any]] = []
        self.kept: dict[str, Any] = {}
        self.training_logs: dict[tuple[str, str, int], Path] = {}
        self.teacher_outputs: dict[tuple, PrecomputedTeacher] = {}
        needed = {(r.scope, ref) for r in resolved.runs for ref in (r.teacher, r.init) if ref is not None}
        self.needed = needed | {(r.scope, r.name) for r in resolved.runs if r.name in experiment.keep_models}

    # -------------------------------------------------------------- data

    def split(self, spec: DataSpec, split: str, train: bool):
        key = (spec, split, train)
        if key not in self.splits:
            self.splits[key] = load_split(spec, self.data_root, split, train=train, progress=self.progress)
        return self.splits[key]

    def check_data(self) -> None:
        """Read every split and build every sampler before the first model is built: a
        missing dataset, or a split too small for its batches or test episodes, fails at
        once instead of after hours of training (or after a weights download)."""
        for run in self.resolved.runs:
            if run.trains:
                BATCH_SAMPLERS.get(run.batches.kind)(run.batches, self.split(run.data, "train", True).targets, 0)
            e = run.evaluation
            if e.kind == "none":
                continue
            for domain in (run.data, *e.domains):
                test_set = self.split(domain, e.split, False)
                for way in e.ways if e.kind == "episodes" else ():
                    EpisodeSampler(test_set.targets, way, e.shot, e.query, episodes=1, seed=0)

    # -------------------------------------------------------------- keys

    def key(self, run: Run, seed: int) -> dict[str, Any]:
        """Everything that decides the model ``run`` trains at ``seed`` (see :class:`ModelStore`)."""
        return {
            "run": _plain(replace(run, name="", group=None, labels=())),
            "data": self.fingerprint(run.data, "train", True) if run.trains or run.role == "pretrain" else None,
            "seed": seed,
            "teacher": self.reference_key(run, run.teacher, seed),
            "init": self.reference_key(run, run.init, seed),
            "device": self.device.type,
            "torch": torch.__version__,
            "numerics": "portable" if self.pinned else "native",
        }

    def fingerprint(self, spec: DataSpec, split: str, train: bool) -> dict[str, Any]:
        """What identifies the images a model trained on, beyond the spec: their number,
        their classes and, for generated sets (the glyph world), the digest of their
        generation config, so a changed stand-in never reuses a stale model."""
        dataset = self.split(spec, split, train)
        generated = getattr(dataset, "cache_path", None)
        return {"images": len(dataset), "classes": int(dataset.num_classes),
                "generated": Path(generated).stem if generated else None}

    def reference_key(self, run: Run, name: str | None, seed: int) -> dict[str, Any] | None:
        if name is None:
            return None
        referenced = self.by_name(run, name)
        return self.keys[(run.scope, name, referenced.seed if referenced.seed is not None else seed)]

    def by_name(self, run: Run, name: str) -> Run:
        return next(r for r in self.resolved.runs if r.scope == run.scope and r.name == name)

    def model_of(self, run: Run, name: str, seed: int) -> torch.nn.Module:
        referenced = self.by_name(run, name)
        return self.models[(run.scope, name, referenced.seed if referenced.seed is not None else seed)]

    # -------------------------------------------------------------- one run

    def execute(self, run: Run, seed: int) -> None:
        seed = run.seed if run.seed is not None else seed
        key = self.key(run, seed)
        self.keys[(run.scope, run.name, seed)] = key
        needed_later = (run.scope, run.name) in self.needed
        usable = lambda found: found is not None and (not needed_later or "model" in found)  # noqa: E731
        model = None
        payload = self.store.get(key) if run.trains else None
        # under torchrun every process takes rank 0's decision (rank_zero_decides; the value
        # itself in one process): if some trained and others did not, they would wait forever
        if not rank_zero_decides(usable(payload)):
            with self.store.training(key):
                payload = self.store.get(key) if run.trains else None  # trained meanwhile by another process?
                if not rank_zero_decides(usable(payload)):
                    model, payload = self.train_and_evaluate(run, seed, key)
                    # under torchrun rank 0 writes the cache entry
                    self.store.put(key, payload, to_disk=run.trains and is_main_process())
        if not usable(payload):  # under torchrun: rank 0 read an entry that appeared after this process looked
            payload = self.store.get(key)
        log = default_log_path(self.store.checkpoint_path(key)) if run.trains else None
        if log is not None and log.is_file():
            self.training_logs[(run.data.display, run.name, seed)] = log
        if model is None and needed_later:
            model = self.build(run, seed)
            model.load_state_dict(payload["model"])
        if needed_later:
            model.eval().requires_grad_(False)
            self.models[(run.scope, run.name, seed)] = model
            if run.role == "pretrain":
                self.weights[(run.scope, run.name)] = self.store.weights_file(key, _trunk_state(model))
            if run.name in self.experiment.keep_models:
                self.kept[f"{run.data.display}/{run.name}"] = model
        self.record(run, seed, payload)

    def build(self, run: Run, seed: int) -> torch.nn.Module:
        seed_everything(seed)  # every model of a seed starts from the same draw, whatever ran before
        options = dict(run.model_options)
        if run.task == "classification" or run.role == "pretrain":
            options["num_classes"] = self.split(run.data, "train", True).num_classes
        if run.init is not None:
            if self.by_name(run, run.init).role == "pretrain":
                # the ci stand-in for ImageNet weights, read like a local ImageNet file is
                options["weights_path"] = str(self.weights[(run.scope, run.init)])
                return run.network.build(**options)
            model = run.network.build(**options)
            model.load_state_dict(self.model_of(run, run.init, seed).state_dict())
            return model
        return run.network.build(**options)

    def train_and_evaluate(self, run: Run, seed: int, key: dict[str, Any]):
        model = self.build(run, seed)
        history: list[dict[str, Any]] = []
        measured: dict[str, Any] = {}
        if run.trains:
            train_set = self.split(run.data, "train", True)
            teacher = self.model_of(run, run.teacher, seed) if run.teacher else None
            if teacher is not None and not draws_randomness(train_set):
                teacher = self.precomputed(run, teacher, train_set, seed)
            method = _method(run)
            context = TermContext.from_models(
                model, teacher,
                num_classes=train_set.num_classes if run.task == "classification" else None,
                episode=(run.batches.way, run.batches.shot, run.batches.query) if run.task == "fewshot" else None)
            distiller = Distiller(model, teacher, method, context)
            sampler = BATCH_SAMPLERS.get(run.batches.kind)(run.batches, train_set.targets, seed)
            evaluate = (lambda: self.measure(run, model, run.data, seed)[0]) if run.evaluation.every else None
            result = fit(distiller, train_set, sampler, run.train, device=self.device,
                         checkpoint_path=self.store.checkpoint_path(key), evaluate=evaluate,
                         eval_every=run.evaluation.every, progress=self.progress, num_workers=self.num_workers,
                         desc=f"{run.data.display}: {run.name} (seed {seed})")
            history = [dict(h) for h in getattr(result, "history", [])]
            if evaluate is not None:  # fit measured the final model on its own test set already
                measured[run.data.display] = result.metrics
            checkpoint = self.store.checkpoint_path(key)
            if checkpoint is not None:
                checkpoint.unlink(missing_ok=True)  # the finished model lives in the cache entry now
        model.eval()
        metrics, episodes = self.evaluate(run, model, seed, measured)
        payload = {"metrics": metrics, "episodes": episodes, "history": history}
        if (run.scope, run.name) in self.needed:
            payload["model"] = {k: v.detach().cpu() for k, v in model.state_dict().items()}
        return model, payload

    def precomputed(self, run: Run, teacher, train_set, seed: int) -> PrecomputedTeacher:
        """The teacher's outputs on the (fixed) training images, computed once per teacher
        and shared by all its students (see :class:`rkd.distill.PrecomputedTeacher`)."""
        key = (run.scope, run.teacher, seed, id(train_set))
        if key not in self.teacher_outputs:
            self.teacher_outputs = {key: PrecomputedTeacher(teacher, train_set)}  # one teacher's outputs at a time
        return self.teacher_outputs[key]

    def evaluate(self, run: Run, model, seed: int, measured: Mapping[str, Any] | None = None
                 ) -> tuple[dict[str, Any], dict[str, Any]]:
        """``{test set: metrics}`` and, few-shot, ``{test set: {way: per-episode accuracies}}``.
        ``measured``: test set -> metrics already measured on this model (by ``fit``'s last
        evaluation), not measured again (few-shot's per-episode values are never in it)."""
        metrics: dict[str, Any] = {}
        episodes: dict[str, Any] = {}
        for domain in (run.data, *run.evaluation.domains):
            if measured and domain.display in measured and run.evaluation.kind != "episodes":
                metrics[domain.display] = dict(measured[domain.display])
                continue
            metrics[domain.display], found = self.measure(run, model, domain, seed)
            if found:
                episodes[domain.display] = found
        return metrics, episodes

    def measure(self, run: Run, model, domain: DataSpec, seed: int) -> tuple[dict[str, Any], dict[str, Any]]:
        """The metrics of ``model`` on the test split of ``domain`` (and few-shot's per-episode values)."""
        e = run.evaluation
        test_set = self.split(domain, e.split, False)
        if e.kind == "recall":
            ks = _feasible_ks(e.ks, len(test_set)) if self.resolved.label.endswith("(dry run)") else e.ks
            return evaluators.recall(model, test_set, ks=ks, batch_size=e.batch_size, device=self.device), {}
        if e.kind == "top1":
            return evaluators.top1(model, test_set, batch_size=e.batch_size, device=self.device), {}
        if e.kind == "episodes":
            found = evaluators.fewshot_accuracy(model, test_set, ways=e.ways, shot=e.shot, query=e.query,
                                                episodes=e.episodes, seed=seed, batch_size=e.batch_size,
                                                device=self.device)
            return ({f"{r['way']}-way": {k: r[k] for k in ("accuracy", "ci95")} for r in found},
                    {f"{r['way']}-way": r["episode_accuracies"] for r in found})
        return {}, {}

    # -------------------------------------------------------------- rows

    def record(self, run: Run, seed: int, payload: dict[str, Any]) -> None:
        options = dict(run.model_options)
        base = {
            "dataset": run.data.display,
            "run": run.name,
            "role": run.role,
            "network": run.network.name,
            "method": (f"{run.method} (hint stage)" if run.role == "hint" else run.method) or "—",
            **{k: v for k, v in (("embedding_dim", options.get("embedding_dim")),) if "embedding_dim" in options},
            **({"l2_normalize": "yes" if options["normalize"] else "no"} if "normalize" in options else {}),
            **dict(run.labels),
            "seed": seed,
        }
        metrics = payload["metrics"]
        best = _best_on_test(payload.get("history", []), run.evaluation)
        for domain, values in metrics.items():
            row = {**base, **({"evaluated_on": domain} if run.evaluation.domains else {})}
            if run.evaluation.kind == "episodes":
                for way, result in values.items():
                    self.rows.append({**row, "way": int(way.split("-")[0]), "shot": run.evaluation.shot,
                                      **result, "episodes": run.evaluation.episodes, **self._tail()})
                    for index, value in enumerate(payload["episodes"][domain][way]):
                        self.episode_rows.append({"dataset": domain, "run": run.name, "seed": seed,
                                                  "way": int(way.split("-")[0]), "shot": run.evaluation.shot,
                                                  "episode": index, "accuracy": value})
            else:
                extra = best if domain == run.data.display else {}
                self.rows.append({**row, **values, **extra, **self._tail()})

    def _tail(self) -> dict[str, Any]:
        return {"scale": self.resolved.label, "protocol": self.resolved.protocol}


def _method(run: Run) -> Method:
    method = get_method(run.method, task=run.task)
    for term, options in run.term_options:
        if term in method.term_names:
            method = method.with_term_options(term, **dict(options))
    if run.stage is not None:
        stage = method.stages[run.stage]
        used = set(stage.terms)
        method = replace(method, name=f"{method.name} ({stage.name} stage)",
                         stages=(Stage(stage.name, dict(stage.terms), 1.0),),
                         term_options={k: v for k, v in method.term_options.items() if k in used})
    return method


def _trunk_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v for k, v in model.trunk.state_dict().items()}


def _best_on_test(history: list[dict[str, Any]], evaluation: Evaluation) -> dict[str, Any]:
    """The highest test metric of the periodic evaluations and its step: the model the
    authors' code would have kept. A column beside ours, never used for our verdicts."""
    if not history or not evaluation.metrics:
        return {}
    metric = evaluation.metrics[0]
    scored = [h for h in history if metric in h]
    if not scored:
        return {}
    best = max(scored, key=lambda h: h[metric])
    return {f"best_{metric}": best[metric], "best_step": best.get("step")}


def _feasible_ks(ks: tuple[int, ...], num_items: int) -> tuple[int, ...]:
    """The Ks a test set of ``num_items`` images can answer (K <= N - 1): only dry runs
    need it, their generated trees hold fewer images than SOP's K = 1000."""
    kept = tuple(k for k in ks if k <= num_items - 1)
    if not kept:
        raise ValueError(f"a test set of {num_items} images answers no K of {ks}; generate a larger tree")
    return kept

"""A table's runs as they will train (:func:`resolve_runs`) and as the page's protocol
table shows them (:func:`plan_table`).

Resolving applies, in order: the experiment's own parameters, the protocol's loss-term
options and stage split (:mod:`rkd.runs.protocol`), and for a dry run the cuts of
:data:`rkd.runs.policies.DRY_RUN`. Every run's ``teacher`` and ``init`` must name an
earlier run of its group.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Protocol as TypingProtocol

import pandas as pd

from ..methods import Method, get_method
from ..train import TrainConfig
from .policies import BATCH_POLICIES, DRY_RUN, EVALUATION_POLICIES
from .protocol import get_protocol
from .spec import Run

__all__ = ["RunSource", "Resolved", "resolve_runs", "plan_table", "dry", "distinct_paths", "method_of", "total_steps",
           "with_cost"]


class RunSource(TypingProtocol):
    """What the runner needs of a table or figure (:class:`rkd.experiments.Experiment` is one)."""

    name: str
    title: str
    parameters: Mapping[str, Any]
    keep_models: tuple[str, ...]

    def preset(self, scale: str) -> Any: ...

    def runs(self, preset: Any, **params: Any) -> Iterable[Run]: ...

    def analyse(self, results: Any, models: Mapping[str, Any]) -> None: ...


@dataclass(frozen=True)
class Resolved:
    """The runs of one call, as they train: ``label`` is the scale as pages show it."""

    runs: tuple[Run, ...]
    seeds: tuple[int, ...]
    protocol: str
    preset: Any
    label: str
    dry_run: bool = False


def dry(run: Run) -> Run:
    """``run`` cut down to a dry run: two steps, tiny batches, a few test classes, no downloads."""
    policy = EVALUATION_POLICIES.get(run.evaluation.kind)
    data = run.data.for_dry_run(test_per_class=policy.dry_test_per_class(run.evaluation),
                                test_classes=DRY_RUN.test_classes, side=DRY_RUN.side)
    changes: dict[str, Any] = {"data": data, "network": run.network.without_pretrained(),
                               "evaluation": policy.dry(run.evaluation)}
    if run.trains:
        changes["train"] = replace(run.train, steps=DRY_RUN.steps, milestones=(), checkpoint_every=0,
                                   lr=min(run.train.lr, DRY_RUN.lr))
        changes["batches"] = BATCH_POLICIES.get(run.batches.kind).dry(run.batches)
    return replace(run, **changes)


def resolve_runs(source: RunSource, *, scale: str, protocol: str | None = None, dry_run: bool = False,
                 seeds: tuple[int, ...] | None = None, **params: Any) -> Resolved:
    """The runs of ``source`` at ``scale`` as they will train: the preset's, with
    ``params`` applied, the protocol's options and, for a dry run, cut down."""
    preset = source.preset(scale)
    unknown = sorted(set(params) - set(source.parameters))
    if unknown:
        raise TypeError(f"{source.title} takes no parameter(s) {unknown}; its own parameters: "
                        f"{', '.join(source.parameters) or 'none'}")
    chosen_protocol = get_protocol(protocol or preset.protocol)
    runs = tuple(chosen_protocol.apply(run) for run in source.runs(preset, **params))
    runs = tuple(r for run in runs for r in chosen_protocol.split(run))
    if dry_run:
        runs = distinct_paths(tuple(dry(run) for run in runs))
    _check_references(runs)
    chosen_seeds = tuple(preset.seeds if seeds is None else seeds)
    if not chosen_seeds or any(isinstance(s, bool) or not isinstance(s, int) for s in chosen_seeds):
        raise ValueError(f"seeds must be a non-empty list of ints, got {seeds!r}")
    if len(set(chosen_seeds)) != len(chosen_seeds):
        raise ValueError(f"seeds {list(chosen_seeds)} repeat a seed; each seed is one independent repetition")
    label = f"{scale} (dry run)" if dry_run else scale
    return Resolved(runs, chosen_seeds[:1] if dry_run else chosen_seeds, chosen_protocol.name, preset, label,
                    dry_run)


def _path(run: Run) -> tuple:
    """What decides the code a run goes through: its sizes (integer model options:
    embedding sizes, input sides) do not."""
    options = tuple((k, v) for k, v in run.model_options if isinstance(v, bool) or not isinstance(v, int))
    return (run.scope, run.role, run.task, run.method, run.stage, run.network.name, run.data.name,
            run.evaluation.kind, run.batches and run.batches.kind, run.teacher is None, run.init is None, options,
            tuple(term for term, _ in run.term_options), run.data.validation)


def distinct_paths(runs: tuple[Run, ...]) -> tuple[Run, ...]:
    """The first run of each code path (:func:`_path`), and every run one of them starts
    from or is taught by: what a dry run needs to take every code path once."""
    first: dict[tuple, Run] = {}
    for run in runs:
        first.setdefault(_path(run), run)
    kept = set(first.values())
    by_name = {(run.scope, run.name): run for run in runs}
    for run in reversed(runs):  # what a run needs comes before it: one pass backwards takes it all
        if run in kept:
            for ref in (run.teacher, run.init):
                if ref is not None:
                    kept.add(by_name[(run.scope, ref)])
    return tuple(run for run in runs if run in kept)


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


def method_of(run: Run) -> Method:
    """The method ``run`` trains with: its term options applied and, for a run of one
    stage of a multi-stage method, that stage alone."""
    method = get_method(run.method, task=run.task)
    weights = {term: weight for term, weight in run.term_weights if term in method.term_names}
    method = get_method(run.method, task=run.task, **weights) if weights else method
    for term, options in run.term_options:
        if term in method.term_names:
            method = method.with_term_options(term, **dict(options))
    return method if run.stage is None else method.only_stage(run.stage)


# ------------------------------------------------------------------------------ the protocol table


def _terms(method: Method, stage: int | None) -> str:
    stages = method.stages if stage is None else (method.stages[stage],)
    return ", then ".join(" + ".join(f"{name} x{weight:g}" for name, weight in s.terms.items()) for s in stages)


def _training_columns(run: Run) -> dict[str, Any]:
    if not run.trains:
        return {"method": "— (evaluated only)", "loss terms": "—", "term options": "—", "optimiser": "—",
                "lr": None, "weight decay": None, "steps": 0, "milestones": "—", "gamma": None, "batch": "—",
                "images": 0}
    method = method_of(replace(run, stage=None))  # every stage, with the run's weights and options
    used = method_of(run).term_names
    t: TrainConfig = run.train
    return {
        "method": run.method + ("" if run.stage is None else f" (stage {method.stages[run.stage].name})"),
        "loss terms": _terms(method, run.stage),
        "term options": "; ".join(f"{term}: " + ", ".join(f"{k}={v}" for k, v in options)
                                  for term, options in run.term_options if term in used) or "—",
        "optimiser": t.optimizer, "lr": t.lr, "weight decay": t.weight_decay, "steps": t.steps,
        "milestones": ", ".join(map(str, t.milestones)) or "—", "gamma": t.gamma,
        "batch": BATCH_POLICIES.get(run.batches.kind).describe(run.batches),
        "images": t.steps * BATCH_POLICIES.get(run.batches.kind).images(run.batches),
    }


def _describe_evaluation(run: Run) -> str:
    e = run.evaluation
    policy = EVALUATION_POLICIES.get(e.kind)
    text = policy.describe(e)
    if e.domains and policy.metrics(e):
        text += " on " + ", ".join(d.display for d in e.domains) + " too"
    return text


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
        rows.append({
            "dataset": run.data.display,
            "run": run.name,
            "role": run.role,
            "network": run.network.name + (" (pretrained)" if run.network.pretrained else ""),
            "embedding": options.get("embedding_dim", "—"),
            "L2": {True: "yes", False: "no"}.get(options.get("normalize"), "—"),
            "teacher": run.teacher or "—",
            "starts from": run.init or ("ImageNet weights" if run.network.pretrained else "random init"),
            **_training_columns(run),
            "image size": run.data.image_size or "—",
            "evaluation": _describe_evaluation(run),
            "seeds": ", ".join(map(str, (run.seed,) if run.seed is not None else seeds)),
            "protocol": protocol,
        })
    return pd.DataFrame(rows)


def total_steps(plan: pd.DataFrame, column: str = "steps") -> int:
    """Optimiser steps (or ``column``: ``"images"``) of every run of ``plan`` for each of its
    seeds (a shared asset, the pretrained trunk, trains for one seed only)."""
    return int(sum(value * len(seeds.split(", ")) for value, seeds in zip(plan[column], plan["seeds"])))


def with_cost(plan: pd.DataFrame, throughput: float | None) -> pd.DataFrame:
    """``plan`` with each run's training images over all its seeds and, given a
    ``throughput`` (training images per second and GPU, e.g. measured by
    ``benchmarks/bench_train_step.py``), its GPU-hours (training only, evaluations aside)."""
    if throughput is not None and not throughput > 0:
        raise ValueError(f"throughput must be a positive number of images per second, got {throughput!r}")
    plan = plan.copy()
    seeds = plan["seeds"].map(lambda text: len(text.split(", ")))
    plan["images, all seeds"] = plan["images"] * seeds
    if throughput is not None:
        plan[f"GPU-hours at {throughput:g} img/s"] = plan["images, all seeds"] / throughput / 3600
    return plan

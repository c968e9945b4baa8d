"""How a kind of batches is drawn and a kind of evaluation measured: registry entries,
so that nothing else branches on :attr:`Batches.kind <rkd.runs.spec.Batches.kind>` or
:attr:`Evaluation.kind <rkd.runs.spec.Evaluation.kind>`.

A :class:`BatchPolicy` builds a run's batch sampler, describes it for the protocol table
and cuts it down for a dry run; an :class:`EvaluationPolicy` names the metrics of an
evaluation, measures them on a test set, describes it and cuts it down for a dry run.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, ClassVar

import torch

from .. import evaluate as evaluators
from ..data.samplers import EpisodeSampler, MPerClassSampler, RandomBatchSampler
from ..registry import Registry
from .spec import Batches, Evaluation

__all__ = ["BatchPolicy", "EvaluationPolicy", "BATCH_POLICIES", "EVALUATION_POLICIES", "DryRun", "DRY_RUN",
           "Measured"]


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
    #: test splits cut to this many classes (of :meth:`EvaluationPolicy.dry_test_per_class` images each)
    test_classes: int = 8
    #: images of a larger side (the paper's 224) made this side where the transforms can (not
    #: for the few-shot networks' fixed inputs): the same code, a twelfth of the arithmetic;
    #: smaller would leave block 4's attention maps 1x1 (attention transfer refuses those)
    side: int = 64

    def describe(self) -> str:
        """What a dry run cuts, in words (the plan and the page say it)."""
        return (f"a dry run trains one run of each code path (a run differing from an earlier one only in "
                f"sizes is left out), for the first seed only, {self.steps} steps each on tiny batches from "
                f"random weights, and evaluates on the first {self.test_classes} test classes: its numbers are "
                f"not results; images are made {self.side} pixels a side where their network allows it")


DRY_RUN = DryRun()


# ------------------------------------------------------------------------------ batches


class BatchPolicy:
    """One kind of training batches (see :class:`rkd.runs.spec.Batches`)."""

    def sampler(self, batches: Batches, targets: Any, seed: int):
        """The batch sampler of a run whose training set has ``targets``."""
        raise NotImplementedError

    def describe(self, batches: Batches) -> str:
        """The batches in words, for the protocol table."""
        raise NotImplementedError

    def dry(self, batches: Batches) -> Batches:
        """The batches of a dry run."""
        raise NotImplementedError

    def episode(self, batches: Batches) -> tuple[int, int, int] | None:
        """``(way, shot, query)`` when every batch is one few-shot episode, else None."""
        return None

    def images(self, batches: Batches) -> int:
        """Images in one batch (what one training step processes)."""
        return batches.size

    @staticmethod
    def _suffix(batches: Batches) -> str:
        text = f", {batches.per_epoch} per epoch" if batches.per_epoch else ""
        return text + "".join(f", {k}={v}" for k, v in batches.options)


class ClassBalanced(BatchPolicy):
    """``size`` images, ``m`` per class (metric learning): :class:`~rkd.data.MPerClassSampler`."""

    def sampler(self, batches, targets, seed):
        return MPerClassSampler(targets, m=batches.m, batch_size=batches.size, batches_per_epoch=batches.per_epoch,
                                seed=seed, **dict(batches.options))

    def describe(self, batches):
        classes, extra = divmod(batches.size, batches.m)
        text = f"{classes} classes x {batches.m} images" + (f" + {extra}" if extra else "")
        return text + self._suffix(batches)

    def dry(self, batches):
        return replace(batches, size=DRY_RUN.classes_per_batch * batches.m, per_epoch=None)


class Shuffled(BatchPolicy):
    """``size`` random images, one shuffle per epoch (classification): :class:`~rkd.data.RandomBatchSampler`."""

    def sampler(self, batches, targets, seed):
        return RandomBatchSampler(len(targets), batches.size, seed=seed, **dict(batches.options))

    def describe(self, batches):
        return f"{batches.size} random images" + self._suffix(batches)

    def dry(self, batches):
        return replace(batches, size=DRY_RUN.batch_size)


class Episodes(BatchPolicy):
    """``way`` classes x (``shot`` + ``query``) images (few-shot): :class:`~rkd.data.EpisodeSampler`."""

    def sampler(self, batches, targets, seed):
        return EpisodeSampler(targets, batches.way, batches.shot, batches.query, episodes=batches.per_epoch or 100,
                              seed=seed)

    def describe(self, batches):
        return f"{batches.way}-way {batches.shot}-shot, {batches.query} queries per class" + self._suffix(batches)

    def dry(self, batches):
        return replace(batches, way=DRY_RUN.way, query=DRY_RUN.query, per_epoch=DRY_RUN.steps)

    def episode(self, batches):
        return (batches.way, batches.shot, batches.query)

    def images(self, batches):
        return batches.way * (batches.shot + batches.query)


#: ``Batches.kind`` -> its policy
BATCH_POLICIES: Registry[BatchPolicy] = Registry("batch kind")
BATCH_POLICIES.register("m_per_class", ClassBalanced())
BATCH_POLICIES.register("random", Shuffled())
BATCH_POLICIES.register("episodes", Episodes())


# ------------------------------------------------------------------------------ evaluations


@dataclass(frozen=True)
class Measured:
    """What one evaluation of a model on one test set gives: ``metrics`` (name -> value,
    or for few-shot ``"<way>-way"`` -> ``{"accuracy", "ci95"}``) and, few-shot only,
    ``episodes`` (``"<way>-way"`` -> the per-episode accuracies, in episode order)."""

    metrics: dict[str, Any]
    episodes: dict[str, list[float]] | None = None


class EvaluationPolicy:
    """One kind of evaluation (see :class:`rkd.runs.spec.Evaluation`)."""

    #: the kind's episode-level values are kept beside its metrics
    per_episode: ClassVar[bool] = False

    def metrics(self, evaluation: Evaluation) -> tuple[str, ...]:
        """The names of the metrics it reports (the first is the one claims compare)."""
        return ()

    def measure(self, evaluation: Evaluation, model: torch.nn.Module, test_set, *, seed: int,
                device: torch.device, dry_run: bool, teacher: torch.nn.Module | None = None) -> Measured:
        """The metrics of ``model`` on ``test_set`` (``teacher``: the run's, for metrics that
        compare the two)."""
        return Measured({})

    def describe(self, evaluation: Evaluation) -> str:
        return "—"

    def check(self, evaluation: Evaluation, test_set) -> None:
        """Raise now if ``test_set`` cannot answer ``evaluation`` (before any training)."""

    def result_rows(self, evaluation: Evaluation, metrics: dict[str, Any]) -> list[dict[str, Any]]:
        """The result rows of one test set's ``metrics`` (one, or one per way)."""
        return [dict(metrics)]

    def curve(self, evaluation: Evaluation, history: list[dict[str, Any]], row: dict[str, Any]
              ) -> list[tuple[int, float]]:
        """``(step, value)`` of the metric a claim compares in ``row``, along training."""
        names = self.metrics(evaluation)
        return [(h["step"], h[names[0]]) for h in history if names and names[0] in h]

    def dry_test_per_class(self, evaluation: Evaluation) -> int:
        """Test images per class a dry run keeps (enough for a positive pair)."""
        return 2

    def dry(self, evaluation: Evaluation) -> Evaluation:
        per_class = self.dry_test_per_class(evaluation)
        return replace(evaluation, batch_size=min(evaluation.batch_size, DRY_RUN.eval_batch_size), every=0,
                       domains=tuple(d.for_dry_run(test_per_class=per_class, test_classes=DRY_RUN.test_classes,
                                                   side=DRY_RUN.side) for d in evaluation.domains))


class Retrieval(EvaluationPolicy):
    """Recall@K over the test set, each image a query against the others."""

    def metrics(self, evaluation):
        return tuple(f"recall_at_{k}" for k in evaluation.ks)

    def measure(self, evaluation, model, test_set, *, seed, device, dry_run, teacher=None):
        # a dry run's generated tree holds fewer images than SOP's K = 1000
        ks = feasible_ks(evaluation.ks, len(test_set)) if dry_run else evaluation.ks
        metrics = evaluators.recall(model, test_set, ks=ks, batch_size=evaluation.batch_size, device=device)
        if evaluation.head_to_head and teacher is not None:
            k = min(evaluation.head_to_head, len(test_set) - 1)
            metrics.update(evaluators.head_to_head(model, teacher, test_set, k=k, batch_size=evaluation.batch_size,
                                                   device=device))
        return Measured(metrics)

    def describe(self, evaluation):
        return "Recall@" + ",".join(map(str, evaluation.ks))


class Top1(EvaluationPolicy):
    """Top-1 accuracy of the model's logits."""

    def metrics(self, evaluation):
        return ("top1",)

    def measure(self, evaluation, model, test_set, *, seed, device, dry_run, teacher=None):
        return Measured(evaluators.top1(model, test_set, batch_size=evaluation.batch_size, device=device))

    def describe(self, evaluation):
        return "top-1"


class FewShotEpisodes(EvaluationPolicy):
    """Prototypical accuracy on seeded test episodes of every way in ``ways``."""

    per_episode = True

    def metrics(self, evaluation):
        return ("accuracy",)

    def measure(self, evaluation, model, test_set, *, seed, device, dry_run, teacher=None):
        found = evaluators.fewshot_accuracy(model, test_set, ways=evaluation.ways, shot=evaluation.shot,
                                            query=evaluation.query, episodes=evaluation.episodes, seed=seed,
                                            batch_size=evaluation.batch_size, device=device)
        return Measured({f"{r['way']}-way": {k: r[k] for k in ("accuracy", "ci95")} for r in found},
                        {f"{r['way']}-way": r["episode_accuracies"] for r in found})

    def curve(self, evaluation, history, row):
        way = f"{row['way']}-way"
        return [(h["step"], h[way]["accuracy"]) for h in history if isinstance(h.get(way), dict)]

    def result_rows(self, evaluation, metrics):
        return [{"way": int(way.split("-")[0]), "shot": evaluation.shot, **result, "episodes": evaluation.episodes}
                for way, result in metrics.items()]

    def check(self, evaluation, test_set):
        for way in evaluation.ways:
            EpisodeSampler(test_set.targets, way, evaluation.shot, evaluation.query, episodes=1, seed=0)

    def describe(self, evaluation):
        ways = ", ".join(f"{w}-way" for w in evaluation.ways)
        return f"{evaluation.episodes} episodes of {ways} {evaluation.shot}-shot, {evaluation.query} queries"

    def dry_test_per_class(self, evaluation):
        return evaluation.shot + DRY_RUN.query

    def dry(self, evaluation):
        return replace(super().dry(evaluation), episodes=DRY_RUN.episodes, ways=(DRY_RUN.way,), query=DRY_RUN.query)


#: ``Evaluation.kind`` -> its policy
EVALUATION_POLICIES: Registry[EvaluationPolicy] = Registry("evaluation kind")
EVALUATION_POLICIES.register("recall", Retrieval())
EVALUATION_POLICIES.register("top1", Top1())
EVALUATION_POLICIES.register("episodes", FewShotEpisodes())
EVALUATION_POLICIES.register("none", EvaluationPolicy())


def feasible_ks(ks: tuple[int, ...], num_items: int) -> tuple[int, ...]:
    """The Ks a test set of ``num_items`` images can answer (K <= N - 1)."""
    kept = tuple(k for k in ks if k <= num_items - 1)
    if not kept:
        raise ValueError(f"a test set of {num_items} images answers no K of {ks}; generate a larger tree")
    return kept

"""The baselines tuned at the stand-in scale, as the paper tuned its own: a small grid of
each baseline's weights (and DarkRank's alpha and beta) trained on the *training*
classes and judged on a validation split carved from them (:attr:`DataSpec.validation`),
never on the test split the pages report.

Why: the paper's weights were tuned for ResNets on 224-pixel photographs; on the
stand-ins' small networks and 28-pixel glyphs some of them do not train at all (attention
transfer at weight 50 swamps cross-entropy on 2x2 maps; DarkRank at alpha 3, beta 3 is a
near-constant ranking on normalised 16-d embeddings). A baseline that does not train says
nothing about the method it is compared with.

:data:`rkd.experiments.baselines.GRIDS` is the grid per task and baseline (each point a
:class:`~rkd.experiments.recipes.Setting`, the paper's first);
:data:`rkd.experiments.baselines.CHOSEN` the setting each page uses, which a test holds
equal to the best mean validation score over the tuning seeds in ``results/tuning.jsonl``
(ties: the paper's). The Fidelity page shows the grid, the scores and the choice. FitNet is not in
the grid: its hint loss stands alone in its stage, so it has no weight to tune.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from . import datasets as D
from . import table1, table4, table6
from .base import Experiment
from .baselines import GRIDS, setting_label
from .recipes import Preset, Setting

__all__ = ["Tuning", "VALIDATION", "EXPERIMENT"]

#: the validation splits: held-out training classes (retrieval, few-shot), held-out
#: renders of the training classes (classification)
VALIDATION = {"metric": replace(D.GLYPHS_CUB, validation="classes"),
              "classification": replace(D.GLYPHS_CIFAR100, validation="images"),
              "fewshot": replace(D.GLYPHS_MINI, validation="classes")}


class Tuning(Experiment):
    """Every grid point of :data:`GRIDS`, trained on a validation split's training part
    and measured on its held-out part (no page of its own: the Fidelity page shows it)."""

    name = "tuning"
    title = "Tuning the baselines"
    page = None
    metric = "validation"
    keys = ("task", "method", "setting")
    presets: dict[str, Preset] = {}
    parameters = {}
    #: the tuning seeds (the pages' first two)
    seeds = (0, 1)

    def preset(self, scale: str) -> Preset:
        """The stand-in recipes of the pages whose baselines are tuned (Table 1, Table 4's
        CIFAR-100 stand-in, Table 6), on the converged regime's schedules, with their settings
        set aside: the tuning is stored with the ci results (results/tuning.jsonl), and both
        stand-in scales use its choice; there is no paper-scale tuning."""
        if scale != "ci":
            raise ValueError(f"the baselines are tuned at scale 'ci' only (the paper tuned its own), not {scale!r}")
        recipes = {"metric": table1.CI, "classification": table4.CI_SETUPS[0], "fewshot": table6.CI}
        return Preset(scale="ci", datasets=tuple(VALIDATION.values()), recipe=None, seeds=self.seeds, threads=1,
                      num_workers=0, grid={"recipes": recipes})

    def runs(self, preset, **_):
        for task, recipe in preset.grid["recipes"].items():
            data = VALIDATION[task]
            yield from _task_runs(task, recipe, data)


def _task_runs(task: str, recipe: Any, data) -> list:
    """A task's validation teacher, its plain student and one student per grid point."""
    found = []
    if task == "metric":
        recipe = replace(recipe, evaluation=replace(recipe.evaluation, split="val"), settings={})
        found += recipe.pretrain_runs(data)
        found.append(recipe.teacher_run(data).with_labels(task=task, method="Triplet (teacher)", setting="—"))
        for method in ("Triplet", *GRIDS[task]):
            for index, setting in enumerate(GRIDS[task].get(method, (Setting(),))):
                run = recipe.student_run(data, f"{method} {index}", method=method, dim=table1.SIZES[0], l2=True)
                found.append(setting.apply(run).with_labels(task=task, method=method, setting=setting_label(setting)))
        return found
    if task == "classification":
        setup = replace(recipe, data=data, evaluation=replace(recipe.evaluation, split="val"), settings={})
        found.append(setup.teacher_run().with_labels(task=task, method="Teacher", setting="—"))
        for method in ("Baseline", *GRIDS[task]):
            for index, setting in enumerate(GRIDS[task].get(method, (Setting(),))):
                run = replace(setup.student_run(method), name=f"{method} {index}")
                found.append(setting.apply(run).with_labels(task=task, method=method, setting=setting_label(setting)))
        return found
    shot = min(recipe.train_way)
    recipe = replace(recipe, settings={})
    found.append(replace(recipe.teacher_run(data, shot), evaluation=replace(
        recipe.teacher_run(data, shot).evaluation, split="val")).with_labels(task=task, method="Teacher", setting="—"))
    for method in ("Prototypical", *GRIDS[task]):
        for index, setting in enumerate(GRIDS[task].get(method, (Setting(),))):
            run = recipe.student_run(data, shot, method)
            run = replace(run, name=f"{method} {index} ({shot}-shot)", evaluation=replace(run.evaluation, split="val"))
            found.append(setting.apply(run).with_labels(task=task, method=method, setting=setting_label(setting)))
    return found


EXPERIMENT = Tuning()

"""Figure 3: how far models trained on one domain carry to others.

A triplet teacher and an RKD-DA student train on one dataset (Cars196 in the paper);
they and their initial models (pretrained trunk, new embedding layer) are evaluated by
Recall@1 on the test split of that domain and of others (CUB-200-2011, Stanford Dogs,
CIFAR-100). The paper's finding: the student beats the teacher on its training domain
but falls below it elsewhere; RKD adapts a model strongly to its training domain. The
paper prints no numbers for this figure (a bar chart only).
"""
from __future__ import annotations

from dataclasses import replace

import pandas as pd

from . import datasets as D
from . import table1
from .recipes import CONVERGED, MetricRecipe, Preset, with_ci
from .base import Experiment, Parameter
from ..report.stats import PRIMARY, Claim, Comparison

METHOD = "RKD-DA"
STUDENT_DIM = 128  # the paper does not give it: Table 1's best setting, 128 without L2 normalisation
MODELS = ("initial model (teacher's network)", "initial model (student's network)", "teacher (Triplet)",
          "student (RKD-DA)")


class Figure3(Experiment):
    name = "figure3"
    title = "Figure 3"
    subtitle = "Recall@1 on the training domain and on others"
    page = "notebooks/figure3_cross_domain"
    metric = "recall_at_1"
    keys = ("model",)
    intro = """
The paper's Figure 3 trains a triplet teacher and an RKD-DA student on Cars196 and
evaluates them, and the ImageNet-pretrained initial model, on Cars196 and on other
domains (CUB-200-2011, Stanford Dogs, CIFAR-100). The student beats the teacher on its
own domain but falls below it on the others: RKD adapts the student strongly to the
training domain. The figure is a bar chart without printed numbers, so only its claims
can be set beside ours.
"""
    table_note = """
Recall@1 (%) of each model on each test set; the paper prints no numbers for this figure.
"""
    presets = with_ci({
        CONVERGED: Preset(
            # five seeds left a primary comparison's minimum detectable difference at 2.26 points,
            # seven at 2.23; under the 3,000-step teacher ten left Ethiopic's at 2.06 (target 2,
            # measured 2026-12-07; its spread asks for 12): twelve
            scale=CONVERGED, datasets=(D.GLYPHS_CARS,), recipe=table1.CI, threads=1,
            seeds=tuple(range(12)), num_workers=0,
            grid={"domains": (D.GLYPHS_CUB, replace(D.DIGITS, stands_in_for="Stanford Dogs"),
                              replace(D.FASHION_MNIST, stands_in_for="CIFAR-100"))},
            notes="trained on the glyph stand-in of Cars; evaluated there and on the CUB stand-in (another "
                  "script), scikit-learn digits and Fashion-MNIST; glyph-pretrained trunks, CPU",
        ),
        "paper": Preset(
            scale="paper", datasets=(D.CARS196,), recipe=table1.PAPER,
            grid={"domains": (D.CUB200, D.STANFORD_DOGS, D.CIFAR100_RETRIEVAL)},
            notes="the paper's protocol: ImageNet-pretrained ResNet50-512 teacher and ResNet18-128 student trained "
                  "on Cars196, 224x224 crops",
        ),
    }, cut=table1.METRIC_CI_CUT)
    parameters = {"datasets": Parameter(tuple[str, ...] | None, None, "the training dataset (None: the preset's)")}

    def runs(self, preset, datasets=None):
        recipe: MetricRecipe = preset.recipe
        domains = tuple(preset.grid["domains"])

        def everywhere(run, model):
            return replace(run, evaluation=replace(run.evaluation, domains=domains),
                           labels=tuple({**dict(run.labels), "model": model}.items()))

        for data in D.choose(preset.datasets, datasets, self.title):
            yield from recipe.pretrain_runs(data)
            yield everywhere(recipe.initial_run(data, MODELS[0], network=recipe.teacher, dim=recipe.teacher_dim,
                                                l2=True), MODELS[0])
            yield everywhere(recipe.initial_run(data, MODELS[1], network=recipe.student, dim=STUDENT_DIM, l2=False),
                             MODELS[1])
            yield everywhere(recipe.teacher_run(data), MODELS[2])
            yield everywhere(recipe.student_run(data, MODELS[3], method=METHOD, dim=STUDENT_DIM, l2=False), MODELS[3])

    def keyed(self, rows: pd.DataFrame) -> pd.DataFrame:
        """One "dataset" per evaluated test set, and whether it is the training domain."""
        rows = rows.copy()
        rows["domain"] = ["training" if e == d else "other" for e, d in zip(rows["evaluated_on"], rows["dataset"])]
        rows["dataset"] = rows["evaluated_on"]
        return rows

    def order(self, results):
        return [(m,) for m in MODELS]

    def claims(self, rows) -> list[Claim]:
        def key(model, domain):
            return {"model": model, "domain": domain}

        teacher, student, initial = MODELS[2], MODELS[3], MODELS[1]
        return [
            Claim("on its training domain the student beats the teacher",
                  (Comparison(key(student, "training"), key(teacher, "training")),), PRIMARY),
            Claim("on other domains the teacher beats the student",
                  (Comparison(key(teacher, "other"), key(student, "other")),), PRIMARY),
            Claim("on other domains the student falls below its own initial model",
                  (Comparison(key(initial, "other"), key(student, "other")),)),
        ]

    def plot(self, rows):
        from ..report.plots import grouped_bars

        return grouped_bars(rows, x="dataset", group="model", metric=self.metric, ylabel="Recall@1 (%)",
                            title=f"ours ({rows['scale'].iloc[0]}): the training domain is "
                                  f"{rows.loc[rows['domain'] == 'training', 'dataset'].iloc[0]}").figure


EXPERIMENT = Figure3()

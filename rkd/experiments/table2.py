"""Table 2: self-distillation. A triplet teacher is distilled with RKD-DA into a student
of the same architecture (no L2 normalisation), which then teaches the next generation;
three generations in all.

Paper: ImageNet-pretrained ResNet50-512 on CUB-200-2011, Cars196 and Stanford Online
Products. ci: `small_cnn_deep`-512 with a glyph-pretrained trunk on the glyph stand-ins.
"""
from __future__ import annotations

from dataclasses import replace

import pandas as pd

from ..paper import paper_table
from ..train import TrainConfig
from . import datasets as D
from . import table1
from .recipes import CONVERGED, MetricRecipe, Preset, TEACHER, with_ci
from .base import Experiment, Parameter
from ..report.stats import PRIMARY, Claim, Comparison

GENERATIONS = 3
METHOD = "RKD-DA"
#: the control of generation 1: the teacher trained on with the triplet loss for the students' steps
CONTROL = "Triplet, the teacher trained on"
#: points: "later generations are no better than the first" judged as equivalence within this margin
#: (the paper's later generations are within 1.4 points of its first on every dataset)
EQUIVALENCE_MARGIN = 2.0


def _generation_name(generation: int) -> str:
    return TEACHER if generation == 0 else f"generation {generation}"


# the students are the teacher's network (self-distillation), trained as Table 1's are;
# the teacher of each dataset is then exactly Table 1's (one trained model, shared)
CI = replace(table1.CI, student=table1.CI.teacher)
# (code) SOP: the teacher 40 epochs x 1,000 iterations (lr x0.5 at 25, 30, 35), the
# students 120 epochs x 500 iterations (lr x0.1 at 40 and 80): examples/stanford.sh
SOP_SCHEDULES = (
    TrainConfig(steps=40_000, optimizer="adam", lr=1e-5, weight_decay=1e-5, milestones=(25_000, 30_000, 35_000),
                gamma=0.5, checkpoint_every=1000),
    TrainConfig(steps=60_000, optimizer="adam", lr=1e-4, weight_decay=1e-5, milestones=(20_000, 40_000), gamma=0.1,
                checkpoint_every=1000),
)
PAPER = replace(table1.PAPER, student=table1.PAPER.teacher, by_dataset={"sop": SOP_SCHEDULES},
                ks_by_dataset={"sop": D.SOP_KS}, batch_options_by_dataset={"sop": D.SOP_BATCH_OPTIONS})


class Table2(Experiment):
    name = "table2"
    title = "Table 2"
    subtitle = "self-distillation over three generations"
    page = "notebooks/table2_self_distillation"
    metric = "recall_at_1"
    keys = ("generation",)
    intro = """
The paper's Table 2 distils a triplet teacher into a student of the *same* network with
RKD-DA (no L2 normalisation); that student then teaches the next generation. The paper
finds the first student better than its teacher on all three datasets, and later
generations no better than the first.
"""
    table_note = """
Recall@1 (%) per generation; generation 0 is the triplet teacher. At `scale="ci"` the
values are not comparable with the paper's: compare orderings.
"""
    presets = with_ci({
        CONVERGED: Preset(
            # five seeds left two primary comparisons' minimum detectable differences at 2.21 and
            # 2.38 points (target 2, measured 2026-12-06; their spread asks for 7): ten
            scale=CONVERGED, datasets=(D.GLYPHS_CUB, D.GLYPHS_CARS), recipe=CI, threads=1,
            seeds=tuple(range(10)), num_workers=0,
            grid={"datasets": ("glyphs_cub",)},
            notes="the glyph stand-in of CUB (the Cars one runs with datasets=[\"glyphs_cars\"] and the "
                  "SOP-like set is left out, to fit the budget), `small_cnn_deep`-512 with a glyph-pretrained "
                  "trunk, CPU",
        ),
        "paper": Preset(
            scale="paper", datasets=(D.CUB200, D.CARS196, D.SOP), recipe=PAPER,
            notes="the paper's protocol: ImageNet-pretrained ResNet50-512 teacher and students, 224x224 crops",
        ),
    }, cut=table1.METRIC_CI_CUT)
    parameters = {
        "generations": Parameter(int, GENERATIONS, "students after the teacher, each taught by the previous"),
        "datasets": Parameter(tuple[str, ...] | None, None, "registry names of the datasets (None: all)"),
    }

    def runs(self, preset, generations=GENERATIONS, datasets=None):
        if isinstance(generations, bool) or not isinstance(generations, int) or generations < 1:
            raise ValueError(f"generations must be a positive int (the paper trains {GENERATIONS}), got "
                             f"{generations!r}")
        recipe: MetricRecipe = preset.recipe
        chosen = datasets if datasets is not None else preset.grid.get("datasets")
        for data in D.choose(preset.datasets, chosen, self.title):
            yield from recipe.pretrain_runs(data, recipe.teacher)
            yield recipe.teacher_run(data).with_labels(generation=0, model="teacher")
            for generation in range(1, generations + 1):
                yield recipe.student_run(data, _generation_name(generation), method=METHOD, dim=recipe.teacher_dim,
                                         l2=False, teacher=_generation_name(generation - 1), role="generation",
                                         labels={"generation": generation, "model": f"generation {generation}"})
            # the control: the teacher trained on with the triplet loss for generation 1's steps, so that
            # generation 1's gain is set against that of the same budget spent without distillation
            control = recipe.student_run(data, CONTROL, method="Triplet", dim=recipe.teacher_dim, l2=True,
                                         teacher=None, role="student", labels={"model": CONTROL})
            yield replace(control, init=TEACHER)

    def paper(self) -> pd.DataFrame:
        wide = paper_table("table2").drop(columns=["model"])
        wide["generation"] = wide["generation"].astype(str).str.extract(r"^(\d+)")[0].astype(int)
        return wide.melt(id_vars="generation", var_name="dataset", value_name="value")

    def claims(self, rows) -> list[Claim]:
        generations = sorted(int(g) for g in rows["generation"].dropna().unique() if g > 0)
        first, teacher = {"generation": 1}, {"generation": 0}
        return [
            Claim("every generation beats the teacher", tuple(
                Comparison({"generation": g}, teacher) for g in generations[:3]), PRIMARY),
            Claim(f"later generations are equivalent to the first (within {EQUIVALENCE_MARGIN:g} points)", tuple(
                Comparison.equivalent({"generation": g}, first, EQUIVALENCE_MARGIN) for g in generations[1:3]),
                  PRIMARY),
            Claim("the first generation beats the teacher trained on for the same steps without distillation",
                  (Comparison(first, {"model": CONTROL}),)),
            Claim("the teacher trained on for generation 1's steps beats the teacher",
                  (Comparison({"model": CONTROL}, teacher),)),
        ]

    def plot(self, rows):
        from ..report.plots import generations_plot

        return generations_plot(self.paper(), rows, metric=self.metric)


EXPERIMENT = Table2()

"""Table 3: RKD-DA students with the backbones and embedding sizes of the metric-learning
state of the art (GoogLeNet-128, GoogLeNet-512, ResNet50-128), Recall@K.

The paper's other rows (LiftedStruct, N-pairs, Angular, A-BIER, ABE8, Margin) are
published numbers of other methods, shown as the paper prints them; only the RKD-DA rows
are trained; the paper's teacher number is Table 2's generation 0, the same teacher.
ci: `small_cnn` plays GoogLeNet and `small_cnn_deep` ResNet50.
"""
from __future__ import annotations

import pandas as pd

from ..models.spec import ModelSpec
from ..paper import paper_table
from . import datasets as D
from . import table1, table2
from .recipes import CONVERGED, MetricRecipe, Preset, with_ci
from .base import Experiment, Parameter
from ..report.stats import PRIMARY, Claim, Comparison

METHOD = "RKD-DA"
TEACHER = "Triplet (teacher)"
# torchvision's GoogLeNet weights expect ImageNet-normalised inputs, so GoogLeNet reads the
# same `metric` images as the ResNet50 teacher (the authors fed a Caffe GoogLeNet BGR 0-255
# inputs, right only with such weights, which we do not load)
GOOGLENET = ModelSpec("googlenet", (("pretrained", True),))

#: (the paper's backbone name, the network that plays it, embedding size) per scale
STUDENTS = {
    "ci": (("GoogLeNet", table1.CI.student, 128), ("GoogLeNet", table1.CI.student, 512),
           ("ResNet50", table1.CI.teacher, 128)),
    "paper": (("GoogLeNet", GOOGLENET, 128), ("GoogLeNet", GOOGLENET, 512),
              ("ResNet50", table1.PAPER.teacher, 128)),
}


class Table3(Experiment):
    name = "table3"
    title = "Table 3"
    subtitle = "Recall@K against the metric-learning state of the art"
    page = "notebooks/table3_recall_at_k"
    metric = "recall_at_1"
    keys = ("backbone", "embedding_dim", "method")
    intro = """
The paper's Table 3 compares RKD-DA students (GoogLeNet-128, GoogLeNet-512 and
ResNet50-128, taught by the ResNet50-512 triplet teacher, no L2 normalisation) with the
published Recall@K of other metric-learning methods. Only the RKD-DA rows are trained
here; the other methods' rows are the paper's numbers.
"""
    table_note = """
Recall@1 (%); the other methods' rows are the paper's published numbers, not run here
(the page's last section lists every Recall@K of ours). Table 3 prints no teacher: the
paper's column for the teacher is Table 2's generation 0, the same ResNet50-512 teacher.
"""
    presets = with_ci({
        # five seeds left four primary comparisons' minimum detectable differences above 2 points,
        # the worst 4.27 (target 2, measured 2026-12-07; its spread asks for 16): sixteen
        CONVERGED: Preset(scale=CONVERGED, datasets=(D.GLYPHS_CUB, D.GLYPHS_CARS), recipe=table1.CI, threads=1,
                     seeds=tuple(range(16)),
                     num_workers=0, grid={"students": STUDENTS["ci"]},
                     notes="glyph stand-ins of CUB and Cars (the SOP-like set is left out to fit the budget); "
                           "`small_cnn` for GoogLeNet, `small_cnn_deep` for ResNet50, glyph-pretrained trunks, CPU"),
        "paper": Preset(scale="paper", datasets=(D.CUB200, D.CARS196, D.SOP), recipe=table2.PAPER,
                        grid={"students": STUDENTS["paper"]},
                        notes="the paper's protocol: ImageNet-pretrained ResNet50-512 teacher; ImageNet-pretrained "
                              "GoogLeNet and ResNet50 students, 224x224 crops"),
    }, cut=table1.METRIC_CI_CUT)
    parameters = {"datasets": Parameter(tuple[str, ...] | None, None, "registry names of the datasets (None: all)")}

    def runs(self, preset, datasets=None):
        recipe: MetricRecipe = preset.recipe
        students = preset.grid["students"]
        for data in D.choose(preset.datasets, datasets, self.title):
            yield from recipe.pretrain_runs(data, recipe.teacher, *(network for _, network, _ in students))
            yield recipe.teacher_run(data).with_labels(backbone="ResNet50")
            for backbone, network, dim in students:
                yield recipe.student_run(data, f"{backbone}-{dim}", method=METHOD, dim=dim, l2=False,
                                         network=network, labels={"backbone": backbone})

    def paper(self):
        frame = paper_table("table3")
        frame = frame[frame["k"] == 1].rename(columns={"recall": "value"})
        # Table 3 prints no teacher row; its teacher is Table 2's generation 0, the same ResNet50-512
        # triplet teacher, whose Recall@1 gives "an RKD-DA student beats its teacher" its paper side
        generations = table2.EXPERIMENT.paper()
        teacher = (generations[generations["generation"] == 0].drop(columns="generation")
                   .assign(backbone="ResNet50", embedding_dim=512, method=TEACHER))
        return pd.concat([frame, teacher])[["dataset", *self.keys, "value"]].reset_index(drop=True)

    def keyed(self, rows):
        rows = rows.copy()
        rows.loc[rows["role"] == "teacher", "method"] = TEACHER
        return rows

    def claims(self, rows) -> list[Claim]:
        def key(backbone, dim):
            return {"backbone": backbone, "embedding_dim": dim, "method": METHOD}

        teacher = {"method": TEACHER}
        return [
            Claim("an RKD-DA student beats its teacher", tuple(
                Comparison(key(b, d), teacher) for b, d in (("GoogLeNet", 128), ("GoogLeNet", 512), ("ResNet50", 128))),
                PRIMARY),
            Claim("RKD-DA GoogLeNet-512 beats GoogLeNet-128",
                  (Comparison(key("GoogLeNet", 512), key("GoogLeNet", 128)),)),
            Claim("RKD-DA ResNet50-128 beats GoogLeNet-128",
                  (Comparison(key("ResNet50", 128), key("GoogLeNet", 128)),)),
        ]

    def plot(self, rows):
        from ..report.plots import recall_at_k_plot

        return recall_at_k_plot(paper_table("table3"), rows, method=METHOD)


EXPERIMENT = Table3()

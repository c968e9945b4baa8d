"""Table 1: Recall@1 of small students distilled from a triplet teacher, for several
embedding sizes, with and without L2 normalisation of the student.

Paper: an ImageNet-pretrained ResNet50-512 teacher, ResNet18 students of 16 to 128
dimensions, CUB-200-2011 and Cars196. ci: the glyph stand-ins of both (one script
family each, first half of the characters for training, second half for testing),
`small_cnn_deep` and `small_cnn` networks whose trunks were pretrained on the glyph
corpus (the stand-in for ImageNet weights).
"""
from __future__ import annotations

import pandas as pd

from ..outputs import TAP_NAMES
from ..models.spec import ModelSpec
from ..paper import paper_table
from ..train import TrainConfig
from . import datasets as D
from .recipes import CONVERGED, MetricRecipe, Preset, with_ci
from .baselines import CHOSEN
from ..runs.convergence import jointly_converged
from ..runs.spec import Batches, Evaluation
from .base import Experiment, Parameter
from ..report.stats import PRIMARY, RRD_CLAIM, Claim, Comparison

TEACHER_ROW = "Triplet (teacher)"
#: the derived row of RKD-DA's relative gain over Triplet (%), which one claim compares
RELATIVE_GAIN = "RKD-DA relative gain over Triplet (%)"
#: the embedding sizes the primary claims are judged at (ci runs these; the paper's four include them)
SIZES = (16, 64)
#: the seeds of the converged stand-in regime (at least five; a page whose minimum detectable
#: difference five seeds leave above 2 points names more)
CONVERGED_SEEDS = (0, 1, 2, 3, 4)
#: the metric-learning pages' converged schedules (:data:`CI`) are twice the other pages', so their ci
#: cut is twice as deep: 150 teacher and 300 student steps, what ``make test`` can retrain
METRIC_CI_CUT = 20

#: method -> the student L2-normalisation settings the paper reports for it (the table's rows) (at ci the
#: preset's ``no_l2`` names the methods that also run without it, to fit the budget)
L2_SETTINGS: dict[str, tuple[bool, ...]] = {
    "Triplet": (True,),
    "FitNet": (True,),
    "Attention": (True,),
    "DarkRank": (True,),
    "RKD-D": (True, False),
    "RKD-A": (True, False),
    "RKD-DA": (True, False),
    "RRD": (True, False),
}


CI = MetricRecipe(
    # the teacher is the student's trunk with two convolutions per block: 2.9x its parameters and 2.4x its
    # arithmetic (ResNet50 against ResNet18: 2.2x and 2.3x); pretrained, 5.5 points apart (see the glyph world)
    teacher=ModelSpec("small_cnn_deep", (("in_channels", 1), ("taps", TAP_NAMES))),
    teacher_dim=512,
    student=ModelSpec("small_cnn", (("in_channels", 1), ("taps", TAP_NAMES))),
    # trained to a plateau: the learning rate drops tenfold at half the steps (the authors' students
    # drop at epoch 40 of 80), and the students get twice the teacher's steps, the ratio of the authors'
    # code (8,000 against 4,000). Chosen by the convergence rule (rkd.runs.convergence: mean rise of
    # Recall@1 over the last fifth), never by the level reached, on the CUB stand-in's teacher (seeds
    # 0-4, 2026-12-07; the rule's own evaluations, on the test classes): 1,500 steps dropping at 1,125
    # rose +0.43 (+0.85 over 20 seeds) and kept rising at the low rate when extended; dropping at 750,
    # +0.30; 3,000 dropping at 2,250, +0.56 (the last fifth opens 150 steps after the drop, inside its
    # climb); 2,250 dropping at 1,125, +0.06; 3,000 dropping at 1,500 and 2,250, +0.12; 3,000 dropping
    # at 1,500, +0.02 (its recall peaks some 600 steps after the drop): the half, as the authors' students
    teacher_train=TrainConfig(steps=3000, optimizer="adam", lr=1e-3, weight_decay=1e-5, milestones=(1500,),
                              gamma=0.1),
    student_train=TrainConfig(steps=6000, optimizer="adam", lr=3e-3, weight_decay=1e-5, milestones=(3000,),
                              gamma=0.1),
    batches=Batches("m_per_class", size=60, m=5),
    # ten evaluations along a student's training: enough to see its plateau (rkd.runs.convergence)
    evaluation=Evaluation("recall", ks=(1, 2, 4, 8), batch_size=500, every=300),
    pretraining=D.GLYPH_PRETRAINING,
    settings=CHOSEN["metric"],
)

PAPER = MetricRecipe(
    teacher=ModelSpec("resnet50", (("pretrained", True), ("taps", TAP_NAMES))),
    teacher_dim=512,
    student=ModelSpec("resnet18", (("pretrained", True), ("taps", TAP_NAMES))),
    # (code) teacher: 40 epochs x 100 iterations, Adam 1e-5, lr x0.5 at epochs 25, 30, 35
    teacher_train=TrainConfig(steps=40 * 100, optimizer="adam", lr=1e-5, weight_decay=1e-5,
                              milestones=(2500, 3000, 3500), gamma=0.5, checkpoint_every=500),
    # (code) students: 80 epochs x 100 iterations, Adam 1e-4, lr x0.1 at epochs 40 and 60
    student_train=TrainConfig(steps=80 * 100, optimizer="adam", lr=1e-4, weight_decay=1e-5,
                              milestones=(4000, 6000), gamma=0.1, checkpoint_every=500),
    # 128 images, 5 per class: 25 classes and 3 images of a 26th, as the authors' sampler fills it
    batches=Batches("m_per_class", size=128, m=5, per_epoch=100, options=(("fill_with_partial_class", True),)),
    evaluation=Evaluation("recall", ks=(1, 2, 4, 8), batch_size=128, every=500),
)


class Table1(Experiment):
    name = "table1"
    title = "Table 1"
    subtitle = "RKD students in metric learning"
    page = "notebooks/table1_metric_learning"
    intro = """
The paper's Table 1 distils an ImageNet-pretrained ResNet50 teacher (embedding 512,
triplet loss) into ResNet18 students of 16 to 128 dimensions and reports Recall@1 on
CUB-200-2011 and Cars196 for students trained with the triplet loss alone, with the
individual-distillation baselines (FitNet, attention transfer, DarkRank), and with RKD-D,
RKD-A and RKD-DA, with and without L2 normalisation of the student's embedding. We add
Relational Representation Distillation (RRD). We also measure the teacher's *initial
model* (its pretrained trunk with a new embedding layer), to show how much the teacher
learned: RKD can only pass on what the teacher knows.
"""
    table_note = """
Recall@1 (%). The paper's columns are CUB-200-2011 and Cars196 with ResNet18 students;
ours are the datasets named in the column headers. At `scale="ci"` the values are not
comparable with the paper's (other data, other networks): compare orderings. `—`: no
such row (the paper has no RRD, and reports FitNet, attention and DarkRank with L2
normalisation only).
"""
    metric = "recall_at_1"
    keys = ("embedding_dim", "method", "l2_normalize")
    presets = with_ci({
        CONVERGED: Preset(
            scale=CONVERGED, datasets=(D.GLYPHS_CUB, D.GLYPHS_CARS), recipe=CI, threads=1, num_workers=0,
            seeds=CONVERGED_SEEDS, grid={"embedding_dims": SIZES, "no_l2": ("RKD-DA",)},
            notes="glyph stand-ins of CUB and Cars, small CNNs trained to convergence from glyph-pretrained trunks, "
                  "CPU; two of the paper's sizes (16, where its gains are largest, and 64, where its students "
                  "pass the teacher), the no-L2 variant for RKD-DA only, and the baselines' weights tuned on "
                  "held-out training classes",
        ),
        "paper": Preset(
            scale="paper", datasets=(D.CUB200, D.CARS196), recipe=PAPER,
            grid={"embedding_dims": (16, 32, 64, 128),
                  "no_l2": tuple(m for m, l2s in L2_SETTINGS.items() if False in l2s)},
            notes="the paper's protocol: ImageNet-pretrained ResNet50-512 teacher, ResNet18 students, 224x224 crops",
        ),
    }, cut=METRIC_CI_CUT)
    parameters = {
        "embedding_dims": Parameter(tuple[int, ...] | None, None, "student sizes (None: the preset's)"),
        "methods": Parameter(tuple[str, ...] | None, None, "methods to run (None: all of Table 1's)"),
        "datasets": Parameter(tuple[str, ...] | None, None, "registry names of the datasets (None: all)"),
    }

    def runs(self, preset, embedding_dims=None, methods=None, datasets=None):
        recipe: MetricRecipe = preset.recipe
        chosen = D.choose(preset.datasets, datasets, self.title)
        methods = D.choose_names(tuple(L2_SETTINGS), methods, "method", self.title)
        dims = tuple(embedding_dims or preset.grid["embedding_dims"])
        no_l2 = preset.grid["no_l2"]
        for data in chosen:
            yield from recipe.pretrain_runs(data)
            yield recipe.initial_run(data, "initial model (teacher network)", network=recipe.teacher,
                                     dim=recipe.teacher_dim, l2=True)
            yield recipe.teacher_run(data)
            for dim in dims:
                for method in methods:
                    for l2 in (l2 for l2 in L2_SETTINGS[method] if l2 or method in no_l2):
                        yield recipe.student_run(data, f"{method} d={dim}" + ("" if l2 else " no L2"),
                                                 method=method, dim=dim, l2=l2)

    # ---------------------------------------------------------------- the paper's side

    def paper(self):
        """The paper's Recall@1 in the long form our rows have (dataset, keys, value)."""
        frame = paper_table("table1").rename(columns={"recall_at_1": "value"})
        return frame[["dataset", *self.keys, "value"]]

    def keyed(self, rows):
        """Our rows with the paper's keys: the teacher's row is the paper's "Triplet (teacher)"."""
        rows = rows.copy()
        rows.loc[rows["role"] == "teacher", "method"] = TEACHER_ROW
        rows.loc[rows["role"] == "initial", "method"] = "initial model"
        return rows

    def with_derived(self, frame, value):
        """Adds RKD-DA's relative gain over the Triplet student of its size (%, L2 on both), per
        dataset, size (and seed, on ours): the paper's "the gain grows as the embedding shrinks"."""
        keys = [k for k in ("dataset", "embedding_dim", "seed") if k in frame.columns]
        pick = lambda method, column=value: frame[  # noqa: E731
            (frame["method"] == method) & (frame["l2_normalize"] == "yes")].set_index(keys)[column]
        gain = (100 * (pick("RKD-DA") - pick("Triplet")) / pick("Triplet")).dropna()
        if gain.empty:
            return frame
        derived = gain.rename(value).reset_index().assign(method=RELATIVE_GAIN, l2_normalize="yes")
        if "converged" in frame.columns:  # a gain is as converged as the two runs it is made of
            sides = pd.concat([pick("RKD-DA", "converged").rename("a"), pick("Triplet", "converged").rename("b")],
                              axis=1).reindex(gain.index)
            derived["converged"] = [jointly_converged(a, b) for a, b in zip(sides["a"], sides["b"])]
        return pd.concat([frame, derived], ignore_index=True)

    def claims(self, rows) -> list[Claim]:
        small, large = SIZES  # the two sizes ci runs; the paper's four include them
        teacher = {"method": TEACHER_ROW}

        def key(method, dim, l2="yes"):
            return {"method": method, "embedding_dim": dim, "l2_normalize": l2}

        return [
            Claim("RKD-DA beats the Triplet student of its size", tuple(
                Comparison(key("RKD-DA", d), key("Triplet", d)) for d in SIZES), PRIMARY),
            Claim("an RKD-DA student without L2 normalisation beats the same one with it",
                  (Comparison(key("RKD-DA", large, "no"), key("RKD-DA", large)),), PRIMARY),
            Claim("RKD-DA beats DarkRank, the strongest baseline, at the small size",
                  (Comparison(key("RKD-DA", small), key("DarkRank", small)),), PRIMARY),
            Claim("an RKD-DA student without L2 normalisation beats its teacher at d >= 64 (Cars196)",
                  (Comparison(key("RKD-DA", large, "no"), teacher).on("Cars196"),), PRIMARY),
            Claim("RKD-D and RKD-A beat the Triplet student of their size", tuple(
                Comparison(key(m, d), key("Triplet", d)) for d in SIZES for m in ("RKD-D", "RKD-A"))),
            Claim("RKD-DA beats FitNet, Attention and DarkRank at the same size (L2 on)", tuple(
                Comparison(key("RKD-DA", d), key(m, d)) for d in SIZES for m in ("FitNet", "Attention", "DarkRank")
                if (m, d) != ("DarkRank", small))),
            Claim("RKD-DA without L2 normalisation beats the same one with it at the small size",
                  (Comparison(key("RKD-DA", small, "no"), key("RKD-DA", small)),)),
            Claim("RKD-DA's relative gain over Triplet grows as the embedding shrinks",
                  (Comparison(key(RELATIVE_GAIN, small), key(RELATIVE_GAIN, large)),)),
            Claim("RKD-DA without L2 normalisation beats its teacher at the small size",
                  (Comparison(key("RKD-DA", small, "no"), teacher),)),
            Claim("the teacher beats its initial model (pretrained trunk, new embedding layer)",
                  (Comparison(teacher, {"method": "initial model"}),)),
            Claim(RRD_CLAIM + "RRD beats RKD-DA at the same size", tuple(
                Comparison(key("RRD", d), key("RKD-DA", d)) for d in SIZES)),
        ]

    def plot(self, rows):
        from ..report.plots import metric_by_size

        return metric_by_size(self.paper(), self.keyed(rows), metric=self.metric, methods=tuple(L2_SETTINGS),
                              teacher=TEACHER_ROW, ylabel="Recall@1 (%)")


EXPERIMENT = Table1()

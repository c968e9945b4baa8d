"""Table 4: top-1 accuracy of classifiers distilled with RKD, HKD, FitNet, attention
transfer and their combinations with RKD-DA (RRD and RRD+HKD added).

Paper: CIFAR-100 (ResNet50 -> VGG11-BN, 200 epochs) and Tiny ImageNet (ResNet101 ->
ResNet18, 300 epochs), SGD, cross-entropy in every row. ci: the 100- and 200-class
glyph stand-ins, `small_cnn_deep` -> `small_cnn`, the paper's CIFAR-100 schedule
compressed into a few hundred steps.
"""
from __future__ import annotations

from ..outputs import TAP_NAMES
from ..models.spec import ModelSpec
from ..paper import paper_table
from ..train import TrainConfig
from . import datasets as D
from .recipes import ClassificationSetup, CONVERGED, Preset, with_ci
from .baselines import CHOSEN
from ..runs.spec import Evaluation
from .base import Experiment, Parameter
from ..report.stats import PRIMARY, RRD_CLAIM, Claim, Comparison

TEACHER_ROW = "Teacher"
#: the student rows of the paper's Table 4, in its order
PAPER_STUDENTS = ("Baseline", "RKD-D", "RKD-DA", "HKD", "HKD+RKD-DA", "FitNet", "FitNet+RKD-DA", "Attention",
                 "Attention+RKD-DA")
#: every student row we run: the paper's, then RRD's
STUDENTS = (*PAPER_STUDENTS, "RRD", "RRD+HKD")


def sgd_schedule(*, epochs: int, milestones: tuple[int, ...], steps_per_epoch: int, lr: float = 0.1,
                 gamma: float = 0.2, weight_decay: float = 5e-4) -> TrainConfig:
    """The paper's SGD schedule in optimiser steps: the learning rate times ``gamma`` at
    each epoch of ``milestones``."""
    return TrainConfig(steps=epochs * steps_per_epoch, optimizer="sgd", lr=lr, momentum=0.9,
                       weight_decay=weight_decay, milestones=tuple(m * steps_per_epoch for m in milestones),
                       gamma=gamma, checkpoint_every=steps_per_epoch * 10)


def compressed(steps: int, *, epochs: int = 200, milestones: tuple[int, ...] = (60, 120, 160)) -> TrainConfig:
    """The paper's CIFAR-100 schedule squeezed into ``steps``: each decay at the same fraction of the run."""
    return TrainConfig(steps=steps, optimizer="sgd", lr=0.1, momentum=0.9, weight_decay=5e-4,
                       milestones=tuple(round(steps * m / epochs) for m in milestones), gamma=0.2)


def _small(model: str) -> ModelSpec:
    # embedding_dim=None: the classifier sits on the pooled feature ("a single fully-connected layer")
    return ModelSpec(model, (("in_channels", 1), ("input_size", 28), ("embedding_dim", None), ("taps", TAP_NAMES)))


CI_STEPS = 3000


def _ci(data) -> ClassificationSetup:
    # from scratch, as the paper's classifiers are; the teacher is Table 1's (the student's trunk with two
    # convolutions per block); teacher and students on the same schedule, as in the paper
    return ClassificationSetup(data=data, teacher=_small("small_cnn_deep"), student=_small("small_cnn"),
                               train=compressed(CI_STEPS), teacher_train=compressed(CI_STEPS), batch_size=64,
                               evaluation=Evaluation("top1", batch_size=1000, every=CI_STEPS // 10),
                               settings=CHOSEN["classification"])


#: the ci stand-ins of CIFAR-100 and Tiny ImageNet
CI_SETUPS = (_ci(D.GLYPHS_CIFAR100), _ci(D.GLYPHS_TINY))


# CIFAR-100 has 50,000 training images, Tiny ImageNet 100,000; batches of 128, the last partial one dropped
PAPER_SETUPS = (
    ClassificationSetup(
        data=D.CIFAR100, teacher=ModelSpec("resnet50_cls", (("input_size", 32), ("taps", TAP_NAMES))),
        student=ModelSpec("vgg11_bn_cls", (("input_size", 32), ("taps", TAP_NAMES))),
        train=sgd_schedule(epochs=200, milestones=(60, 120, 160), steps_per_epoch=50_000 // 128), batch_size=128,
        evaluation=Evaluation("top1", every=50_000 // 128 * 5), epochs=200),
    ClassificationSetup(
        data=D.TINY_IMAGENET, teacher=ModelSpec("resnet101_cls", (("input_size", 64), ("taps", TAP_NAMES))),
        student=ModelSpec("resnet18_cls", (("input_size", 64), ("taps", TAP_NAMES))),
        # the paper gives no weight decay for Tiny ImageNet: CIFAR-100's 5e-4 is kept
        train=sgd_schedule(epochs=300, milestones=(60, 120, 160, 200, 250), steps_per_epoch=100_000 // 128),
        batch_size=128, evaluation=Evaluation("top1", every=100_000 // 128 * 5), epochs=300),
)


class Table4(Experiment):
    name = "table4"
    title = "Table 4"
    subtitle = "RKD for classification"
    page = "notebooks/table4_classification"
    metric = "top1"
    keys = ("method",)
    intro = """
The paper's Table 4 trains classifiers with cross-entropy plus RKD-D, RKD-DA, HKD,
FitNet, attention transfer and their combinations with RKD-DA, distilled from a larger
teacher, and reports top-1 accuracy on CIFAR-100 and Tiny ImageNet. RKD improves the
baseline and combines with the others; HKD+RKD-DA is the best configuration. We add RRD
and RRD+HKD.
"""
    table_note = """
Top-1 accuracy (%). At `scale="ci"` the values are not comparable with the paper's:
compare the gains over the baseline.

**Attention transfer's weight on the stand-ins.** The `small_cnn` student's blocks are
7x7, 4x4 and 2x2 at 28 pixels; the attention loss is a mean over each map's entries, so
on these tiny maps it is large, and with the paper's weight (50) and SGD at learning
rate 0.1 it swamps cross-entropy. The stand-in pages use the weight chosen on renders of
held-out training classes instead (the *Fidelity* page's tuning section shows the grid
and every validation score); at `scale="paper"` the paper's weight is used.
"""
    presets = with_ci({
        # five seeds (every run converged) left six of the ten primary comparisons' minimum detectable
        # differences above 2 points, the worst 6.04 (FitNet+RKD-DA > FitNet, 200 classes; target 2,
        # measured 2026-12-07; its spread asks for 17): seventeen
        CONVERGED: Preset(scale=CONVERGED, datasets=CI_SETUPS, recipe=None, threads=1, num_workers=0,
                          seeds=tuple(range(17)),
                     notes=f"the 100- and 200-class glyph stand-ins of CIFAR-100 and Tiny ImageNet, a "
                           f"`small_cnn_deep` teacher and `small_cnn` students from scratch, {CI_STEPS:,} steps each "
                           f"of the paper's CIFAR-100 schedule compressed, the baselines' weights tuned on held-out "
                           f"renders of the training classes, CPU"),
        "paper": Preset(scale="paper", datasets=PAPER_SETUPS, recipe=None,
                        notes="the paper's protocol: CIFAR-100 (ResNet50 -> VGG11-BN) and Tiny ImageNet (ResNet101 "
                              "-> ResNet18), random initialisation, SGD momentum 0.9, weight decay 5e-4"),
    })
    parameters = {
        "methods": Parameter(tuple[str, ...] | None, None, "student methods (None: all of Table 4's)"),
        "datasets": Parameter(tuple[str, ...] | None, None, "registry names of the datasets (None: all)"),
    }

    def datasets_of(self, preset):
        return tuple(setup.data for setup in preset.datasets)

    def runs(self, preset, methods=None, datasets=None):
        methods = D.choose_names(STUDENTS, methods, "method", self.title)
        datasets = datasets if datasets is not None else preset.grid.get("datasets")
        chosen = {d.name for d in D.choose(self.datasets_of(preset), datasets, self.title)}
        for setup in preset.datasets:
            if setup.data.name in chosen:
                yield setup.teacher_run()
                yield from (setup.student_run(m) for m in methods)

    def paper(self):
        wide = paper_table("table4")
        return wide.melt(id_vars="method", var_name="dataset", value_name="value")

    def keyed(self, rows):
        rows = rows.copy()
        rows.loc[rows["role"] == "teacher", "method"] = TEACHER_ROW
        return rows

    def order(self, results):
        return [(m,) for m in (*STUDENTS, TEACHER_ROW)]

    def claims(self, rows) -> list[Claim]:
        def m(name):
            return {"method": name}

        return [
            Claim("RKD-D and RKD-DA each beat the baseline",
                  (Comparison(m("RKD-D"), m("Baseline")), Comparison(m("RKD-DA"), m("Baseline"))), PRIMARY),
            Claim("combining RKD-DA with HKD, FitNet or attention helps in most cases", tuple(
                Comparison(m(f"{base}+RKD-DA"), m(base)) for base in ("HKD", "FitNet", "Attention")), PRIMARY),
            Claim("RKD-DA beats RKD-D", (Comparison(m("RKD-DA"), m("RKD-D")),)),
            Claim("HKD+RKD-DA beats every other configuration of the paper", tuple(
                Comparison(m("HKD+RKD-DA"), m(other)) for other in PAPER_STUDENTS if other != "HKD+RKD-DA")),
            Claim(RRD_CLAIM + "RRD beats RKD-DA, and RRD+HKD beats HKD+RKD-DA",
                  (Comparison(m("RRD"), m("RKD-DA")), Comparison(m("RRD+HKD"), m("HKD+RKD-DA")))),
        ]

    def plot(self, rows):
        from ..report.plots import gain_bars

        colours = {name: "C0" if "RKD" in name else "C1" if "RRD" in name else "C7" for name in STUDENTS}
        return gain_bars(self.paper(), rows, metric=self.metric, baseline={"method": "Baseline"},
                         label="top-1 gain over the baseline (points)",
                         categories=[m for m in STUDENTS if m != "Baseline"], colours=colours)


EXPERIMENT = Table4()

"""Figure 4: the top-8 retrievals of the teacher (triplet) and of the RKD-DA student for
the same queries, hits (same class as the query) and misses marked.

The paper shows examples on CUB-200-2011 and Cars196 chosen so that "the student gives
better results than the teacher". We show two sets of queries: a seeded random draw
(what retrieval usually looks like) and, as the paper selected them, queries where the
student has more hits than the teacher, labelled as such. Beside the pictures, numbers
over every test query: Recall@1 (per seed, judged as a claim), mean hits in the top 8,
and how often the student has more, as many or fewer hits than the teacher.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import torch

from ..data.splits import load_split
from ..evaluate import embed, nearest_neighbours
from ..runs.convergence import jointly_converged
from . import datasets as D
from . import table1
from .recipes import CONVERGED, MetricRecipe, Preset, TEACHER, with_ci
from .base import Experiment, Parameter
from ..report.stats import PRIMARY, Claim, Comparison

METHOD = "RKD-DA"
STUDENT = "student (RKD-DA)"
STUDENT_DIM = 128  # the paper does not give it: Table 1's best setting, 128 without L2 normalisation
TOP_K = 8
SELECTIONS = ("random", "student has more hits (the paper's choice)")


#: the derived rows the primary claim compares: % of test queries where each model's top 8 holds more hits
STUDENT_AHEAD = "queries where the student's top 8 is ahead (%)"
TEACHER_AHEAD = "queries where the teacher's top 8 is ahead (%)"


class Figure4(Experiment):
    name = "figure4"
    title = "Figure 4"
    subtitle = "retrieval examples of the teacher and the RKD-DA student"
    page = "notebooks/figure4_retrieval_examples"
    metric = "recall_at_1"
    keys = ("model",)
    keep_models = (TEACHER, STUDENT)
    intro = """
The paper's Figure 4 shows the top-8 retrievals of the triplet teacher and of the RKD-DA
student for a few queries of CUB-200-2011 and Cars196, chosen where the student does
better. We show a seeded random draw of queries beside such a selection, and the
numbers over every test query.
"""
    table_note = """
Recall@1 (%) over every test query; the paper prints no numbers for this figure.
"""
    presets = with_ci({
        # five seeds left the primary comparison's minimum detectable difference at 3.73 points,
        # fifteen at 2.11 (target 2, measured 2026-12-06; their spread asks for 12, then 17): twenty
        CONVERGED: Preset(scale=CONVERGED, datasets=(D.GLYPHS_CUB,), recipe=table1.CI, threads=1,
                          seeds=tuple(range(20)), num_workers=0,
                          grid={"queries": 4},
                          notes="the glyph stand-in of CUB, glyph-pretrained trunks, CPU"),
        "paper": Preset(scale="paper", datasets=(D.CUB200, D.CARS196), recipe=table1.PAPER, grid={"queries": 4},
                        notes="the paper's protocol: ImageNet-pretrained ResNet50-512 teacher, ResNet18-128 student, "
                              "224x224 crops"),
    }, cut=table1.METRIC_CI_CUT)
    parameters = {
        "datasets": Parameter(tuple[str, ...] | None, None, "registry names of the datasets (None: all)"),
        "queries": Parameter(int | None, None, "queries shown per selection (None: the preset's)"),
    }

    def runs(self, preset, datasets=None, queries=None):
        recipe: MetricRecipe = preset.recipe
        for data in D.choose(preset.datasets, datasets, self.title):
            yield from recipe.pretrain_runs(data)
            yield recipe.teacher_run(data).with_labels(model="teacher")
            student = recipe.student_run(data, STUDENT, method=METHOD, dim=STUDENT_DIM, l2=False,
                                         labels={"model": "student"})
            # the claim is about queries: the student measures, against its teacher, on which
            # test queries its top 8 holds more correct images
            yield replace(student, evaluation=replace(student.evaluation, head_to_head=TOP_K))

    def analyse(self, results, models) -> None:
        """The retrievals of the last seed's teacher and student on every test query."""
        preset = self.preset(results.scale.split(" ")[0])
        shown = preset.grid["queries"]
        seed = results.seeds[-1]
        retrievals, head_to_head = [], []
        for data in (d for d in results.datasets):
            teacher, student = models.get(f"{data.display}/{TEACHER}"), models.get(f"{data.display}/{STUDENT}")
            if teacher is None or student is None:
                continue
            test_set = load_split(data, results.extra.get("data_root"), "test", train=False)
            k = min(TOP_K, len(test_set) - 1)  # a dry run's generated split may hold fewer than 9 images
            found, labels = {}, None
            for model_name, model in (("teacher", teacher), ("student", student)):
                embeddings, labels = embed(model, test_set, 256, torch.device(results.device))
                found[model_name] = nearest_neighbours(embeddings, k)
            hits = {m: (labels[i] == labels[:, None]).sum(dim=1) for m, i in found.items()}
            head_to_head.append({
                "dataset": data.display, "seed": seed,
                "student more hits (%)": 100.0 * float((hits["student"] > hits["teacher"]).float().mean()),
                "same (%)": 100.0 * float((hits["student"] == hits["teacher"]).float().mean()),
                "teacher more hits (%)": 100.0 * float((hits["student"] < hits["teacher"]).float().mean()),
                f"teacher mean hits in top {k}": float(hits["teacher"].float().mean()),
                f"student mean hits in top {k}": float(hits["student"].float().mean()),
            })
            order = np.random.default_rng(seed).permutation(len(labels)).tolist()
            better = [q for q in order if hits["student"][q] > hits["teacher"][q]]
            for selection, queries in zip(SELECTIONS, (order[:shown], better[:shown])):
                for query in queries:
                    for model_name in ("teacher", "student"):
                        neighbours = found[model_name][query]
                        retrievals.append({"dataset": data.display, "selection": selection, "query": int(query),
                                           "model": model_name, "neighbours": tuple(int(i) for i in neighbours),
                                           "hits": tuple(bool(labels[i] == labels[query]) for i in neighbours)})
        results.extra["retrievals"] = pd.DataFrame(retrievals)
        results.extra["head_to_head"] = pd.DataFrame(head_to_head)

    def with_derived(self, frame, value):
        """Our rows plus, per dataset and seed, the share of test queries on which the
        student's top 8 holds more correct images than the teacher's, and the reverse (each
        converged only where both the student and the teacher are)."""
        if "queries_student_ahead" not in frame.columns:
            return frame
        students = frame[frame["model"] == "student"].dropna(subset=["queries_student_ahead"])
        if "converged" in frame.columns:  # a head-to-head is as converged as both models it compares
            teacher = frame[frame["model"] == "teacher"].groupby("dataset")["converged"].first()
            students = students.assign(converged=[jointly_converged(state, teacher.get(dataset)) for state, dataset
                                                  in zip(students["converged"], students["dataset"])])
        derived = [students.assign(model=name, **{value: students[column]}) for name, column in (
            (STUDENT_AHEAD, "queries_student_ahead"), (TEACHER_AHEAD, "queries_teacher_ahead"))]
        return pd.concat([frame, *derived], ignore_index=True)

    def claims(self, rows) -> list[Claim]:
        return [
            Claim(f"the RKD-DA student retrieves more correct images than its teacher (its top {TOP_K}) on more "
                  f"of the test queries than the reverse",
                  (Comparison({"model": STUDENT_AHEAD}, {"model": TEACHER_AHEAD}),), PRIMARY),
            Claim("the RKD-DA student retrieves better than its teacher (Recall@1)",
                  (Comparison({"model": "student"}, {"model": "teacher"}),)),
        ]

    def figure(self, results):
        """The retrievals of both selections: per query a teacher row (T) and a student
        row (S): the query, then its top 8 with a green border for a hit, red for a miss."""
        import matplotlib.pyplot as plt
        from matplotlib.patches import Rectangle

        from ..report.page import show_table

        show_table(results.extra["head_to_head"].set_index(["dataset", "seed"]).round(2))
        retrievals = results.extra["retrievals"]
        figures = []
        for (dataset, selection), chosen in retrievals.groupby(["dataset", "selection"], sort=False):
            data = next(d for d in results.datasets if d.display == dataset)
            images = load_split(replace(data, test_transform=None), results.extra.get("data_root"), "test",
                                train=False)
            width = 1 + max(len(n) for n in chosen["neighbours"])
            fig, axes = plt.subplots(len(chosen), width, figsize=(0.9 * width, 0.95 * len(chosen)), squeeze=False)
            for axes_row, (_, row) in zip(axes, chosen.iterrows()):
                cells = [(row["query"], None), *zip(row["neighbours"], row["hits"])]
                for ax, (index, hit) in zip(axes_row, cells):
                    # nearest: the stand-ins' 28x28 pixels stay sharp, and the PNG stays small
                    ax.imshow(_thumbnail(images[index][0]), cmap="gray", interpolation="nearest")
                    ax.set_xticks([])
                    ax.set_yticks([])
                    if hit is not None:
                        ax.add_patch(Rectangle((0, 0), 1, 1, transform=ax.transAxes, fill=False, linewidth=3,
                                               clip_on=False, edgecolor="tab:green" if hit else "tab:red"))
                axes_row[0].set_ylabel(f"{'T' if row['model'] == 'teacher' else 'S'} {sum(row['hits'])}/"
                                       f"{len(row['hits'])}", rotation=0, ha="right", va="center", fontsize=9)
            fig.suptitle(f"{dataset}, ours ({results.scale}, seed {results.seeds[-1]}): queries {selection}",
                         fontsize=10)
            fig.tight_layout()
            figures.append(fig)
        return figures


def _thumbnail(image, size: int = 96) -> np.ndarray:
    if isinstance(image, torch.Tensor):
        array = image.detach().cpu().numpy()
        return array[0] if array.shape[0] == 1 else np.transpose(array, (1, 2, 0))
    return np.asarray(image.convert("RGB").resize((size, size)))


EXPERIMENT = Figure4()

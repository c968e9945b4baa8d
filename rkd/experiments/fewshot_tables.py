"""What Tables 5 and 6 share: few-shot runs (one teacher and its students per shot), the
paper's numbers in long form, the student-beats-teacher claims and the gain plot."""
from __future__ import annotations

import pandas as pd

from ..paper import paper_table
from . import datasets as D
from ..data.splits import DataSpec
from .recipes import CONVERGED, FewShotRecipe, Preset, with_ci
from .table1 import CONVERGED_SEEDS
from .base import Experiment, Parameter
from ..report.stats import EXPLORATORY, PRIMARY, Claim, Comparison

TEACHER_ROW = "Teacher"


def fewshot_presets(ci: tuple[DataSpec, FewShotRecipe, str],
                    paper: tuple[DataSpec, FewShotRecipe, str]) -> dict[str, Preset]:
    """A few-shot table's presets from (dataset, recipe, notes) per scale: the stand-ins
    (``ci``: the converged regime's, cut for ``make test``) on one thread without loader
    workers (the episodes are arrays in memory already)."""
    (ci_data, ci_recipe, ci_notes), (paper_data, paper_recipe, paper_notes) = ci, paper
    return with_ci({
        CONVERGED: Preset(scale=CONVERGED, datasets=(ci_data,), recipe=ci_recipe, threads=1, num_workers=0,
                          notes=ci_notes, seeds=CONVERGED_SEEDS),
        "paper": Preset(scale="paper", datasets=(paper_data,), recipe=paper_recipe, notes=paper_notes),
    })


class FewShotTable(Experiment):
    """A few-shot table: per shot, a prototypical teacher and its self-distilled students."""

    metric = "accuracy"
    keys = ("method", "way", "shot")
    methods: tuple[str, ...] = ()
    paper_name: str = ""
    parameters = {"methods": Parameter(tuple[str, ...] | None, None, "student methods (None: all of the table's)")}
    table_note = """
Accuracy (%) on the test episodes; ours the mean ± std over seeds of each seed's mean
over its episodes (every model of a seed is tested on the same episodes).
"""

    def runs(self, preset, methods=None):
        recipe: FewShotRecipe = preset.recipe
        methods = D.choose_names(self.methods, methods, "method", self.title)
        for data in preset.datasets:
            for shot in recipe.train_way:
                yield recipe.teacher_run(data, shot)
                yield from (recipe.student_run(data, shot, m) for m in methods)

    def paper(self) -> pd.DataFrame:
        wide = paper_table(self.name)
        accuracy = wide[[c for c in wide.columns if c == "method" or c.endswith("-shot") and "ci95" not in c]]
        long = accuracy.melt(id_vars="method", var_name="setting", value_name="value")
        setting = long["setting"].str.extract(r"(?P<way>\d+)-way (?P<shot>\d+)-shot").astype(int)
        return pd.concat([long[["method"]], setting, long[["value"]]], axis=1).assign(dataset=self.paper_name)

    def keyed(self, rows):
        rows = rows.copy()
        rows["method"] = rows["model"]
        return rows

    def order(self, results):
        ways = sorted(results.rows["way"].unique())
        shots = sorted(results.rows["shot"].unique())
        return [(m, w, s) for m in (*self.methods, TEACHER_ROW) for w in ways for s in shots]

    #: (method, way, shot) of the page's primary comparisons (the paper's headline statements)
    primary: tuple[tuple[str, int, int], ...] = ()
    #: methods the paper finds far below their teacher (the claim is that they fall below it)
    below_teacher: tuple[str, ...] = ()

    def claims(self, rows) -> list[Claim]:
        settings = sorted({(int(w), int(s)) for w, s in zip(rows["way"], rows["shot"])})

        def comparison(method, way, shot):
            ours, teacher = {"method": method, "way": way, "shot": shot}, {"method": TEACHER_ROW, "way": way,
                                                                          "shot": shot}
            return (Comparison.falls_below(ours, teacher) if method in self.below_teacher
                    else Comparison(ours, teacher))

        claims = []
        for method in self.methods:
            text = f"{method} falls far below its teacher" if method in self.below_teacher else \
                f"{method} beats its teacher"
            for role in (PRIMARY, EXPLORATORY):
                chosen = tuple(comparison(method, w, s) for w, s in settings
                               if ((method, w, s) in self.primary) == (role == PRIMARY))
                if chosen:
                    claims.append(Claim(text, chosen, role))
        return claims

    def plot(self, rows):
        from ..report.plots import gain_bars

        rows = rows.assign(setting=[f"{w}-way {s}-shot" for w, s in zip(rows["way"], rows["shot"])])
        figures = []
        for setting, part in rows.groupby("setting", sort=False):
            paper = self.paper()
            way, shot = (int(v.split("-")[0]) for v in setting.split(" "))
            paper = paper[(paper["way"] == way) & (paper["shot"] == shot)]
            figures.append(gain_bars(paper, part, metric=self.metric, baseline={"method": TEACHER_ROW},
                                     label=f"{setting}: student - teacher (points)", categories=self.methods))
        return figures


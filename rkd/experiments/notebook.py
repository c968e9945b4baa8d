"""The results page of an experiment, as a notebook: the same cells for every table and
figure, written from the experiment itself so that pages cannot drift apart.

``python -m rkd.experiments.notebook`` rewrites ``notebooks/*.ipynb`` (unexecuted);
``make notebooks`` then executes them at ``scale="ci"``.

Cell tags: ``parameters`` (papermill), ``hide-input`` (plumbing a reader may open),
``remove-input`` (only the output is shown), ``remove-cell`` (the summary record, read
by the book's summary page, never shown).
"""
from __future__ import annotations

import sys
from pathlib import Path

import nbformat

from . import get, names

__all__ = ["notebook", "write_all", "PAGES"]

#: experiment -> its notebook file
PAGES = {
    "table1": "table1_metric_learning.ipynb",
    "table2": "table2_self_distillation.ipynb",
    "table3": "table3_recall_at_k.ipynb",
    "table4": "table4_classification.ipynb",
    "table5": "table5_omniglot.ipynb",
    "table6": "table6_miniimagenet.ipynb",
    "figure3": "figure3_cross_domain.ipynb",
    "figure4": "figure4_retrieval_examples.ipynb",
}

_COMMON = {
    "scale": ('"ci"', '"ci": the offline stand-ins on the CPU, short schedules (numbers read from results/; a run '
                      'missing there is trained); "converged": the same trained to their plateau (results/converged/); '
                      '"paper": the paper\'s protocol and data (GPU, data_root)'),
    "data_root": ("None", "folder holding the paper's datasets in their official layouts (paper scale)"),
    "device": ('"cpu"', '"cpu", "cuda" or "auto"'),
    "seeds": ("None", "None: the preset's seeds; every number is the mean ± std over them"),
    "protocol": ("None", 'None: "authors_code" (what produced the printed numbers); or "paper_text"'),
    "progress": ("True", "progress bars, in the terminal that runs the notebook"),
    "dry_run": ("False", "True: print the plan, then train one run of each code path for 2 steps on the CPU"),
    "cache_dir": ("None", "where trained models are kept (None: the project's .cache/)"),
}


def _code(source: str, *tags: str):
    return nbformat.v4.new_code_cell(source, metadata={"tags": list(tags)} if tags else {})


def _markdown(source: str):
    return nbformat.v4.new_markdown_cell(source)


def notebook(name: str) -> nbformat.NotebookNode:
    """The unexecuted results page of experiment ``name``: its parameters cell (the common
    parameters, then its own), the run, and one cell per section of the page."""
    experiment = get(name)
    parameters = []  # each parameter after its comment: the cell reads on a narrow page
    for param, (default, comment) in _COMMON.items():
        parameters += [f"# {comment}", f"{param} = {default}"]
    for param, spec in experiment.parameters.items():
        parameters += [f"# {spec.doc}", f"{param} = {spec.default!r}"]
    cells = [
        _markdown(f"# {experiment.title}: {experiment.subtitle}\n\n{experiment.intro.strip()}\n\n"
                  "The parameters below select the scale; the committed page was run at `scale=\"ci\"`. "
                  "See *Reproducing a table* for the paper-scale command."),
        _code("\n".join(parameters), "parameters"),
        _code("import rkd\nfrom rkd.experiments import get, notebook_parameters\n"
              f"from rkd.report import page as report\n\n"
              f"experiment = get({name!r})\nparams = notebook_parameters(globals(), experiment)", "hide-input"),
        _markdown("## Run\n\nProgress is shown in the terminal that runs the notebook, not here."),
        _code("results = experiment.run(**params)", "hide-input"),
        _code("report.show_box(experiment, results)", "remove-input"),
        _markdown("## The protocol\n\nOne row per training run, generated from the preset that ran: the page's "
                  "protocol cannot drift from the code."),
        _code("report.show_plan(results)", "remove-input"),
        _markdown("## The data\n\nAt `scale=\"ci\"` each of the paper's datasets is played by a stand-in "
                  "(see *The glyph world*); a few of its training images:"),
        _code("report.show_samples(experiment, results)", "remove-input"),
        _markdown("## The paper's numbers beside ours\n\n" + experiment.table_note.strip()),
        _code("report.show_side_by_side(experiment, results)", "remove-input"),
        _markdown("## Do the paper's claims hold here?\n\nEach claim is a set of comparisons \"A beats B\" "
                  "(or \"A falls below B\", \"A is equivalent to B within a margin\"), each judged on the paired "
                  "difference over seeds (same seed, same data). A few comparisons per page are **primary**: the "
                  "paper's headline statements, named before the runs, judged together with Holm's correction; "
                  "the others are **exploratory**, corrected with Benjamini-Hochberg, and read as leads. The forest "
                  "plot shows each difference with its corrected 95% interval and, where the paper has both "
                  "numbers, the paper's own difference; the verdict is in colour and in words. On the paper's "
                  "single numbers a claim only holds or does not (or, where the paper prints intervals, is not "
                  "distinguishable there)."),
        _code("report.show_claims(experiment, results)", "remove-input"),
        _code("report.show_figure(experiment, results)", "remove-input"),
        _markdown("## Training curves\n\nFrom the training log each run writes beside its checkpoint "
                  "(`rkd.train.log`; read one with `rkd.train.log.read_training_log`)."),
        _code("report.show_training_curves(experiment, results)", "remove-input"),
        _markdown("## All our numbers"),
        _code("report.show_all_numbers(results)", "remove-input"),
        _code("report.publish_summary(experiment, results)", "remove-cell"),
    ]
    nb = nbformat.v4.new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"display_name": "Python 3", "language": "python", "name": "python3"}
    nb.metadata["language_info"] = {"name": "python"}
    return nb


def write_all(directory: str | Path = "notebooks", only: list[str] | None = None) -> list[Path]:
    """Write the :func:`notebook` of every experiment (or of those named in ``only``) into
    ``directory``, under its file name of :data:`PAGES`; returns the paths written."""
    unknown = sorted(set(only or ()) - set(PAGES))
    if unknown:
        raise ValueError(f"no page named {', '.join(unknown)}; name some of {', '.join(sorted(PAGES))} "
                         "(or none, for every page)")
    written = []
    for name in only or names():
        path = Path(directory) / PAGES[name]
        nbformat.write(notebook(name), path)
        written.append(path)
    return written


if __name__ == "__main__":
    try:
        for path in write_all(only=sys.argv[1:] or None):
            print(f"wrote {path}")
    except ValueError as error:
        sys.exit(str(error))

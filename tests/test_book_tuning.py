"""The Fidelity page's tuning section (rkd.book.tuning) from a synthetic results store
written by the store's own writer: a table per task with the reference runs, every grid
point's validation scores and the point the pages use; a warning where that point is not
the best; an admonition (and a build warning) where the store holds no tuning file."""
from __future__ import annotations

import json

import pytest
from fixtures_tuning import default_score, tuning_records, write_tuning_store

from rkd.book.assemble import assemble
from rkd.book.tuning import STORE_FILE, TuningError, planned_runs, tuning_markdown, tuning_rows
from rkd.experiments.baselines import CHOSEN, GRIDS, setting_label


@pytest.fixture(scope="module")
def runs():
    return planned_runs()


def _labels(run) -> dict:
    return dict(run.labels)


def _favouring(pick):
    """Scores where, for each baseline, the grid point ``pick(task, method)`` is best by far."""
    def score(run, seed):
        labels = _labels(run)
        if labels.get("method") not in GRIDS.get(labels.get("task"), {}):
            return default_score(run, seed)
        return 80.0 + seed if labels["setting"] == pick(labels["task"], labels["method"]) else 40.0 + seed
    return score


_SECTIONS = {"metric": "Metric learning", "classification": "Classification", "fewshot": "Few-shot learning"}


def _row(text: str, method: str, setting: str, task: str | None = None) -> str:
    """The table row of ``method`` at ``setting``, in the section of ``task`` (default: the first)."""
    if task is not None:
        start = text.index(f"### {_SECTIONS[task]}")
        end = text.find("### ", start + 4)
        text = text[start:end if end >= 0 else None]
    return next(line for line in text.splitlines() if line.startswith(f"| {method} | {setting} |"))


def test_without_a_tuning_file_the_section_says_so(tmp_path):
    text = tuning_markdown(tmp_path)
    assert text.startswith("```{warning}") and "results/tuning.jsonl" in text and "refresh tuning" in text


def test_the_extension_warns_when_the_tuning_file_is_missing(tmp_path, caplog):
    from types import SimpleNamespace

    from rkd.book.sphinx_ext import _generate

    noted = []
    env = SimpleNamespace(doc2path=lambda docname: str(tmp_path / f"{docname}.md"), note_dependency=noted.append)
    app = SimpleNamespace(srcdir=str(tmp_path), config=SimpleNamespace(rkd_results="results"), env=env)
    with caplog.at_level("WARNING"):
        text = _generate(app, "book/fidelity", "tuning")
    assert text.startswith("```{warning}") and "no tuning results" in caplog.text
    assert noted == []


def test_the_table_marks_the_point_the_pages_use(tmp_path, runs):
    write_tuning_store(tmp_path, _favouring(lambda task, method: setting_label(CHOSEN[task][method])), runs)
    text = tuning_markdown(tmp_path, runs=runs)
    assert "### Metric learning" in text and "### Classification" in text and "### Few-shot learning" in text
    for task, grid in GRIDS.items():
        for method in grid:
            used = _row(text, method, setting_label(CHOSEN[task][method]), task)
            assert used.endswith("| 80.50 | 80.00 | 81.00 | used, best |")
    assert "{warning}" not in text
    # the reference runs: the teacher and the student without distillation, before the grid
    assert _row(text, "Triplet \\(teacher\\)", "—").endswith("| reference: the teacher |")
    assert _row(text, "Triplet", "—").endswith("| reference: no distillation |")
    assert _row(text, "Baseline", "—") and _row(text, "Prototypical", "—")
    assert text.index("| Triplet | — |") < text.index("| Attention |")
    assert "seeds 0, 1" in text and "the score: Recall@1 (%) on it" in text


def test_a_chosen_point_that_is_not_the_best_is_flagged(tmp_path, runs):
    first = {task: {method: grid[0] for method, grid in methods.items()} for task, methods in GRIDS.items()}
    write_tuning_store(tmp_path, _favouring(lambda task, method: setting_label(GRIDS[task][method][1])), runs)
    text = tuning_markdown(tmp_path, runs=runs, chosen=first)
    attention = GRIDS["metric"]["Attention"]
    assert _row(text, "Attention", setting_label(attention[0])).endswith("| used |")
    assert _row(text, "Attention", setting_label(attention[1])).endswith("| best |")
    assert (f"Metric learning, Attention: the pages use {setting_label(attention[0])}, but the best mean validation "
            f"score is {setting_label(attention[1])}'s.") in text
    assert text.count("```{warning}") == sum(len(methods) for methods in GRIDS.values())


def test_runs_missing_from_the_store_and_stale_records_are_said(tmp_path, runs):
    from rkd.runs.results import ResultStore

    records = [r for r in tuning_records(runs=runs) if r["run"] != "RRD 2"]
    records.append({**records[-1], "key": "0" * 64, "run": "Attention 9 (1-shot)"})
    ResultStore(tmp_path).write("tuning", records)
    text = tuning_markdown(tmp_path, runs=runs)
    assert _row(text, "RRD", "rrd x10").endswith("| not in the store | — | — |  |")
    assert "1 record(s) of the file match no planned run" in text


def test_a_broken_record_is_an_error_that_names_the_file(tmp_path, runs):
    (tmp_path / STORE_FILE).write_text("{not json\n")
    with pytest.raises(TuningError, match="tuning.jsonl"):
        tuning_markdown(tmp_path, runs=runs)
    record = tuning_records(runs=runs)[5]
    (tmp_path / STORE_FILE).write_text(json.dumps({**record, "metrics": {}}) + "\n")
    with pytest.raises(TuningError, match="has no metrics"):
        tuning_markdown(tmp_path, runs=runs)


def test_rows_carry_the_labels_of_the_plan(runs):
    rows, stale = tuning_rows(tuning_records(runs=runs), runs)
    assert stale == 0
    assert set(rows["task"]) == set(GRIDS) and set(rows["seed"]) == {0, 1}
    assert set(rows[rows["task"] == "fewshot"]["metric"]) == {"accuracy"}
    assert "pretrain" not in set(rows["role"])  # the trunks are not judged on the validation split


def test_assemble_copies_the_results_store(tmp_path):
    checkout = tmp_path / "checkout"
    for folder in ("book", "rkd", "results"):
        (checkout / folder).mkdir(parents=True)
    (checkout / "_config.yml").write_text("title: x\n")
    (checkout / "_toc.yml").write_text("format: jb-book\nroot: book/intro\n")
    (checkout / "results" / STORE_FILE).write_text("{}\n")
    out = assemble(checkout, checkout / "notebooks", tmp_path / "out")
    assert (out / "results" / STORE_FILE).read_text() == "{}\n"

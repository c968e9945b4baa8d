"""The book's build-time helpers (rkd.book): generated pages, offline checks, build copy,
the package's reference.

The one slow test builds a tiny book with ``jupyter-book build -W -n`` and the rkd
extension, from a synthetic checkout: it checks the summary page made from a synthetic
notebook, the performance page made from a fixture JSON, MathJax served from the book,
the collapsed injected-parameters cell, Markdown outputs rendered as MyST (tables),
figures given alt text, the package's reference, and that the checkout is left untouched.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from fixtures_trunks import write_trunk_store
from fixtures_tuning import write_tuning_store
from rkd.book.assemble import assemble, toc_notebooks
from rkd.book.offline import external_resources, is_external
from rkd.book.performance import BenchmarkError, performance_markdown
from rkd.book.reference import (REFERENCE_MODULES, ReferenceError, internal_page, page_of, public_names,
                                reference_markdown, undocumented, undocumented_members)
from rkd.book.sphinx_ext import collapse_injected_parameters, image_alt_texts
from rkd.book.summary import SummaryError, read_summaries, rrd_markdown, summary_markdown
from rkd.report.page import SUMMARY_MIME

REPO = Path(__file__).resolve().parent.parent


def _summary(**overrides) -> dict:
    summary = {
        "experiment": "table1",
        "title": "Table 1: RKD students in metric learning",
        "page": "notebooks/table1_metric_learning",
        "scale": "ci",
        "seeds": [0, 1, 2],
        "rows": [
            {"what": "RKD-DA, d=16 | L2", "dataset": "glyphs (Ethiopic)", "paper dataset": "CUB-200-2011",
             "paper": 45.76, "ours_mean": 47.125, "ours_std": 0.5, "difference": None},
            {"what": "RRD (not in the paper)", "dataset": "glyphs (Ethiopic)", "paper dataset": "CUB-200-2011",
             "paper": None, "ours_mean": 40.0, "ours_std": None, "difference": None},
        ],
        "claims": [
            _claim("RKD-DA beats Triplet at d=16", "primary", "holds", "1 of 1 comparisons holds", "1/1",
                   [("RKD-DA d=16 L2 > Triplet d=16 L2", "holds", [0.8, 2.4])]),
            _claim("no L2 beats L2", "exploratory", "reversed", "0 of 1 comparisons hold; 1 reversed", "1/1",
                   [("RKD-DA d=16 no L2 > RKD-DA d=16 L2", "reversed", [-3.0, -1.0])]),
            _claim("RKD-A beats RKD-D", "exploratory", "not distinguishable at this scale",
                   "0 of 1 comparisons hold; 1 not distinguishable at this scale", "0/1",
                   [("RKD-A d=16 L2 > RKD-D d=16 L2", "not distinguishable at this scale", [None, None])]),
        ],
    }
    summary.update(overrides)
    return summary


def _claim(text, role, word, sentence, paper, comparisons, dataset="glyphs (Ethiopic)") -> dict:
    return {"claim": text, "role": role, "dataset": dataset, "paper dataset": "CUB-200-2011", "word": word,
            "summary": sentence, "paper": paper,
            "comparisons": [{"comparison": c, "verdict": v, "interval": i, "difference": None, "paper": "holds",
                             "paper difference": None, "MDD": None} for c, v, i in comparisons]}


# two 1x1 PNGs (black, white)
_PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAAAAAA6fptVAAAACklEQVR4nGNgAAAAAgABSK+kcQAAAABJRU5ErkJggg=="
_PNG_WHITE = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAAAAAA6fptVAAAACklEQVR4nGP4DwABAQEAsTj2FAAAAABJRU5ErkJggg=="
_STAND_INS = "| the paper's dataset | played here by |\n|---|---|\n| CUB-200-2011 | glyphs (Ethiopic) |"
_CAPTION = "glyphs (Ethiopic), standing in for CUB-200-2011: 8 training images of each class"


def _figure_outputs() -> list:
    """Outputs as a page's cells display them: a Markdown table, a caption and its image,
    an image with its own alt text, and one with neither."""
    new = nbformat.v4.new_output
    return [new("display_data", data={"text/markdown": _STAND_INS, "text/plain": "<Markdown>"}),
            new("display_data", data={"text/markdown": f"*{_CAPTION}*", "text/plain": "<Markdown>"}),
            new("display_data", data={"image/png": _PNG, "text/plain": "<Image>"}),
            new("display_data", data={"image/png": _PNG_WHITE, "text/plain": "<Image>"},
                metadata={"image/png": {"alt": "a forest plot of the claims"}})]


def _notebook(path: Path, title: str, summary: dict | None, injected: bool = True) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    cells = [nbformat.v4.new_markdown_cell(f"# {title}\n\nA synthetic page."),
             nbformat.v4.new_code_cell('scale = "ci"', metadata={"tags": ["parameters"]})]
    if injected:
        cells.append(nbformat.v4.new_code_cell('# Parameters\nscale = "ci"\n',
                                               metadata={"tags": ["injected-parameters"]}))
    figures = nbformat.v4.new_code_cell("show_samples()", metadata={"tags": ["remove-input"]})
    figures.outputs = _figure_outputs()
    cells.append(figures)
    code = nbformat.v4.new_code_cell("show_summary()")
    if summary is not None:
        code.outputs = [nbformat.v4.new_output("display_data", data={SUMMARY_MIME: summary,
                                                                      "text/plain": "<summary>"})]
    cells.append(code)
    nb.cells = cells
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, str(path))
    return path


def _benchmark(**overrides) -> dict:
    result = {
        "benchmark": "bench_losses",
        "command": "python benchmarks/bench_losses.py --n 256 --ds 512 --dt 2048 --repeats 7",
        "date": "2026-01-31",
        "machine": {"cpu": "Test CPU", "cores": 2, "gpu": None, "torch": "2.14.1"},
        "rows": [
            {"loss": "RKD-A", "form": "authors", "median_ms": 1580.25, "peak_mib": 1473.0},
            {"loss": "RKD-A", "form": "ours", "median_ms": 97.5, "peak_mib": 53.25},
        ],
        "summary": {"time ratio authors/ours": 16.2, "memory ratio authors/ours": 27.66,
                    "extra_memory_mib": float("nan")},
    }
    result.update(overrides)
    return result


# ----------------------------------------------------------------------- summary page

def test_summary_rows_claims_and_links(tmp_path):
    path = _notebook(tmp_path / "notebooks" / "table1_metric_learning.ipynb", "Table 1", _summary())
    text = summary_markdown(read_summaries([path], root=tmp_path))
    assert "## Table 1: RKD students in metric learning" in text
    assert "3 seeds: 0, 1, 2" in text
    link = "(/notebooks/table1_metric_learning.ipynb)"
    # the pipe in the row's name is escaped, so the table keeps its columns; no difference: stand-in data
    assert (f"| [RKD-DA, d=16 \\| L2]{link} | glyphs \\(Ethiopic\\) | CUB-200-2011 | 45.76 | 47.12 ± 0.50 |" in text
            or f"| [RKD-DA, d=16 \\| L2]{link} | glyphs \\(Ethiopic\\) | CUB-200-2011 | 45.76 | 47.13 ± 0.50 |" in text)
    assert "difference" not in text.split("## Table 1")[1].split("\n\n")[2] and "not comparable" in text
    assert f"| [RRD \\(not in the paper\\)]{link} | glyphs \\(Ethiopic\\) | CUB-200-2011 | — | 40.00 |" in text
    assert (f"| [RKD-DA beats Triplet at d=16]{link} | primary | glyphs \\(Ethiopic\\) | **holds** | "
            f"1 of 1 comparisons holds | 1/1 |") in text
    # the matrix: the claim, its role, the paper's verdict and ours, coloured, worded and linked
    matrix = text.split("```{raw} html")[1].split("```")[0]
    assert "RKD-DA beats Triplet at d=16</td><td>primary</td>" in matrix
    assert matrix.count('href="../notebooks/table1_metric_learning.html"') >= 7  # the heading and every cell
    assert '<td style="background:#f3cdb3;color:#7a3000"><a href' in matrix and ">reversed<br>" in matrix
    assert ">does not hold<br><small>0/1 of its comparisons" in matrix


def test_summary_gives_the_difference_only_where_the_data_are_the_papers(tmp_path):
    summary = _summary(rows=[{"what": "RKD-DA, d=16", "dataset": "CUB-200-2011", "paper dataset": "CUB-200-2011",
                              "paper": 45.76, "ours_mean": 46.0, "ours_std": 0.5, "difference": 0.24}])
    path = _notebook(tmp_path / "notebooks" / "table1_metric_learning.ipynb", "Table 1", summary)
    text = summary_markdown(read_summaries([path], root=tmp_path))
    assert "| 45.76 | 46.00 ± 0.50 | +0.24 |" in text and "not comparable" not in text


def test_summary_says_when_a_notebook_has_none(tmp_path):
    with_summary = _notebook(tmp_path / "notebooks" / "table1_x.ipynb", "Table 1", _summary())
    without = _notebook(tmp_path / "notebooks" / "table5_omniglot.ipynb", "Table 5: few-shot, Omniglot", None)
    text = summary_markdown(read_summaries([with_summary, without], root=tmp_path))
    assert "## Table 5: few-shot, Omniglot" in text
    assert "No summary yet: the notebook `table5_omniglot.ipynb` carries no" in text
    assert "[its page](/notebooks/table5_omniglot.ipynb)" in text
    assert text.index("Table 1") < text.index("Table 5")  # the order given (the table of contents)


def test_rrd_section_collects_only_the_rrd_claims(tmp_path):
    summary = _summary()
    summary["claims"].append(_claim("RRD's claim: RRD beats RKD-DA at the same size", "exploratory", "reversed",
                                    "0 of 1 comparisons hold; 1 reversed", "n/a",
                                    [("RRD d=16 L2 > RKD-DA d=16 L2", "reversed", [-2.5, -0.5])]))
    path = _notebook(tmp_path / "notebooks" / "table1_metric_learning.ipynb", "Table 1", summary)
    text = rrd_markdown(read_summaries([path], root=tmp_path))
    assert "RRD d=16 L2 \\> RKD-DA d=16 L2 | glyphs \\(Ethiopic\\) | `ci` | **reversed** | [−2.50, −0.50]" in text
    assert "RRD's claim" not in text
    assert "(/notebooks/table1_metric_learning.ipynb)" in text
    assert "RKD-DA beats Triplet" not in text  # the RKD paper's own claims stay on the summary page
    without = _notebook(tmp_path / "notebooks" / "table5.ipynb", "Table 5", _summary())
    assert rrd_markdown(read_summaries([without], root=tmp_path)) == "No page has judged RRD against RKD yet.\n"


@pytest.mark.parametrize("broken, message", [
    ({"verdict_of_first_claim": "maybe"}, "must be one of"),
    ({"claims": [{"claim": "c", "verdict": "holds"}]}, "must be an object with strings"),
    ({"rows": [{"what": "x", "paper": "45.7"}]}, "must be a number or null"),
    ({"drop": "seeds"}, "has no 'seeds'"),
    ({"claims": [_claim("c", "primary", "holds", "1 of 1", "1/1", [("a > b", "holds", [1.0])])]},
     "must be [lo, hi]"),
])
def test_summary_refuses_a_malformed_output(tmp_path, broken, message):
    summary = _summary()
    if "verdict_of_first_claim" in broken:
        summary["claims"][0]["comparisons"][0]["verdict"] = broken["verdict_of_first_claim"]
    elif "drop" in broken:
        del summary[broken["drop"]]
    else:
        summary.update(broken)
    path = _notebook(tmp_path / "notebooks" / "t.ipynb", "T", summary)
    with pytest.raises(SummaryError, match=message.replace("[", r"\[")):
        read_summaries([path], root=tmp_path)


# ------------------------------------------------------------------- performance page

def test_performance_page_from_result_files(tmp_path):
    (tmp_path / "bench_losses.json").write_text(json.dumps(_benchmark()))
    text = performance_markdown(tmp_path)
    assert "## bench\\_losses, 2026-01-31" in text
    assert "CPU Test CPU (2 cores), GPU none, torch 2.14.1" in text
    assert "python benchmarks/bench_losses.py --n 256 --ds 512 --dt 2048 --repeats 7" in text
    assert "| loss | form | median\\_ms | peak\\_mib |" in text
    # four significant digits at least: 1580.25 ms shows as 1,580, 97.5 as 97.50
    assert "| RKD-A | authors | 1,580 | 1,473 |" in text
    assert "| RKD-A | ours | 97.50 | 53.25 |" in text
    assert "| time ratio authors/ours | 16.20 |" in text
    assert "| extra\\_memory\\_mib | not measured |" in text


def test_performance_page_transposes_a_wide_table(tmp_path):
    wide = [{"loss": name, "N": 256, "D_s": 512, "D_t": 2048, "authors_ms": 10.0, "ours_ms": 5.0, "ratio": 2.0}
            for name in ("RKD-A", "RKD-D")]
    (tmp_path / "bench_losses.json").write_text(json.dumps(_benchmark(rows=wide)))
    text = performance_markdown(tmp_path)
    assert "| loss | RKD-A | RKD-D |" in text  # a column per row, headed by the field that names the rows
    assert "| D\\_t | 2,048 | 2,048 |" in text and "| authors\\_ms | 10.00 | 10.00 |" in text
    assert "| loss | N |" not in text


def test_performance_page_without_results(tmp_path):
    assert "No benchmark results yet" in performance_markdown(tmp_path / "absent")
    assert "No benchmark results yet" in performance_markdown(tmp_path)


def test_performance_refuses_a_malformed_file(tmp_path):
    bad = _benchmark()
    del bad["machine"]["torch"]
    (tmp_path / "b.json").write_text(json.dumps(bad))
    with pytest.raises(BenchmarkError, match=r"'machine' lacks \['torch'\]"):
        performance_markdown(tmp_path)
    (tmp_path / "b.json").write_text("{not json")
    with pytest.raises(BenchmarkError, match="not valid JSON"):
        performance_markdown(tmp_path)


# ------------------------------------------------------------------------ offline scan

def test_offline_scan_finds_external_resources_only(tmp_path):
    (tmp_path / "page.html").write_text(
        '<html><head><script src="https://cdn.example/x.js"></script>'
        '<link rel="stylesheet" href="//fonts.example/f.css"><link rel="next" href="https://example.org/next">'
        '<script src="_static/local.js"></script></head><body>'
        '<a href="https://arxiv.org/abs/1904.05068">paper</a><img src="data:image/png;base64,AAAA">'
        '<img srcset="a.png 1x, https://img.example/b.png 2x"><div style="background: url(https://bg.example/i.png)">'
        "</div></body></html>")
    (tmp_path / "s.css").write_text('/* see https://licence.example */ @import url("https://fonts.example/g.css");'
                                    ".a { background: url(img/local.png) }")
    found = sorted(str(p.url) for p in external_resources(tmp_path))
    assert found == ["//fonts.example/f.css", "https://bg.example/i.png", "https://cdn.example/x.js",
                     "https://fonts.example/g.css", "https://img.example/b.png"]
    assert is_external("HTTPS://x.example/") and not is_external("_static/mathjax/tex-mml-chtml.js")


# ------------------------------------------------------------- injected parameters

def test_injected_parameters_cell_is_collapsed_in_memory(tmp_path):
    path = _notebook(tmp_path / "n.ipynb", "N", None)
    original = path.read_text()
    collapsed = json.loads(collapse_injected_parameters(original))
    tags = [c["metadata"].get("tags", []) for c in collapsed["cells"]]
    assert ["injected-parameters", "hide-input"] in tags
    assert ["parameters"] in tags  # the parameters cell itself stays as the notebook has it
    assert path.read_text() == original
    # a cell the author already tagged is left as it is; no injected cell: no change at all
    removed = original.replace('"injected-parameters"', '"injected-parameters", "remove-cell"')
    assert collapse_injected_parameters(removed) == removed
    plain = _notebook(tmp_path / "p.ipynb", "P", None, injected=False).read_text()
    assert collapse_injected_parameters(plain) == plain


# ------------------------------------------------------------- figures' alt text

def test_figures_get_their_alt_text_from_metadata_or_caption():
    import base64
    import hashlib

    notebook = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("show()")
    cell.outputs = _figure_outputs() + [nbformat.v4.new_output("display_data", data={"image/png": _PNG_WHITE})]
    notebook.cells = [cell, nbformat.v4.new_code_cell("again()")]
    notebook.cells[1].outputs = [nbformat.v4.new_output("display_data", data={"image/png": _PNG})]
    alts = image_alt_texts(json.loads(nbformat.writes(notebook)))
    black, white = (hashlib.sha256(base64.b64decode(png)).hexdigest() for png in (_PNG, _PNG_WHITE))
    # the caption right before an image, and the alt an output carries in its metadata
    assert alts == {black: _CAPTION, white: "a forest plot of the claims"}
    # an image after another output than a caption (the second cell's) gets nothing from it
    notebook.cells = notebook.cells[1:]
    assert image_alt_texts(json.loads(nbformat.writes(notebook))) == {}


# ------------------------------------------------------------------ the reference

@pytest.mark.parametrize("module_name", REFERENCE_MODULES)
def test_every_public_name_is_documented(module_name):
    missing = undocumented(module_name)
    assert not missing, (f"{module_name} exports names with no documentation: {missing}; give each a docstring "
                         f"(a method or property of an exported class: its own, as docstrings are not inherited; "
                         f"a module-level value: a #: comment above its assignment)")


@pytest.mark.parametrize("module_name", REFERENCE_MODULES)
def test_every_reference_module_has_its_page(module_name):
    page = REPO / (page_of(module_name) + ".md")
    assert f"% rkd-generated: reference {module_name}\n" in page.read_text(), f"{page} does not generate {module_name}"
    assert f"file: {page_of(module_name)}\n" in (REPO / "_toc.yml").read_text(), f"_toc.yml lacks {page}"


@pytest.fixture
def fake_package(tmp_path, monkeypatch):
    """A package ``fakepkg_<n>`` re-exporting a function, a class and data from a submodule."""
    name = f"fakepkg_{tmp_path.name.replace('-', '_')}"
    package = tmp_path / name
    package.mkdir()
    (package / "core.py").write_text(
        'import dataclasses\n\n#: what DATA holds, e.g. the letters\nDATA = {"a": 1}\n\nBARE = (1, 2)\n\n\n'
        'def helper(x):\n    """Do a thing with ``x``, eq. 7 of the paper. More words."""\n\n\n'
        'class Thing:\n    """A thing (e.g. a widget). Second sentence."""\n\n\n'
        'def silent():\n    pass\n\n\n'
        '@dataclasses.dataclass\nclass Record:\n    x: int\n')
    (package / "__init__.py").write_text(
        '"""A fake package."""\nfrom .core import BARE, DATA, Record, Thing, helper, silent\n\n'
        '__all__ = ["helper", "Thing", "DATA", "silent", "BARE", "Record"]\n')
    (tmp_path / f"{name}_noall.py").write_text('"""No __all__."""\n')
    monkeypatch.syspath_prepend(str(tmp_path))
    return name


def test_reference_documents_the_public_names_in_order(fake_package):
    text = reference_markdown(fake_package)
    assert text.startswith("```{eval-rst}\n.. automodule:: " + fake_package + "\n") and text.endswith("```\n")
    entries = [".. autofunction:: helper", ".. autoclass:: Thing", ".. py:data:: DATA", ".. autofunction:: silent",
               ".. py:data:: BARE"]
    assert [text.index(entry) for entry in entries] == sorted(text.index(entry) for entry in entries)
    # data: its value when short, and the #: comment of the submodule that assigns it
    assert "   :value: {'a': 1}\n\n   what DATA holds, e.g. the letters" in text
    # the table of names: each name's first sentence, abbreviations kept whole
    assert f"   * - :py:obj:`~{fake_package}.helper`\n     - Do a thing with ``x``, eq. 7 of the paper." in text
    assert "     - A thing (e.g. a widget)." in text


def test_reference_lists_what_is_undocumented(fake_package):
    # a dataclass's generated docstring (its signature) documents nothing
    assert undocumented(fake_package) == ["silent", "BARE", "Record"]
    assert public_names(__import__(fake_package)) == ["helper", "Thing", "DATA", "silent", "BARE", "Record"]
    with pytest.raises(ReferenceError, match="has no __all__"):
        undocumented(fake_package + "_noall")
    with pytest.raises(ReferenceError, match="cannot import"):
        undocumented("rkd.no_such_module")


def test_reference_lists_undocumented_methods_and_properties():
    import torch

    class Base(torch.nn.Module):
        def documented(self):
            """Documented here."""

    class Loss(Base):
        """A loss."""

        weight = 2.0  # a class attribute: autodoc shows it only with a #: comment

        def forward(self, x):  # overrides nn.Module.forward: its docstring is not inherited
            return x

        def documented(self):  # nor is Base.documented's
            pass

        def explained(self):
            """Documented."""

        @property
        def size(self):
            return 1

        @staticmethod
        def build():
            pass

        def extra_repr(self):
            return ""

        def _private(self):
            pass

    # only what Loss defines itself: nn.Module's methods and Base's are not its own
    assert undocumented_members(Loss) == ["Loss.forward", "Loss.documented", "Loss.size", "Loss.build"]
    assert undocumented_members(Base) == []


def test_references_to_the_package_outside_the_reference():
    # a submodule of a documented package links to that package's page
    assert internal_page("rkd.losses.relational") == ("rkd.losses", "rkd.losses.relational")
    assert internal_page("relational", module="rkd.losses") == ("rkd.losses", "rkd.losses.relational")
    # a part of the package no page covers: plain code, no link
    assert internal_page("rkd.registry.Registry") == (None, "rkd.registry.Registry")
    # what the package only imports (torch's Tensor), or does not have: unresolved
    assert internal_page("Tensor", module="rkd.losses") is None
    assert internal_page("rkd.losses.no_such_name") is None


# ------------------------------------------------------------------------- build copy

def _fake_checkout(root: Path, notebook_summary: dict | None = None) -> Path:
    """A checkout with the repository's real book configuration and pages, and synthetic notebooks."""
    root.mkdir(parents=True)
    for name in ("_config.yml", "_toc.yml"):
        shutil.copy2(REPO / name, root / name)
    shutil.copytree(REPO / "book", root / "book", ignore=shutil.ignore_patterns("node_modules", "_generated"))
    shutil.copytree(REPO / "rkd", root / "rkd", ignore=shutil.ignore_patterns("__pycache__"))
    for name in toc_notebooks(root / "_toc.yml"):
        stem = Path(name).stem
        summary = _summary(page=f"notebooks/{stem}") if stem.startswith("table1") else None
        _notebook(root / "notebooks" / Path(name).name, stem.replace("_", " ").title(),
                  notebook_summary if notebook_summary is not None and summary else summary)
    (root / "benchmarks" / "results").mkdir(parents=True)
    (root / "benchmarks" / "results" / "bench_losses.json").write_text(json.dumps(_benchmark()))
    write_tuning_store(root / "results")
    write_trunk_store(root / "results")
    return root


def _listing(root: Path) -> dict[str, float]:
    return {str(p.relative_to(root)): p.stat().st_mtime for p in root.rglob("*")}


def test_assemble_copies_what_the_book_needs(tmp_path):
    checkout = _fake_checkout(tmp_path / "checkout")
    (checkout / "book" / "node_modules" / "mathjax").mkdir(parents=True)
    before = _listing(checkout)
    out = assemble(checkout, checkout / "notebooks", tmp_path / "build" / "src")
    assert (out / "notebooks" / "table1_metric_learning.ipynb").is_file()
    assert (out / "rkd" / "losses" / "relational.py").is_file()
    assert (out / "benchmarks" / "results" / "bench_losses.json").is_file()
    assert not (out / "book" / "node_modules").exists()
    assert _listing(checkout) == before


def test_assemble_names_a_missing_notebook(tmp_path):
    checkout = _fake_checkout(tmp_path / "checkout")
    (checkout / "notebooks" / "table5_omniglot.ipynb").unlink()
    with pytest.raises(FileNotFoundError, match="notebooks/table5_omniglot.ipynb"):
        assemble(checkout, checkout / "notebooks", tmp_path / "out")


def test_figure_shows_a_student_with_the_teachers_relations():
    from rkd.book.figures import example_embeddings, potentials

    teacher, student = example_embeddings()
    losses = potentials(teacher, student)
    assert losses["ikd"] > 1.0  # far apart, point by point
    assert losses["rkd_d"] < 1e-12 and losses["rkd_a"] < 1e-12  # the same distances and angles


@pytest.mark.slow
def test_tiny_book_builds_offline_without_warnings(tmp_path):
    """jupyter-book -W -n over the real configuration and pages with synthetic notebooks."""
    mathjax = REPO / "book" / "node_modules" / "mathjax" / "es5"
    if not (mathjax / "tex-mml-chtml.js").is_file():
        pytest.skip("MathJax is not installed (make install runs npm ci --prefix book)")
    checkout = _fake_checkout(tmp_path / "checkout")
    before = _listing(checkout)
    src = assemble(checkout, checkout / "notebooks", tmp_path / "build" / "src")
    env = {**os.environ, "RKD_MATHJAX_DIR": str(mathjax)}
    jupyter_book = Path(sys.executable).parent / "jupyter-book"
    run = subprocess.run([str(jupyter_book), "build", str(src), "--path-output", str(tmp_path / "build"),
                          "-W", "-n", "--keep-going"], capture_output=True, text=True, env=env, timeout=600)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]
    html = tmp_path / "build" / "_build" / "html"
    assert _listing(checkout) == before
    assert (html / "_static" / "mathjax" / "tex-mml-chtml.js").is_file()
    assert not (html / "_static" / "mathjax" / "latest.js").exists()  # the CDN loader is not served
    assert external_resources(html) == []
    method = (html / "book" / "method.html").read_text()
    assert '<script defer="defer" src="../_static/mathjax/tex-mml-chtml.js"></script>' in method
    assert "THEBE_JS_URL" not in method
    summary = (html / "book" / "summary.html").read_text()
    assert "47.12 ± 0.50" in summary or "47.13 ± 0.50" in summary
    assert 'href="../notebooks/table1_metric_learning.html"' in summary
    assert "No summary yet" in summary  # the other synthetic notebooks carry none
    performance = (html / "book" / "performance.html").read_text()
    assert "Test CPU" in performance and "1,473" in performance
    table1 = (html / "notebooks" / "table1_metric_learning.html").read_text()
    assert "tag_injected-parameters" in table1 and "tag_hide-input" in table1
    # a Markdown output is MyST: its table is a table, not raw text
    assert "|---|" not in table1 and "<td><p>glyphs (Ethiopic)</p></td>" in table1
    assert f'alt="{_CAPTION}"' in table1 and 'alt="a forest plot of the claims"' in table1
    assert '<link rel="stylesheet" type="text/css" href="../_static/rkd.css" />' in table1
    assert "white-space: pre-wrap" in (html / "_static" / "rkd.css").read_text()  # the parameters cell wraps
    # the package's reference, one page per module, an entry per public name
    losses = (html / "book" / "api" / "losses.html").read_text()
    assert 'id="rkd.losses.rkd_distance"' in losses and 'id="rkd.losses.RKDLoss"' in losses
    assert (html / "_images").is_dir() and any((html / "_images").glob("relational_potentials*.svg"))
    # the root page names the book's icon, so a browser never asks the server for /favicon.ico
    root = (html / "index.html").read_text()
    assert '<link rel="icon" href="_static/favicon.svg">' in root
    assert 'content="0; url=book/intro.html"' in root and (html / "_static" / "favicon.svg").is_file()


def test_root_page_redirects_and_names_the_icon():
    from rkd.book.sphinx_ext import root_page

    html = root_page("book/intro.html", "_static/favicon.svg", "A <book>")
    assert html.startswith("<!DOCTYPE html>")
    assert '<link rel="icon" href="_static/favicon.svg">' in html
    assert '<meta http-equiv="Refresh" content="0; url=book/intro.html">' in html
    assert '<a href="book/intro.html">A &lt;book&gt;</a>' in html
    assert "icon" not in root_page("book/intro.html", None, "t")


def test_pages_drop_thebe_and_flag_external_assets(caplog):
    from types import SimpleNamespace

    from rkd.book.sphinx_ext import _offline_assets

    def js(filename, body=""):
        return SimpleNamespace(filename=filename, attributes={"body": body} if body else {})

    scripts = [js("_static/doctools.js"), js("", 'const THEBE_JS_URL = "https://unpkg.com/thebe"'),
               js("_static/sphinx-thebe.js"), js("https://cdn.example/x.js"), js("_static/mathjax/tex-mml-chtml.js")]
    styles = [js("_static/sphinx-thebe.css"), js("//fonts.example/f.css"), js("_static/styles/theme.css")]
    with caplog.at_level("WARNING"):
        _offline_assets(None, "book/intro", "page.html", {"script_files": scripts, "css_files": styles}, None)
    assert [s.filename for s in scripts] == ["_static/doctools.js", "https://cdn.example/x.js",
                                             "_static/mathjax/tex-mml-chtml.js"]
    assert [s.filename for s in styles] == ["//fonts.example/f.css", "_static/styles/theme.css"]
    warned = caplog.text
    assert "would load https://cdn.example/x.js from outside the book" in warned
    assert "would load //fonts.example/f.css from outside the book" in warned
    assert "doctools" not in warned and "mathjax" not in warned

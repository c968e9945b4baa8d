"""The performance page's plots (rkd.book.performance, performance_kinds, performance_figures)
and the rkd extension's registry of generated sections: plots drawn from the committed
benchmark files, each with alt text and a caption naming the machine, date and command;
a point not measured left out, not drawn as zero; the same bytes when drawn again; an
unknown benchmark shown as a plain table."""
from __future__ import annotations

import json
import math
import re
import struct
from pathlib import Path
from types import SimpleNamespace

import pytest

from rkd.book import performance_figures
from rkd.book.markdown import escape
from rkd.book.performance import FigureTarget, performance_markdown, read_results
from rkd.book.performance_figures import BarPanel, Line, SweepPanel, draw_bars, draw_sweep
from rkd.book.performance_kinds import KINDS, label

RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results"
#: a MyST figure directive as the page writes one: its image, its options and its caption
FIGURE = re.compile(r"```\{figure\} (?P<uri>\S+)\n(?P<options>(?::\w+:[^\n]*\n)+)\n(?P<caption>.+?)\n```", re.S)


def _figures(text: str) -> list[dict[str, str]]:
    found = []
    for match in FIGURE.finditer(text):
        options = dict(re.findall(r"^:(\w+): ?(.*)$", match.group("options"), re.M))
        found.append({"uri": match.group("uri"), "caption": match.group("caption"), **options})
    return found


def _png_chunks(path: Path) -> list[bytes]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    chunks, offset = [], 8
    while offset < len(data):
        (length,) = struct.unpack(">I", data[offset:offset + 4])
        chunks.append(data[offset + 4:offset + 8])
        offset += 12 + length
    return chunks


def _result(benchmark: str, rows: list[dict], summary: dict | None = None) -> dict:
    return {"benchmark": benchmark, "command": f".venv/bin/python benchmarks/bench_{benchmark}.py --quick",
            "date": "2026-12-06T10:00:00+00:00",
            "machine": {"cpu": "Test CPU", "cores": 2, "gpu": None, "torch": "2.14.1"},
            "rows": rows, "summary": summary or {"a ratio": 2.0}}


def _loss_row(loss: str, n: int, d: int, ours_ms: float, authors_ms: float, memory: bool) -> dict:
    nan = float("nan")
    row = {"loss": loss, "N": n, "D_s": d, "D_t": d, "ours_ms": ours_ms, "authors_ms": authors_ms, "note": ""}
    for form, scale in (("ours", 1.0), ("authors", 10.0)):
        for way in ("warm", "cold"):
            row[f"{form}_{way}_peak_mib"] = scale * n / 32 if memory else nan
    return row


# ------------------------------------------------------------------ the committed files

def test_every_committed_benchmark_the_page_knows_gets_plots_with_alt_text(tmp_path):
    text = performance_markdown(RESULTS, figures=FigureTarget(tmp_path, "_generated/performance"))
    figures = _figures(text)
    known = [path for path, result in read_results(RESULTS) if result["benchmark"] in KINDS]
    assert known, "benchmarks/results holds no file of a benchmark the page knows"
    for path in known:
        mine = [f for f in figures if Path(f["uri"]).name.startswith(path.stem + "_")]
        assert mine, f"no plot from {path.name}"
        result = json.loads(path.read_text())
        for figure in mine:
            assert figure["uri"].startswith("_generated/performance/")
            assert figure.get("width") == "100%"  # as wide as the text column, never wider
            assert len(figure.get("alt", "")) > 40 and "\n" not in figure["alt"]
            # the caption names the machine, the date and the command the numbers come from
            assert escape(result["machine"]["cpu"]) in figure["caption"]
            assert result["date"][:10] in figure["caption"] and result["command"] in figure["caption"]
            assert (tmp_path / Path(figure["uri"]).name).is_file()
    assert {"losses_cpu_time.png", "losses_cpu_memory.png", "recall_cpu_time_memory.png",
            "train_step_cpu_images_per_s.png"} <= {Path(f["uri"]).name for f in figures}
    assert "## Relational losses: ours against the authors' form (CPU, " in text
    assert "ratio\\_cache\\_main\\_images\\_per\\_s" not in text  # readable names instead


def test_the_losses_plots_state_the_measured_ratios(tmp_path):
    text = performance_markdown(RESULTS, figures=FigureTarget(tmp_path, "fig"))
    rows = json.loads((RESULTS / "losses_cpu.json").read_text())["rows"]
    angle = [r["authors_ms"] / r["ours_ms"] for r in rows if r["loss"] == "RKD-A" and math.isfinite(r["authors_ms"])]
    alt = next(f["alt"] for f in _figures(text) if f["uri"].endswith("losses_cpu_time.png"))
    assert f"{min(angle):.3g} to {max(angle):.3g} times as long as ours for RKD-A" in alt


# ------------------------------------------------------------------ synthetic files

def test_memory_not_measured_is_left_out_and_said(tmp_path):
    rows = [_loss_row("RKD-D", n, 16, n / 10, n / 5, memory=False) for n in (32, 64)]
    rows += [_loss_row("RKD-A", n, 16, n / 10, n, memory=True) for n in (32, 64, 128)]
    rows[-1].update(authors_ms=float("nan"), authors_warm_peak_mib=float("nan"), authors_cold_peak_mib=float("nan"),
                    note="authors' form not run: needs 5 GiB (limits --authors-max-gib 8)")
    (tmp_path / "losses_cpu.json").write_text(json.dumps(_result("losses", rows)))
    text = performance_markdown(tmp_path, figures=FigureTarget(tmp_path / "png", "png"))
    time = next(f for f in _figures(text) if f["uri"] == "png/losses_cpu_time.png")
    # the command-line option as code: as plain text the page would set "--" as a dash
    assert ("Not plotted: RKD-A at N = 128, D = 16: authors' form not run: needs 5 GiB \\(limits "
            "`--authors-max-gib` 8\\).") in time["caption"]
    assert "| RKD-A | 128 | 16 | 12.80 / — | 4.000 / — | 4.000 / — |" in text
    memory = next(f for f in _figures(text) if f["uri"] == "png/losses_cpu_memory.png")
    assert "(RKD-A warm and RKD-A cold)" in memory["alt"] and "RKD-D" not in memory["alt"]
    assert "No peak memory was measured for RKD-D in this run." in memory["caption"]
    assert "10 times as much as ours for RKD-A (warm)" in memory["alt"]
    assert "| RKD-D | 32 | 16 | 3.200 / 6.400 (×2) | — | — |" in text


def test_a_sweep_leaves_nan_points_out(monkeypatch, tmp_path):
    drawn = []
    monkeypatch.setattr(performance_figures, "_save", lambda figure, path: drawn.append(figure) or path)
    line = Line("D = 16", "ours", (32.0, 64.0, 128.0), (1.0, float("nan"), 4.0))
    draw_sweep(tmp_path / "x.png", [SweepPanel("RKD-A", (line,))], xlabel="N", ylabel="ms")
    (plotted,) = drawn[0].axes[0].get_lines()
    assert list(plotted.get_xdata()) == [32.0, 128.0] and list(plotted.get_ydata()) == [1.0, 4.0]


def test_bars_leave_nan_out(monkeypatch, tmp_path):
    drawn = []
    monkeypatch.setattr(performance_figures, "_save", lambda figure, path: drawn.append(figure) or path)
    draw_bars(tmp_path / "x.png", ["ours", "faiss"], [BarPanel("s", {"time": (2.0, float("nan"))})])
    widths = [patch.get_width() for patch in drawn[0].axes[0].patches]
    assert widths == [2.0]


def test_plots_are_the_same_bytes_when_drawn_again(tmp_path):
    line = Line("D = 16", "ours", (32.0, 64.0), (1.0, 2.0))
    first = draw_sweep(tmp_path / "a.png", [SweepPanel("RKD-D", (line,))], xlabel="N", ylabel="ms").read_bytes()
    second = draw_sweep(tmp_path / "b.png", [SweepPanel("RKD-D", (line,))], xlabel="N", ylabel="ms").read_bytes()
    assert first == second
    assert b"tEXt" not in _png_chunks(tmp_path / "a.png")  # no "Software: matplotlib x.y" chunk


def test_an_unknown_benchmark_is_a_plain_table(tmp_path):
    result = _result("new_thing", [{"setting": "a", "value_ms": 1.5}, {"setting": "b", "value_ms": 3.0}])
    (tmp_path / "new_thing_cpu.json").write_text(json.dumps(result))
    text = performance_markdown(tmp_path, figures=FigureTarget(tmp_path / "png", "png"))
    assert "## new\\_thing, 2026-12-06" in text
    assert "| setting | value\\_ms |" in text and "| a | 1.500 |" in text
    assert "{figure}" not in text and not (tmp_path / "png").exists()


def test_a_known_benchmark_whose_rows_changed_keeps_its_table(tmp_path):
    # recall rows without the fields its plot needs: no plot, the rows still shown
    result = _result("recall", [{"form": "ours", "seconds": 1.0}, {"form": "faiss", "seconds": 2.0}])
    (tmp_path / "recall_cpu.json").write_text(json.dumps(result))
    text = performance_markdown(tmp_path, figures=FigureTarget(tmp_path / "png", "png"))
    assert "## Recall@K: ours against faiss (CPU, 2026-12-06)" in text
    assert "{figure}" not in text and "| ours | 1.000 |" in text


def test_field_names_read_as_words():
    assert label("recall_at_10") == "Recall@10"
    assert label("cache_build_s") == "cache build (s)"
    assert label("peak_mib") == "peak (MiB)"
    assert label("ratio_cache_main_images_per_s").startswith("images/s, the decoded cache")
    assert label("RKD-A lowest time ratio authors/ours over the sweep") == (
        "RKD-A lowest time ratio authors/ours over the sweep")


# ------------------------------------------------------------------ the extension's registry

class _Env:
    def __init__(self, srcdir: Path):
        self.srcdir, self.dependencies = srcdir, []

    def doc2path(self, docname: str) -> str:
        return str(self.srcdir / f"{docname}.md")

    def note_dependency(self, path: str) -> None:
        self.dependencies.append(path)


def _app(srcdir: Path) -> SimpleNamespace:
    config = SimpleNamespace(rkd_benchmark_results="benchmarks/results", rkd_results="results")
    return SimpleNamespace(srcdir=str(srcdir), confdir=str(srcdir), config=config, env=_Env(srcdir))


def test_the_performance_section_draws_into_the_build_copy(tmp_path):
    from rkd.book.sphinx_ext import _generate

    (tmp_path / "benchmarks" / "results").mkdir(parents=True)
    rows = [{"loop": "authors", "images_per_s": 60.0}, {"loop": "ours", "images_per_s": 55.0}]
    (tmp_path / "benchmarks" / "results" / "train_step_cpu.json").write_text(json.dumps(_result("train_step", rows)))
    app = _app(tmp_path)
    text = _generate(app, "book/performance", "performance")
    assert "```{figure} _generated/performance/train_step_cpu_images_per_s.png" in text
    assert (tmp_path / "book" / "_generated" / "performance" / "train_step_cpu_images_per_s.png").is_file()
    assert app.env.dependencies == [str(tmp_path / "benchmarks" / "results" / "train_step_cpu.json")]


def test_an_unknown_section_or_a_failing_one_warns(tmp_path, caplog):
    from rkd.book.sphinx_ext import GENERATORS, _generate

    assert {"summary", "rrd", "performance", "tuning", "reference"} <= set(GENERATORS)
    with caplog.at_level("WARNING"):
        assert _generate(_app(tmp_path), "book/x", "nonsense") == ""
        failed = _generate(_app(tmp_path), "book/x", "reference", None)
    assert "unknown generated section 'nonsense'" in caplog.text
    assert failed.startswith("```{error}") and "needs the module to document" in caplog.text
    (tmp_path / "benchmarks" / "results").mkdir(parents=True)
    (tmp_path / "benchmarks" / "results" / "bad.json").write_text("{not json")
    with caplog.at_level("WARNING"):
        failed = _generate(_app(tmp_path), "book/performance", "performance")
    assert "This section could not be generated" in failed and "not valid JSON" in caplog.text


@pytest.mark.parametrize("benchmark", sorted(KINDS))
def test_every_kind_has_a_title_and_draws_nothing_from_empty_rows(benchmark):
    kind = KINDS[benchmark]
    assert kind.title and kind.figures(_result(benchmark, [])) == []


def test_the_pin_settings_fit_one_line_each(tmp_path):
    rows = [{"setting": name, "step_ms": ms, "ratio_to_native": ms / 10.0, "capability": "AVX2", "data ms": 1.0,
             "loss terms ms": 2.0} for name, ms in (("native", 10.0), ("pinned (all three)", 11.0))]
    (tmp_path / "pin_cpu.json").write_text(json.dumps(_result("pin", rows)))
    text = performance_markdown(tmp_path, figures=FigureTarget(tmp_path / "png", "png"))
    assert "| pinned \\(all three\\) | 11.00 | 1.100 | AVX2 | data 1.000; loss terms 2.000 |" in text
    (figure,) = _figures(text)
    assert "native: 10 ms; pinned (all three): 11 ms" in figure["alt"]

"""The forest plot of a page's claims: one row per comparison, primary first, our interval
and the paper's difference where they should be, each verdict in words and in its colour,
a zero line, a size that suits 5 to 60 rows, labels that do not collide, and alt text."""
import matplotlib.colors
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from rkd.report.forest import COLOURS, HEADINGS, TEXT_COLOURS, forest_alt_text, forest_plot, forest_title
from rkd.report.stats import OUTCOME, PRIMARY, VERDICTS, Claim, Comparison, judge
from rkd.report.verdicts import count_sentence


def page(exploratory=4, seeds=5, seed=0):
    """A judged page: five primary comparisons (one of each kind, an unconverged one among
    the exploratory), the paper's numbers beside ours."""
    rng = np.random.default_rng(seed)
    base = 50 + 5 * rng.standard_normal(seeds)
    frame = [{"dataset": "D", "method": "T", "seed": s, "m": base[s], "converged": True} for s in range(seeds)]
    paper = [{"dataset": "P", "method": "T", "value": 40.0}]
    shifts = [4.0, -4.0, 0.3, 0.1, -6.0] + list(rng.normal(1.0, 2.0, exploratory))
    for i, shift in enumerate(shifts):
        values = base + shift + rng.normal(0, 0.8, seeds)
        frame += [{"dataset": "D", "method": f"M{i}", "seed": s, "m": values[s], "converged": not (i == 5 and s == 0)}
                  for s in range(seeds)]
        paper.append({"dataset": "P", "method": f"M{i}", "value": 40.0 + shift + 1.0})
    t = {"method": "T"}
    primary = (Comparison({"method": "M0"}, t), Comparison({"method": "M1"}, t), Comparison({"method": "M2"}, t),
               Comparison.equivalent({"method": "M3"}, t, 2.0), Comparison.falls_below({"method": "M4"}, t))
    explored = tuple(Comparison({"method": f"M{i}"}, t) for i in range(5, len(shifts)))
    claims = [Claim("explored", explored), Claim("headline", primary, role=PRIMARY)]  # primary declared last
    return judge(claims, pd.DataFrame(frame), "m", paper=pd.DataFrame(paper), stands_in_for={"D": "P"})


@pytest.fixture
def judged():
    return page()


def row_lines(fig):
    """Our intervals: the two-point horizontal lines in a verdict colour."""
    ax = fig.axes[0]
    return [line for line in ax.get_lines() if len(line.get_xdata()) == 2 and line.get_color() in COLOURS.values()
            and line.get_ydata()[0] == line.get_ydata()[1]]


def test_primary_rows_come_first_under_their_heading(judged):
    shuffled = judged.iloc[::-1].reset_index(drop=True)  # the plot orders rows itself
    fig = forest_plot(shuffled)
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    ticks = list(fig.axes[0].get_yticks())
    assert list(judged["role"][:5]) == [PRIMARY] * 5  # judge puts them first although declared last
    # the plot puts them first too, keeping the frame's order within each role
    assert labels[:5] == list(shuffled.loc[shuffled["role"] == PRIMARY, "comparison"])
    assert labels[5:] == list(shuffled.loc[shuffled["role"] != PRIMARY, "comparison"])
    assert all(a > b for a, b in zip(ticks, ticks[1:]))  # top to bottom
    texts = {t.get_text(): t for t in fig.axes[0].texts}
    assert HEADINGS[PRIMARY] in texts and any(t.startswith("Exploratory") for t in texts)
    primary_heading_y = texts[HEADINGS[PRIMARY]].get_position()[1]
    explored_heading_y = next(t for k, t in texts.items() if k.startswith("Exploratory")).get_position()[1]
    assert primary_heading_y > ticks[4] > explored_heading_y > ticks[5]  # the two blocks set apart
    plt.close(fig)


def test_each_verdict_is_written_in_its_colour(judged):
    fig = forest_plot(judged)
    words = [t for t in fig.axes[0].texts if t.get_text().split(" (")[0] in VERDICTS]
    assert sorted(t.get_text() for t in words) == sorted(judged["verdict"])
    for text in words:
        assert matplotlib.colors.to_hex(text.get_color()) == TEXT_COLOURS[OUTCOME[text.get_text()]].lower()
    assert {"holds", "reversed", "no verdict: not converged"} <= set(judged["verdict"])
    assert len(set(TEXT_COLOURS.values())) == len(TEXT_COLOURS) and len(set(COLOURS.values())) == len(COLOURS)
    plt.close(fig)


def test_our_intervals_and_the_papers_differences_are_where_the_numbers_say(judged):
    fig = forest_plot(judged)
    ax = fig.axes[0]
    ticks = dict(zip([t.get_text() for t in ax.get_yticklabels()], ax.get_yticks()))
    intervals = {line.get_ydata()[0]: tuple(line.get_xdata()) for line in row_lines(fig)}
    diamonds = [line for line in ax.get_lines() if line.get_marker() == "D"]
    assert len(diamonds) == judged["paper: difference"].notna().sum() == len(judged)
    paper_at = {round(float(line.get_ydata()[0]), 6): float(line.get_xdata()[0]) for line in diamonds}
    for _, row in judged.iterrows():
        y = ticks[row["comparison"]]
        assert intervals[y] == pytest.approx((row["95% CI low"], row["95% CI high"]))
        assert paper_at[round(y - 0.3, 6)] == pytest.approx(row["paper: difference"])
    zero = [line for line in ax.get_lines() if list(line.get_xdata()) == [0, 0]]
    assert len(zero) == 1  # the zero line
    lo, hi = ax.get_xlim()
    assert lo < judged["95% CI low"].min() and hi > judged["95% CI high"].max()
    plt.close(fig)


def test_the_equivalence_margin_is_drawn_on_its_row(judged):
    fig = forest_plot(judged)
    ax = fig.axes[0]
    ticks = dict(zip([t.get_text() for t in ax.get_yticklabels()], ax.get_yticks()))
    row = judged[judged["kind"] == "equivalence"].iloc[0]
    margins = [line for line in ax.get_lines() if line.get_marker() == "|" and
               list(line.get_ydata()) == [ticks[row["comparison"]]] * 2]
    assert [list(m.get_xdata()) for m in margins] == [[-2.0, 2.0]]
    plt.close(fig)


@pytest.mark.parametrize("exploratory", [0, 25, 55])
def test_sizes_from_5_to_60_rows_stay_readable(exploratory):
    judged = page(exploratory=exploratory)
    fig = forest_plot(judged)
    width, height = fig.get_size_inches()
    rows = len(judged)
    assert width == 11.0 and 2.5 <= height <= 0.45 * rows + 3
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    labels = fig.axes[0].get_yticklabels()
    assert all(label.get_fontsize() >= 8 for label in labels)
    boxes = sorted((label.get_window_extent(renderer) for label in labels), key=lambda b: b.y0)
    assert all(lower.y1 <= upper.y0 + 0.5 for lower, upper in zip(boxes, boxes[1:]))  # no label on another
    words = [t for t in fig.axes[0].texts if t.get_text().split(" (")[0] in VERDICTS]
    word_boxes = sorted((t.get_window_extent(renderer) for t in words), key=lambda b: b.y0)
    assert all(lower.y1 <= upper.y0 + 0.5 for lower, upper in zip(word_boxes, word_boxes[1:]))
    plt.close(fig)


def test_long_labels_wrap_and_several_datasets_are_named():
    judged = page(exploratory=1)
    judged.loc[0, "comparison"] = "RKD-DA d=16 no L2 > Triplet d=16 L2 " * 5
    judged.loc[1, "dataset"] = "glyphs (Ethiopic)"
    fig = forest_plot(judged)
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert labels[0].count("\n") == 1 and labels[0].endswith("…")
    assert labels[1].endswith("· glyphs (Ethiopic)")
    plt.close(fig)


def test_alt_text_and_title(judged):
    alt = forest_alt_text(judged)
    assert alt.startswith(f"Forest plot of {len(judged)} paired comparisons")
    primary = judged.loc[judged["role"] == PRIMARY, "verdict"].tolist()
    assert f"primary (Holm-adjusted): {count_sentence(primary)}; exploratory" in alt
    assert f"hollow diamond for {len(judged)} of them" in alt
    assert forest_title(judged).startswith(f"{len(judged)} comparisons (5 primary, {len(judged) - 5} exploratory)")
    fig = forest_plot(judged, title="")
    assert fig.axes[0].get_title(loc="left") == ""
    plt.close(fig)


def test_no_interval_no_paper_and_nothing_at_all():
    claim = Claim("x", (Comparison({"method": "A"}, {"method": "B"}),))
    one_seed = judge([claim], pd.DataFrame([{"dataset": "D", "method": m, "seed": 0, "m": v}
                                            for m, v in (("A", 2.0), ("B", 1.0))]), "m")
    fig = forest_plot(one_seed)
    words = [t.get_text() for t in fig.axes[0].texts]
    assert "not distinguishable at this scale (one seed: no interval)" in words
    assert not row_lines(fig) and not [line for line in fig.axes[0].get_lines() if line.get_marker() == "D"]
    plt.close(fig)
    empty = forest_plot(one_seed.iloc[0:0])
    assert empty.axes[0].texts[0].get_text() == "No comparison could be judged on these runs"
    assert forest_alt_text(one_seed.iloc[0:0]) == "No comparison could be judged on these runs."
    plt.close(empty)

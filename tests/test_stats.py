"""Claims judged with statistics: intervals against direct computations, every verdict of
every kind coming out each way, Holm and Benjamini-Hochberg within a page, TOST against
two one-sided t-tests by hand, the power columns, convergence, few-shot episodes
clustered within seeds, the paper's own intervals, and the summaries' words."""
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from rkd.paper import paper_table
from rkd.runs.convergence import converged, final_rise
from rkd.report.inference import TOST, benjamini_hochberg, holm, minimum_detectable_difference, seeds_needed
from rkd.report.stats import (EQUIVALENT, EXPLORATORY, HOLDS, INFERIOR, NON_INFERIOR, NOT_CONVERGED, NOT_EQUIVALENT,
                              PAPER_UNCLEAR, PRIMARY, REVERSED, UNCLEAR, UNDECIDED, Claim, Comparison,
                              clustered_interval, judge, t_interval)
from rkd.report.verdicts import claim_word, count_sentence, summarize_verdicts

A, B = {"method": "A"}, {"method": "B"}


def test_t_interval_is_the_textbook_one():
    values = [1.0, 2.5, 0.5, 3.0]
    n, mean, sd = len(values), np.mean(values), np.std(values, ddof=1)
    half = stats.t.ppf(0.975, n - 1) * sd / math.sqrt(n)
    interval = t_interval(values)
    assert interval.mean == pytest.approx(mean) and interval.low == pytest.approx(mean - half)
    assert interval.high == pytest.approx(mean + half) and interval.n == 4
    single = t_interval([5.0])  # one seed is an anecdote: no interval
    assert math.isinf(single.low) and single.verdict == UNCLEAR
    with pytest.raises(ValueError):
        t_interval([])


def rows(first, second, *, dataset="D", names=("A", "B")):
    """Per-seed results of two methods (seed i: ``first[i]`` and ``second[i]``)."""
    frame = [{"dataset": dataset, "method": name, "seed": s, "m": float(v)}
             for name, values in zip(names, (first, second)) for s, v in enumerate(values)]
    return pd.DataFrame(frame)


def judged_with(differences, comparison, **options):
    """One comparison judged on per-seed differences ``differences`` (B varies by seed)."""
    second = [50.0 + 7 * s for s in range(len(differences))]
    first = [b + d for b, d in zip(second, differences)]
    return judge([Claim("claim", (comparison,))], rows(first, second), "m", **options).iloc[0]


TIGHT = [1.0, 1.1, 0.9, 1.05, 0.95]
WIDE = [1.0, -1.0, 0.5, -0.5, 0.2]
NEAR_ZERO = [0.1, -0.1, 0.05, 0.0, -0.05]


@pytest.mark.parametrize("comparison, differences, verdict", [
    (Comparison(A, B), TIGHT, HOLDS),
    (Comparison(A, B), [-d for d in TIGHT], REVERSED),
    (Comparison(A, B), WIDE, UNCLEAR),
    (Comparison.falls_below(A, B), [-15 - d for d in TIGHT], HOLDS),
    (Comparison.falls_below(A, B), TIGHT, REVERSED),
    (Comparison.falls_below(A, B), WIDE, UNCLEAR),
    (Comparison.equivalent(A, B, 1.0), NEAR_ZERO, EQUIVALENT),
    (Comparison.equivalent(A, B, 1.0), [2 + d for d in TIGHT], NOT_EQUIVALENT),
    (Comparison.equivalent(A, B, 1.0), [-2 - d for d in TIGHT], NOT_EQUIVALENT),
    (Comparison.equivalent(A, B, 1.0), [3 * d for d in WIDE], UNDECIDED),
    (Comparison.not_worse(A, B, 1.0), NEAR_ZERO, NON_INFERIOR),
    (Comparison.not_worse(A, B, 1.0), [-2 - d for d in TIGHT], INFERIOR),
    (Comparison.not_worse(A, B, 1.0), [3 * d for d in WIDE], UNDECIDED),
])
def test_every_kind_gives_every_verdict(comparison, differences, verdict):
    row = judged_with(differences, comparison)
    assert row["verdict"] == verdict
    assert row["ours: mean difference"] == pytest.approx(np.mean(differences))
    assert row["kind"] == comparison.kind and row["role"] == EXPLORATORY


def test_labels_say_the_kind():
    assert Comparison(A, B).label == "A > B" and Comparison.falls_below(A, B).label == "A < B"
    assert Comparison.equivalent(A, B, 1.5).label == "A ≈ B (±1.5)"
    assert Comparison.not_worse(A, B, 1).label == "A ≥ B − 1"


def test_bad_declarations_are_explained():
    with pytest.raises(ValueError, match="needs a margin"):
        Comparison(A, B, "equivalence")
    with pytest.raises(ValueError, match="a margin applies"):
        Comparison(A, B, margin=1.0)
    with pytest.raises(ValueError, match="unknown comparison kind"):
        Comparison(A, B, "dominates")
    with pytest.raises(ValueError, match="unknown role"):
        Claim("x", (), role="headline")
    six = Claim("six", tuple(Comparison({"method": f"A{i}"}, B) for i in range(6)), role=PRIMARY)
    with pytest.raises(ValueError, match="at most 5"):
        judge([six], rows([1], [0]), "m")


def test_judge_pairs_by_seed():
    # B varies a lot between seeds, but A is always exactly 1 above it: paired, that holds
    claim = Claim("A beats B", (Comparison(A, B),))
    judged = judge([claim], rows([11.0, 31.0, 21.0], [10.0, 30.0, 20.0]), "m")
    assert judged["verdict"].tolist() == [HOLDS]
    assert judged["ours: mean difference"].iloc[0] == pytest.approx(1.0)
    # the same numbers with the seeds shuffled are no longer clearly ordered
    judged = judge([claim], rows([11.0, 31.0, 21.0], [30.0, 20.0, 10.0]), "m")
    assert judged["verdict"].tolist() == [UNCLEAR]


def test_an_ambiguous_selector_is_an_error():
    frame = rows([1, 2], [0, 1])
    frame = pd.concat([frame, frame.assign(dataset="D")])
    with pytest.raises(ValueError, match="several models per seed"):
        judge([Claim("x", (Comparison(A, B),))], frame, "m")


def page(spreads, shifts, role, n=5, seed=0):
    """One method per comparison, each compared with a baseline B: claims and per-seed rows."""
    rng = np.random.default_rng(seed)
    base = 50 + 5 * rng.standard_normal(n)
    frame = [{"dataset": "D", "method": "B", "seed": s, "m": base[s]} for s in range(n)]
    comparisons = []
    for i, (spread, shift) in enumerate(zip(spreads, shifts)):
        values = base + shift + spread * rng.standard_normal(n)
        frame += [{"dataset": "D", "method": f"A{i}", "seed": s, "m": values[s]} for s in range(n)]
        comparisons.append(Comparison({"method": f"A{i}"}, B))
    return [Claim(role, tuple(comparisons), role=role)], pd.DataFrame(frame)


@pytest.mark.parametrize("seed", range(6))
def test_primary_comparisons_are_holm_adjusted_and_their_intervals_agree(seed):
    claims, frame = page([1.0] * 5, [0.2, 0.8, 1.2, 1.6, 2.5], PRIMARY, seed=seed)
    judged = judge(claims, frame, "m")
    assert (judged["role"] == PRIMARY).all() and (judged["adjustment"] == "Holm").all()
    assert judged["adjusted p"].to_numpy() == pytest.approx(holm(judged["p"]))
    for _, row in judged.iterrows():
        d = frame[frame["method"] == row["comparison"].split(" > ")[0]]["m"].to_numpy() - \
            frame[frame["method"] == "B"]["m"].to_numpy()
        assert row["p"] == pytest.approx(stats.ttest_1samp(d, 0).pvalue)
        interval = t_interval(d, row["confidence"])  # the interval is the t-interval at its stated level ...
        assert (row["95% CI low"], row["95% CI high"]) == pytest.approx((interval.low, interval.high))
        assert 0.95 - 1e-12 <= row["confidence"] <= 1 - 0.05 / 5 + 1e-12  # ... never wider than Bonferroni's
        # ... and it excludes 0 exactly when Holm rejects
        assert (row["verdict"] != UNCLEAR) == (row["adjusted p"] < 0.05)


def test_holm_can_take_away_a_verdict_that_one_comparison_alone_would_get():
    differences = [1.0, 2.6, 0.2, 1.4, 0.9]  # p = 0.037 on its own
    assert 0.01 < stats.ttest_1samp(differences, 0).pvalue < 0.05
    alone = judged_with(differences, Comparison(A, B))
    assert alone["verdict"] == HOLDS
    base = [50.0 + 7 * s for s in range(5)]
    frame = [{"dataset": "D", "method": "A0", "seed": s, "m": base[s] + d} for s, d in enumerate(differences)]
    frame += [{"dataset": "D", "method": "B", "seed": s, "m": base[s]} for s in range(5)]
    for i in range(1, 5):  # four more primary comparisons with nothing to show
        frame += [{"dataset": "D", "method": f"A{i}", "seed": s, "m": base[s] + d} for s, d in enumerate(WIDE)]
    claim = Claim("all", tuple(Comparison({"method": f"A{i}"}, B) for i in range(5)), role=PRIMARY)
    judged = judge([claim], pd.DataFrame(frame), "m").set_index("comparison")
    assert judged.loc["A0 > B", "verdict"] == UNCLEAR and judged.loc["A0 > B", "adjusted p"] > 0.05


def test_exploratory_comparisons_are_bh_adjusted_apart_from_the_primary_family():
    primary, frame = page([1.0] * 3, [0.5, 1.5, 3.0], PRIMARY, seed=3)
    exploratory, more = page([1.0] * 8, [0.1, 0.3, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0], EXPLORATORY, seed=4)
    more = more[more["method"] != "B"].assign(method=lambda f: "X" + f["method"])
    exploratory = [Claim(EXPLORATORY, tuple(Comparison({"method": "X" + c.first["method"]}, B)
                                            for c in exploratory[0].comparisons))]
    together = judge(primary + exploratory, pd.concat([frame, more]), "m")
    assert together["role"].tolist() == [PRIMARY] * 3 + [EXPLORATORY] * 8  # primary first
    alone = judge(primary, frame, "m")
    assert together["adjusted p"][:3].to_numpy() == pytest.approx(alone["adjusted p"].to_numpy())
    explored = together[together["role"] == EXPLORATORY]
    assert explored["adjusted p"].to_numpy() == pytest.approx(benjamini_hochberg(explored["p"]))
    assert ((explored["verdict"] != UNCLEAR) == (explored["adjusted p"] < 0.05)).all()
    assert (explored["adjustment"] == "Benjamini-Hochberg").all()


@pytest.mark.parametrize("differences", [NEAR_ZERO, [0.6, 0.2, 0.9, 0.4, 0.7], [3 * d for d in WIDE],
                                         [2 + d for d in TIGHT]])
def test_tost_is_two_one_sided_t_tests_by_hand(differences):
    margin = 1.0
    row = judged_with(differences, Comparison.equivalent(A, B, margin))
    lower = stats.ttest_1samp(np.add(differences, margin), 0, alternative="greater").pvalue
    upper = stats.ttest_1samp(np.subtract(differences, margin), 0, alternative="less").pvalue
    side = np.sign(np.mean(differences))  # the margin on the side the mean lies
    beyond = stats.ttest_1samp(np.subtract(differences, side * margin), 0,
                               alternative="greater" if side > 0 else "less").pvalue
    # each direction of the decision at half the level: the 95% interval against the margins
    assert row["p"] == pytest.approx(min(1, 2 * min(max(lower, upper), beyond)))
    assert row["confidence"] == pytest.approx(0.95)  # one comparison in its family
    assert (row["verdict"] == EQUIVALENT) == (max(lower, upper) < 0.025)
    assert (row["verdict"] == NOT_EQUIVALENT) == (beyond < 0.025)


def test_non_inferiority_is_the_two_sided_test_at_the_margin():
    differences = [-0.6, -0.2, -0.9, -0.4, -0.7]
    row = judged_with(differences, Comparison.not_worse(A, B, 1.0))
    assert row["p"] == pytest.approx(stats.ttest_1samp(differences, -1.0).pvalue)
    assert row["verdict"] == (NON_INFERIOR if row["p"] < 0.05 else UNDECIDED)


def test_the_power_columns():
    claims, frame = page([1.0, 2.0, 0.5], [1.0, 1.0, 1.0], PRIMARY, seed=1)
    judged = judge(claims, frame, "m")
    for _, row in judged.iterrows():
        assert row["MDD alpha"] == pytest.approx(0.05 / 3)  # the Bonferroni planning level
        assert row["MDD"] == pytest.approx(minimum_detectable_difference(row["paired sd"], 5, 0.05 / 3))
        assert row["seeds for MDD ≤ target"] == seeds_needed(row["paired sd"], 0.05 / 3, target=2.0)
    smaller = judge(claims, frame, "m", target_mdd=0.5)
    assert (smaller["seeds for MDD ≤ target"] > judged["seeds for MDD ≤ target"]).all()
    # a margin kind: each one-sided test of TOST at half the planning level
    row = judged_with([0.6, -0.4, 0.9, -0.2, 0.3], Comparison.equivalent(A, B, 1.0))
    assert row["MDD"] == pytest.approx(minimum_detectable_difference(row["paired sd"], 5, row["MDD alpha"] / 2,
                                                                     test=TOST))
    one_seed = judge([Claim("x", (Comparison(A, B),))], rows([2.0], [1.0]), "m").iloc[0]
    assert math.isnan(one_seed["MDD"]) and pd.isna(one_seed["seeds for MDD ≤ target"])


def test_convergence_criterion_is_the_rise_over_the_last_fifth_averaged_over_seeds():
    points = [(100 * i, v) for i, v in enumerate([10.0, 40.0, 55.0, 60.0, 62.0, 63.0, 63.5, 64.0, 64.2, 64.1, 64.6], 0)]
    assert final_rise(points, 1000) == pytest.approx(64.6 - 64.2)  # from step 800 to the last
    assert final_rise(list(reversed(points)), 1000) == pytest.approx(0.4)  # by step, not order
    assert final_rise([(900, 1.0), (1000, 3.0)], 1000) == pytest.approx(2.0)
    assert final_rise([(500, 1.0), (1000, 3.0)], 1000) is None  # one evaluation in the last fifth: not judged
    assert final_rise([(800, 1.0), (1000, math.nan)], 1000) is None
    assert converged([0.4, 0.7, 0.2]) is True  # mean 0.43 <= 0.5: the seeds' jitter averages out
    assert converged([0.9, 1.2, 0.3]) is False  # still climbing
    assert converged([-2.0, -1.0]) is True  # falling at the end: more steps would not raise it
    assert converged([0.1, None]) is None and converged([]) is None
    with pytest.raises(ValueError, match="fraction"):
        final_rise(points, 1000, fraction=1.5)


def test_an_unconverged_run_in_any_seed_gets_no_verdict_and_leaves_the_family():
    frame = rows([a + 1 for a in range(5)], list(range(5)))
    frame["converged"] = True
    frame.loc[(frame["method"] == "A") & (frame["seed"] == 3), "converged"] = False
    claims = [Claim("x", (Comparison(A, B), Comparison(B, A), Comparison({"method": "C"}, B)))]
    frame = pd.concat([frame, pd.DataFrame([{"dataset": "D", "method": "C", "seed": s, "m": s + 2.0,
                                             "converged": None} for s in range(5)])])
    judged = judge(claims, frame, "m").set_index("comparison")
    assert judged.loc["A > B", "verdict"] == NOT_CONVERGED and math.isnan(judged.loc["A > B", "adjusted p"])
    assert judged.loc["B > A", "verdict"] == NOT_CONVERGED  # either side
    assert judged.loc["C > B", "verdict"] == HOLDS  # None: a run that does not train is not refused
    assert judged.loc["C > B", "adjusted p"] == judged.loc["C > B", "p"]  # a family of one


def fewshot_rows_and_episodes(seed_effects, noise, episodes=200):
    rng = np.random.default_rng(0)
    rows_, found = [], []
    for seed, effect in enumerate(seed_effects):
        teacher = 50 + rng.normal(0, 10, episodes)
        student = teacher + effect + rng.normal(0, noise, episodes)
        for run, values in (("student", student), ("teacher", teacher)):
            rows_.append({"dataset": "D", "method": run, "run": run, "way": 5, "shot": 1, "seed": seed,
                          "m": float(values.mean())})
            found += [{"dataset": "D", "run": run, "seed": seed, "way": 5, "shot": 1, "episode": i,
                       "accuracy": float(v)} for i, v in enumerate(values)]
    return pd.DataFrame(rows_), pd.DataFrame(found)


def test_few_shot_episodes_are_clustered_within_seeds():
    # the seeds disagree (+3, -1, +4) while episodes within a seed agree closely: pooling
    # 600 episodes as independent would call it, three seeds cannot
    frame, episodes = fewshot_rows_and_episodes([3.0, -1.0, 4.0], noise=1.0)
    paired = episodes.pivot_table(index=["seed", "episode"], columns="run", values="accuracy").reset_index()
    paired["d"] = paired["student"] - paired["teacher"]
    pooled = t_interval(paired["d"])
    assert pooled.low > 0
    clustered = clustered_interval(paired["d"], paired["seed"])
    assert clustered == t_interval(paired.groupby("seed")["d"].mean()) and clustered.n == 3
    claim = Claim("student beats teacher", (Comparison({"method": "student", "way": 5, "shot": 1},
                                                        {"method": "teacher", "way": 5, "shot": 1}),))
    row = judge([claim], frame, "m", episodes=episodes).iloc[0]
    assert row["verdict"] == UNCLEAR and row["seeds"] == 3 and row["episodes per seed"] == 200
    assert (row["95% CI low"], row["95% CI high"]) == pytest.approx((clustered.low, clustered.high))
    # seeds that agree: the clustered interval decides
    frame, episodes = fewshot_rows_and_episodes([3.0, 2.8, 3.1], noise=1.0)
    assert judge([claim], frame, "m", episodes=episodes).iloc[0]["verdict"] == HOLDS


def table6_paper(with_intervals=True):
    """Table 6 as printed, in long form with the ci95 half-widths beside each number."""
    wide = paper_table("table6")
    out = []
    for _, r in wide.iterrows():
        for shot in (1, 5):
            interval = {"ci95": r[f"ci95 {shot}-shot"]} if with_intervals else {}
            out.append({"dataset": "miniImageNet", "method": r["method"], "way": 5, "shot": shot,
                        "value": r[f"5-way {shot}-shot"], **interval})
    return pd.DataFrame(out)


def test_the_papers_own_intervals_decide_the_papers_side():
    methods = ("Attention", "RKD-DA", "Teacher")
    frame = pd.DataFrame([{"dataset": "glyphs", "method": m, "way": 5, "shot": 1, "seed": s, "m": 40.0 + s + i}
                          for i, m in enumerate(methods) for s in range(3)])
    key = {"way": 5, "shot": 1}
    attention, rkd_da, teacher = ({"method": m, **key} for m in methods)
    claims = [Claim("Attention falls far below its teacher", (Comparison.falls_below(attention, teacher),)),
              Claim("RKD-DA beats its teacher", (Comparison(rkd_da, teacher),)),
              Claim("Attention beats its teacher", (Comparison(attention, teacher),))]
    judged = judge(claims, frame, "m", paper=table6_paper(), stands_in_for={"glyphs": "miniImageNet"})
    # 34.67 +- 0.65 against 49.10 +- 0.82; 50.02 +- 0.83 against 49.10 +- 0.82 overlaps
    assert judged["paper"].tolist() == [HOLDS, PAPER_UNCLEAR, "does not hold"]
    half = math.hypot(0.83, 0.82)
    assert judged.loc[1, "paper: 95% CI low"] == pytest.approx(50.02 - 49.1 - half)
    assert judged.loc[1, "paper: difference"] == pytest.approx(0.92)
    printed_only = judge(claims, frame, "m", paper=table6_paper(False), stands_in_for={"glyphs": "miniImageNet"})
    assert printed_only["paper"].tolist() == [HOLDS, HOLDS, "does not hold"]


def test_the_papers_side_of_an_equivalence():
    paper = pd.DataFrame({"dataset": ["P"] * 3, "generation": [1, 2, 3], "value": [65.68, 65.11, 64.26]})
    frame = pd.DataFrame([{"dataset": "D", "generation": g, "seed": s, "m": 60.0 + s} for g in (1, 2, 3)
                          for s in range(3)])
    claim = Claim("later generations are equivalent to the first within 1 point", tuple(
        Comparison.equivalent({"generation": g}, {"generation": 1}, 1.0) for g in (2, 3)))
    judged = judge([claim], frame, "m", paper=paper, stands_in_for={"D": "P"})
    assert judged["paper"].tolist() == [HOLDS, "does not hold"]  # -0.57 is within 1 point, -1.42 is not
    assert judged["verdict"].tolist() == [EQUIVALENT, EQUIVALENT]  # no spread at all: a point interval


def test_claim_words_and_sentences():
    assert claim_word([HOLDS, EQUIVALENT]) == HOLDS
    assert claim_word([REVERSED, NOT_EQUIVALENT]) == REVERSED
    assert claim_word([HOLDS, REVERSED, UNCLEAR]) == "mixed"
    assert claim_word([HOLDS, UNCLEAR, NOT_CONVERGED]) == "partly"
    assert claim_word([REVERSED] + [UNCLEAR] * 7) == "partly reversed"  # never "partly"
    assert claim_word([UNCLEAR, UNDECIDED]) == UNCLEAR
    assert claim_word([NOT_CONVERGED, NOT_CONVERGED]) == NOT_CONVERGED
    assert count_sentence([HOLDS]) == "1 of 1 comparisons holds"
    assert count_sentence([HOLDS, HOLDS, HOLDS, REVERSED, UNCLEAR]) == (
        "3 of 5 comparisons hold; 1 reversed, 1 not distinguishable at this scale")
    assert count_sentence([UNDECIDED, NOT_CONVERGED]) == (
        "0 of 2 comparisons hold; 1 undecided at this scale, 1 no verdict: not converged")


def test_summaries_count_ours_beside_the_papers():
    paper = pd.DataFrame({"dataset": ["P", "P"], "method": ["A", "B"], "value": [1.0, 2.0]})
    claim = Claim("A beats B", (Comparison(A, B),), role=PRIMARY)
    judged = judge([claim], rows([1, 2, 3], [0, 1, 2]), "m", paper=paper, stands_in_for={"D": "P"})
    assert judged["paper"].tolist() == ["does not hold"] and judged["verdict"].tolist() == [HOLDS]
    summary = summarize_verdicts(judged).iloc[0]
    assert summary[HOLDS] == 1 and summary["paper"] == "0/1" and summary["role"] == PRIMARY
    assert summary["word"] == HOLDS and summary["summary"] == "1 of 1 comparisons holds"
    assert summarize_verdicts(judged.iloc[0:0]).empty


def test_a_comparison_can_be_judged_on_one_of_the_papers_datasets_only():
    frame = pd.concat([rows([2.0, 3.0, 4.0], [1.0, 1.5, 2.0]).assign(dataset=name) for name in ("ours A", "ours B")])
    paper = pd.DataFrame([{"dataset": d, "method": m, "value": v} for d in ("CUB", "Cars")
                          for m, v in (("A", 60.0), ("B", 50.0))])
    claim = Claim("A beats B on Cars", (Comparison(A, B).on("Cars"),))
    judged = judge([claim], frame, "m", paper=paper, stands_in_for={"ours A": "CUB", "ours B": "Cars"})
    assert judged["dataset"].tolist() == ["ours B"] and judged["paper dataset"].tolist() == ["Cars"]
    summary = summarize_verdicts(judged, [claim], paper, {"ours A": "CUB", "ours B": "Cars"})
    assert summary["paper"].tolist() == ["1/1"]


def test_a_trained_run_that_cannot_show_it_converged_supports_no_verdict():
    from rkd.report.claims import convergence_sentence, mark_converged

    rows = pd.DataFrame([
        # a configuration over two seeds that rose by 0.2 and 0.4 late in training: converged
        {"run": "A", "seed": 0, "final_rise": 0.2, "trains": True},
        {"run": "A", "seed": 1, "final_rise": 0.4, "trains": True},
        # still climbing
        {"run": "B", "seed": 0, "final_rise": 2.0, "trains": True},
        {"run": "B", "seed": 1, "final_rise": 1.0, "trains": True},
        # trained, but too few evaluations late in training to be judged
        {"run": "C", "seed": 0, "final_rise": None, "trains": True},
        {"run": "C", "seed": 1, "final_rise": None, "trains": True},
        # only evaluated (an initial model): convergence does not apply
        {"run": "D", "seed": 0, "final_rise": None, "trains": False},
    ])
    marked = mark_converged(rows, ["run"])
    assert marked.groupby("run")["converged"].first().to_dict() == {"A": True, "B": False, "C": False, "D": None}
    sentence = convergence_sentence(marked)
    assert sentence.startswith("1 of 3 trained configurations converged") and "1 could not show it" in sentence
    # rows without the column (a run that does not say whether it trains) keep the unjudged as unknown
    assert mark_converged(rows.drop(columns="trains"), ["run"]).groupby("run")["converged"].first()["C"] is None
    # no run judged at all (the result rows then carry no final_rise): every trained one unconverged
    none_judged = mark_converged(rows[rows["run"].isin(["C", "D"])].drop(columns="final_rise"), ["run"])
    assert none_judged.groupby("run")["converged"].first().to_dict() == {"C": False, "D": None}

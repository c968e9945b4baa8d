"""Claims judged with statistics: the t-interval against a direct computation, verdicts,
pairing by seed (and by episode), and the paper's side of a claim."""
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from rkd.report.stats import Claim, Comparison, judge, summarize_verdicts, t_interval


def test_t_interval_is_the_textbook_one():
    values = [1.0, 2.5, 0.5, 3.0]
    n, mean, sd = len(values), np.mean(values), np.std(values, ddof=1)
    half = stats.t.ppf(0.975, n - 1) * sd / math.sqrt(n)
    interval = t_interval(values)
    assert interval.mean == pytest.approx(mean) and interval.low == pytest.approx(mean - half)
    assert interval.high == pytest.approx(mean + half) and interval.n == 4


def test_verdicts():
    assert t_interval([1.0, 1.1, 0.9]).verdict == "holds"
    assert t_interval([-1.0, -1.1, -0.9]).verdict == "reversed"
    assert t_interval([1.0, -1.0, 0.5]).verdict == "not distinguishable at this scale"
    single = t_interval([5.0])  # one seed is an anecdote: no interval, no verdict
    assert math.isinf(single.low) and single.verdict == "not distinguishable at this scale"
    with pytest.raises(ValueError):
        t_interval([])


def rows(better, worse):
    frame = [{"dataset": "D", "method": "A", "seed": s, "m": v} for s, v in enumerate(better)]
    frame += [{"dataset": "D", "method": "B", "seed": s, "m": v} for s, v in enumerate(worse)]
    return pd.DataFrame(frame)


CLAIM = Claim("A beats B", (Comparison({"method": "A"}, {"method": "B"}),))


def test_judge_pairs_by_seed():
    # B varies a lot between seeds, but A is always exactly 1 above it: paired, that holds
    judged = judge([CLAIM], rows([11.0, 31.0, 21.0], [10.0, 30.0, 20.0]), "m")
    assert judged["verdict"].tolist() == ["holds"]
    assert judged["ours: mean difference"].iloc[0] == pytest.approx(1.0)
    # the same numbers with the seeds shuffled are no longer clearly ordered
    judged = judge([CLAIM], rows([11.0, 31.0, 21.0], [30.0, 20.0, 10.0]), "m")
    assert judged["verdict"].tolist() == ["not distinguishable at this scale"]


def test_judge_reads_the_paper_side_and_summarizes():
    paper = pd.DataFrame({"dataset": ["P", "P"], "method": ["A", "B"], "value": [1.0, 2.0]})
    judged = judge([CLAIM], rows([1, 2, 3], [0, 1, 2]), "m", paper=paper, stands_in_for={"D": "P"})
    assert judged["paper"].tolist() == ["does not hold"] and judged["verdict"].tolist() == ["holds"]
    summary = summarize_verdicts(judged)
    assert summary.loc[0, "holds"] == 1 and summary.loc[0, "paper"] == "0/1"


def test_an_ambiguous_selector_is_an_error():
    frame = rows([1, 2], [0, 1])
    frame = pd.concat([frame, frame.assign(dataset="D")])
    with pytest.raises(ValueError, match="several models per seed"):
        judge([CLAIM], frame, "m")


def test_few_shot_verdicts_also_need_the_episode_paired_interval():
    frame = pd.DataFrame([{"dataset": "D", "method": name, "run": name, "way": 5, "shot": 1, "seed": s, "m": v}
                          for name, values in (("A", [2.0, 2.1, 2.2]), ("B", [1.0, 1.1, 1.2]))
                          for s, v in enumerate(values)])
    rng = np.random.default_rng(0)
    episodes = []
    for seed in range(3):
        noise = rng.normal(0, 30, size=50)  # huge spread across episodes: no episode-level verdict
        for i, value in enumerate(noise):
            episodes += [{"dataset": "D", "run": "A", "seed": seed, "way": 5, "shot": 1, "episode": i,
                          "accuracy": 50 + value},
                         {"dataset": "D", "run": "B", "seed": seed, "way": 5, "shot": 1, "episode": i,
                          "accuracy": 50 - value}]
    judged = judge([CLAIM], frame, "m", episodes=pd.DataFrame(episodes))
    assert judged["95% CI low"].iloc[0] > 0  # over seeds it would hold ...
    assert judged["verdict"].iloc[0] == "not distinguishable at this scale"  # ... but not over episodes

"""A page's verdicts summed up: one word per claim, the verdicts counted in a sentence, and
the per-claim table the page's summary and the book's summary page read."""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import pandas as pd

from .stats import EXPLORATORY, HOLDS, NOT_CONVERGED, OUTCOME, REVERSED, UNCLEAR, VERDICTS, Claim, paper_side

__all__ = ["claim_word", "count_sentence", "summarize_verdicts"]


def claim_word(verdicts: Sequence[str]) -> str:
    """One word for a claim from its comparisons' verdicts: ``holds`` (all support it),
    ``reversed`` (all contradict it), ``mixed`` (some each way), ``partly`` (some support,
    none contradict, the rest open), ``partly reversed`` (some contradict, none support),
    ``not distinguishable at this scale``, or ``no verdict: not converged``."""
    outcomes = [OUTCOME[v] for v in verdicts]
    supports, contradicts = outcomes.count("supports"), outcomes.count("contradicts")
    if not outcomes or outcomes.count("no verdict") == len(outcomes):
        return NOT_CONVERGED
    if supports == len(outcomes):
        return HOLDS
    if contradicts == len(outcomes):
        return REVERSED
    if supports and contradicts:
        return "mixed"
    if supports:
        return "partly"
    if contradicts:
        return "partly reversed"
    return UNCLEAR


def count_sentence(verdicts: Sequence[str]) -> str:
    """The verdicts counted in plain English: ``1 of 1 comparisons holds``, ``3 of 5
    comparisons hold; 1 reversed, 1 not distinguishable at this scale``."""
    total = len(verdicts)
    supports = sum(OUTCOME[v] == "supports" for v in verdicts)
    sentence = f"{supports} of {total} comparisons {'holds' if supports == 1 else 'hold'}"
    others = [f"{sum(v == w for v in verdicts)} {w}" for w in VERDICTS
              if OUTCOME[w] != "supports" and w in verdicts]
    return sentence + ("; " + ", ".join(others) if others else "")


def summarize_verdicts(judged: pd.DataFrame, claims: Sequence[Claim] = (), paper: pd.DataFrame | None = None,
                       stands_in_for: Mapping[str, str] | None = None) -> pd.DataFrame:
    """Per (claim, dataset of ours): its role, the count of each verdict on our numbers,
    the claim's ``word`` (:func:`claim_word`) and ``summary`` sentence
    (:func:`count_sentence`), and how many of *all* the claim's comparisons hold on the
    paper's numbers for the dataset ours stands in for (``paper``, e.g. ``"3/4"``: the
    paper's grid may be larger than the one a scale runs)."""
    columns = ["claim", "dataset", "role", "paper", *VERDICTS, "word", "summary"]
    if judged.empty:
        return pd.DataFrame(columns=columns)
    by_text = {claim.text: claim for claim in claims}
    stands_in_for = dict(stands_in_for or {})
    rows = []
    for (text, dataset), group in judged.groupby(["claim", "dataset"], sort=False):
        claim = by_text.get(text)
        if claim is not None and paper is not None:
            paper_dataset = stands_in_for.get(dataset, dataset)
            sides = [paper_side(paper, c, paper_dataset)["paper"] for c in claim.comparisons
                     if c.only_on in (None, paper_dataset)]
        else:
            sides = list(group["paper"])
        checked = [side for side in sides if side != "n/a"]
        verdicts = list(group["verdict"])
        rows.append({"claim": text, "dataset": dataset,
                     "role": group["role"].iloc[0] if "role" in group.columns else EXPLORATORY,
                     "paper": f"{checked.count(HOLDS)}/{len(checked)}" if checked else "n/a",
                     **{v: verdicts.count(v) for v in VERDICTS},
                     "word": claim_word(verdicts), "summary": count_sentence(verdicts)})
    return pd.DataFrame(rows, columns=columns)


import sys
from pathlib import Path

import pandas as pd
import pytest

from rkd.experiments import summarize_claims, table1

sys.path.insert(0, str(Path(__file__).parent))
from fixtures_data import make_cars196_tree, make_cub200_tree  # noqa: E402


def _row(method, dim, l2, r1, dataset="toy"):
    return {"dataset": dataset, "model": "m", "embedding_dim": dim, "method": method,
            "l2_normalize": l2, "recall_at_1": r1, "scale": "ci", "seed": 0}


def _results(rkd_da_no_l2_128):
    rows = [_row("Triplet (teacher)", 512, "yes", 70.0)]
    for dim, base in ((16, 40.0), (128, 50.0)):
        rows.append(_row("Triplet", dim, "yes", base))
        for i, m in enumerate(("RKD-D", "RKD-A", "RKD-DA")):
            rows.append(_row(m, dim, "yes", base + 5 + i))
            rows.append(_row(m, dim, "no", base + 8 + i))
    df = pd.DataFrame(rows)
    df.loc[(df.method == "RKD-DA") & (df.embedding_dim == 128) & (df.l2_normalize == "no"), "recall_at_1"] = rkd_da_no_l2_128
    return df


def test_claims_count_what_holds_and_what_fails():
    ours = table1.claims(_results(rkd_da_no_l2_128=75.0))["ours", "toy"]
    assert ours["every RKD student (D, A, DA; L2 or not) beats the Triplet student of its size"] == "2/2"
    assert ours["an RKD student without L2 beats the same one with L2"] == "6/6"
    assert ours["an RKD student beats the teacher"] == "1/2"
    # the comparison with FitNet etc. cannot be made without those rows
    assert ours["RKD-DA beats FitNet, Attention and DarkRank at the same size (L2 on)"] == "n/a"

    failing = table1.claims(_results(rkd_da_no_l2_128=30.0))["ours", "toy"]
    assert failing["every RKD student (D, A, DA; L2 or not) beats the Triplet student of its size"] == "1/2"
    assert failing["an RKD student beats the teacher"] == "0/2"


def test_claims_on_the_paper_numbers_match_the_paper():
    paper = table1.claims(_results(75.0))["paper"]
    # the paper's headline: RKD students beat triplet at every size on both datasets
    assert (paper.loc["every RKD student (D, A, DA; L2 or not) beats the Triplet student of its size"] == "4/4").all()


def test_summary_says_which_claims_fail():
    text = summarize_claims(table1.claims(_results(rkd_da_no_l2_128=30.0)))
    assert "does not hold on toy (0/2)" in text
    assert "holds only partly on toy (1/2)" in text


def test_side_by_side_puts_paper_and_ours_on_the_same_rows():
    table = table1.side_by_side(_results(75.0))
    row = table.loc[(128, "RKD-DA", "no")]
    assert row[("paper (Recall@1)", "Cars196")] == 82.5
    assert row[("ours, scale=ci (Recall@1)", "toy")] == 75.0
    assert table.index[0] == (512, "Triplet (teacher)", "yes")


def test_unknown_inputs_are_refused():
    with pytest.raises(ValueError, match="unknown scale 'huge'"):
        table1.run(scale="huge")
    with pytest.raises(ValueError, match="unknown Table 1 method"):
        table1.run(methods=("RKD-X",))
    with pytest.raises(ValueError, match="not part of Table 1"):
        table1.run(datasets=("cub200",))


@pytest.mark.slow
def test_paper_preset_dry_run(tmp_path, capsys):
    make_cub200_tree(tmp_path, num_classes=4, images_per_class=5)
    make_cars196_tree(tmp_path / "cars196", num_classes=4, images_per_class=5)
    results = table1.run(scale="paper", data_root=str(tmp_path), dry_run=True, progress=False,
                         methods=tuple(table1.METHODS))
    printed = capsys.readouterr().out
    assert "resnet50" in printed and "8000 steps" in printed and "25 classes x 5 images" in printed
    assert set(results["scale"]) == {"paper (dry run)"}
    assert set(results["dataset"]) == {"CUB-200-2011", "Cars196"}
    expected_runs = 1 + sum(len(v) for v in table1.METHODS.values())
    assert len(results) == 2 * expected_runs
    assert results["recall_at_1"].between(0, 100).all()

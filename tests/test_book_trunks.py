"""The glyph-world page's trunk section, from pretraining records of the results store."""
from __future__ import annotations

import pytest

from rkd.book.trunks import TrunkError, trunks_markdown
from fixtures_trunks import trunk_record as _record
from fixtures_trunks import write_trunk_store


def test_the_gap_inside_the_range_and_convergence(tmp_path):
    text = trunks_markdown(write_trunk_store(tmp_path, _record("small_cnn_deep", [80, 90, 93.0, 93.2, 93.4]),
                                  _record("small_cnn", [70, 80, 84.0, 86.5, 88.0])))
    assert "**5.4 points**" in text and "inside the 3-9 points" in text
    deep, small = [line for line in text.splitlines() if "`small_cnn" in line]
    assert "ResNet50" in deep and "| yes" in deep and "+0.20" in deep
    assert "ResNet18" in small and "no, still rising" in small and "+1.50" in small


def test_a_trunk_flat_at_the_end_but_over_the_rule_keeps_its_verdict_and_is_explained(tmp_path):
    # evaluations every 800 steps, the learning rate dropped at 6,000: the last fifth opens at 6,400
    deep = [44.7, 78.8, 83.4, 83.7, 86.7, 88.0, 88.3, 93.6, 94.3, 94.2]
    small = [40.0, 60.0, 70.0, 75.0, 78.0, 80.0, 82.0, 84.0, 86.0, 88.0]
    text = trunks_markdown(write_trunk_store(tmp_path, _record("small_cnn_deep", deep), _record("small_cnn", small)))
    deep, small = [line for line in text.splitlines() if line.startswith("| `small_cnn")]
    assert "| +0.60 | -0.10 | no, still rising" in deep and "| +4.00 | +2.00 | no, still rising" in small
    assert "`small_cnn_deep` moved -0.10 points over its last" in text and "flat at the end" in text
    assert "`small_cnn` moved" not in text  # still climbing over its last interval too: nothing to explain


def test_a_gap_outside_the_range_is_said(tmp_path):
    text = trunks_markdown(write_trunk_store(tmp_path, _record("small_cnn_deep", [93.4, 93.4]),
                                             _record("small_cnn", [75.6, 75.6])))
    assert "**17.8 points**" in text and "**outside**" in text


def _write_empty(folder):
    from rkd.runs.results import ResultStore

    ResultStore(folder).write("table1", [])
    return folder


def test_no_trunk_in_the_store_is_an_error(tmp_path):
    with pytest.raises(TrunkError, match="holds no pretrained trunk"):
        trunks_markdown(_write_empty(tmp_path))

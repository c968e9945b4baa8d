"""The built book in a real browser (headless Chromium over the DevTools protocol).

Two kinds of test:

- ``test_checker_*`` build a tiny site with known defects (an external script, a
  broken link, a missing image, a console error, an external font) and check that
  :func:`rkd.book.browser.check_site` reports each of them, and nothing on a clean
  page: the checker can fail.
- ``test_book_page`` loads every page of a built book, over http://127.0.0.1 and from
  file://, and fails on anything the checker reports. It runs when ``RKD_BOOK_HTML``
  names the book's HTML folder (``make browser`` sets it to the book ``make test``
  builds from the committed notebooks) and saves screenshots of the Table 1 page in
  ``RKD_BOOK_SCREENSHOTS`` (default ``_build/screenshots``): its first screen,
  ``table1_metric_learning.png``, and the whole page, ``table1_metric_learning_full.png``.

Without Chromium every test here is skipped, saying how to install it.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from rkd.book.browser import BrowserUnavailable, check_site, find_chromium, site_pages

TABLE1_PAGE = "notebooks/table1_metric_learning.html"
BOOK_HTML = os.environ.get("RKD_BOOK_HTML")
SCREENSHOTS = Path(os.environ.get("RKD_BOOK_SCREENSHOTS", "_build/screenshots"))


def _chromium_or_skip() -> str:
    try:
        return find_chromium()
    except BrowserUnavailable as error:
        pytest.skip(f"browser test skipped: {error}")


# ----------------------------------------------------------------- the checker can fail

_BAD_PAGE = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>bad</title>
<link rel="icon" href="data:,">
<script src="https://cdn.example.invalid/library.js"></script>
<style>@import url("https://fonts.example.invalid/font.css");</style>
</head><body>
<h1 id="top">A page with defects</h1>
<p><a href="good.html">a working link</a>, <a href="good.html#section">a working anchor</a>,
<a href="missing.html">a missing page</a>, <a href="good.html#nowhere">a missing anchor</a>,
<a href="https://arxiv.org/abs/1904.05068">the paper</a> (an ordinary external link: allowed).</p>
<img src="logo.png" alt="present"> <img src="absent.png" alt="missing">
<script>console.error("something broke");</script>
</body></html>
"""
_GOOD_PAGE = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>good</title><link rel="icon" href="data:,"></head>
<body><h1 id="section">A clean page</h1><p><a href="bad.html#top">back</a></p><img src="logo.png" alt="logo">
</body></html>
"""
# a 1x1 PNG
_PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360f8cfc0f01f0005000201ab4c2d2d0000000049454e44ae426082"
)


@pytest.fixture(scope="module")
def defect_site(tmp_path_factory) -> Path:
    site = tmp_path_factory.mktemp("site")
    (site / "bad.html").write_text(_BAD_PAGE)
    (site / "good.html").write_text(_GOOD_PAGE)
    (site / "index.html").write_text(_GOOD_PAGE)
    (site / "logo.png").write_bytes(_PNG)
    return site


@pytest.fixture(scope="module")
def defect_reports(defect_site):
    executable = _chromium_or_skip()
    return {(r.page, r.mode): r for r in check_site(defect_site, pages=["bad.html", "good.html"],
                                                   executable=executable)}


@pytest.mark.parametrize("mode", ["http", "file"])
def test_checker_reports_every_defect(defect_reports, mode):
    problems = "\n".join(defect_reports["bad.html", mode].problems)
    assert "requests something outside the book: https://cdn.example.invalid/library.js" in problems
    assert "requests something outside the book: https://fonts.example.invalid/font.css" in problems
    assert "broken link:" in problems and "missing.html" in problems
    assert "no element with id 'nowhere'" in problems
    assert "missing image: absent.png" in problems
    assert "console error: something broke" in problems
    # what is fine is not reported
    assert "arxiv.org" not in problems
    assert "logo.png" not in problems
    assert "good.html#section" not in problems


@pytest.mark.parametrize("mode", ["http", "file"])
def test_checker_passes_a_clean_page(defect_reports, mode):
    report = defect_reports["good.html", mode]
    assert report.ok, str(report)


def test_checker_saves_a_screenshot(defect_site, tmp_path):
    executable = _chromium_or_skip()
    png = tmp_path / "good.png"
    check_site(defect_site, pages=["good.html"], modes=["file"], screenshots={"good.html": png},
               executable=executable)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# ----------------------------------------------------------------- the built book

def _book_pages() -> list[str]:
    if not BOOK_HTML:
        return []
    root = Path(BOOK_HTML)
    if not (root / "index.html").is_file():
        return ["<no book>"]
    return site_pages(root)


@pytest.fixture(scope="module")
def book_reports():
    root = Path(BOOK_HTML)
    if not (root / "index.html").is_file():
        pytest.fail(f"RKD_BOOK_HTML={BOOK_HTML} holds no index.html: build the book first (make committed-book)")
    executable = _chromium_or_skip()
    shots = [SCREENSHOTS / "table1_metric_learning.png", SCREENSHOTS / "table1_metric_learning_full.png"]
    reports = check_site(root, screenshots={TABLE1_PAGE: shots}, executable=executable)
    return {(r.page, r.mode): r for r in reports}


@pytest.mark.skipif(not BOOK_HTML, reason="set RKD_BOOK_HTML to a built book's HTML folder (make browser does)")
@pytest.mark.parametrize("page", _book_pages() or ["<unset>"])
def test_book_page(book_reports, page):
    problems = [str(book_reports[page, mode]) for mode in ("http", "file") if not book_reports[page, mode].ok]
    assert not problems, "\n".join(problems)


@pytest.mark.skipif(not BOOK_HTML, reason="set RKD_BOOK_HTML to a built book's HTML folder (make browser does)")
def test_book_has_table1_and_its_screenshot(book_reports):
    assert (TABLE1_PAGE, "http") in book_reports, f"the book has no {TABLE1_PAGE}"
    for png in (SCREENSHOTS / "table1_metric_learning.png", SCREENSHOTS / "table1_metric_learning_full.png"):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", f"no screenshot at {png}"

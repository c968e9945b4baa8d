"""The built book in a real browser (headless Chromium, driven by Playwright).

Two kinds of test:

- ``test_checker_*`` build a tiny site with one page per kind of defect (an external
  script, a broken link, a missing image, a console error, raw Markdown, a figure without
  alt text, an element wider than the column, unrendered maths) and check that
  :func:`rkd.book.browser.check_site` reports each of them, and nothing on a clean page:
  every check can fail.
- ``test_book_page`` loads every page of a built book, over http://127.0.0.1 and from
  file://, and fails on anything the checker reports; it saves a screenshot of every
  page in ``RKD_BOOK_SCREENSHOTS`` (default ``_build/screenshots``), named as the page
  (``notebooks/table1_metric_learning.png``). ``test_reference_*`` check that the
  package's reference renders an entry, with its documentation, for every public name.
  These run when ``RKD_BOOK_HTML`` names the book's HTML folder (``make browser`` sets it
  to the book ``make test`` builds from the committed notebooks).

Without Chromium every test here is skipped, saying how to install it.
"""
from __future__ import annotations

import importlib
import os
from html.parser import HTMLParser
from pathlib import Path

import pytest

from rkd.book.browser import BrowserUnavailable, check_site, find_chromium, screenshot_path, site_pages
from rkd.book.reference import REFERENCE_MODULES, page_of, public_names

TABLE1_PAGE = "notebooks/table1_metric_learning.html"
BOOK_HTML = os.environ.get("RKD_BOOK_HTML")
SCREENSHOTS = Path(os.environ.get("RKD_BOOK_SCREENSHOTS", "_build/screenshots"))
_NEEDS_BOOK = pytest.mark.skipif(not BOOK_HTML, reason="set RKD_BOOK_HTML to a built book's HTML folder "
                                                       "(make browser does)")


def _chromium_or_skip() -> str:
    try:
        return find_chromium()
    except BrowserUnavailable as error:
        pytest.skip(f"browser test skipped: {error}")


# ----------------------------------------------------------------- the checker can fail

def _page(title: str, body: str, head: str = "") -> str:
    return (f'<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>{title}</title>'
            f'<link rel="icon" href="data:,">{head}</head>\n<body>\n{body}\n</body></html>\n')


_DEFECTS = {
    "bad.html": _page("bad", """
<h1 id="top">A page with defects</h1>
<p><a href="good.html">a working link</a>, <a href="good.html#section">a working anchor</a>,
<a href="missing.html">a missing page</a>, <a href="good.html#nowhere">a missing anchor</a>,
<a href="https://arxiv.org/abs/1904.05068">the paper</a> (an ordinary external link: allowed).</p>
<img src="logo.png" alt="present"> <img src="absent.png" alt="missing">
<script>console.error("something broke");</script>""",
                      head='<script src="https://cdn.example.invalid/library.js"></script>'
                           '<style>@import url("https://fonts.example.invalid/font.css");</style>'),
    # a Markdown output rendered as CommonMark: the table and the bold stay raw text
    "markdown.html": _page("markdown", """
<p>| the paper's dataset | played here by |
|---|---|
| CUB-200-2011 | glyphs (Ethiopic) |</p>
<p>The claim **holds**; see [its page](table1.html).</p>"""),
    "alt.html": _page("alt", """
<img src="logo.png"> <img src="blank.png" alt="  "> <img src="named.png" alt="../_images/named.png">
<svg width="20" height="20"><circle cx="10" cy="10" r="5"/></svg>"""),
    "wide.html": _page("wide", """
<main><p>A column.</p><div id="banner" style="width: 3000px">a banner wider than the column</div></main>"""),
    "scroll.html": _page("scroll", """
<main><div id="tablebox" style="overflow-x: auto"><table style="width: 3000px"><tr><td>a table to
scroll</td></tr></table></div></main>"""),
    "maths.html": _page("maths", '<p>The potential <span class="math">\\(\\psi_D\\)</span>, never typeset.</p>'),
    # everything the checks must let pass: code (which may hold ** and | and scroll
    # sideways), decorative and named figures, a table that fits
    "good.html": _page("good", """
<main><h1 id="section">A clean page</h1><p><a href="bad.html#top">back</a>, <strong>bold</strong> text.</p>
<img src="logo.png" alt="the logo">
<svg aria-hidden="true" width="10" height="10"><circle cx="5" cy="5" r="2"/></svg>
<svg role="img" aria-label="a dot" width="10" height="10"><circle cx="5" cy="5" r="2"/></svg>
<pre>def f(**options):  # | a | b |
    return options  # a code line far wider than the column: code blocks scroll, as code does everywhere</pre>
<p>Some <code>**kwargs</code> in a sentence.</p>
<table><tr><td>a table</td><td>that fits</td></tr></table></main>"""),
}
# a 1x1 PNG
_PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360f8cfc0f01f0005000201ab4c2d2d0000000049454e44ae426082"
)


@pytest.fixture(scope="module")
def defect_site(tmp_path_factory) -> Path:
    site = tmp_path_factory.mktemp("site")
    for name, html in _DEFECTS.items():
        (site / name).write_text(html)
    (site / "index.html").write_text(_DEFECTS["good.html"])
    for name in ("logo.png", "blank.png", "named.png"):
        (site / name).write_bytes(_PNG)
    return site


@pytest.fixture(scope="module")
def defect_reports(defect_site):
    executable = _chromium_or_skip()
    return {(r.page, r.mode): r for r in check_site(defect_site, pages=list(_DEFECTS), executable=executable)}


def _problems(reports, page: str, mode: str) -> str:
    return "\n".join(reports[page, mode].problems)


@pytest.mark.parametrize("mode", ["http", "file"])
def test_checker_reports_requests_links_images_and_console(defect_reports, mode):
    problems = _problems(defect_reports, "bad.html", mode)
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
def test_checker_reports_raw_markdown(defect_reports, mode):
    problems = _problems(defect_reports, "markdown.html", mode)
    assert "raw Markdown (a table row): \"| the paper's dataset | played here by |\"" in problems
    assert "raw Markdown (a table rule):" in problems
    assert "raw Markdown (a table row): '| CUB-200-2011 | glyphs (Ethiopic) |'" in problems
    assert "raw Markdown (bold markers): 'The claim **holds**; see [its page](table1.html).'" in problems


@pytest.mark.parametrize("mode", ["http", "file"])
def test_checker_reports_figures_without_alt_text(defect_reports, mode):
    problems = defect_reports["alt.html", mode].problems
    assert 'figure without alt text: <img src="logo.png"> has no alt text' in problems
    assert 'figure without alt text: <img src="blank.png"> has no alt text' in problems
    assert 'figure without alt text: <img src="named.png">: its alt text is a file name' in problems
    assert "figure without alt text: <svg> has no <title> or aria-label" in "\n".join(problems)


@pytest.mark.parametrize("mode", ["http", "file"])
def test_checker_reports_what_is_wider_than_the_column(defect_reports, mode):
    wide = _problems(defect_reports, "wide.html", mode)
    assert 'wider than the content column (sticks out of the column' in wide and "<div#banner>" in wide
    scroll = _problems(defect_reports, "scroll.html", mode)
    assert "wider than the content column (to be scrolled sideways" in scroll and "<div#tablebox>" in scroll


@pytest.mark.parametrize("mode", ["http", "file"])
def test_checker_reports_unrendered_maths(defect_reports, mode):
    assert "1 maths elements but nothing rendered (MathJax did not load)" in _problems(defect_reports, "maths.html",
                                                                                        mode)


@pytest.mark.parametrize("mode", ["http", "file"])
def test_checker_passes_a_clean_page(defect_reports, mode):
    report = defect_reports["good.html", mode]
    assert report.ok, str(report)


def test_checker_saves_a_screenshot_of_every_page(defect_site, tmp_path):
    executable = _chromium_or_skip()
    (defect_site / "part").mkdir(exist_ok=True)
    (defect_site / "part" / "inner.html").write_text(_DEFECTS["good.html"].replace("logo.png", "../logo.png")
                                                     .replace("bad.html", "../bad.html"))
    pages = ["good.html", "part/inner.html"]
    reports = check_site(defect_site, pages=pages, screenshots=tmp_path, executable=executable)
    assert all(report.ok for report in reports), "\n".join(map(str, reports))
    for page in pages:
        png = screenshot_path(tmp_path, page)
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", f"no screenshot of {page} at {png}"
    assert screenshot_path(tmp_path, "part/inner.html") == tmp_path / "part" / "inner.png"


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
    reports = check_site(root, screenshots=SCREENSHOTS, executable=executable)
    return {(r.page, r.mode): r for r in reports}


@_NEEDS_BOOK
@pytest.mark.parametrize("page", _book_pages() or ["<unset>"])
def test_book_page(book_reports, page):
    problems = [str(book_reports[page, mode]) for mode in ("http", "file") if not book_reports[page, mode].ok]
    assert not problems, "\n".join(problems)
    png = screenshot_path(SCREENSHOTS, page)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", f"no screenshot of {page} at {png}"


@_NEEDS_BOOK
def test_book_has_table1(book_reports):
    assert (TABLE1_PAGE, "http") in book_reports, f"the book has no {TABLE1_PAGE}"


class _Entries(HTMLParser):
    """The text of each ``<dd>`` that follows a ``<dt id=...>``: an autodoc entry's documentation."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.entries: dict[str, str] = {}
        self._last_id: str | None = None
        self._depth = 0  # inside the <dd> being read
        self._reading: str | None = None

    def handle_starttag(self, tag, attrs):
        if tag == "dt":
            self._last_id = dict(attrs).get("id") or self._last_id
        elif tag == "dd":
            if self._reading is None and self._last_id is not None:
                self._reading, self._depth = self._last_id, 0
                self.entries[self._reading] = ""
            self._depth += 1

    def handle_endtag(self, tag):
        if tag == "dd" and self._reading is not None:
            self._depth -= 1
            if self._depth == 0:
                self._reading, self._last_id = None, None

    def handle_data(self, data):
        if self._reading is not None:
            self.entries[self._reading] += data


@_NEEDS_BOOK
@pytest.mark.parametrize("module_name", REFERENCE_MODULES)
def test_reference_renders_every_public_name(module_name):
    page = Path(BOOK_HTML) / (page_of(module_name) + ".html")
    assert page.is_file(), f"no reference page {page} for {module_name}"
    parser = _Entries()
    parser.feed(page.read_text(encoding="utf-8"))
    names = public_names(importlib.import_module(module_name))
    missing = [name for name in names if f"{module_name}.{name}" not in parser.entries]
    assert not missing, f"{page} has no entry for these public names of {module_name}: {missing}"
    empty = [name for name in names if not parser.entries[f"{module_name}.{name}"].strip()]
    assert not empty, f"{page} renders these public names of {module_name} without documentation: {empty}"

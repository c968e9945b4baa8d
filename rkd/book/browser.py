"""Load every page of a built book in headless Chromium and report what a reader would hit.

For each page, served from a local HTTP server on 127.0.0.1 and opened from ``file://``,
:func:`check_site` reports:

- **requests outside the book**: any URL the page requests that is not a file of the
  book (``data:`` and ``blob:`` URLs are part of the page). Chromium runs with every
  host name unresolvable, so such a request also fails instead of leaving the machine;
- **missing resources**: a request that fails or answers 4xx/5xx (a style sheet, a
  script, a font, MathJax's own files);
- **missing images**: an ``<img>`` that does not load, or loads with no pixels;
- **broken internal links**: an ``<a href>`` into the book whose file does not exist,
  or whose ``#fragment`` names no element of that page (links to other sites are
  ordinary links and are not followed);
- **console errors**: ``console.error``, uncaught exceptions and the browser's own
  error log entries;
- **unrendered maths**: a page with maths where MathJax produced nothing, or an error;
- **raw Markdown**: a pipe-table rule (``|---|``), ``**``, a line that starts with
  ``| `` or a ``[text](link)`` in the page's text, outside code, signatures and maths
  (a Markdown output rendered as plain CommonMark shows its tables this way);
- **figures without alt text**: an ``<img>`` whose ``alt`` is missing, empty or a file
  name, an ``<svg>`` that is neither hidden from screen readers nor named;
- **elements wider than the content column**: anything that sticks out of the article
  column, or a box inside it that the reader has to scroll sideways, as the page first
  shows (code blocks, whose lines are meant to scroll, aside; collapsed sections stay
  collapsed).

It drives Debian's ``/usr/bin/chromium`` (or ``$RKD_CHROMIUM``) with Playwright (whose
own browser downloads are never used), one fresh browser context per page (nothing
cached, no request of an earlier page counted against the next); the checks that run
inside the page are the JavaScript of :mod:`rkd.book.page_scripts`. With
``screenshots=`` a folder, it saves a PNG of every whole page there, named as the page
(``notebooks/table1_metric_learning.png``).
``python -m rkd.book.browser _build/html --screenshots _build/screenshots`` checks a book
from the command line and exits 1 when anything is reported.
"""
from __future__ import annotations

import argparse
import functools
import http.server
import os
import shutil
import sys
import threading
import urllib.parse
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

from rkd.book.page_scripts import CHECKS_JS, WIDTH_JS

__all__ = ["CHROMIUM_ARGS", "BrowserUnavailable", "find_chromium", "PageReport", "check_site", "site_pages",
           "screenshot_path"]

#: the arguments Chromium runs with: no sandbox (root in a container), no GPU, no QUIC, no
#: first-run or background traffic, and no host name resolves except the loopback
#: address, so nothing can leave the machine (Playwright adds ``--headless``)
CHROMIUM_ARGS = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-extensions",
    "--mute-audio",
    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
)
_CANDIDATES = ("/usr/bin/chromium", "chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
_VIEWPORT = {"width": 1280, "height": 900}
#: a page that is still busy after this long is checked as it stands
_IDLE_TIMEOUT_MS = 15_000


class BrowserUnavailable(RuntimeError):
    """No Chromium to run, or Playwright cannot start it (the browser test is skipped with this message)."""


def find_chromium() -> str:
    """The Chromium executable: ``$RKD_CHROMIUM``, else Debian's ``/usr/bin/chromium``, else on PATH."""
    configured = os.environ.get("RKD_CHROMIUM")
    if configured:
        if not (Path(configured).is_file() and os.access(configured, os.X_OK)):
            raise BrowserUnavailable(f"RKD_CHROMIUM={configured} is not an executable file")
        return configured
    for candidate in _CANDIDATES:
        found = shutil.which(candidate)
        if found:
            return found
    raise BrowserUnavailable(
        "Chromium is not installed, so the book's pages cannot be checked in a browser. On Debian: "
        "`apt-get install chromium` (`make install` does it when run as root), or point RKD_CHROMIUM at a "
        "Chromium or Chrome executable."
    )


@contextmanager
def _chromium(executable: str | None) -> Iterator:
    """A headless Chromium driven by Playwright (its own browsers are never downloaded: the system's runs)."""
    try:
        from playwright.sync_api import Error, sync_playwright
    except ImportError as error:
        raise BrowserUnavailable(f"Playwright is not installed ({error}); `make install` installs it") from None
    executable = executable or find_chromium()
    with sync_playwright() as playwright:
        try:
            browser = playwright.chromium.launch(executable_path=executable, args=list(CHROMIUM_ARGS))
        except Error as error:
            raise BrowserUnavailable(f"Playwright could not start {executable}: {error.message}") from None
        try:
            yield browser
        finally:
            browser.close()


# ------------------------------------------------------------------ the checks

@dataclass
class PageReport:
    """What one page, opened one way, showed wrong (nothing: :attr:`ok`)."""

    page: str  # path of the page inside the site, e.g. "book/method.html"
    mode: str  # "http" or "file"
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def __str__(self) -> str:
        head = f"{self.page} ({self.mode}): "
        return head + ("ok" if self.ok else "\n  " + "\n  ".join(self.problems))


class _Anchors(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.ids: set[str] = set()

    def handle_starttag(self, tag, attrs):
        for name, value in attrs:
            if name == "id" or (name == "name" and tag == "a"):
                if value:
                    self.ids.add(value)


@functools.cache
def _anchors(path: Path) -> frozenset[str]:
    parser = _Anchors()
    parser.feed(path.read_text(encoding="utf-8", errors="replace"))
    return frozenset(parser.ids)


class _Site:
    """Where the pages are, and which URLs belong to the book."""

    def __init__(self, root: Path, mode: str, http_base: str | None = None):
        self.root = root.resolve()
        self.mode = mode
        self.base = http_base if mode == "http" else self.root.as_uri() + "/"

    def url(self, page: str) -> str:
        return self.base + urllib.parse.quote(page)

    def is_inside(self, url: str) -> bool:
        if url.startswith(("data:", "blob:", "about:")):
            return True
        return url.startswith(self.base)

    def local_file(self, url: str) -> Path | None:
        """The file of the book a URL of the book names (None for a URL outside it)."""
        if not url.startswith(self.base):
            return None
        relative = urllib.parse.unquote(urllib.parse.urlsplit(url[len(self.base):]).path)
        path = self.root / relative
        if relative == "" or relative.endswith("/") or path.is_dir():
            path = path / "index.html"
        return path


def _watch(page, site: _Site, problems: list[str]) -> None:
    """Report what the page requests, fails to load and logs, as it happens."""

    def on_request(request) -> None:
        if not site.is_inside(request.url):
            problems.append(f"requests something outside the book: {request.url}")

    def on_response(response) -> None:
        if response.status >= 400:
            problems.append(f"missing resource (HTTP {response.status}): {response.url}")

    def on_failure(request) -> None:
        # outside requests are reported already; an aborted one was cancelled by the page
        if site.is_inside(request.url) and request.failure != "net::ERR_ABORTED":
            problems.append(f"missing resource ({request.failure}): {request.url}")

    def on_console(message) -> None:
        # Playwright reports the browser's own error log (a failed load, a blocked
        # request) as console messages too
        if message.type in ("error", "assert"):
            problems.append(f"console error: {message.text[:300]}")

    page.on("request", on_request)
    page.on("response", on_response)
    page.on("requestfailed", on_failure)
    page.on("console", on_console)
    page.on("pageerror", lambda error: problems.append(f"uncaught exception: {str(error)[:300]}"))


def _page_problems(browser, site: _Site, page_path: str, screenshot: Path | None) -> list[str]:
    from playwright.sync_api import Error, TimeoutError

    problems: list[str] = []
    context = browser.new_context(viewport=_VIEWPORT, device_scale_factor=1, service_workers="block")
    try:
        context.set_default_timeout(60_000)
        page = context.new_page()
        _watch(page, site, problems)
        try:
            response = page.goto(site.url(page_path), wait_until="load")
        except TimeoutError:
            problems.append("the page did not finish loading in time")
        except Error as error:
            return [f"the page did not load: {error.message.splitlines()[0]}"]
        else:
            if response is not None and response.status >= 400:
                return [f"the page did not load: HTTP {response.status}"]
        try:
            found = _evaluate_checks(page)
        except Error as error:
            return problems + [f"the check itself failed: {error.message.splitlines()[0]}"]
        _settle(page)  # the fonts MathJax asked for
        problems += _found_problems(site, found)
        problems += [f"wider than the content column ({how}, {excess} px): {what}"
                     for what, excess, how in page.evaluate(WIDTH_JS)]
        if screenshot is not None:
            screenshot.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(screenshot), full_page=True)
    finally:
        context.close()
    return list(dict.fromkeys(problems))  # one line per distinct problem, in order


def _settle(page) -> None:
    """Wait until the page has loaded and made no request for half a second."""
    from playwright.sync_api import TimeoutError

    try:
        page.wait_for_load_state("load")
        page.wait_for_load_state("networkidle", timeout=_IDLE_TIMEOUT_MS)
    except TimeoutError:
        pass  # still busy (a font, a late script): what it did so far is checked


def _evaluate_checks(page) -> dict:
    """:data:`rkd.book.page_scripts.CHECKS_JS` run in the page it ends on (a redirect, such as the root page's,
    replaces the document the first try ran in)."""
    from playwright.sync_api import Error

    for attempt in range(3):
        _settle(page)
        try:
            return page.evaluate(CHECKS_JS)
        except Error as error:
            if "context was destroyed" not in error.message or attempt == 2:
                raise
    raise AssertionError("unreachable")


def _found_problems(site: _Site, found: dict) -> list[str]:
    """The problems in what :data:`rkd.book.page_scripts.CHECKS_JS` found in the page."""
    problems = [f"missing image: {src}" for src in found["brokenImages"]]
    problems += _link_problems(site, found["links"])
    maths = found["maths"]
    if maths["maths"] and not maths["rendered"]:
        problems.append(f"{maths['maths']} maths elements but nothing rendered"
                        + ("" if maths["mathjax"] else " (MathJax did not load)"))
    problems += [f"MathJax error: {text}" for text in maths["errors"]]
    problems += [f"raw Markdown ({what}): {text!r}" for what, text in found["rawMarkdown"]]
    problems += [f"figure without alt text: {what}" for what in found["noAlt"]]
    return problems


def _link_problems(site: _Site, links: Iterable[str]) -> list[str]:
    problems = []
    for href in dict.fromkeys(links):
        scheme = urllib.parse.urlsplit(href).scheme
        if scheme in ("mailto", "javascript", "tel") or href.startswith(("data:", "blob:")):
            continue
        if not site.is_inside(href):
            if scheme == "file":
                problems.append(f"link leaves the book for a local file: {href}")
            continue  # an ordinary link to another site: not followed
        target = site.local_file(href)
        if target is None or not target.is_file():
            problems.append(f"broken link: {href} (no file {target})")
            continue
        fragment = urllib.parse.unquote(urllib.parse.urlsplit(href).fragment)
        if fragment and target.suffix == ".html" and fragment not in _anchors(target):
            problems.append(f"broken link: {href} (no element with id {fragment!r} on that page)")
    return problems


def site_pages(root: Path) -> list[str]:
    """The pages of a built site, as paths inside it (assets and sources excluded)."""
    root = Path(root)
    skip = ("_static/", "_sources/", "_images/", "_downloads/")
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*.html")
                  if not p.relative_to(root).as_posix().startswith(skip))


def screenshot_path(folder: Path, page: str) -> Path:
    """Where :func:`check_site` saves the screenshot of ``page``: ``book/method.html`` -> ``folder/book/method.png``."""
    return Path(folder) / Path(page).with_suffix(".png")


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 (the base class's name)
        pass


class _QuietServer(http.server.ThreadingHTTPServer):
    def handle_error(self, request, client_address):
        # a browser context closed while a response was on its way: nothing went wrong
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


@contextmanager
def _served(root: Path) -> Iterator[str]:
    """``root`` served over HTTP on 127.0.0.1; yields its base URL."""
    handler = functools.partial(_QuietHandler, directory=str(root))
    server = _QuietServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


def check_site(root: Path, pages: Sequence[str] | None = None, modes: Sequence[str] = ("http", "file"),
               screenshots: Path | None = None, executable: str | None = None) -> list[PageReport]:
    """Check every page (default: :func:`site_pages`) in each mode; with ``screenshots`` a
    folder, save a whole-page PNG of each page there (:func:`screenshot_path`), taken in the
    first mode. Raises :class:`BrowserUnavailable` when Chromium cannot be run."""
    root = Path(root).resolve()
    if not (root / "index.html").is_file() and pages is None:
        raise FileNotFoundError(f"{root} holds no index.html: build the book first")
    pages = list(pages) if pages is not None else site_pages(root)
    reports: list[PageReport] = []
    with _served(root) as http_base, _chromium(executable) as browser:
        for number, mode in enumerate(modes):
            site = _Site(root, mode, http_base)
            for page in pages:
                shot = screenshot_path(screenshots, page) if screenshots is not None and number == 0 else None
                reports.append(PageReport(page, mode, _page_problems(browser, site, page, shot)))
    return reports


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Check every page of a built book in headless Chromium.")
    parser.add_argument("site", type=Path, help="the built HTML folder, e.g. _build/html")
    parser.add_argument("--mode", action="append", choices=("http", "file"),
                        help="serve over http://127.0.0.1 and/or open from file:// (default: both)")
    parser.add_argument("--screenshots", type=Path, metavar="DIR", help="save a PNG of every page in DIR")
    args = parser.parse_args(argv)
    try:
        reports = check_site(args.site, modes=args.mode or ("http", "file"), screenshots=args.screenshots)
    except BrowserUnavailable as error:
        raise SystemExit(f"browser check skipped: {error}") from None
    for report in reports:
        print(report)
    bad = [r for r in reports if not r.ok]
    print(f"{len(reports) - len(bad)} passed, {len(bad)} failed")
    raise SystemExit(1 if bad else 0)


if __name__ == "__main__":
    main()

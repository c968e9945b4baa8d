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
- **unrendered maths**: a page with maths where MathJax produced nothing, or an error.

It drives Chromium through the Chrome DevTools Protocol over a websocket
(``websocket-client``), with Debian's ``/usr/bin/chromium`` (or ``$RKD_CHROMIUM``).
``python -m rkd.book.browser _build/html --screenshot notebooks/table1_metric_learning.html=_build/table1.png``
checks a book from the command line and exits 1 when anything is reported.
"""
from __future__ import annotations

import argparse
import base64
import functools
import http.server
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

__all__ = ["CHROMIUM_FLAGS", "BrowserUnavailable", "find_chromium", "Chromium", "PageReport", "check_site",
           "site_pages"]

#: the flags the browser test runs Chromium with: no sandbox (root in a container), no
#: GPU, no QUIC, no first-run or background traffic, and no host name resolves except
#: the loopback address, so nothing can leave the machine
CHROMIUM_FLAGS = (
    "--headless",
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
_WIDTH = 1280
_HEIGHT = 900


class BrowserUnavailable(RuntimeError):
    """No Chromium to run (the browser test is skipped with this message)."""


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


# ------------------------------------------------------------------ the browser

class Chromium:
    """A headless Chromium with one page, driven over the DevTools protocol.

    Use as a context manager; it starts with a fresh profile in a temporary folder and
    removes it on exit."""

    def __init__(self, executable: str | None = None, timeout: float = 60.0):
        self.executable = executable or find_chromium()
        self.timeout = timeout
        self._process: subprocess.Popen | None = None
        self._profile: str | None = None
        self._socket = None
        self._next_id = 0
        self.events: list[dict[str, Any]] = []

    # -- lifetime
    def __enter__(self) -> "Chromium":
        import websocket  # websocket-client

        self._profile = tempfile.mkdtemp(prefix="rkd-chromium-")
        command = [self.executable, *CHROMIUM_FLAGS, f"--user-data-dir={self._profile}",
                   "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0",
                   f"--window-size={_WIDTH},{_HEIGHT}", "about:blank"]
        self._process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                         stderr=subprocess.PIPE)
        try:
            port = self._wait_for_port()
            self._socket = websocket.create_connection(self._page_socket_url(port), timeout=self.timeout,
                                                       suppress_origin=True, enable_multithread=False)
            for domain in ("Page", "Network", "Runtime", "Log"):
                self.call(f"{domain}.enable")
            self.call("Network.setCacheDisabled", cacheDisabled=True)
            self.call("Emulation.setDeviceMetricsOverride", width=_WIDTH, height=_HEIGHT, deviceScaleFactor=1,
                      mobile=False)
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc_info) -> None:
        if self._socket is not None:
            try:
                self._socket.close()
            except Exception:  # noqa: BLE001 (closing a socket of a browser that is going away)
                pass
            self._socket = None
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
            if self._process.stderr is not None:
                self._process.stderr.close()
            self._process = None
        if self._profile is not None:
            shutil.rmtree(self._profile, ignore_errors=True)
            self._profile = None

    def _wait_for_port(self) -> int:
        marker = Path(self._profile) / "DevToolsActivePort"
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                error = self._process.stderr.read().decode(errors="replace")[-2000:]
                raise BrowserUnavailable(f"{self.executable} exited with code {self._process.returncode}: {error}")
            if marker.is_file():
                lines = marker.read_text().splitlines()
                if lines and lines[0].strip().isdigit():
                    return int(lines[0])
            time.sleep(0.05)
        raise BrowserUnavailable(f"{self.executable} did not open its DevTools port within {self.timeout:.0f} s")

    def _page_socket_url(self, port: int) -> str:
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=5) as response:
                targets = json.load(response)
            pages = [t for t in targets if t.get("type") == "page" and t.get("webSocketDebuggerUrl")]
            if pages:
                return pages[0]["webSocketDebuggerUrl"]
            time.sleep(0.05)
        raise BrowserUnavailable("Chromium opened no page to drive")

    # -- protocol
    def call(self, method: str, **params) -> dict[str, Any]:
        """Send one command and return its result (events that arrive meanwhile are kept)."""
        self._next_id += 1
        message_id = self._next_id
        self._socket.send(json.dumps({"id": message_id, "method": method, "params": params}))
        deadline = time.monotonic() + self.timeout
        while True:
            message = self._receive(deadline - time.monotonic())
            if message is None:
                raise TimeoutError(f"Chromium did not answer {method} within {self.timeout:.0f} s")
            if message.get("id") == message_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error'].get('message')}")
                return message.get("result", {})

    def _receive(self, timeout: float) -> dict[str, Any] | None:
        import websocket

        if timeout <= 0:
            return None
        self._socket.settimeout(timeout)
        try:
            message = json.loads(self._socket.recv())
        except websocket.WebSocketTimeoutException:
            return None
        if "method" in message:
            self.events.append(message)
        return message

    def pump(self, seconds: float) -> None:
        """Collect the events of the next ``seconds``."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self._receive(deadline - time.monotonic())

    def wait_for_event(self, method: str, timeout: float, since: int = 0) -> bool:
        deadline = time.monotonic() + timeout
        while True:
            if any(e["method"] == method for e in self.events[since:]):
                return True
            if time.monotonic() >= deadline:
                return False
            self._receive(deadline - time.monotonic())

    def evaluate(self, expression: str, timeout: float | None = None) -> Any:
        """Evaluate JavaScript in the page (awaiting a promise) and return its JSON value."""
        result = self.call("Runtime.evaluate", expression=expression, awaitPromise=True, returnByValue=True,
                           timeout=int(1000 * (timeout or self.timeout)))
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            text = details.get("exception", {}).get("description") or details.get("text")
            raise RuntimeError(f"JavaScript failed in the page: {text}")
        return result.get("result", {}).get("value")

    def screenshot(self, path: Path, height: int | None = 1800, max_height: int = 16000) -> Path:
        """A PNG of the top ``height`` CSS pixels of the current page at the test's width;
        ``height=None``: the whole page (at most ``max_height`` pixels)."""
        if height is None:
            metrics = self.call("Page.getLayoutMetrics")
            content = metrics.get("cssContentSize") or metrics.get("contentSize") or {}
            height = int(min(max_height, max(_HEIGHT, content.get("height", _HEIGHT))))
        self.call("Emulation.setDeviceMetricsOverride", width=_WIDTH, height=height, deviceScaleFactor=1,
                  mobile=False)
        try:
            self.pump(0.5)  # let the layout settle at the new size
            data = self.call("Page.captureScreenshot", format="png")["data"]
        finally:
            self.call("Emulation.setDeviceMetricsOverride", width=_WIDTH, height=_HEIGHT, deviceScaleFactor=1,
                      mobile=False)
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data))
        return path


# ------------------------------------------------------------------ the checks

@dataclass
class PageReport:
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


@functools.lru_cache(maxsize=None)
def _anchors(path: Path) -> frozenset[str]:
    parser = _Anchors()
    parser.feed(path.read_text(encoding="utf-8", errors="replace"))
    return frozenset(parser.ids)


# Waits for every image (lazy ones are made eager) and returns those without pixels.
_BROKEN_IMAGES_JS = """
(async () => {
  const images = Array.from(document.images);
  await Promise.all(images.map(img => {
    img.loading = 'eager';
    if (img.complete) return null;
    return new Promise(done => {
      img.addEventListener('load', done, {once: true});
      img.addEventListener('error', done, {once: true});
      setTimeout(done, 10000);
    });
  }));
  return images.filter(img => !img.complete || img.naturalWidth === 0)
               .map(img => img.getAttribute('src') || img.currentSrc);
})()
"""
_LINKS_JS = """
Array.from(document.querySelectorAll('a[href], area[href]')).map(a => a.href)
"""
# MathJax 3 has typeset the page once its startup promise resolves
_MATH_JS = """
(async () => {
  if (window.MathJax && MathJax.startup && MathJax.startup.promise) {
    await MathJax.startup.promise;
  }
  const maths = document.querySelectorAll('.math, .math-wrapper').length;
  return {
    maths: maths,
    rendered: document.querySelectorAll('mjx-container').length,
    errors: Array.from(document.querySelectorAll('mjx-merror')).map(e => e.textContent).slice(0, 5),
    mathjax: Boolean(window.MathJax && MathJax.version),
  };
})()
"""


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


def _page_problems(browser: Chromium, site: _Site, page: str, settle: float) -> list[str]:
    problems: list[str] = []
    # an empty page first, so that nothing the previous page still had in flight is
    # counted against this one
    blank = len(browser.events)
    browser.call("Page.navigate", url="about:blank")
    browser.wait_for_event("Page.loadEventFired", timeout=browser.timeout, since=blank)
    browser.pump(0.05)
    start = len(browser.events)
    url = site.url(page)
    navigation = browser.call("Page.navigate", url=url)
    if navigation.get("errorText"):
        return [f"the page did not load: {navigation['errorText']}"]
    # the requests of this page's documents (its own, and one a redirect leads to); a
    # request of another loader is the previous page's
    loaders = {navigation.get("loaderId")}
    if not browser.wait_for_event("Page.loadEventFired", timeout=browser.timeout, since=start):
        problems.append(f"the page did not finish loading within {browser.timeout:.0f} s")
    maths = browser.evaluate(_MATH_JS)
    broken_images = browser.evaluate(_BROKEN_IMAGES_JS)
    links = browser.evaluate(_LINKS_JS) or []
    _wait_until_idle(browser, start, settle)

    in_flight: dict[str, str] = {}
    for event in browser.events[start:]:
        method, params = event["method"], event.get("params", {})
        if method == "Network.requestWillBeSent":
            if params.get("type") == "Document":
                loaders.add(params.get("loaderId"))
            if params.get("loaderId") not in loaders:
                continue
            request_url = params["request"]["url"]
            in_flight[params["requestId"]] = request_url
            if not site.is_inside(request_url):
                problems.append(f"requests something outside the book: {request_url}")
        elif method == "Network.responseReceived" and params["requestId"] in in_flight:
            status = params["response"].get("status", 0)
            if status >= 400:
                problems.append(f"missing resource (HTTP {status}): {params['response']['url']}")
        elif method == "Network.loadingFailed" and params["requestId"] in in_flight and not params.get("canceled"):
            failed = in_flight[params["requestId"]]
            if site.is_inside(failed):  # outside ones are reported as requests already
                problems.append(f"missing resource ({params.get('errorText')}): {failed}")
        elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            text = " ".join(str(arg.get("value", arg.get("description", ""))) for arg in params.get("args", []))
            problems.append(f"console error: {text[:300]}")
        elif method == "Runtime.exceptionThrown":
            details = params.get("exceptionDetails", {})
            text = details.get("exception", {}).get("description") or details.get("text", "")
            problems.append(f"uncaught exception: {text[:300]}")
        elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
            entry = params["entry"]
            problems.append(f"browser error ({entry.get('source')}): {entry.get('text', '')[:300]} {entry.get('url', '')}")

    problems += [f"missing image: {src}" for src in broken_images or []]
    problems += _link_problems(site, links)
    if maths and maths["maths"] and not maths["rendered"]:
        problems.append(f"{maths['maths']} maths elements but nothing rendered"
                        + ("" if maths["mathjax"] else " (MathJax did not load)"))
    problems += [f"MathJax error: {text}" for text in (maths or {}).get("errors", [])]
    return list(dict.fromkeys(problems))  # one line per distinct problem, in order


def _wait_until_idle(browser: Chromium, start: int, settle: float, limit: float = 15.0) -> None:
    """Collect events until no request has been pending for ``settle`` seconds."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        pending: set[str] = set()
        for event in browser.events[start:]:
            request = event.get("params", {}).get("requestId")
            if event["method"] == "Network.requestWillBeSent":
                pending.add(request)
            elif event["method"] in ("Network.loadingFinished", "Network.loadingFailed"):
                pending.discard(request)
        seen = len(browser.events)
        browser.pump(settle)
        if not pending and len(browser.events) == seen:
            return


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


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 (the base class's name)
        pass


def check_site(root: Path, pages: Sequence[str] | None = None, modes: Sequence[str] = ("http", "file"),
               screenshots: dict[str, Path | list[Path]] | None = None, settle: float = 0.3,
               executable: str | None = None) -> list[PageReport]:
    """Check every page (default: :func:`site_pages`) in each mode. ``screenshots`` maps a
    page to the PNG to save of it, or to two: the first screen and the whole page
    (taken in the first mode)."""
    root = Path(root).resolve()
    if not (root / "index.html").is_file() and pages is None:
        raise FileNotFoundError(f"{root} holds no index.html: build the book first")
    pages = list(pages) if pages is not None else site_pages(root)
    screenshots = dict(screenshots or {})
    reports: list[PageReport] = []
    server = None
    try:
        if "http" in modes:
            handler = functools.partial(_QuietHandler, directory=str(root))
            server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
            threading.Thread(target=server.serve_forever, daemon=True).start()
        with Chromium(executable) as browser:
            for mode in modes:
                base = f"http://127.0.0.1:{server.server_address[1]}/" if mode == "http" else None
                site = _Site(root, mode, base)
                for page in pages:
                    report = PageReport(page, mode)
                    try:
                        report.problems = _page_problems(browser, site, page, settle)
                    except (RuntimeError, TimeoutError) as error:
                        report.problems = [f"the check itself failed: {error}"]
                    if page in screenshots:
                        shots = screenshots.pop(page)
                        shots = [shots] if isinstance(shots, (str, Path)) else list(shots)
                        browser.screenshot(shots[0])
                        if len(shots) > 1:
                            browser.screenshot(shots[1], height=None)
                    reports.append(report)
    finally:
        if server is not None:
            server.shutdown()
            server.server_close()
    return reports


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Check every page of a built book in headless Chromium.")
    parser.add_argument("site", type=Path, help="the built HTML folder, e.g. _build/html")
    parser.add_argument("--mode", action="append", choices=("http", "file"),
                        help="serve over http://127.0.0.1 and/or open from file:// (default: both)")
    parser.add_argument("--screenshot", action="append", default=[], metavar="PAGE=PNG",
                        help="save a screenshot of PAGE (a path inside the site) to PNG")
    args = parser.parse_args(argv)
    shots = dict(item.split("=", 1) for item in args.screenshot)
    try:
        reports = check_site(args.site, modes=args.mode or ("http", "file"),
                             screenshots={page: Path(png) for page, png in shots.items()})
    except BrowserUnavailable as error:
        raise SystemExit(f"browser check skipped: {error}") from None
    for report in reports:
        print(report)
    bad = [r for r in reports if not r.ok]
    print(f"{len(reports) - len(bad)} passed, {len(bad)} failed")
    raise SystemExit(1 if bad else 0)


if __name__ == "__main__":
    main()

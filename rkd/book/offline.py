"""A static check that a built site loads nothing from outside itself.

:func:`external_resources` reads every HTML and CSS file of a built book and lists each
resource a browser would fetch from another host: ``<script src>``, ``<link href>``
(style sheets, preloads, icons, fonts), ``<img>``/``<source>``/``<video>``/``<audio>``/
``<iframe>``/``<embed>``/``<object>`` sources, CSS ``url(...)`` and ``@import``.
Ordinary links (``<a href>``) to papers and repositories are not resources and are
allowed. The browser test (:mod:`rkd.book.browser`) watches real requests as well;
this scan also sees what a page would load only on a click or a scroll.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

__all__ = ["ExternalResource", "is_external", "external_resources"]

_EXTERNAL = re.compile(r"^\s*(?:[a-zA-Z][a-zA-Z0-9+.\-]*:)?//", re.ASCII)
_CSS_URL = re.compile(r"""url\(\s*(['"]?)([^'")]+)\1\s*\)|@import\s+(['"])([^'"]+)\3""")
# the attributes that make a browser fetch something, per tag
_FETCHING = {
    "script": ("src",),
    "img": ("src", "srcset"),
    "source": ("src", "srcset"),
    "video": ("src", "poster"),
    "audio": ("src",),
    "iframe": ("src",),
    "embed": ("src",),
    "object": ("data",),
    "track": ("src",),
    "input": ("src",),
}
# <link rel=...> values that fetch their href (a plain rel="next" or "canonical" does not)
_FETCHING_RELS = {"stylesheet", "preload", "modulepreload", "prefetch", "preconnect", "dns-prefetch",
                  "icon", "shortcut", "apple-touch-icon", "manifest"}


def is_external(url: str) -> bool:
    """True for a URL with a host (``https://x``, ``//x``); data:, blob: and relative URLs are not."""
    return bool(_EXTERNAL.match(url))


@dataclass(frozen=True)
class ExternalResource:
    file: Path
    what: str  # e.g. "<script src>", "CSS url()"
    url: str

    def __str__(self) -> str:
        return f"{self.file}: {self.what} {self.url}"


class _ResourceParser(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.found: list[tuple[str, str]] = []
        self._in_style = False

    def handle_starttag(self, tag, attrs):
        values = dict(attrs)
        if tag == "link":
            rels = set((values.get("rel") or "").lower().split())
            if rels & _FETCHING_RELS and values.get("href"):
                self.found.append((f"<link rel={' '.join(sorted(rels))}>", values["href"]))
        for attribute in _FETCHING.get(tag, ()):
            value = values.get(attribute)
            if not value:
                continue
            urls = [part.strip().split()[0] for part in value.split(",") if part.strip()] \
                if attribute == "srcset" else [value]
            self.found += [(f"<{tag} {attribute}>", url) for url in urls]
        if values.get("style"):
            self.found += [("style url()", url) for url in _css_urls(values["style"])]
        self._in_style = tag == "style"

    def handle_endtag(self, tag):
        if tag == "style":
            self._in_style = False

    def handle_data(self, data):
        if self._in_style:
            self.found += [("<style> url()", url) for url in _css_urls(data)]


def _css_urls(text: str) -> list[str]:
    return [m.group(2) or m.group(4) for m in _CSS_URL.finditer(text)]


def external_resources(site: Path) -> list[ExternalResource]:
    """Every resource of the built ``site`` that would be fetched from outside it."""
    site = Path(site)
    problems: list[ExternalResource] = []
    for path in sorted(site.rglob("*.html")):
        parser = _ResourceParser()
        parser.feed(path.read_text(encoding="utf-8", errors="replace"))
        problems += [ExternalResource(path.relative_to(site), what, url)
                     for what, url in parser.found if is_external(url)]
    for path in sorted(site.rglob("*.css")):
        text = path.read_text(encoding="utf-8", errors="replace")
        text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)  # licence comments name their URLs
        problems += [ExternalResource(path.relative_to(site), "CSS url()", url)
                     for url in _css_urls(text) if is_external(url)]
    return problems

"""Sphinx extension of the rkd book (listed in ``_config.yml`` under ``sphinx.extra_extensions``).

What it does, and why:

- **MathJax from the book.** ``mathjax_path`` must be a path inside ``_static`` (the
  build fails on a URL). After the build, MathJax 3 is copied from the npm package that
  ``make install`` installs (``book/node_modules/mathjax``, pinned by
  ``book/package-lock.json``) into ``_static/mathjax``, so the maths renders with no
  network, from ``file://`` too.
- **Nothing from outside the book.** Every page's scripts and style sheets are checked
  as the page is written, and the whole site is scanned when the build ends
  (:mod:`rkd.book.offline`); anything fetched from another host is a build warning
  (an error under ``-W``). sphinx-thebe's loader, which names a CDN and is never used
  here (thebe is off), is dropped from the pages.
- **A real root page.** ``index.html`` at the root of the site redirects to the first
  page. sphinx-external-toc writes it as a bare ``<meta>`` line with no icon link, so a
  browser that opens it over HTTP asks the server for ``/favicon.ico``, a request
  outside the book's files that fails (or not: it races the redirect). We write it
  first, as a small HTML page with the book's icon and a plain link for readers whose
  browser does not follow the redirect.
- **Papermill's injected-parameters cell collapsed.** Notebooks are read with that cell
  tagged ``hide-input`` (in memory only: the files are never rewritten).
- **Alt text for the notebooks' figures.** myst-nb names an image output's file by the
  SHA-256 of its bytes and gives it no alt text (the HTML falls back to the file name).
  Each image gets the ``alt`` of its output's metadata (``Image(..., metadata={"alt":
  ...})``), else the one-line caption the cell displayed just before it
  (:func:`image_alt_texts`); an image with neither is left for the browser test to report.
- **Page styles** (``_static/rkd.css``, :data:`BOOK_CSS`): the parameters cell's long
  comments wrap inside the column, and notebook output tables are set compactly.
- **Generated content.** A page's ``% rkd-generated: <name> [argument]`` line is replaced,
  when the page is read, by the section the generator of that name (:data:`GENERATORS`)
  writes: ``summary`` and ``rrd``, the summary of all tables and the RRD-against-RKD
  verdicts (:mod:`rkd.book.summary`, from the notebooks in the book); ``performance``,
  the benchmark results with their plots (:mod:`rkd.book.performance`, from
  ``benchmarks/results``; the plots are drawn into ``_generated/performance/`` beside the
  page, in the build copy of the sources); ``tuning``, the baselines' grids and
  validation scores (:mod:`rkd.book.tuning`, from ``results/tuning.jsonl``; a warning
  when the file is missing); ``trunks``, the glyph world's pretrained trunks
  (:mod:`rkd.book.trunks`, from ``results/table1.jsonl``); ``reference <module>``, a module's reference
  (:mod:`rkd.book.reference`, rendered by autodoc from the docstrings). A generator that
  fails logs a warning and leaves an error box on the page. The introduction's figure
  (:mod:`rkd.book.figures`) is drawn into ``book/_generated/`` before reading.
- **References into the package.** A docstring's reference to a part of ``rkd`` the
  reference does not document itself (a submodule, a helper) links to the page of the
  package that holds it, or stays plain code where no page covers it; a reference to
  something that does not exist stays unresolved, an error under ``-n``
  (:func:`rkd.book.reference.internal_page`).
"""
from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

from docutils import nodes
from sphinx.application import Sphinx
from sphinx.errors import ConfigError, ExtensionError
from sphinx.util import logging

from rkd.book.assemble import toc_notebooks
from rkd.book.offline import external_resources, is_external

logger = logging.getLogger(__name__)

#: tag papermill gives the cell it injects, and the tags that already decide how it shows
INJECTED_TAG = "injected-parameters"
_PRESENTATION_TAGS = {"hide-input", "hide-cell", "hide-output", "remove-input", "remove-cell", "remove-output"}
#: a MyST comment line that the named generator replaces (``reference`` takes a module)
_MARKER = re.compile(r"^% rkd-generated: (?P<name>[a-z]+)(?:[ \t]+(?P<argument>[\w.]+))?[ \t]*$", re.M)
#: files of the MathJax package not copied: the other combined components (only the one
#: ``mathjax_path`` names is served) and ``latest.js``, which loads MathJax from a CDN
_MATHJAX_SKIP = re.compile(r"^(latest|tex-.*|mml-.*)\.js$")
FIGURE = "relational_potentials.svg"


# ----------------------------------------------------------------------------- MathJax

def _checkout() -> Path:
    # the source checkout rkd is imported from (an editable install), where
    # `make install` puts book/node_modules
    return Path(__file__).resolve().parents[2]


def find_mathjax(app: Sphinx) -> Path:
    """The ``es5`` folder of the installed MathJax package; ExtensionError if none."""
    component = Path(app.config.mathjax_path).name
    candidates = []
    if app.config.rkd_mathjax_dir:
        candidates.append(Path(app.confdir) / app.config.rkd_mathjax_dir)
    if os.environ.get("RKD_MATHJAX_DIR"):
        candidates.append(Path(os.environ["RKD_MATHJAX_DIR"]))
    candidates += [Path(app.confdir) / "book/node_modules/mathjax/es5",
                   _checkout() / "book/node_modules/mathjax/es5"]
    for candidate in candidates:
        if (candidate / component).is_file():
            return candidate.resolve()
    raise ExtensionError(
        f"MathJax ({component}) is not installed; looked in: {', '.join(str(c) for c in candidates)}. "
        f"Run `make install` (it runs `npm ci --prefix book`, pinned by book/package-lock.json), "
        f"or set RKD_MATHJAX_DIR to the es5/ folder of the mathjax@3 npm package."
    )


def _check_mathjax_path(app: Sphinx, config) -> None:
    if is_external(config.mathjax_path) or Path(config.mathjax_path).is_absolute():
        raise ConfigError(
            f"mathjax_path = {config.mathjax_path!r} loads MathJax from outside the book; set it to a path "
            f"inside _static, e.g. 'mathjax/tex-mml-chtml.js' (the rkd extension copies MathJax there)"
        )


def _copy_mathjax(app: Sphinx, exception: Exception | None) -> None:
    if exception is not None or app.builder.format != "html":
        return
    source = find_mathjax(app)
    target = Path(app.outdir) / "_static" / Path(app.config.mathjax_path).parent
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(source, target, ignore=lambda folder, names: [
        name for name in names if Path(folder) == source and _MATHJAX_SKIP.match(name)
        and name != Path(app.config.mathjax_path).name
    ])
    package = source.parent / "package.json"
    for extra in ("LICENSE", "package.json"):
        if (source.parent / extra).is_file():
            shutil.copy2(source.parent / extra, target / extra)
    version = json.loads(package.read_text())["version"] if package.is_file() else "unknown"
    logger.info(f"[rkd] MathJax {version} copied from {source} into {target}")


# --------------------------------------------------------------- offline page assets

def _offline_assets(app: Sphinx, pagename: str, _templatename: str, context: dict[str, Any], doctree) -> None:
    scripts = context.get("script_files")
    if scripts is not None:
        # sphinx-thebe's loader and its inline config (which names a CDN): thebe is off here
        scripts[:] = [
            js for js in scripts
            if not (str(js.filename).endswith("sphinx-thebe.js")
                    or "THEBE_JS_URL" in str(getattr(js, "attributes", {}).get("body", "")))
        ]
    styles = context.get("css_files")
    if styles is not None:
        styles[:] = [css for css in styles if not str(css.filename).endswith("sphinx-thebe.css")]
    for asset in list(scripts or []) + list(styles or []):
        if is_external(str(asset.filename)):
            logger.warning(f"[rkd] page {pagename} would load {asset.filename} from outside the book",
                           location=pagename)


def _scan_site(app: Sphinx, exception: Exception | None) -> None:
    if exception is not None or app.builder.format != "html":
        return
    for problem in external_resources(Path(app.outdir)):
        logger.warning(f"[rkd] loads a resource from outside the book: {problem}")


def root_page(first_page: str, favicon: str | None, title: str) -> str:
    """The HTML of the site's root ``index.html``: a redirect to ``first_page`` that names
    the book's icon (so the browser asks for nothing outside the book)."""
    from html import escape

    icon = f'  <link rel="icon" href="{escape(favicon)}">\n' if favicon else ""
    target = escape(first_page)
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n  <meta charset=\"utf-8\">\n"
        f"  <title>{escape(title)}</title>\n{icon}"
        f'  <meta http-equiv="Refresh" content="0; url={target}">\n</head>\n<body>\n'
        f'  <p><a href="{target}">{escape(title)}</a></p>\n</body>\n</html>\n'
    )


def _write_root_page(app: Sphinx, exception: Exception | None) -> None:
    if exception is not None or app.builder.name != "html" or app.config.root_doc == "index":
        return
    if "index" in app.env.found_docs:
        return  # a page of the book is index.html: never overwrite it
    favicon = app.config.html_favicon
    if favicon and not is_external(favicon):
        favicon = f"_static/{Path(favicon).name}"
    first_page = app.builder.get_target_uri(app.config.root_doc)
    html = root_page(first_page, favicon or None, app.config.html_title or app.config.project)
    (Path(app.outdir) / "index.html").write_text(html, encoding="utf-8")


# --------------------------------------------------------------------- notebooks

def collapse_injected_parameters(notebook_json: str) -> str:
    """The notebook with papermill's injected-parameters cell tagged ``hide-input``
    (unchanged when it has no such cell or the cell already has a presentation tag)."""
    notebook = json.loads(notebook_json)
    changed = False
    for cell in notebook.get("cells", []):
        tags = cell.setdefault("metadata", {}).setdefault("tags", [])
        if INJECTED_TAG in tags and not _PRESENTATION_TAGS & set(tags):
            tags.append("hide-input")
            changed = True
    return json.dumps(notebook) if changed else notebook_json


def _book_notebooks(app: Sphinx) -> list[Path]:
    srcdir = Path(app.srcdir)
    paths = [srcdir / name for name in toc_notebooks(Path(app.confdir) / "_toc.yml")]
    return [path for path in paths if path.is_file()]


def _summaries(app: Sphinx) -> list:
    from rkd.book.summary import read_summaries

    notebooks = _book_notebooks(app)
    for path in notebooks:
        app.env.note_dependency(str(path))
    return read_summaries(notebooks, root=Path(app.srcdir))


def _summary_section(app: Sphinx, docname: str, argument: str | None) -> str:
    from rkd.book.summary import summary_markdown

    return summary_markdown(_summaries(app))


def _rrd_section(app: Sphinx, docname: str, argument: str | None) -> str:
    from rkd.book.summary import rrd_markdown

    return rrd_markdown(_summaries(app))


def _performance_section(app: Sphinx, docname: str, argument: str | None) -> str:
    from rkd.book.performance import FigureTarget, performance_markdown

    folder = Path(app.srcdir) / app.config.rkd_benchmark_results
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        app.env.note_dependency(str(path))
    # the plots go into the build copy of the sources, beside the page that shows them
    figures = Path(app.env.doc2path(docname)).parent / "_generated" / "performance"
    return performance_markdown(folder, figures=FigureTarget(figures, "_generated/performance"))


def _tuning_section(app: Sphinx, docname: str, argument: str | None) -> str:
    from rkd.book.tuning import STORE_FILE, tuning_markdown

    folder = Path(app.srcdir) / app.config.rkd_results
    path = folder / STORE_FILE
    if path.is_file():
        app.env.note_dependency(str(path))
    else:
        logger.warning(f"[rkd] no tuning results: {path} is missing (python -m rkd.experiments.results refresh "
                       f"tuning writes it); the section says so", location=docname)
    return tuning_markdown(folder)


def _trunks_section(app: Sphinx, docname: str, argument: str | None) -> str:
    from rkd.book.trunks import trunks_markdown

    folder = Path(app.srcdir) / app.config.rkd_results
    for path in folder.glob("*.jsonl") if folder.is_dir() else []:
        app.env.note_dependency(str(path))
    return trunks_markdown(folder)


def _reference_section(app: Sphinx, docname: str, argument: str | None) -> str:
    from rkd.book.reference import ReferenceError, reference_markdown

    if not argument:
        raise ReferenceError("`% rkd-generated: reference` needs the module to document, e.g. "
                             "`% rkd-generated: reference rkd.losses`")
    return reference_markdown(argument)


#: the sections a page's ``% rkd-generated: <name> [argument]`` line is replaced by:
#: name -> generator(app, docname, argument) returning MyST Markdown
GENERATORS = {
    "summary": _summary_section,
    "rrd": _rrd_section,
    "performance": _performance_section,
    "tuning": _tuning_section,
    "trunks": _trunks_section,
    "reference": _reference_section,
}


def _generate(app: Sphinx, docname: str, name: str, argument: str | None = None) -> str:
    from rkd.book.performance import BenchmarkError
    from rkd.book.reference import ReferenceError
    from rkd.book.summary import SummaryError
    from rkd.book.trunks import TrunkError
    from rkd.book.tuning import TuningError

    generator = GENERATORS.get(name)
    if generator is None:
        logger.warning(f"[rkd] unknown generated section {name!r} (known: {', '.join(GENERATORS)})",
                       location=docname)
        return ""
    try:
        return generator(app, docname, argument)
    except (SummaryError, BenchmarkError, ReferenceError, TuningError, TrunkError) as error:
        logger.warning(f"[rkd] {error}", location=docname)
        return f"```{{error}}\nThis section could not be generated: {error}\n```\n"


def _source_read(app: Sphinx, docname: str, source: list[str]) -> None:
    path = Path(app.env.doc2path(docname))
    if path.suffix == ".ipynb":
        source[0] = collapse_injected_parameters(source[0])
        return
    if "% rkd-generated:" in source[0]:
        source[0] = _MARKER.sub(lambda m: _generate(app, docname, m.group("name"), m.group("argument")), source[0])


# ------------------------------------------------------------ figures of the notebooks

#: image outputs stored base64-encoded in a notebook (the others, SVG, as text)
_BASE64_IMAGES = ("image/png", "image/jpeg", "image/gif")
_IMAGES = (*_BASE64_IMAGES, "image/svg+xml")
#: a caption as the report pages display one: a single line wholly in emphasis
_CAPTION = re.compile(r"^\*(?P<text>[^*\n](?:[^\n]*[^*\n])?)\*$")


def _text(value: str | list[str]) -> str:
    return "".join(value) if isinstance(value, list) else value


def _image_digest(mime: str, content: str | list[str]) -> str:
    # the name myst-nb gives the image's file (myst_nb.core.render.MimeRenderPlugin.render_image)
    content = _text(content)
    data = base64.b64decode(content) if mime in _BASE64_IMAGES else os.linesep.join(content.splitlines()).encode()
    return hashlib.sha256(data).hexdigest()


def image_alt_texts(notebook: dict) -> dict[str, str]:
    """Alt text for the image outputs of a notebook (its JSON), keyed by the SHA-256 of
    the image's bytes: the output's ``alt`` metadata, else the caption (a one-line
    Markdown output in emphasis) the cell displayed just before the image."""
    alts: dict[str, str] = {}
    for cell in notebook.get("cells", []):
        caption = None
        for output in cell.get("outputs") or []:
            data = output.get("data") or {}
            for mime in _IMAGES:
                if mime in data:
                    alt = ((output.get("metadata") or {}).get(mime) or {}).get("alt") or caption
                    if alt:
                        alts[_image_digest(mime, data[mime])] = " ".join(str(alt).split())
            match = _CAPTION.match(_text(data.get("text/markdown", "")).strip())
            caption = match.group("text") if match else None
    return alts


def _name_notebook_figures(app: Sphinx, doctree: nodes.document) -> None:
    path = Path(app.env.doc2path(app.env.docname))
    if path.suffix != ".ipynb":
        return
    alts = image_alt_texts(json.loads(path.read_text(encoding="utf-8")))
    for image in doctree.findall(nodes.image):
        alt = alts.get(Path(image["uri"]).stem)
        if alt and not image.get("alt"):
            image["alt"] = alt


# ------------------------------------------------------------ the package's reference

def _link_internal(app: Sphinx, env, node, contnode):
    """A reference to a part of the package the reference does not document on its own
    (a submodule, a helper) links to the page of the package that holds it, or stays
    plain code where no page covers it; one to nothing in the package is left unresolved."""
    from sphinx.util.nodes import make_refnode

    from rkd.book.reference import internal_page, page_of

    if node.get("refdomain") != "py":
        return None
    found = internal_page(str(node["reftarget"]).lstrip("~."), node.get("py:module"), node.get("py:class"))
    if found is None:
        return None
    module, _ = found
    if module is None or page_of(module) not in env.all_docs:
        return contnode
    return make_refnode(app.builder, node["refdoc"], page_of(module), f"module-{module}", contnode, module)


# ------------------------------------------------------------------------ styles

#: the book's own styles, written to ``_static/rkd.css``
BOOK_CSS = """\
/* rkd-book (rkd/book/sphinx_ext.py) */
/* the parameters cell: its comments wrap inside the column instead of scrolling out of sight */
div.cell.tag_parameters div.highlight pre {
  white-space: pre-wrap;
  overflow-wrap: anywhere;
}
/* tables a little smaller than the prose, notebook output tables (the paper beside ours,
   the plan, the claims) compact: both to fit the column */
article.bd-article table {
  font-size: 0.9rem;
}
article.bd-article div.cell_output div.output table {
  font-size: 0.8rem;
}
article.bd-article div.cell_output div.output table th,
article.bd-article div.cell_output div.output table td {
  padding: 0.15rem 0.3rem;
}
"""


def _write_css(app: Sphinx, exception: Exception | None) -> None:
    if exception is not None or app.builder.format != "html":
        return
    (Path(app.outdir) / "_static" / "rkd.css").write_text(BOOK_CSS, encoding="utf-8")


# ------------------------------------------------------------------------ figures

def _draw_figures(app: Sphinx) -> None:
    from rkd.book.figures import draw_relational_potentials

    target = Path(app.srcdir) / "book" / "_generated" / FIGURE
    draw_relational_potentials(target)
    logger.info(f"[rkd] drew {target}")


def setup(app: Sphinx) -> dict[str, Any]:
    app.add_config_value("rkd_mathjax_dir", "", "html")
    app.add_config_value("rkd_benchmark_results", "benchmarks/results", "env")
    # the results store (the tuning section reads its tuning.jsonl), relative to the sources
    app.add_config_value("rkd_results", "results", "env")
    app.connect("config-inited", _check_mathjax_path)
    app.connect("builder-inited", lambda app: find_mathjax(app) if app.builder.format == "html" else None)
    app.connect("builder-inited", _draw_figures)
    app.connect("source-read", _source_read)
    app.connect("doctree-read", _name_notebook_figures)
    app.add_css_file("rkd.css")
    app.connect("missing-reference", _link_internal)
    app.connect("build-finished", _write_css)
    # after sphinx.ext.mathjax (priority 500) has added its script to the page
    app.connect("html-page-context", _offline_assets, priority=900)
    app.connect("build-finished", _copy_mathjax)
    # before sphinx-external-toc's own root page (priority 500), which then keeps ours
    app.connect("build-finished", _write_root_page, priority=400)
    app.connect("build-finished", _scan_site, priority=900)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}

"""Build-time helpers of the rkd book (Jupyter Book 1.x); nothing here is needed to train.

- :mod:`rkd.book.sphinx_ext`: the Sphinx extension ``_config.yml`` loads. It serves
  MathJax from the book itself, refuses any script or style sheet from outside the
  book, collapses papermill's injected-parameters cell, gives the notebooks' figures
  their alt text, styles the pages, draws the introduction's figure and fills the
  generated pages (summary, performance, the package's reference) at build time.
- :mod:`rkd.book.summary`: the summary of all tables, read from the notebooks'
  ``application/vnd.rkd.summary+json`` outputs.
- :mod:`rkd.book.performance`: the performance page, read from ``benchmarks/results/*.json``:
  its plots (:mod:`rkd.book.performance_figures`) and what each benchmark's file holds
  (:mod:`rkd.book.performance_kinds`).
- :mod:`rkd.book.tuning`: the Fidelity page's tuning of the baselines, read from
  ``results/tuning.jsonl``.
- :mod:`rkd.book.trunks`: the glyph-world page's pretrained trunks, read from
  ``results/table1.jsonl``.
- :mod:`rkd.book.figures`: the introduction's figure of the distance and angle potentials.
- :mod:`rkd.book.assemble`: the build copy of the book's sources (``make book`` never
  builds from, or writes to, tracked files).
- :mod:`rkd.book.browser`: loads every page of a built book in headless Chromium
  (Playwright) and reports missing images, broken internal links, console errors,
  requests that leave the book, raw Markdown, figures without alt text and elements
  wider than the column, with a screenshot of every page (the in-page checks are
  :mod:`rkd.book.page_scripts`); :mod:`rkd.book.offline` checks the files statically
  for resources from outside the book.
- :mod:`rkd.book.reference`: the package's reference pages (``book/api/``), generated
  from each module's ``__all__`` and rendered by autodoc from the docstrings.
- :mod:`rkd.book.markdown`: writing MyST text from data safely (escaping, tables).
"""

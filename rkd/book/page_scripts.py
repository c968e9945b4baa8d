"""The JavaScript the browser check (:mod:`rkd.book.browser`) runs in each page.

Each constant is a function Playwright's ``page.evaluate`` calls; it returns plain data
(lists of strings and numbers) that :func:`rkd.book.browser.check_site` turns into the
lines of a page's report. Kept apart from the Python that drives the browser so that each
reads on its own.
"""
from __future__ import annotations

__all__ = ["CHECKS_JS", "WIDTH_JS"]

# an element as a reader could find it: <tag#id.class> "its text"
_DESCRIBE_JS = """el => {
    const id = el.id ? '#' + el.id : '';
    const classes = Array.from(el.classList).slice(0, 3).map(c => '.' + c).join('');
    const text = (el.textContent || '').replace(/\\s+/g, ' ').trim().slice(0, 60);
    return `<${el.tagName.toLowerCase()}${id}${classes}>` + (text ? ` "${text}"` : '');
  }"""
#: Runs in the page once it has loaded: waits for MathJax and every image (lazy ones
#: made eager), then returns the maths typeset, the images that did not load, the links,
#: raw Markdown in the text (code, API signatures and maths are not prose, and are
#: skipped; a table rule's ``---`` may have become a dash by Sphinx's smart quotes) and
#: the figures without alt text.
CHECKS_JS = """
async () => {
  const CODE = 'pre, code, kbd, samp, script, style, template, noscript, textarea, math, mjx-container, '
             + '.math, .sig, .highlight';
  const describe = DESCRIBE;

  if (window.MathJax && MathJax.startup && MathJax.startup.promise) await MathJax.startup.promise;
  const maths = {
    maths: document.querySelectorAll('.math, .math-wrapper').length,
    rendered: document.querySelectorAll('mjx-container').length,
    errors: Array.from(document.querySelectorAll('mjx-merror')).map(e => e.textContent).slice(0, 5),
    mathjax: Boolean(window.MathJax && MathJax.version),
  };

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
  const brokenImages = images.filter(img => !img.complete || img.naturalWidth === 0)
                             .map(img => img.getAttribute('src') || img.currentSrc);
  const links = Array.from(document.querySelectorAll('a[href], area[href]')).map(a => a.href);

  const rawMarkdown = [];
  const walker = document.createTreeWalker(document.body || document.documentElement, NodeFilter.SHOW_TEXT);
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    if (!node.parentElement || node.parentElement.closest(CODE)) continue;
    for (const line of node.data.split('\\n')) {
      const text = line.trim();
      const what = /\\|\\s*:?[-\u2013\u2014]+:?\\s*\\|/.test(text) ? 'a table rule'
                 : text.startsWith('| ') ? 'a table row'
                 : text.includes('**') ? 'bold markers'
                 : /\\]\\([^)\\s]*\\)/.test(text) ? 'a link' : null;
      if (what) rawMarkdown.push([what, text.slice(0, 80)]);
    }
  }

  const noAlt = [];
  for (const img of images) {
    const alt = (img.getAttribute('alt') || '').trim(), src = img.getAttribute('src') || '';
    if (!alt) noAlt.push(`<img src="${src}"> has no alt text`);
    else if (alt === src || /\\.(png|jpe?g|gif|svg|webp)$/i.test(alt)) {
      noAlt.push(`<img src="${src}">: its alt text is a file name`);
    }
  }
  for (const svg of document.querySelectorAll('svg')) {
    if (svg.closest('[aria-hidden="true"], [role="presentation"], [role="none"]')) continue;
    if (svg.parentElement && svg.parentElement.closest('svg')) continue;
    const named = svg.getAttribute('aria-label') || svg.getAttribute('aria-labelledby')
                  || svg.querySelector(':scope > title');
    if (!named) {
      noAlt.push(`${describe(svg)} has no <title> or aria-label (nor aria-hidden="true")`);
    }
  }

  return {maths, brokenImages, links, rawMarkdown, noAlt};
}
""".replace("DESCRIBE", _DESCRIBE_JS)
#: Lists what is wider than the article column as the page first shows: an element that
#: sticks out of it, or a box inside it whose content runs past its right edge, to be
#: scrolled sideways. Code blocks may scroll, as code does everywhere; collapsed sections
#: (a page's full data tables, folded) are not opened; MathJax's copy of each formula for
#: screen readers sits off-screen on purpose and is not counted.
WIDTH_JS = """
() => {
  const describe = DESCRIBE;
  const column = document.querySelector('article.bd-article') || document.querySelector('main')
                 || document.body || document.documentElement;
  const edges = column.getBoundingClientRect();
  const scrolls = el => /auto|scroll|hidden|clip/.test(getComputedStyle(el).overflowX);
  const clipped = new Map([[column, false]]);  // inside a box that clips or scrolls sideways
  const isClipped = el => {
    if (!clipped.has(el)) {
      clipped.set(el, el.parentElement ? scrolls(el.parentElement) || isClipped(el.parentElement) : false);
    }
    return clipped.get(el);
  };
  const shown = el => {
    const box = el.getBoundingClientRect();
    return box.width > 0 && box.height > 0 && !el.closest('mjx-assistive-mml');
  };
  const hiddenSideways = el => {
    if (!(el.clientWidth > 0 && el.scrollWidth > el.clientWidth + 1 && scrolls(el))) return 0;
    const limit = el.getBoundingClientRect().left + el.clientLeft + el.clientWidth;
    let right = limit;
    for (const inner of el.querySelectorAll('*')) {
      if (shown(inner)) right = Math.max(right, inner.getBoundingClientRect().right);
    }
    return Math.round(right - limit);
  };
  const tooWide = [], reported = [];
  for (const el of column.querySelectorAll('*')) {
    if (reported.some(outer => outer.contains(el)) || !shown(el)) continue;
    const box = el.getBoundingClientRect();
    const out = Math.round(Math.max(box.right - edges.right, edges.left - box.left));
    const hidden = el.closest('pre, .highlight') ? 0 : hiddenSideways(el);
    if (!isClipped(el) && out > 1) tooWide.push([describe(el), out, 'sticks out of the column']);
    else if (hidden > 1) tooWide.push([describe(el), hidden, 'to be scrolled sideways']);
    else continue;
    reported.push(el);
    if (reported.length >= 10) break;
  }
  return tooWide;
}
""".replace("DESCRIBE", _DESCRIBE_JS)

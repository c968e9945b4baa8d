"""The results pages: what every table's page shows, written once.

- :mod:`rkd.report.stats`: the paper's claims judged with statistics (paired t-intervals
  over seeds, and over episodes in few-shot);
- :mod:`rkd.report.page`: the cells of a page (the box at the top, the protocol table,
  the paper's numbers beside ours, the verdicts, every number, the summary record);
- :mod:`rkd.report.plots`: the figures (paper and ours side by side, error bars over seeds);
- :mod:`rkd.experiments.notebook` writes the notebook every page is run from.
"""

"""Measurements and the printed table: the median of the repeats, the range, and ours/Celery.

Each :class:`Metric` collects one value per repeat for Celeriac and (when Celery has an
equivalent) for Celery. The table shows the medians, the range over the repeats in brackets,
and the ratio ours/Celery of the medians; the ``better`` column says which way is better, so
a ratio reads the same way for rates (higher) and for latencies, CPU and memory (lower).
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field

HIGHER, LOWER = "higher", "lower"


@dataclass
class Metric:
    section: str
    name: str
    unit: str
    better: str
    ours: list[float] = field(default_factory=list)
    theirs: list[float] = field(default_factory=list)
    comparable: bool = True
    """False for figures Celery has no counterpart of (operator, scheduler failover, broker ceiling)."""

    def ratio(self) -> str:
        if not self.comparable or not self.ours or not self.theirs:
            return "—"
        theirs = statistics.median(self.theirs)
        return f"{statistics.median(self.ours) / theirs:.2f}x" if theirs else "—"


def figure(values: Sequence[float]) -> str:
    """Median with the range over the repeats: ``1,234 [1,100-1,300]``."""
    if not values:
        return "—"
    median = statistics.median(values)
    if len(values) == 1:
        return _fmt(median)
    return f"{_fmt(median)} [{_fmt(min(values))}-{_fmt(max(values))}]"


def _fmt(value: float) -> str:
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.3f}" if abs(value) < 1 else f"{value:.2f}"


def table_lines(metrics: Sequence[Metric]) -> list[str]:
    headers = ["section", "metric", "unit", "better", "celeriac", "celery", "ours/celery"]
    sections = list(dict.fromkeys(m.section for m in metrics))
    metrics = sorted(metrics, key=lambda m: sections.index(m.section))  # stable: grouped, in run order
    rows = [[m.section, m.name, m.unit, m.better, figure(m.ours), figure(m.theirs) if m.comparable else "—",
             m.ratio()] for m in metrics]
    return markdown(headers, rows)


def markdown(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(headers[i]), *(len(row[i]) for row in rows)) if rows else len(headers[i])
              for i in range(len(headers))]
    lines = ["| " + " | ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)) + " |",
             "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    lines += ["| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |" for row in rows]
    return lines

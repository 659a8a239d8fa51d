"""Plain-text rendering of scores for the terminal."""
from __future__ import annotations

from harness.metrics import METRIC_NAMES
from harness.scoring import SPLITS, ScoreReport


def format_table(rows: list[list[str]], align_right: set[int] | None = None) -> str:
    """A fixed-width table; the first row is the header."""
    align_right = align_right or set()
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    out = []
    for n, row in enumerate(rows):
        cells = [c.rjust(w) if i in align_right else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths))]
        out.append("  ".join(cells).rstrip())
        if n == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


def format_report(report: ScoreReport, per_class_split: str = "all") -> str:
    """Splits x metrics, the primary metric's 95 % interval, then the per-class table."""
    header = ["split", "rows", *METRIC_NAMES, f"95% CI ({report.primary_metric})"]
    rows = [header]
    for name in SPLITS:
        s = report.split(name)
        rows.append(
            [name, str(s.n), *(f"{s.metric(m):.4f}" for m in METRIC_NAMES), f"[{s.ci_low:.4f}, {s.ci_high:.4f}]"]
        )
    text = [format_table(rows, align_right=set(range(1, len(header))))]
    split = report.split(per_class_split)
    per_class = [["class", "precision", "recall", "f1", "support"]] + [
        [c.name, f"{c.precision:.4f}", f"{c.recall:.4f}", f"{c.f1:.4f}", str(c.support)] for c in split.per_class
    ]
    text.append(f"\nper class ({per_class_split} rows):")
    text.append(format_table(per_class, align_right={1, 2, 3, 4}))
    return "\n".join(text)

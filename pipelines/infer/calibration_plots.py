"""report.html's calibration section: the reliability diagram and the coverage table, drawn from
metrics.json's `calibration` and `abstention` entries (pipelines/calibration.py)."""

from __future__ import annotations

from typing import Any

from .plots import figure, literal_text


def reliability_figure(cal: dict[str, Any]):
    """Accuracy against mean top-1 score per bin, before and after temperature scaling; the
    diagonal is perfect calibration, a bin's marker area its share of the examples."""
    with literal_text():  # labels are drawn as typed, never as mathtext
        return _reliability(cal)


def _reliability(cal: dict[str, Any]):
    fig = figure(5.2, 4.4)
    ax = fig.subplots()
    ax.plot([0, 1], [0, 1], color="#999", lw=1, ls="--", label="perfectly calibrated")
    curves = cal.get("reliability") or {}
    nan = float("nan")
    styles = {"before": ("#d62728", f"T = 1 (ECE {cal.get('ece_before', nan):.3f})"),
              "after": ("#1f77b4", f"T = {cal.get('temperature', 1):.2f} (ECE {cal.get('ece', nan):.3f})")}  # fmt: skip
    for key, (colour, label) in styles.items():
        bins = [b for b in curves.get(key) or [] if b.get("count")]
        if not bins:
            continue
        total = sum(b["count"] for b in bins)
        x, y = [b["score"] for b in bins], [b["accuracy"] for b in bins]
        ax.plot(x, y, color=colour, lw=1.2, label=label)
        ax.scatter(x, y, s=[12 + 300 * b["count"] / total for b in bins], color=colour, alpha=0.6)
    ax.set(xlim=(0, 1), ylim=(0, 1.02), xlabel="mean top-1 score in the bin", ylabel="accuracy in the bin")
    ax.legend(loc="upper left", fontsize=8)
    return fig


def coverage_rows(ab: dict[str, Any]) -> list[tuple[float, float, float | None]]:
    """(min score, coverage, accuracy on the answers) for the curve's thresholds and the stored one."""
    rows = [(r["min_score"], r["coverage"], r["accuracy"]) for r in ab.get("curve") or []]
    if "coverage" in ab:
        rows.append((ab["min_score"], ab["coverage"], ab["accuracy"]))
    return sorted(set(rows), key=lambda r: r[0])

"""Figures for report.html, `attn explain --out` and TensorBoard, drawn with matplotlib.

matplotlib is imported here only, inside the functions, and never through pyplot: figures are
plain `Figure` objects rendered by the Agg canvas, so nothing touches a global backend or a
display, and `attn predict` and `attn --help` never import it.
"""

from __future__ import annotations

import functools
import io
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

DPI = 100


def _writable_config_dir() -> None:
    """Give matplotlib a writable config folder before it is imported. Where $HOME is read-only
    (a batch job's sandbox) it makes a temporary one itself but says so in two warnings on
    stderr, which `--quiet` cannot silence; this makes the same temporary folder, silently, and
    removes it at exit."""
    import os
    import sys

    if "matplotlib" in sys.modules or os.environ.get("MPLCONFIGDIR"):
        return
    home = os.path.expanduser("~")
    default = os.path.join(os.environ.get("XDG_CONFIG_HOME") or os.path.join(home, ".config"), "matplotlib")
    probe = default
    while not os.path.exists(probe) and os.path.dirname(probe) != probe:
        probe = os.path.dirname(probe)  # the nearest folder that exists: matplotlib would make the rest
    if os.access(probe, os.W_OK | os.X_OK):
        return
    import atexit
    import shutil
    import tempfile

    folder = tempfile.mkdtemp(prefix="attn-matplotlib-")
    atexit.register(shutil.rmtree, folder, True)
    os.environ["MPLCONFIGDIR"] = folder


_writable_config_dir()


@contextmanager
def literal_text():
    """Draw every string as written: labels, texts and file names are the user's, and matplotlib
    would read `$...$` in them as mathtext (a bad command fails the whole figure, a good one
    draws `$\\frac{1}{2}$` as "1/2"). Text objects read these settings when they are made, and
    tick labels are made again at draw time, so both building and rendering go inside.

    A character the font lacks (CJK with the bundled DejaVu fonts, control characters) is drawn
    as an empty box; matplotlib's warning about it, once per glyph and figure, is not shown."""
    import warnings

    import matplotlib

    with matplotlib.rc_context({"text.parse_math": False, "text.usetex": False}), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"Glyph \d+ .*missing from font", category=UserWarning)
        yield


def _literal(fn):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with literal_text():
            return fn(*args, **kwargs)

    return wrapper


def figure(width: float, height: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=DPI, layout="constrained")


@_literal
def png_bytes(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    return buf.getvalue()


def write_png(path: Path, fig) -> None:
    from ..fsutil import atomic_write_bytes

    atomic_write_bytes(path, png_bytes(fig))


# -- the run report ------------------------------------------------------------------------------


@_literal
def curves_figure(history: list[dict[str, Any]]):
    """Loss (left) and accuracy (right) per epoch, train and validation; the best epoch marked.
    An ensemble's history (records with "member") draws one line per member, a cross-validation's
    (records with "fold") one per fold (they were joined into one line, fold after fold)."""
    fig = figure(9.5, 3.4)
    ax_loss, ax_acc = fig.subplots(1, 2)
    runs: dict[Any, list[dict[str, Any]]] = {}
    for r in history:
        runs.setdefault(("fold", r["fold"]) if "fold" in r else ("member", r.get("member")), []).append(r)
    colors = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown", "tab:pink")
    for i, ((kind, member), recs) in enumerate(runs.items()):
        tag = "" if member is None else f" ({kind} {member})"
        c = colors[i % len(colors)]
        ep = [r["epoch"] for r in recs]
        for ax, key, style, name in ((ax_loss, "train_loss", "--", "train"), (ax_loss, "val_loss", "-", "validation"),
                                     (ax_acc, "train_accuracy", "--", "train"),
                                     (ax_acc, "val_accuracy", "-", "validation")):  # fmt: skip
            pts = [(e, r[key]) for e, r in zip(ep, recs, strict=True) if r.get(key) is not None]
            if pts:  # train: dashed and lighter, without markers (with them its legend entry looked solid)
                dots = "." if len(pts) < 30 and style == "-" else None
                ax.plot(*zip(*pts, strict=True), style, color=c, marker=dots, alpha=1.0 if style == "-" else 0.6,
                        label=name + tag)  # fmt: skip
        best = [r["epoch"] for r in recs if r.get("best")]
        if best:
            for ax in (ax_loss, ax_acc):
                ax.axvline(best[-1], color=c, alpha=0.35, linewidth=1.2)
            ax_acc.annotate(f"best {best[-1]}", (best[-1], 0.02), xycoords=("data", "axes fraction"), color=c,
                            fontsize=8, rotation=90, ha="right", va="bottom")  # fmt: skip
    ax_loss.set(title="loss", xlabel="epoch")
    ax_acc.set(title="accuracy", xlabel="epoch")
    from matplotlib.ticker import MaxNLocator

    for ax in (ax_loss, ax_acc):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=7, handlelength=3.5)  # long enough to show the dashes
    return fig


@_literal
def confusion_figure(confusion: list[list[int]], labels: list[str]):
    """Heat map of counts, rows true and columns predicted, each cell's count written in it."""
    cm = np.asarray(confusion, dtype=np.int64)
    k = len(labels)
    size = min(11.0, 2.2 + 0.45 * k)
    fig = figure(size + 1.0, size)
    ax = fig.subplots()
    share = cm / np.maximum(cm.sum(1, keepdims=True), 1)  # colour by row share: classes differ in size
    im = ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(im, ax=ax, shrink=0.8, label="share of the true class")
    if k <= 30:
        for i in range(k):
            for j in range(k):
                if cm[i, j]:
                    ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=8 if k <= 12 else 6,
                            color="white" if share[i, j] > 0.5 else "black")  # fmt: skip
    ax.set_xticks(range(k), labels, rotation=45 if k > 4 else 0, ha="right" if k > 4 else "center", fontsize=8)
    ax.set_yticks(range(k), labels, fontsize=8)
    ax.set(xlabel="predicted", ylabel="true")
    return fig


@_literal
def logmel_thumb(logmel: np.ndarray, seconds: float):
    """A small log-mel image (n_mels, frames) in dB."""
    fig = figure(2.6, 1.3)
    ax = fig.subplots()
    ax.imshow(logmel, origin="lower", aspect="auto", cmap="magma", extent=(0, seconds, 0, logmel.shape[0]),
              vmin=logmel.max() - 80)  # fmt: skip
    ax.set_xlabel("s", fontsize=7)
    ax.tick_params(labelsize=6)
    ax.set_yticks([])
    return fig


@_literal
def events_timeline_figure(timeline: dict[str, Any]):
    """One recording's events: the annotations ("truth") above the model's ("predicted"), a bar
    per event with its label; `timeline` = {file, duration, truth: [[label, start, end]], predicted: [...]}."""
    fig = figure(9.0, 1.8)
    ax = fig.subplots()
    for row, key, color in ((1, "truth", "tab:green"), (0, "predicted", "tab:blue")):
        for label, start, end in timeline.get(key, []):
            ax.broken_barh([(start, end - start)], (row - 0.35, 0.7), color=color, alpha=0.6)
            ax.text((start + end) / 2, row, str(label), ha="center", va="center", fontsize=7)
    ax.set_yticks([0, 1], ["predicted", "truth"], fontsize=8)
    ax.set_xlim(0, timeline.get("duration") or 1)
    ax.set_ylim(-0.6, 1.6)
    ax.set_xlabel("seconds", fontsize=8)
    ax.set_title(Path(str(timeline.get("file", ""))).name, fontsize=8)
    ax.tick_params(labelsize=7)
    return fig


# -- attn explain --------------------------------------------------------------------------------


@_literal
def explain_figure(rec: dict[str, Any], logmel: np.ndarray | None = None, seconds: float = 0.0,
                   channels_are_mels: bool = False):  # fmt: skip
    """Text: the tokens in a strip, each shaded by its weight. Audio: the window's log-mel with the
    weights over it (per band when the record has a grid on mel channels) and under it."""
    if "tokens" in rec:
        return token_strip(rec["tokens"], rec["weights"], f"{rec['label']} ({rec['score']:.3f})")
    fig = figure(8, 4.2)
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=(3, 1))
    n_mels = logmel.shape[0]
    t0 = rec["window"][0]  # seconds in the file, as the record's positions (a long file's window: 12.0-13.0 s)
    top.imshow(logmel, origin="lower", aspect="auto", cmap="gray", extent=(t0, t0 + seconds, 0, n_mels),
               vmin=logmel.max() - 80)  # fmt: skip
    pos = np.asarray(rec["positions"]) if rec["positions"] else np.zeros((0, 2))
    weights = np.asarray(rec["weights"])
    if "grid" in rec and channels_are_mels:
        grid = np.asarray(rec["grid"])
        vmax = max(grid.max(), 1e-12)
        for f, (lo, hi) in enumerate(rec["bands"]):
            for p, (s, e) in enumerate(pos):
                if grid[f, p] > 0:
                    top.add_patch(_rect(s, lo, e - s, min(hi, n_mels) - lo, grid[f, p] / vmax))
    else:
        vmax = max(weights.max(), 1e-12) if len(weights) else 1.0
        for (s, e), w in zip(pos, weights, strict=True):
            if w > 0:
                top.add_patch(_rect(s, 0, e - s, n_mels, w / vmax * 0.8))
    title = f"{rec['input']}: {rec['label']} ({rec['score']:.3f}), {rec['method']}"
    if "fall" in rec:  # how much the strongest stretch moves the score at all (a saturated model: next to nothing)
        title += f", largest fall in log p {rec['fall']:.2g}"
    top.set(ylabel="mel band", title=title)
    top.title.set_fontsize(9)
    bottom.bar(pos[:, 0], weights, width=pos[:, 1] - pos[:, 0], align="edge", color="tab:orange")
    bottom.set(xlabel="seconds in the file", ylabel="weight", xlim=(t0, t0 + seconds))
    return fig


def _rect(x: float, y: float, w: float, h: float, alpha: float):
    from matplotlib.patches import Rectangle

    return Rectangle((x, y), w, h, facecolor="tab:orange", edgecolor="none", alpha=float(np.clip(alpha, 0, 1)) * 0.7)


@_literal
def token_strip(tokens: list[str], weights: list[float], title: str = "", width_px: int = 800):
    """Tokens laid out left to right (wrapped at `width_px`), each on a background as dark as its
    weight (the largest weight darkest)."""
    from matplotlib import colormaps
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.font_manager import FontProperties

    font = FontProperties(family="monospace", size=12)
    renderer = FigureCanvasAgg(figure(1, 1)).get_renderer()
    pad, gap, line_h = 10.0, 9.0, 28.0
    placed, x, row = [], pad, 0  # (token, weight, x, row)
    for t, w in zip(tokens, weights, strict=True):
        tw = renderer.get_text_width_height_descent(t, font, ismath=False)[0]
        if x + tw > width_px - pad and x > pad:
            x, row = pad, row + 1
        placed.append((t, w, x, row))
        x += tw + gap
    top_px = 26.0 if title else pad
    height_px = top_px + line_h * (row + 1) + pad
    fig = figure(width_px / DPI, height_px / DPI)
    fig.set_layout_engine(None)
    FigureCanvasAgg(fig)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_axis_off()
    ax.set(xlim=(0, width_px), ylim=(height_px, 0))
    most = max(weights) if weights else 1.0
    cmap = colormaps["Oranges"]
    for t, w, x0, r in placed:
        level = w / most if most > 0 else 0.0
        ax.text(x0, top_px + line_h * (r + 0.5), t, fontproperties=font, va="center", ha="left",
                color="white" if level > 0.6 else "black",
                bbox={"facecolor": cmap(0.05 + 0.9 * level), "edgecolor": "none", "pad": 3})  # fmt: skip
    if title:
        ax.text(pad, 14, title, fontsize=10, va="center", ha="left")
    return fig


@_literal
def pr_figure(curves: list[dict[str, Any]]):
    """Per-class precision-recall curves (multi-label), one panel per class, each with its
    decision threshold marked. `curves`: {label, precision, recall, at: (recall, precision), ap}."""
    n = len(curves)
    cols = min(5, max(1, n))
    rows = -(-n // cols)
    fig = figure(2.4 * cols, 2.2 * rows)
    for i, c in enumerate(curves):
        ax = fig.add_subplot(rows, cols, i + 1)
        ax.step(c["recall"], c["precision"], where="post", lw=1.2)
        if c.get("at") is not None:
            ax.plot(*c["at"], "o", color="C3", ms=5, label="threshold")
        ap = "" if c.get("ap") is None else f" (AP {c['ap']:.2f})"
        ax.set_title(f"{c['label'][:20]}{ap}", fontsize=8)
        ax.set_xlim(0, 1.02)
        ax.set_ylim(0, 1.02)
        ax.tick_params(labelsize=6)
        if i % cols == 0:
            ax.set_ylabel("precision", fontsize=7)
        if i >= n - cols:
            ax.set_xlabel("recall", fontsize=7)
    return fig

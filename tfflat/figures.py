"""The figures' common ground: matplotlib (Agg) in one style, each figure saved as PNG and PDF.

Also the pieces every figure of tfflat draws the same way: panel titles with the paper's letters,
the correlation box, the identity line, the zero-error and α-rescaling markers, and the hollow
marker for a point whose sharpness ascent did not converge.
"""

from __future__ import annotations

import string
from pathlib import Path

import numpy as np

from tfflat import runs

STYLE = {
    "font.size": 8, "axes.titlesize": 8, "axes.labelsize": 8, "legend.fontsize": 7,
    "xtick.labelsize": 7, "ytick.labelsize": 7, "axes.spines.top": False, "axes.spines.right": False,
    "savefig.dpi": 300, "figure.dpi": 100, "pdf.fonttype": 42, "ps.fonttype": 42, "lines.linewidth": 1.0,
    "legend.frameon": False,
}
CMAP = "viridis"
POINT = dict(s=16, edgecolors="k", linewidths=0.3)            # a measured point
ZERO_ERROR = dict(color="green", ls="--", lw=0.8)             # the zero-error epoch (Figs. 5, S11, S13–S15)
RESCALING = dict(color="red", ls="--", lw=0.8)                # the α-rescaling epoch
PANEL_W, PANEL_H = 2.3, 2.0                                   # inches per scatter panel


def pyplot():
    """matplotlib.pyplot on the Agg backend with the figures' :data:`STYLE`."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    plt.rcParams.update(STYLE)
    return plt


def save(fig, path: Path) -> list[Path]:
    """Save ``fig`` as PNG and PDF next to each other (atomically, through :mod:`tfflat.runs`)."""
    import io

    out = []
    for i, ext in enumerate(("png", "pdf")):
        if i == 1 and fig.get_layout_engine() is not None:
            fig.set_layout_engine("none")        # the layout is done: the PDF keeps the PNG's positions
        buf = io.BytesIO()
        fig.savefig(buf, format=ext)
        p = path.with_suffix(f".{ext}")
        runs.atomic_write(p, buf.getvalue())
        out.append(p)
    return out


def letter(i: int) -> str:
    """The paper's panel letters: 0 → "(a)", 25 → "(z)", 26 → "(aa)"."""
    a = string.ascii_lowercase
    return f"({a[i]})" if i < 26 else f"({a[i // 26 - 1]}{a[i % 26]})"


def panel_title(ax, i: int | None, text: str = "") -> None:
    """Title a panel "(b) text" (left-aligned); ``i`` None: the text only."""
    ax.set_title((letter(i) + "  " if i is not None else "") + text, loc="left")


def emptiest_corner(ax, x, y) -> tuple[float, float, str, str]:
    """(x, y, ha, va) in axes coordinates of the panel corner with the fewest of the points (x, y)."""
    ax.autoscale_view()
    pts = np.column_stack([np.asarray(x, float), np.asarray(y, float)])
    pts = pts[np.isfinite(pts).all(axis=1)]
    frac = ax.transAxes.inverted().transform(ax.transData.transform(pts)) if len(pts) else np.zeros((0, 2))
    corners = [(0.03, 0.97, "left", "top"), (0.97, 0.97, "right", "top"),
               (0.03, 0.03, "left", "bottom"), (0.97, 0.03, "right", "bottom")]

    def crowd(c):
        cx, cy = (c[0] < 0.5), (c[1] > 0.5)
        inx = frac[:, 0] < 0.5 if cx else frac[:, 0] > 0.5
        iny = frac[:, 1] > 0.6 if cy else frac[:, 1] < 0.4
        return int(np.sum(inx & iny))

    return min(corners, key=crowd)          # ties: the first, upper left


def correlation_box(ax, x, y, note: str = "") -> None:
    """Pearson r, Spearman ρ and Kendall τ of the drawn points (and a ``note`` line) in the panel's
    emptiest corner."""
    from tfflat.stats import correlations

    c = correlations(x, y)
    lines = ([f"r = {c['pearson_r']:.2f}", f"ρ = {c['spearman_rho']:.2f}", f"τ = {c['kendall_tau']:.2f}"]
             if c["n"] >= 3 and np.isfinite(c["pearson_r"]) else [])
    if note:
        lines.append(note)
    if lines:
        px, py, ha, va = emptiest_corner(ax, x, y)
        ax.text(px, py, "\n".join(lines), transform=ax.transAxes, va=va, ha=ha, fontsize=6.5,
                bbox=dict(boxstyle="round,pad=0.25", fc="white", ec="0.8", lw=0.5, alpha=0.85), zorder=5)


def identity_line(ax, square: bool = True) -> None:
    """A dotted y = x, labelled at its end: across both axes' range with equal limits (``square``),
    or across the x range."""
    xlim, ylim = ax.get_xlim(), ax.get_ylim()
    lo, hi = (min(xlim[0], ylim[0]), max(xlim[1], ylim[1])) if square else xlim
    ax.plot([lo, hi], [lo, hi], color="0.55", lw=0.8, ls=":", zorder=0)
    if square:
        ax.set_xlim(lo, hi)
        ax.set_ylim(lo, hi)
    else:
        ax.set_xlim(xlim)
    ax.annotate("y = x", (hi, hi), xytext=(-2, 2), textcoords="offset points", ha="right", va="bottom",
                fontsize=6, color="0.4", annotation_clip=True)


def level_line(ax, y: float, text: str) -> None:
    """A dashed horizontal line at ``y``, labelled at its right end."""
    ax.axhline(y, color="0.35", lw=0.6, ls="--", zorder=0)
    ax.annotate(text, (1, y), xycoords=("axes fraction", "data"), xytext=(-2, 2), textcoords="offset points",
                ha="right", va="bottom", fontsize=6, color="0.3")


def scatter(ax, x, y, c, norm, hollow=None, cmap: str = CMAP):
    """Points coloured by ``c`` under ``norm``; those where ``hollow`` is true drawn as open circles
    (used for an unconverged sharpness ascent). Non-finite points are left out. Returns the mappable."""
    x, y, c = (np.asarray(v, float) for v in (x, y, c))
    hollow = np.zeros(len(x), bool) if hollow is None else np.asarray(hollow, bool)
    ok = np.isfinite(x) & np.isfinite(y)
    full, empty = ok & ~hollow, ok & hollow
    sc = ax.scatter(x[full], y[full], c=c[full], cmap=cmap, norm=norm, **POINT)
    if empty.any():
        import matplotlib

        colours = matplotlib.colormaps[cmap](norm(c[empty]))
        ax.scatter(x[empty], y[empty], facecolors="none", edgecolors=colours, s=POINT["s"], linewidths=0.9)
    return sc


def auto_scale(ax, which: str = "y") -> None:
    """Log scale when the drawn data span more than a decade, else linear (readable ticks either way)."""
    import matplotlib.ticker as mticker

    lo, hi = getattr(ax, f"{which}axis").get_data_interval()
    if lo > 0 and hi / lo > 10:
        getattr(ax, f"set_{which}scale")("log")
    else:
        getattr(ax, f"{which}axis").set_major_formatter(mticker.ScalarFormatter(useOffset=False))


def hollow_note(n: int) -> str:
    """The correlation box's line for the open circles of :func:`scatter`."""
    return f"○ {n} unconverged" if n else ""

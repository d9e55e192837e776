"""The figures' common ground: matplotlib (Agg) in one style, each figure saved as PNG and PDF."""

from __future__ import annotations

from pathlib import Path

from tfflat import runs

STYLE = {
    "font.size": 8, "axes.titlesize": 8, "axes.labelsize": 8, "legend.fontsize": 7,
    "xtick.labelsize": 7, "ytick.labelsize": 7, "axes.spines.top": False, "axes.spines.right": False,
    "savefig.dpi": 300, "figure.dpi": 100, "pdf.fonttype": 42, "ps.fonttype": 42, "lines.linewidth": 1.0,
}


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
    for ext in ("png", "pdf"):
        buf = io.BytesIO()
        fig.savefig(buf, format=ext)
        p = path.with_suffix(f".{ext}")
        runs.atomic_write(p, buf.getvalue())
        out.append(p)
    return out

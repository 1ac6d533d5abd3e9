"""Comparison plots (matplotlib object API, Agg canvas; no global pyplot state).

Each figure has the objective trace, truth against estimate after label
alignment, and the model's own panel (its ``emref_plot`` hook), or
``EMREF_PLOT_PANELS`` panels when the model file sets that number.
Every call writes the one file it is given, so parallel tests never share one.
"""

from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from .checks import aligned


def _trace(ax, history):
    h = np.asarray(history, dtype=float)
    it = np.arange(len(h))
    ax.plot(it, h, "o-", ms=2.5, lw=1)
    ax.set_xlabel("iteration")
    ax.set_ylabel("objective")
    ax.set_title(f"objective trace ({len(h) - 1} iterations)")
    if len(h) > 2:
        gap = h[-1] - h
        pos = gap > 0
        if pos.any():
            inset = ax.inset_axes([0.45, 0.12, 0.5, 0.45])
            inset.semilogy(it[pos], gap[pos], lw=1, color="C1")
            inset.set_title("final − objective", fontsize=7)
            inset.tick_params(labelsize=6)


def _truth_vs_estimate(ax, model, truth, params):
    est = {k: v for k, v in aligned(model, truth, params).items() if k in truth}
    lo, hi = np.inf, -np.inf
    for i, name in enumerate(sorted(est)):
        t = np.asarray(truth[name], dtype=float).ravel()
        e = est[name].ravel()
        ax.scatter(t, e, s=12, color=f"C{i}", label=name, alpha=0.8)
        lo, hi = min(lo, t.min(), e.min()), max(hi, t.max(), e.max())
    pad = 0.05 * (hi - lo or 1.0)
    ax.plot([lo - pad, hi + pad], [lo - pad, hi + pad], "k--", lw=0.8)
    ax.set_xlabel("true")
    ax.set_ylabel("estimate (aligned)")
    ax.set_title("truth vs estimate")
    ax.legend(fontsize=7, loc="upper left")


def plot_fit(model, truth, est, X, z, path, title=""):
    """Write the three-panel comparison figure of one fit to ``path`` (PNG)."""
    panels = int(getattr(model.module, "EMREF_PLOT_PANELS", 1))
    fig = Figure(figsize=(5 * (2 + panels), 4.5), layout="constrained")
    FigureCanvasAgg(fig)
    axes = list(fig.subplots(1, 2 + panels))
    params = model.params(est)
    _trace(axes[0], est.history_)
    _truth_vs_estimate(axes[1], model, truth, params)
    if model.has("emref_plot"):
        own = axes[2] if panels == 1 else axes[2:]
        model.module.emref_plot(own, model.variant, truth, aligned(model, truth, params), X, z)
    else:
        for ax in axes[2:]:
            ax.set_axis_off()
    fig.suptitle(title or model.id)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    return path

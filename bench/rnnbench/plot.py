"""The speed-up figure (needs matplotlib)."""
import math
import statistics

from .config import MODES
from .report import _mkdir


def write_plot(path, info, rows, contenders):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    modes = [m for m in MODES.values() if any(r["mode"] == m for r in rows)]
    fig, axes = plt.subplots(len(modes), 2, figsize=(11, 4 * len(modes)), squeeze=False)
    for i, mode in enumerate(modes):
        for j, axis in enumerate(("H", "B")):
            ax, plotted = axes[i][j], [1.0]
            for con in contenders:
                if con.key == "fused":
                    continue
                for dt in dict.fromkeys(r["dtype"] for r in rows):
                    pts = {}
                    for r in rows:
                        if r["mode"] == mode and r["dtype"] == dt and r.get(f"x_{con.key}"):
                            pts.setdefault(r[axis], []).append(r[f"x_{con.key}"])
                    if pts:   # geometric mean over the rows that share this x
                        xs = sorted(pts)
                        ys = [math.exp(statistics.fmean(math.log(v) for v in pts[x])) for x in xs]
                        ax.plot(xs, ys, marker="o", label=f"vs nn.RNN {con.label}, {dt}")
                        plotted += ys
            ax.axhline(1.0, color="gray", lw=0.8, ls="--")
            ax.set_xscale("log", base=2)
            if max(plotted) / min(plotted) > 20:
                ax.set_yscale("log")
            ax.set_xlabel(axis)
            ax.set_ylabel("speed-up (nn.RNN time / FusedRNN time)")
            ax.set_title(f"{mode}: speed-up vs {axis}")
            ax.legend(fontsize=8)
    fig.suptitle(f"{info['device']}, {info['threads']} threads, torch {info['torch']}", fontsize=10)
    fig.tight_layout()
    fig.savefig(_mkdir(path), dpi=110)
    plt.close(fig)



"""The figures (need matplotlib): speed-up and memory along controlled sweeps.

A controlled sweep is a set of rows of one pass that agree on everything (B, H, T, I, layers,
direction, dtype) but one of B, H, T. Each line of a figure is one sweep; what it holds fixed is
named in the panel's title (what all its lines share) and in the line's label (the rest). Rows
that form no sweep are in the table and the CSV, not in the figures.
"""
import os

from .config import MODES
from .report import _mkdir

AXES = ("B", "H", "T")
FIXED_KEYS = ("B", "H", "T", "I", "L", "dir", "dtype")


def _fixed(r, var):
    """The values a sweep along var holds fixed (I is 'I=H' where it follows H)."""
    out = []
    for k in FIXED_KEYS:
        if k == var:
            continue
        if k == "I":
            out.append(("I", "=H" if r["I"] == r["H"] else r["I"]))
        else:
            out.append((k, r[k]))
    return tuple(out)


def _describe(items):
    parts = []
    for k, v in items:
        if k == "I":
            if v != "=H":
                parts.append(f"I={v}")
        elif k == "L":
            if v != 1:
                parts.append(f"L={v}")
        elif k == "dir":
            if v != "uni":
                parts.append(v)
        elif k == "dtype":
            parts.append(str(v))
        else:
            parts.append(f"{k}={v}")
    return " ".join(parts)


def sweeps(rows, mode, var, metric):
    """[(fixed items, [(x, y)] sorted by x)] for the rows of `mode` that have `metric`, grouped by
    everything but var; only groups with at least two values of var."""
    groups = {}
    for r in rows:
        if r.get("mode") != mode or r.get(metric) is None:
            continue
        groups.setdefault(_fixed(r, var), {})[r[var]] = r[metric]
    return [(fixed, sorted(pts.items())) for fixed, pts in groups.items() if len(pts) >= 2]


def _title_and_labels(groups):
    """What every sweep of a panel shares (for the title) and what tells them apart (labels)."""
    shared = set(groups[0][0]).intersection(*[set(f) for f, _ in groups[1:]]) if groups else set()
    common = [kv for kv in groups[0][0] if kv in shared] if groups else []
    labels = [_describe([kv for kv in f if kv not in shared]) for f, _ in groups]
    return _describe(common), labels


def _panels(rows, metrics):
    """[(mode, var)] that have at least one sweep for any of metrics."""
    out = []
    for mode in MODES.values():
        for var in AXES:
            if any(sweeps(rows, mode, var, m) for m in metrics):
                out.append((mode, var))
    return out


def _figure(panels, title, draw, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    ncols = min(3, len(panels))
    nrows = (len(panels) + ncols - 1) // ncols
    fig, axes = plt.subplots(nrows, ncols, figsize=(5.2 * ncols, 4.2 * nrows), squeeze=False)
    for ax, panel in zip([a for row in axes for a in row], panels):
        draw(ax, *panel)
    for ax in [a for row in axes for a in row][len(panels):]:
        ax.axis("off")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(_mkdir(path), dpi=110)
    plt.close(fig)


def write_plot(path, info, rows, contenders):
    """Speed-up (nn.RNN time / FusedRNN time) along every controlled sweep. Returns the path, or
    None (and says why) when the rows hold no sweep."""
    baselines = [con for con in contenders if con.key != "fused"]
    metrics = [f"x_{con.key}" for con in baselines]
    panels = _panels(rows, metrics)
    if not panels:
        print("plot: no controlled sweep (rows that differ only in one of B, H, T) in these rows; "
              "no speed-up figure written")
        return None

    def draw(ax, mode, var):
        plotted = [1.0]
        groups_all = [(con, g) for con in baselines for g in sweeps(rows, mode, var, f"x_{con.key}")]
        common, labels = _title_and_labels([g for _, g in groups_all])
        for (con, (_, pts)), label in zip(groups_all, labels):
            xs, ys = zip(*pts)
            name = f"vs {con.label}" + (f", {label}" if label else "")
            ax.plot(xs, ys, marker="o", ls="-" if con.key == "ref" else "--", label=name)
            plotted += ys
        ax.axhline(1.0, color="gray", lw=0.8, ls="--")
        ax.set_xscale("log", base=2 if var != "T" else 10)
        if max(plotted) / min(plotted) > 20:
            ax.set_yscale("log")
        ax.set_xlabel(var)
        ax.set_ylabel("speed-up (nn.RNN time / FusedRNN time)")
        ax.set_title(f"{mode}: speed-up vs {var}\nfixed: {common}" if common else f"{mode}: speed-up vs {var}",
                     fontsize=9)
        ax.legend(fontsize=7)

    _figure(panels, f"{info['device']}, {info['threads']} threads, torch {info['torch']}", draw, path)
    return path


def write_memory_plot(path, info, rows, contenders):
    """Memory of FusedRNN and nn.RNN along every controlled sweep: CUDA allocator peak where
    measured, else the bytes saved for backward. Returns the path, or None."""
    metric = "peak_mb" if any(r.get("fused_peak_mb") is not None for r in rows) else "saved_mb"
    what = ("peak of torch's CUDA allocator during the call (MB)" if metric == "peak_mb"
            else "saved for backward (MB)")
    shown = [con for con in contenders if con.key in ("fused", "ref")]
    panels = _panels(rows, [f"{con.key}_{metric}" for con in shown])
    if not panels:
        print("plot: no controlled sweep with memory figures in these rows; no memory figure written")
        return None

    def draw(ax, mode, var):
        import matplotlib.pyplot as plt
        per_con = {con.key: sweeps(rows, mode, var, f"{con.key}_{metric}") for con in shown}
        fixed = [f for f, _ in per_con["fused"]] or [f for f, _ in per_con.get("ref", [])]
        common, labels = _title_and_labels([(f, None) for f in fixed])
        colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
        for i, (f, label) in enumerate(zip(fixed, labels)):
            for con in shown:
                pts = dict(per_con[con.key]).get(f)
                if pts:
                    xs, ys = zip(*pts)
                    ax.plot(xs, ys, marker="o" if con.key == "fused" else "x", color=colors[i % len(colors)],
                            ls="-" if con.key == "fused" else ":",
                            label=f"{'FusedRNN' if con.key == 'fused' else 'nn.RNN ' + con.label}"
                                  + (f", {label}" if label else ""))
        ax.set_xscale("log", base=2 if var != "T" else 10)
        ax.set_yscale("log")
        ax.set_xlabel(var)
        ax.set_ylabel(what)
        ax.set_title(f"{mode}: memory vs {var}\nfixed: {common}" if common else f"{mode}: memory vs {var}",
                     fontsize=9)
        ax.legend(fontsize=7)

    _figure(panels, f"{info['device']}, torch {info['torch']}: {what}", draw, path)
    return path


def figure_names(out_dir):
    return os.path.join(out_dir, "speedup.png"), os.path.join(out_dir, "memory.png")

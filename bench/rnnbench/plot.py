"""The figures (need matplotlib): speed-up and memory along controlled sweeps.

A controlled sweep is a set of rows of one pass that agree on everything (B, H, T, I, layers,
direction, dtype) but one of B, H, T. Each line of a figure is one sweep; what it holds fixed is
named in the panel's title (what all its lines share) and in the line's label (the rest). Rows
that form no sweep are in the table and the CSV, not in the figures.

One y meaning per panel: a speed-up panel shows one contender against rnnfused's module of the
cell (FusedRNN, FusedLSTM; its label says which, its y axis says "<contender> time / FusedLSTM
time"), one pass, one swept dimension; every
ratio axis is logarithmic with plain tick labels (0.5, 1, 2, 5, ...) and a line at 1; a shaded band
spans the interquartile range over the timed rounds of the per-round ratio (rounds are
interleaved, so each round's two times were taken side by side) around the line of the ratio
of the medians (the table's `x` column). A memory panel shows bytes for
every contender, each in its own colour, line style and marker, the reference's markers larger
and hollow, so that a line lying on another stays visible.
"""
import math
import os

from .cells import CELLS
from .config import MODES
from .report import _mkdir

AXES = ("B", "H", "T")
FIXED_KEYS = ("B", "H", "T", "I", "P", "L", "dir", "dtype")


def _fixed(r, var):
    """The values a sweep along var holds fixed (I is 'I=H' where it follows H)."""
    out = []
    for k in FIXED_KEYS:
        if k == var:
            continue
        if k == "I":
            out.append(("I", "=H" if r["I"] == r["H"] else r["I"]))
        elif k == "P":   # LSTM's proj_size; rows without one have no P
            out.append(("P", r.get("P", 0)))
        else:
            out.append((k, r[k]))
    return tuple(out)


def _describe(items):
    parts = []
    for k, v in items:
        if k == "I":
            if v != "=H":
                parts.append(f"I={v}")
        elif k == "P":
            if v:
                parts.append(f"P={v}")
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


def sweeps(rows, mode, var, metric, extra=()):
    """[(fixed items, [(x, y, *extras)] sorted by x)] for the rows of `mode` that have `metric`,
    grouped by everything but var; only groups with at least two values of var. extra: more row
    keys to carry with each point (None where a row lacks one)."""
    groups = {}
    for r in rows:
        if r.get("mode") != mode or r.get(metric) is None:
            continue
        groups.setdefault(_fixed(r, var), {})[r[var]] = (r[metric], *(r.get(k) for k in extra))
    return [(fixed, sorted((x, *v) for x, v in pts.items())) for fixed, pts in groups.items() if len(pts) >= 2]


def _title_and_labels(groups):
    """What every sweep of a panel shares (for the title) and what tells them apart (labels)."""
    shared = set(groups[0][0]).intersection(*[set(f) for f, _ in groups[1:]]) if groups else set()
    common = [kv for kv in groups[0][0] if kv in shared] if groups else []
    labels = [_describe([kv for kv in f if kv not in shared]) for f, _ in groups]
    return _describe(common), labels


def _name(con, cell):
    """A contender as the figures name it: the cell's classes for "fused" and "ref" (with the
    ref's label where it adds something: nn.RNN (native), nn.LSTM (cudnn))."""
    if con.key == "fused":
        return cell.fused_name
    if con.key == "ref":
        return cell.torch_name if con.label == cell.torch_name else f"{cell.torch_name} ({con.label})"
    return con.label


def _plain(v):
    return f"{v:g}"


def _log_axis(ax, which, lo, hi):
    """A log axis from lo to hi with plain tick labels (0.5, 1, 2, 5, 10: never 2x10^0)."""
    from matplotlib import ticker
    span = math.log10(hi / lo)
    subs = (1.0, 2.0, 5.0) if span > 1.2 else (1.0, 1.5, 2.0, 3.0, 5.0, 7.0)
    axis = ax.yaxis if which == "y" else ax.xaxis
    (ax.set_yscale if which == "y" else ax.set_xscale)("log")
    (ax.set_ylim if which == "y" else ax.set_xlim)(lo, hi)
    axis.set_major_locator(ticker.LogLocator(base=10, subs=subs))
    axis.set_major_formatter(ticker.FuncFormatter(lambda v, _: _plain(v)))
    axis.set_minor_formatter(ticker.NullFormatter())


def _x_axis(ax, var, xs):
    """The swept dimension on a log axis, ticked at the values measured."""
    from matplotlib import ticker
    ax.set_xscale("log", base=2 if var != "T" else 10)
    ax.xaxis.set_major_locator(ticker.FixedLocator(sorted(set(xs))))
    ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: _plain(v)))
    ax.xaxis.set_minor_locator(ticker.NullLocator())
    ax.set_xlabel(var)


def _grid(cells, title, draw, path):
    """cells: {(row, col): panel}; draws each panel with draw(ax, *panel) on a grid."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    row_keys = list(dict.fromkeys(r for r, _ in cells))
    col_keys = [c for c in AXES if any(cc == c for _, cc in cells)]
    fig, axes = plt.subplots(len(row_keys), len(col_keys), squeeze=False,
                             figsize=(5.0 * len(col_keys), 4.0 * len(row_keys)))
    for i, rk in enumerate(row_keys):
        for j, ck in enumerate(col_keys):
            if (rk, ck) in cells:
                draw(axes[i][j], *cells[(rk, ck)])
            else:
                axes[i][j].axis("off")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(_mkdir(path), dpi=110)
    plt.close(fig)


def write_plot(path, info, rows, contenders, cell=None):
    """Speed-up along every controlled sweep: a panel per contender, pass and swept dimension.
    cell: the Cell (default nn.RNN's). Returns the path, or None (and says why) when the rows hold
    no sweep."""
    import matplotlib.pyplot as plt
    cell = cell or CELLS["rnn"]
    fused = next((con for con in contenders if con.key == "fused"), None)
    fused_label = cell.fused_name if fused is None or fused.label == "fused" else fused.label   # --self-test: stand-in
    baselines = [con for con in contenders if con.key != "fused"]
    cells = {}
    for con in baselines:
        for mode in MODES.values():
            for var in AXES:
                groups = sweeps(rows, mode, var, f"x_{con.key}", (f"x_{con.key}_q1", f"x_{con.key}_q3"))
                if groups:
                    cells[((con.key, mode), var)] = (con, mode, var, groups)
    if not cells:
        print("plot: no controlled sweep (rows that differ only in one of B, H, T) in these rows; "
              "no speed-up figure written")
        return None

    def bounds(key):
        """One y range for a contender's panels (all its passes): their lines compare at a glance."""
        vals = [1.0]
        for (ck, _), (_, _, _, groups) in cells.items():
            if ck[0] == key:
                vals += [v for _, pts in groups for p in pts for v in p[1:] if v]
        return min(vals) / 1.25, max(vals) * 1.25

    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]

    def draw(ax, con, mode, var, groups):
        common, labels = _title_and_labels(groups)
        for i, ((_, pts), label) in enumerate(zip(groups, labels)):
            xs, ys = [p[0] for p in pts], [p[1] for p in pts]
            c = colors[i % len(colors)]
            spread = [(x, q1, q3) for x, _, q1, q3 in pts if q1 is not None and q3 is not None]
            if spread:   # the interquartile range of the per-round ratio, as a band
                ax.fill_between([x for x, _, _ in spread], [q1 for _, q1, _ in spread],
                                [q3 for _, _, q3 in spread], color=c, alpha=0.2, lw=0)
            ax.plot(xs, ys, marker="os^vDP"[i % 6], ms=5, lw=1.4, color=c,
                    label=f"{fused_label} vs {_name(con, cell)}" + (f", {label}" if label else ""))
        ax.axhline(1.0, color="gray", lw=0.8, ls="--", zorder=0)
        _x_axis(ax, var, [p[0] for _, pts in groups for p in pts])
        _log_axis(ax, "y", *bounds(con.key))
        ax.set_ylabel(f"speed-up vs {_name(con, cell)}\n({_name(con, cell)} time / {fused_label} time)", fontsize=9)
        ax.set_title(f"{mode}, {fused_label} vs {_name(con, cell)}, along {var}"
                     + (f"\nfixed: {common}" if common else ""), fontsize=9)
        ax.legend(fontsize=7)

    _grid(cells, f"{info['device']}, {info['threads']} threads, torch {info['torch']}: speed-up "
          f"(> 1: {fused_label} faster; line: ratio of the medians, band: interquartile range of the per-round ratio)", draw, path)
    return path


def write_memory_plot(path, info, rows, contenders, cell=None):
    """Memory of every contender along every controlled sweep: CUDA allocator peak where measured,
    else the bytes saved for backward. cell: as write_plot's. Returns the path, or None."""
    import matplotlib.pyplot as plt
    cell = cell or CELLS["rnn"]
    metric = "peak_mb" if any(r.get("fused_peak_mb") is not None for r in rows) else "saved_mb"
    what = ("peak of torch's CUDA allocator during the call (MB)" if metric == "peak_mb"
            else "saved for backward (MB)")
    shown = [con for con in contenders if any(r.get(f"{con.key}_{metric}") is not None for r in rows)]
    cells = {}
    for mode in MODES.values():
        for var in AXES:
            per_con = {con.key: sweeps(rows, mode, var, f"{con.key}_{metric}") for con in shown}
            if any(per_con.values()):
                cells[(mode, var)] = (mode, var, per_con)
    if not cells:
        print("plot: no controlled sweep with memory figures in these rows; no memory figure written")
        return None
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    # The contender under test drawn last, small and filled; the others under it, larger, hollow,
    # dashed: where two lines coincide both stay visible.
    styles = [dict(ls="-", marker="o", ms=5, mfc=None, lw=1.6, zorder=4),
              dict(ls="--", marker="s", ms=10, mfc="none", mew=1.5, lw=1.4, zorder=3),
              dict(ls=":", marker="D", ms=12, mfc="none", mew=1.2, lw=1.4, zorder=2)]

    def draw(ax, mode, var, per_con):
        fixed = list(dict.fromkeys(f for con in shown for f, _ in per_con[con.key]))
        common, labels = _title_and_labels([(f, None) for f in fixed])
        vals, xs = [], []
        for i, (f, label) in enumerate(zip(fixed, labels)):
            for j, con in enumerate(shown):
                pts = dict(per_con[con.key]).get(f)
                if not pts:
                    continue
                style = dict(styles[min(j, len(styles) - 1)])
                c = colors[(i * len(shown) + j) % len(colors)]
                if style["mfc"] is None:
                    style["mfc"] = c
                ax.plot([p[0] for p in pts], [p[1] for p in pts], color=c, mec=c,
                        label=_name(con, cell) + (f", {label}" if label else ""), **style)
                vals += [p[1] for p in pts if p[1] > 0]
                xs += [p[0] for p in pts]
        _x_axis(ax, var, xs)
        if vals:
            _log_axis(ax, "y", min(vals) / 1.5, max(vals) * 1.5)
        ax.set_ylabel(what, fontsize=9)
        ax.set_title(f"{mode}: memory along {var}" + (f"\nfixed: {common}" if common else ""), fontsize=9)
        ax.legend(fontsize=7)

    _grid({(mode, var): cell for (mode, var), cell in cells.items()},
          f"{info['device']}, torch {info['torch']}: {what}, one call each", draw, path)
    return path


def figure_names(out_dir):
    return os.path.join(out_dir, "speedup.png"), os.path.join(out_dir, "memory.png")

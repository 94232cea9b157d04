"""Tables (text and markdown), the targets/accuracy summary, the markdown report, CSV, JSON."""
import os

from .cells import CELLS
from .env import header_lines


def columns(device, contenders, cell=None):
    """(header, row key, format) of every column; a column no row fills is left out of the tables."""
    cell = cell or CELLS["rnn"]
    cols = [("B", "B", "d"), ("H", "H", "d"), ("I", "I", "d"), ("P", "P", "d"), ("T", "T", "d"), ("L", "L", "d"),
            ("dir", "dir", "s"), ("dtype", "dtype", "s"), ("pass", "mode", "s")]
    for con in contenders:
        cols += [(f"{con.label} ms", f"{con.key}_ms", ".3f"),
                 (f"{con.label} us/step", f"{con.key}_us", ".2f")]
    for con in contenders:
        if con.key != "fused":
            cols.append((f"x {con.label}", f"x_{con.key}", ".2f"))
    cols.append((f"{cell.torch_name} path", "ref_path", "s"))   # CPU, where nn has a oneDNN path
    for con in contenders:
        cols += [(f"{con.label} saved MB", f"{con.key}_saved_mb", ".2f"),
                 (f"{con.label} peak MB", f"{con.key}_peak_mb", ".2f")]
    if device == "cuda":
        cols += [("floor us/step", "floor_us", ".2f"), ("bound", "bound", "s"),
                 ("x floor", "x_floor", ".2f"), ("kernel", "kernel", "s")]
    else:  # bench/rnnbench/cpu_floor.py
        cols += [("floor us/step", "floor_us", ".2f"), ("bound", "bound", "s"),
                 ("x floor", "x_floor", ".2f")]
    cols += [("err out", "err_out", ".1e"), ("err h_n", "err_hn", ".1e"), ("err c_n", "err_cn", ".1e"),
             ("err grad", "err_grad", ".1e"),
             ("acc", "acc", "s"), ("reps", "reps", "d"), ("noise %", "noise", ".0f"),
             ("target", "target", "s"), ("met", "met", "s"), ("error", "error", "s")]
    return cols


def fmt_cell(v, f):
    if v is None or v == "":
        return ""
    if f == "s":
        return str(v)
    return format(v, f)


def table_lines(rows, cols, markdown):
    cols = [col for col in cols if any(r.get(col[1]) not in (None, "") for r in rows)]
    header = [h for h, _, _ in cols]
    body = [[fmt_cell(r.get(k), f) for _, k, f in cols] for r in rows]
    if markdown:
        align = "|".join("---" if f == "s" else "---:" for _, _, f in cols)
        return ["| " + " | ".join(line) + " |" for line in [header]] + [f"|{align}|"] + [
            "| " + " | ".join(line) + " |" for line in body]
    widths = [max(len(x) for x in col) for col in zip(header, *body)]
    return ["  ".join(x.rjust(w) for x, w in zip(line, widths)) for line in [header] + body]


def target_summary(rows):
    scoped = [r for r in rows if r.get("target")]
    missed = [r for r in scoped if r.get("met") != "met"]
    bad = [r for r in rows if r.get("acc") != "ok"]
    lines = [f"targets: {len(scoped) - len(missed)}/{len(scoped)} rows met"]
    lines += [f"  missed: B={r['B']} H={r['H']} T={r['T']} {r['dtype']} {r['mode']}: {r['met']}"
              for r in missed]
    lines.append(f"accuracy: {len(rows) - len(bad)}/{len(rows)} rows within bounds")
    lines += [f"  {r['acc']}: B={r['B']} H={r['H']} I={r['I']} T={r['T']} L={r['L']} {r['dir']} {r['dtype']} "
              f"{r['mode']} {r.get('error', '')}" for r in bad]
    return lines


def write_report(path, info, rows, cols, figures=(), cell=None):
    cell = cell or CELLS["rnn"]
    lines = [f"# rnnfused benchmark, {cell.fused_name} vs {cell.torch_name}: {info['device']}", ""]
    lines += [f"- {line}" for line in header_lines(info)[:-1]]
    lines += ["", "Command:", "", "```", info["command"], "```", "", "## Results", ""]
    lines += table_lines(rows, cols, markdown=True)
    lines += ["", "## Targets and accuracy", "", "```"] + target_summary(rows) + ["```", ""]
    if any(k.endswith("_saved_mb") or k.endswith("_peak_mb") for r in rows for k in r):
        lines += ["## Memory", "", MEMORY_NOTE, ""]
    if figures:
        lines += ["## Figures", "", "Each line is a controlled sweep: one of B, H, T varies, the rest is "
                  "fixed and named in the panel title or the line label.", ""]
        lines += [f"![{os.path.splitext(os.path.basename(f))[0]}]({f})" for f in figures] + [""]
    lines += ["Columns, timing method and targets: see bench/README.md.", ""]
    _write(path, "\n".join(lines))


MEMORY_NOTE = ("`saved MB`: bytes autograd keeps from the forward for the backward (fwd+bwd rows; "
               "each saved storage counted once, through `torch.autograd.graph.saved_tensors_hooks`); "
               "it leaves out transient workspaces, outputs and gradients. `peak MB` (CUDA only): "
               "`torch.cuda.max_memory_allocated()` during one call minus `memory_allocated()` before it, "
               "workspaces, outputs and gradients included. Measured after the timing, on input set 0.")


def write_csv(path, rows, cols):
    import csv
    keys = [k for _, k, _ in cols if any(k in r for r in rows)]
    with open(_mkdir(path), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)


def _mkdir(path):
    d = os.path.dirname(os.path.abspath(path))
    os.makedirs(d, exist_ok=True)
    return path


def _write(path, text):
    with open(_mkdir(path), "w") as f:
        f.write(text)



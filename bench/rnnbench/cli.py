"""The command line of bench/bench_rnn.py: options, loading rnnfused, the run loop, the outputs."""
import argparse
import dataclasses
import json
import os
import sys
import time

import torch

from .cells import CELLS
from .config import DTYPES, MODES, cfg, preset
from .contenders import Setup, contender_specs
from .env import OtherLoad, env_info, header_lines, load_average, tf32_pinned
from .plot import write_memory_plot, write_plot
from .report import _write, columns, table_lines, target_summary, write_csv, write_report
from .rows import bench_config
from .cpu_floor import cpu_rates
from .timing import gemm_rate

DOC = """Benchmark rnnfused.FusedRNN against torch.nn.RNN (cuDNN / native), or (--cell lstm)
rnnfused.FusedLSTM against torch.nn.LSTM (cuDNN / oneDNN or native), on the same weights."""


class Progress:
    """tqdm when installed, else a counter on stderr."""

    def __init__(self, total):
        try:
            from tqdm import tqdm
            self.bar = tqdm(total=total, file=sys.stderr, dynamic_ncols=True)
        except ImportError:
            self.bar = None
        self.total, self.n, self.t0 = total, 0, time.perf_counter()

    def update(self, desc, k=1):
        self.n += k
        if self.bar is not None:
            self.bar.set_description(desc)
            self.bar.update(k)
            return
        end = "\r" if sys.stderr.isatty() else "\n"
        elapsed = time.perf_counter() - self.t0
        left = elapsed / self.n * (self.total - self.n)
        print(f"[{self.n}/{self.total}] {elapsed:6.1f}s, ~{left:.0f}s left  {desc}", end=end,
              file=sys.stderr, flush=True)

    def close(self):
        if self.bar is not None:
            self.bar.close()
        elif sys.stderr.isatty():
            print(file=sys.stderr)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=DOC,
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="See bench/README.md for the columns and the timing method.")
    p.add_argument("--device", choices=["cpu", "cuda"],
                   default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--cell", choices=sorted(CELLS), default="rnn",
                   help="rnn: FusedRNN vs nn.RNN (default); lstm: FusedLSTM vs nn.LSTM")
    p.add_argument("--full", action="store_true", help="larger sweep: layers, bidirectional, T, dtypes")
    p.add_argument("--shapes", nargs="+", metavar="B,H,T[,I]", help="custom rows instead of a preset")
    p.add_argument("--layers", type=int, default=1, help="num_layers for --shapes rows")
    p.add_argument("--bidirectional", action="store_true", help="bidirectional --shapes rows")
    p.add_argument("--proj-size", type=int, default=0, help="--cell lstm: proj_size of the --shapes rows")
    p.add_argument("--dtype", nargs="+", choices=sorted(DTYPES), help="override the preset's dtypes")
    p.add_argument("--modes", nargs="+", choices=sorted(MODES), default=list(MODES))
    p.add_argument("--nonlinearity", choices=["tanh", "relu"], help="--cell rnn: default tanh")
    p.add_argument("--tf32", action="store_true", help="allow TF32 on both sides (default: off on both)")
    p.add_argument("--kernel", choices=["stepwise", "persistent", "auto"],
                   help="sets RNNFUSED_KERNEL (the CUDA kernel choice) before rnnfused is imported")
    p.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's choice)")
    p.add_argument("--self-test", action="store_true",
                   help="use nn.RNN (nn.LSTM) as the FusedRNN (FusedLSTM) stand-in "
                        "(checks the harness; speed-ups ~1, errors 0)")
    p.add_argument("--warmup", type=int,
                   help="warm-up rounds after the accuracy call (default: cpu 1, cuda 3)")
    p.add_argument("--reps", type=int, help="timed rounds per row (default: adaptive, see --budget)")
    p.add_argument("--budget", type=float, default=1.5, help="target seconds of timed rounds per row")
    p.add_argument("--min-reps", type=int, default=5)
    p.add_argument("--max-reps", type=int, default=100)
    p.add_argument("--inputs", type=int, default=3, help="input sets to rotate among")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", metavar="DIR",
                   help="results folder: report.md, results.csv, results.json, speedup.png, memory.png "
                        "(default: bench/out/<date>-<time>-<device>/)")
    p.add_argument("--no-save", action="store_true",
                   help="write no results folder (only what --report/--csv/--json/--plot name)")
    p.add_argument("--no-memory", action="store_true",
                   help="skip the memory measurement (saved-for-backward bytes; CUDA: allocator peak)")
    p.add_argument("--csv", metavar="PATH")
    p.add_argument("--json", metavar="PATH")
    p.add_argument("--plot", metavar="PATH.png", help="speed-up vs H and vs B (needs matplotlib)")
    p.add_argument("--report", metavar="PATH.md", help="markdown report: header, table, targets")
    p.add_argument("--gpu-report", metavar="PATH.md", help="the GPU preset on cuda, report to PATH.md")
    args = p.parse_args(argv)
    if args.cell != "rnn" and args.nonlinearity:
        p.error(f"--nonlinearity is for --cell rnn (nn.RNN), not --cell {args.cell}")
    if args.proj_size and args.cell != "lstm":
        p.error("--proj-size is for --cell lstm (nn.LSTM's proj_size)")
    if args.proj_size and not args.shapes:
        p.error("--proj-size applies to --shapes rows")
    if args.cell == "rnn":
        args.nonlinearity = args.nonlinearity or "tanh"
    if args.gpu_report:
        args.device, args.report = "cuda", args.gpu_report
    if args.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda (or --gpu-report) but torch.cuda.is_available() is False")
    if args.warmup is None:
        args.warmup = 3 if args.device == "cuda" else 1
    args.memory = not args.no_memory
    return args


def default_out_dir(device):
    """bench/out/<date>-<time>-<device>/ beside this package (git-ignored)."""
    name = torch.cuda.get_device_name() if device == "cuda" else "cpu"
    slug = "".join(ch if ch.isalnum() else "-" for ch in name.lower()).strip("-")
    while "--" in slug:
        slug = slug.replace("--", "-")
    stamp = time.strftime("%Y-%m-%d-%H%M%S")
    return os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "out", f"{stamp}-{slug}")


def load_fused(args):
    if args.kernel:
        os.environ["RNNFUSED_KERNEL"] = args.kernel
    cell = CELLS[args.cell]
    if args.self_test:
        return None, cell.torch_cls
    try:
        import rnnfused
    except ImportError as e:
        sys.exit(f"cannot import rnnfused ({e}). Build it first (pip install --no-build-isolation . "
                 f"in the repository root), or run with --self-test to check the harness on {cell.torch_name}.")
    return rnnfused, getattr(rnnfused, cell.fused_name)


def configs_from_args(args):
    if args.shapes:
        out = []
        for s in args.shapes:
            v = [int(x) for x in s.split(",")]
            if len(v) not in (3, 4):
                sys.exit(f"--shapes wants B,H,T[,I], got {s!r}")
            out.append(cfg(*v, layers=args.layers, bidir=args.bidirectional, proj=args.proj_size))
    else:
        out = preset(args.device, args.full, args.cell)
    if args.dtype:
        out = [dataclasses.replace(c, dtype=DTYPES[d]) for c in dict.fromkeys(
            dataclasses.replace(c, dtype=torch.float32) for c in out) for d in args.dtype]
    return list(dict.fromkeys(out))


def write_outputs(args, info, rows, cols, contenders, cell):
    """The results folder (unless --no-save) and whatever --report/--csv/--json/--plot name.
    Returns the paths written."""
    out_dir = None if args.no_save else (args.out or default_out_dir(args.device))
    targets = {"report": [args.report], "csv": [args.csv], "json": [args.json], "plot": [args.plot], "memory": []}
    if out_dir:
        targets["report"].append(os.path.join(out_dir, "report.md"))
        targets["csv"].append(os.path.join(out_dir, "results.csv"))
        targets["json"].append(os.path.join(out_dir, "results.json"))
        targets["plot"].append(os.path.join(out_dir, "speedup.png"))
        targets["memory"].append(os.path.join(out_dir, "memory.png"))
    if args.plot:
        targets["memory"].append(os.path.splitext(args.plot)[0] + "-memory.png")
    written = []
    figures = {}
    have_mpl = True
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        have_mpl = False
        print("plots skipped: matplotlib is not installed (pip install matplotlib)")
    for kind, fn in (("plot", write_plot), ("memory", write_memory_plot)):
        for path in filter(None, targets[kind]):
            if have_mpl and fn(path, info, rows, contenders, cell):
                written.append(path)
                figures.setdefault(kind, []).append(path)
    for path in filter(None, targets["report"]):
        here = os.path.dirname(os.path.abspath(path))
        figs = [os.path.relpath(p, here) for kind in ("plot", "memory") for p in figures.get(kind, [])
                if os.path.dirname(os.path.abspath(p)) == here]
        write_report(path, info, rows, cols, figures=figs, cell=cell)
        written.append(path)
    for path in filter(None, targets["csv"]):
        write_csv(path, rows, cols)
        written.append(path)
    for path in filter(None, targets["json"]):
        _write(path, json.dumps({"env": info, "rows": rows}, indent=1, default=str))
        written.append(path)
    order = {p: i for i, p in enumerate(t for k in ("report", "csv", "json", "plot", "memory") for t in targets[k])}
    return sorted(written, key=lambda p: order.get(p, 0))


def main(argv=None):
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    with tf32_pinned(args.tf32):  # the same for both sides
        return _run(args)


def _run(args):
    configs = configs_from_args(args)
    modes = list(dict.fromkeys(args.modes))
    cell = CELLS[args.cell]
    contenders = contender_specs(args.device, args.self_test, args, cell)
    fused_mod, fused_cls = load_fused(args)
    rates = ({dt: gemm_rate(dt, "cuda") for dt in dict.fromkeys(c.dtype for c in configs)}
             if args.device == "cuda" else {})
    setup = Setup(fused_cls, fused_mod, rates,
                  cpu_rates(torch.float32) if args.device == "cpu" else None, cell)
    info = env_info(args, setup)

    print("\n".join(header_lines(info)))
    rows = []
    progress = Progress(len(configs) * len(modes))
    other = OtherLoad()
    for c in configs:
        for r in bench_config(c, modes, contenders, args, setup):
            rows.append(r)
            x = r.get("x_ref")
            progress.update(f"{c.describe()} {r['mode']}: " + (f"x{x:.2f} {r['acc']}" if x else r["acc"]))
        for con in contenders:
            con.module, con.params = None, []
    progress.close()
    info["load_end"] = load_average()
    busy = other.cores()
    if busy is not None:
        info["other_load"] = f"{busy:.2f} cores busy with other processes during the run" + (
            "  ** WARNING: the machine was shared; timings are unreliable **" if busy > 0.2 else "")

    cols = columns(args.device, contenders, cell)
    print()
    print("\n".join(header_lines(info)))
    print("\n".join(table_lines(rows, cols, markdown=False)))
    print("\n".join(target_summary(rows)))
    written = write_outputs(args, info, rows, cols, contenders, cell)
    if written:
        print("\nwrote:")
        print("\n".join(f"  {p}" for p in written))
    return 0 if all(r.get("acc") == "ok" for r in rows) else 1



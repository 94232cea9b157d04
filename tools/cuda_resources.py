"""Static check of the compiled CUDA kernels: registers, spills, stack and shared memory of every
kernel instantiation for every architecture of the default build (setup.py's DEFAULT_CUDA_ARCHS:
the machine-code ones; PTX is compiled by the driver at load time), from ptxas itself (-Xptxas -v),
written to a committed report (bench/results/cuda-resources.md) and checked in CI.

    python tools/cuda_resources.py --write     # rebuild the report
    python tools/cuda_resources.py --check     # CI: fail on a spill, a stack frame, a kernel over
                                               # its launch bounds, or a report that is out of date

Needs nvcc (CUDA_HOME, or found as setup.py finds it) and a CUDA build of torch (its headers).
No GPU is needed.
"""
import argparse
import ast
import difflib
import glob
import os
import re
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REPORT = ROOT / "bench" / "results" / "cuda-resources.md"


def default_archs():
    """The machine-code architectures of setup.py's DEFAULT_CUDA_ARCHS ("7.5;8.0;9.0+PTX" ->
    ["75", "80", "90"]), read from setup.py itself (it cannot be imported: it runs setup())."""
    tree = ast.parse((ROOT / "setup.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "DEFAULT_CUDA_ARCHS" for t in node.targets):
            return [a.replace("+PTX", "").replace(".", "") for a in ast.literal_eval(node.value).split(";")]
    raise SystemExit("cuda_resources: setup.py has no DEFAULT_CUDA_ARCHS")


ARCHS = default_archs()
SOURCES = ["rnn_f32.cu", "rnn_f64.cu", "rnn_f16.cu", "rnn_bf16.cu"]
# Launch bounds (threads per block, min blocks per SM) by kernel and accumulation type: the
# kernels' __launch_bounds__ (csrc/cuda/device/*.cuh).
BOUNDS = {"step_kernel": (256, 1), "persist_kernel": (512, 1), "persist_kernel<double": (256, 1),
          "cell_fwd_kernel": (256, 1), "cell_bwd_kernel": (256, 1)}
REGS_PER_SM = 65536


def cuda_home():
    for root in [os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"),
                 os.path.dirname(os.path.dirname(os.path.realpath(shutil.which("nvcc") or "/nonexistent"))),
                 "/usr/local/cuda", *sorted(glob.glob("/usr/local/cuda-*"), reverse=True)]:
        if root and os.path.isfile(os.path.join(root, "include", "cuda_runtime.h")):
            return root
    raise SystemExit("cuda_resources: no CUDA toolkit found (set CUDA_HOME)")


def compile_one(nvcc, src, includes):
    cmd = [nvcc, "-c", str(ROOT / "csrc" / "cuda" / src), "-o", os.devnull, *includes,
           "-D__CUDA_NO_HALF_OPERATORS__", "-D__CUDA_NO_HALF_CONVERSIONS__",
           "-D__CUDA_NO_BFLOAT16_CONVERSIONS__", "-D__CUDA_NO_HALF2_OPERATORS__",
           "--expt-relaxed-constexpr", "-O3", "-DRNNFUSED_WITH_CUDA", "-std=c++20",
           "--compiler-options", "-fPIC", "-Xptxas", "-v"]
    for a in ARCHS:
        cmd += [f"-gencode=arch=compute_{a},code=sm_{a}"]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"cuda_resources: nvcc failed on {src}:\n{r.stderr[-4000:]}")
    return r.stderr + r.stdout


def demangle(names):
    r = subprocess.run(["c++filt"], input="\n".join(names), capture_output=True, text=True, check=True)
    return r.stdout.splitlines()


def short(demangled):
    """'rnnfused::cuda_detail::step_kernel<float, true, rnnfused::cuda_detail::StepCfg<8, 64, 1, 2> >(...)'
    -> 'step_kernel<float, bwd, 8x64>'"""
    s = demangled.split("(")[0].replace("rnnfused::cuda_detail::", "").replace("__nv_", "")
    s = s[len("void "):] if s.startswith("void ") else s
    s = re.sub(r"StepCfg<(\d+), (\d+), \d+, \d+>", r"\1x\2", s)
    s = s.replace(", true", ", bwd").replace(", false", ", fwd").replace(" >", ">")
    return s


def parse(log):
    rows, cur = [], None
    for line in log.splitlines():
        m = re.search(r"Compiling entry function '(\w+)' for 'sm_(\d+)'", line)
        if m:
            cur = {"mangled": m.group(1), "arch": m.group(2)}
            rows.append(cur)
            continue
        if cur is None:
            continue
        m = re.search(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads", line)
        if m:
            cur["stack"], cur["spill_st"], cur["spill_ld"] = map(int, m.groups())
        m = re.search(r"Used (\d+) registers", line)
        if m:
            cur["regs"] = int(m.group(1))
            sm = re.search(r"(\d+) bytes smem", line)
            cur["smem"] = int(sm.group(1)) if sm else 0
    return rows


def collect():
    home = cuda_home()
    import torch
    from torch.utils import cpp_extension

    includes = [f"-I{p}" for p in cpp_extension.include_paths()] + [f"-I{home}/include"]
    import sysconfig

    includes.append(f"-I{sysconfig.get_paths()['include']}")
    nvcc = os.path.join(home, "bin", "nvcc")
    with ThreadPoolExecutor(max_workers=int(os.environ.get("MAX_JOBS", "2"))) as pool:
        logs = list(pool.map(lambda s: compile_one(nvcc, s, includes), SOURCES))
    rows = [r for log in logs for r in parse(log)]
    for r, d in zip(rows, demangle([r["mangled"] for r in rows])):
        r["kernel"] = short(d)
        key = "persist_kernel<double" if r["kernel"].startswith("persist_kernel<double") else r["kernel"].split("<")[0]
        if key not in BOUNDS:
            raise SystemExit(f"cuda_resources: kernel {r['kernel']} is not in BOUNDS: add its __launch_bounds__")
        threads, min_blocks = BOUNDS[key]
        r["bound_threads"] = threads
        r["max_regs"] = min(255, REGS_PER_SM // (threads * min_blocks))
    rows.sort(key=lambda r: (r["arch"], r["kernel"]))
    nvcc_version = subprocess.run([nvcc, "--version"], capture_output=True, text=True).stdout.strip().splitlines()[-1]
    return rows, nvcc_version, torch.__version__


def render(rows, nvcc_version, torch_version):
    out = [
        "# CUDA kernels: registers, spills and shared memory (ptxas)",
        "",
        "Written by `python tools/cuda_resources.py --write`; checked in CI by `--check` (a spill, a",
        "stack frame, registers above what the kernel's `__launch_bounds__` allow, or a stale table",
        "fails). Static shared memory only; the persistent kernel's dynamic shared memory is planned",
        "at launch (csrc/cuda/plan.h) from these register counts and the device's limits.",
        "",
        f"Compiler: {nvcc_version} (torch {torch_version.split('+')[0]} headers).",
        "",
        "| arch | kernel | registers | max (launch bounds) | spill stores | spill loads | stack | static smem |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        out.append(f"| sm_{r['arch']} | `{r['kernel']}` | {r['regs']} | {r['max_regs']} ({r['bound_threads']} threads) | "
                   f"{r['spill_st']} | {r['spill_ld']} | {r['stack']} | {r['smem']} |")
    return "\n".join(out) + "\n"


def problems(rows):
    bad = []
    for r in rows:
        where = f"sm_{r['arch']} {r['kernel']}"
        if r["spill_st"] or r["spill_ld"]:
            bad.append(f"{where}: spills ({r['spill_st']} bytes stored, {r['spill_ld']} loaded)")
        if r["stack"]:
            bad.append(f"{where}: a {r['stack']}-byte stack frame (local memory)")
        if r["regs"] > r["max_regs"]:
            bad.append(f"{where}: {r['regs']} registers, its launch bounds allow {r['max_regs']}")
    return bad


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--write", action="store_true")
    g.add_argument("--check", action="store_true")
    args = p.parse_args(argv)
    rows, nvcc_version, torch_version = collect()
    if not rows:
        raise SystemExit("cuda_resources: ptxas reported no kernels")
    text = render(rows, nvcc_version, torch_version)
    bad = problems(rows)
    if args.write:
        REPORT.write_text(text)
        print(f"wrote {REPORT.relative_to(ROOT)} ({len(rows)} kernels)")
    else:
        old = REPORT.read_text() if REPORT.exists() else ""
        if old != text:
            bad.append("bench/results/cuda-resources.md is out of date (run tools/cuda_resources.py --write):\n" +
                       "".join(difflib.unified_diff(old.splitlines(True), text.splitlines(True), "committed", "built")))
    for b in bad:
        print("FAIL", b)
    if not bad:
        print(f"cuda_resources: {len(rows)} kernel instantiations, no spills, within launch bounds")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())

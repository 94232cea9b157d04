"""Mutation check of the emulated CUDA tests: a test suite that cannot fail proves nothing.

Each mutant is a copy of csrc/ with one bug put into the CUDA kernels (or their launcher) — a
removed __syncthreads, a removed group barrier, a missing release fence, a relaxed load in place
of the acquire, an off-by-one index, a read of shared memory never written, a wrong shuffle
offset, a barrier under divergent control flow, a non-cooperative launch of a CTA group (also as
the fallback of a refused cooperative launch), a refused launch not remembered, a plan that
ignores the driver's occupancy, scratch memory on another stream than its launch, a wrong start
of the cell backward's grid-stride dz loop, a missing dynamic shared memory attribute. The standalone emulator checker (csrc/emu/check_main.cpp)
is built from the mutated tree and must fail: plainly (wrong numbers, schedules that disagree, the
emulator's own checks), or, for ordering bugs that a coherent host hides, under ThreadSanitizer.

    python tools/emu_mutate.py            # every mutant; exit status 1 if any survives
    python tools/emu_mutate.py --list
    python tools/emu_mutate.py NAME...    # some

Only the float32 instantiation is rebuilt from the mutated tree (the other dtypes link from the
unmutated build) and the cases are filtered to it, so that a mutant costs seconds.
"""
import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import emu_support  # noqa: E402

# name: (file under csrc/, exact text, replacement, checker filter, what it shows)
MUTANTS = {
    "step-no-sync-before-product": (
        "cuda/device/step.cuh",
        "      else Bs[i / BN][i % BN] = bv_ld[it];\n    }\n    __syncthreads();\n",
        "      else Bs[i / BN][i % BN] = bv_ld[it];\n    }\n",
        "f32-stepwise", "a removed __syncthreads (tiles read before all threads stored them)"),
    "step-no-sync-after-product": (
        "cuda/device/step.cuh",
        "        for (int j = 0; j < TN; ++j) acc[i][j] = fma(av[i], bv[j], acc[i][j]);\n    }\n    __syncthreads();\n",
        "        for (int j = 0; j < TN; ++j) acc[i][j] = fma(av[i], bv[j], acc[i][j]);\n    }\n",
        "f32-stepwise", "a removed __syncthreads (the next tile overwrites shared memory still being read)"),
    "persist-no-sync-after-dot": (
        "cuda/device/persist.cuh",
        "          red[((size_t)ks * BCa + bt * 4 + bb) * R + rt * 4 + rr] = sum;\n        }\n      }\n      __syncthreads();\n",
        "          red[((size_t)ks * BCa + bt * 4 + bb) * R + rt * 4 + rr] = sum;\n        }\n      }\n",
        "f32-persistent", "a removed __syncthreads (partial sums read before they are written)"),
    "persist-no-group-barrier": (
        "cuda/device/persist.cuh",
        "    if (G > 1) group_barrier(counter, (unsigned)G * (unsigned)(s + 1));\n",
        "",
        "f32-persistent-tiny", "a removed group barrier (CTAs of a group run ahead of each other)"),
    "persist-no-release-fence": (
        "cuda/device/persist.cuh",
        "    __threadfence();\n    atomicAdd(counter, 1u);\n",
        "    atomicAdd(counter, 1u);\n",
        "f32-persistent-tiny", "a missing fence: the arrival is not ordered after the CTA's stores"),
    "persist-relaxed-acquire": (
        "cuda/device/persist.cuh",
        "ld_acquire_gpu(counter)",
        "ld_relaxed_gpu(counter)",
        "f32-persistent-tiny", "a relaxed load where the group barrier needs acquire"),
    "step-off-by-one-k": (
        "cuda/device/step.cuh",
        "      if (b < B && k < H) {",
        "      if (b < B && k <= H) {",
        "f32-stepwise", "an off-by-one bound (one element past each row)"),
    "persist-off-by-one-column": (
        "cuda/device/persist.cuh",
        "        const int64_t b = c0 + bl, j = row0 + r, idx = b * H + j;\n        A dot = A(0);",
        "        const int64_t b = c0 + bl, j = row0 + r, idx = b * H + j + 1;\n        A dot = A(0);",
        "f32-persistent", "an off-by-one output index"),
    "persist-unwritten-shared": (
        "cuda/device/persist.cuh",
        "          if (i < nvs) vs[i] = v[u];",
        "          if (i < nvs && i % Hp < H) vs[i] = v[u];",
        "f32-persistent", "a read of shared memory never written (the padding of the state rows)"),
    "persist-wrong-shuffle-offset": (
        "cuda/device/persist.cuh",
        "      v[i] = keep + __shfl_xor_sync(kFull, send, 8);",
        "      v[i] = keep + __shfl_xor_sync(kFull, send, 4);",
        "f32-persistent", "a wrong shuffle offset in the warp reduction"),
    "step-divergent-barrier": (
        "cuda/device/step.cuh",
        "      else Bs[i / BN][i % BN] = bv_ld[it];\n    }\n    __syncthreads();\n",
        "      else Bs[i / BN][i % BN] = bv_ld[it];\n    }\n    if (tid < NT / 2) __syncthreads();\n",
        "f32-stepwise", "a barrier under divergent control flow"),
    "cell-incomplete-reduction": (
        "cuda/device/cell.cuh",
        "  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);",
        "  for (int o = 8; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);",
        "f32-cell", "a warp reduction that misses a stage (the cell step)"),
    "cell-bwd-wrong-stride": (
        "cuda/device/cell.cuh",
        "  const int64_t ld = from_ih ? I : H;",
        "  const int64_t ld = from_ih ? H : I;",
        "f32-cell", "a wrong row stride of W_ih / W_hh in the cell backward"),
    "math-relu-grad-at-zero": (
        "cuda/device/common.cuh",
        "  static __device__ __forceinline__ A relu_grad(A h) { return h <= A(0) ? A(0) : A(1); }",
        "  static __device__ __forceinline__ A relu_grad(A h) { return h < A(0) ? A(0) : A(1); }",
        "f32-", "relu' of 1 where relu clamped to 0 (the device math policy the cells use)"),
    "host-group-not-cooperative": (
        "cuda/host.cuh",
        "  if (pl.G > 1) return rt::launch_cooperative(kernel, spec, a);\n",
        "",
        "f32-persistent-tiny", "a CTA group launched without co-residency (plain launch)"),
    "host-refused-plain-launch": (
        "cuda/host.cuh",
        "  if (pl.G > 1) return rt::launch_cooperative(kernel, spec, a);\n",
        "  if (pl.G > 1 && rt::launch_cooperative(kernel, spec, a).ok) return rt::LaunchStatus();\n",
        "f32-auto-tiny-1sm", "a refused cooperative launch retried as a plain launch (no co-residency)"),
    "host-plan-forgets-refusal": (
        "cuda/host.cuh",
        "    forget_plan<T, Cell, BWD>(a.B, a.H, st.why);\n",
        "",
        "f32-auto-tiny-1sm", "a refused cooperative launch not remembered (every call asks again)"),
    "host-plan-ignores-driver-occupancy": (
        "cuda/host.cuh",
        "  PersistPlan pl = plan_persistent(B, H, sizeof(T), sizeof(acc_t<T>), NT, d, k, occ);\n",
        "  PersistPlan pl = plan_persistent(B, H, sizeof(T), sizeof(acc_t<T>), NT, d, k);\n",
        "f32-auto-tiny-occ0", "the plan's co-residency from the formula, not the driver's occupancy"),
    "host-scratch-other-stream": (
        "cuda/host.cuh",
        "    counters = std::make_unique<rt::Scratch>(sizeof(unsigned) * pl.NBg, stream);\n",
        "    counters = std::make_unique<rt::Scratch>(sizeof(unsigned) * pl.NBg, nullptr);\n",
        "f32-persistent-tiny", "the group counters allocated (and freed) on another stream than the launch's"),
    "cell-dz-one-block-stride": (
        "cuda/device/cell.cuh",
        "  for (int64_t i = (int64_t)blockIdx.x * kCellThreads + threadIdx.x; i < B * H;",
        "  for (int64_t i = threadIdx.x; i < B * H;",
        "f32-cell-B9-I5-H70", "the cell backward's dz spread over the grid with a wrong start (elements never written)"),
    "host-no-smem-attribute": (
        "cuda/host.cuh",
        "  rt::allow_dynamic_smem(kernel, pl.smem, rt::current_device());\n",
        "",
        "f32-persistent-h100-T2-B3-H257", "no cudaFuncSetAttribute for more than 48 KiB of shared memory"),
}


def mutate_tree(name, dest):
    """A copy of csrc/ with mutant `name` applied; returns its path."""
    rel, old, new, _, _ = MUTANTS[name]
    tree = Path(dest) / "csrc"
    shutil.copytree(emu_support.CSRC, tree)
    path = tree / rel
    text = path.read_text()
    if text.count(old) != 1:
        raise SystemExit(f"mutant {name}: its text occurs {text.count(old)} times in csrc/{rel} "
                         "(the kernel changed: update the mutant)")
    path.write_text(text.replace(old, new))
    return tree


def run_mutant(name, base_objects):
    filt = MUTANTS[name][3]
    with tempfile.TemporaryDirectory(prefix=f"mutant-{name}-") as tmp:
        tree = mutate_tree(name, tmp)
        for variant, args in (("plain", ["--schedules", "4"]), ("tsan", ["--schedules", "1"])):
            t0 = time.time()
            exe = emu_support.check_binary(variant, root=tree, out_dir=Path(tmp) / variant,
                                           reuse=base_objects[variant], rebuild=["emu_f32.cpp"])
            rc, out = emu_support.run_check(exe, "--filter", filt, *args, variant=variant)
            if rc == 3:
                raise SystemExit(f"mutant {name}: the filter {filt!r} selects no case")
            if rc != 0:
                first = next((ln for ln in out.splitlines()
                              if ln.startswith("FAIL") or "ThreadSanitizer" in ln or "ERROR" in ln), out[-300:])
                return variant, first.strip()[:220], time.time() - t0
    return None, "", 0.0


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("names", nargs="*", help="mutants to run (default: all)")
    p.add_argument("--list", action="store_true")
    args = p.parse_args(argv)
    if args.list:
        for n, m in MUTANTS.items():
            print(f"{n:34s} {m[4]}")
        return 0
    names = args.names or list(MUTANTS)
    unknown = [n for n in names if n not in MUTANTS]
    if unknown:
        raise SystemExit(f"unknown mutants: {unknown}")
    # The unmutated builds first: they must pass (a mutant is only caught if the original is not).
    base = {}
    # (ThreadSanitizer only has to decide the ordering mutants, all on the CTA-group cases.)
    for variant, fargs in (("plain", ["--quick"]),
                           ("tsan", ["--quick", "--schedules", "1", "--filter", "f32-persistent-tiny"])):
        exe = emu_support.check_binary(variant)
        rc, out = emu_support.run_check(exe, *fargs, variant=variant)
        if rc != 0:
            print(out)
            raise SystemExit(f"the unmutated kernels fail the {variant} check: fix that first")
        base[variant] = exe.parent
    survivors = []
    print(f"{'mutant':34s} {'caught by':10s} first failure")
    for n in names:
        variant, why, _ = run_mutant(n, base)
        if variant is None:
            survivors.append(n)
            print(f"{n:34s} {'SURVIVED':10s} ({MUTANTS[n][4]})")
        else:
            print(f"{n:34s} {variant:10s} {why}")
        sys.stdout.flush()
    print(f"\n{len(names) - len(survivors)} of {len(names)} mutants caught" +
          (f"; SURVIVED: {', '.join(survivors)}" if survivors else ""))
    return 1 if survivors else 0


if __name__ == "__main__":
    sys.exit(main())

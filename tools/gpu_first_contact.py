"""The device steps of the first GPU run (bench/gpu_check.sh's first-contact preset), each a
subcommand that prints what it saw and exits non-zero when a check fails:

    python tools/gpu_first_contact.py device        # a CUDA device, and code of this build for it
    python tools/gpu_first_contact.py coresidency   # the persistent plans: planned vs driver
    python tools/gpu_first_contact.py stress        # the group barrier: 20 runs, bitwise equal

- device: torch sees a CUDA device; rnnfused was built with CUDA, for architectures that include
  the device's (its first CUDA call raises otherwise, csrc/cuda/archs.h); one small FusedRNN
  forward + backward on it.
- coresidency: for each dtype and a set of sizes, the persistent kernel's plan on this device
  (rnnfused._C.cuda_persistent_plan): the co-resident CTAs per SM the driver's occupancy
  calculator gives (what the plan uses) beside CUDA's rule written out for the compiled kernel's
  registers (plan.h's blocks_per_sm, what the emulator uses). Fails if a plan's grid exceeds the
  driver's co-residency; lists every size where the two counts differ (the emulator's plans then
  differ from this GPU's: worth a look, not a failure).
- stress: RNNFUSED_KERNEL=persistent on a size whose W_hh needs a CTA group (H = 1024 float32,
  B = 64, T = 2000: one grid barrier per step), forward and backward `--runs` times: every run
  bitwise equal to the first (a barrier that lets a CTA read a stale state shows as a
  difference), the plan a CTA group, no refused launch (forced persistent: a refusal raises); then the stepwise kernel and nn.RNN in
  float64 on the same inputs: both kernels within the tests' rule of the float64 result
  (error <= 2 x nn.RNN float32's own + a small floor).
"""
import argparse
import os
import sys

import torch

SIZES = [(1, 128), (64, 128), (1, 512), (64, 512), (1, 1024), (64, 1024), (256, 1024), (8, 2048), (64, 4096)]
DTYPES = ["float32", "float64", "float16", "bfloat16"]


def device(_args):
    import rnnfused

    assert torch.cuda.is_available(), "torch.cuda.is_available() is False: no CUDA device"
    assert rnnfused.built_with_cuda(), "rnnfused was built without its CUDA kernels"
    cap = torch.cuda.get_device_capability()
    sass, ptx = rnnfused._C.cuda_archs()
    print(f"device: {torch.cuda.get_device_name()} (compute capability {cap[0]}.{cap[1]}), "
          f"{torch.cuda.get_device_properties(0).multi_processor_count} SMs")
    print(f"torch {torch.__version__} (CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()})")
    print(f"rnnfused build: machine code {sass}, PTX {ptx}; build info {rnnfused.build_info()}")
    m = rnnfused.FusedRNN(8, 16, device="cuda")
    x = torch.randn(5, 3, 8, device="cuda", requires_grad=True)
    out, hn = m(x)
    (out.sum() + hn.sum()).backward()
    torch.cuda.synchronize()
    assert torch.isfinite(out).all() and torch.isfinite(x.grad).all()
    print("FusedRNN forward + backward on the device: ok")
    return 0


def coresidency(_args):
    import rnnfused

    bad, differ = [], []
    print(f"{'dtype':9s} {'B':>4s} {'H':>5s} {'pass':8s} {'G':>3s} {'NBg':>4s} {'CTAs':>5s} {'thr':>4s} "
          f"{'regs':>4s} {'smem':>7s} {'driver/SM':>9s} {'rule/SM':>7s} {'SMs':>4s}")
    for dtype in DTYPES:
        for B, H in SIZES:
            for bwd in (False, True):
                p = rnnfused._C.cuda_persistent_plan(B, H, dtype, bwd)
                what = f"{dtype:9s} {B:4d} {H:5d} {'backward' if bwd else 'forward':8s}"
                if not p["ok"]:
                    print(f"{what} no plan: {p['why']}")
                    continue
                print(f"{what} {p['G']:3d} {p['NBg']:4d} {p['ctas']:5d} {p['threads']:4d} {p['regs']:4d} "
                      f"{p['smem']:7d} {p['driver_per_sm']:9d} {p['rule_per_sm']:7d} {p['sm_count']:4d}")
                if p["ctas"] > p["driver_per_sm"] * p["sm_count"] or p["driver_per_sm"] < 1:
                    bad.append(what)
                if p["driver_per_sm"] != p["rule_per_sm"]:
                    differ.append(f"{what}: driver {p['driver_per_sm']}, rule {p['rule_per_sm']}")
    print(f"\n{len(differ)} plan(s) where the driver's co-residency differs from CUDA's rule written out"
          + (":\n  " + "\n  ".join(differ) if differ else ""))
    if bad:
        print("FAIL: plans whose grid exceeds the driver's co-residency:\n  " + "\n  ".join(bad))
        return 1
    return 0


def stress(args):
    import rnnfused

    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    os.environ["RNNFUSED_KERNEL"] = "persistent"
    T, B, H, I = args.T, args.B, args.H, 32
    info = rnnfused._C.cuda_persistent_plan(B, H, "float32", False)
    print(f"plan (forward): {info}")
    assert info["ok"] and info["G"] > 1, "the stress size must put W_hh on a CTA group (G > 1)"
    g = torch.Generator().manual_seed(0)
    ref = torch.nn.RNN(I, H, dtype=torch.float64)
    fused = rnnfused.FusedRNN(I, H).cuda()
    with torch.no_grad():
        for p, q in zip(fused.parameters(), ref.parameters()):
            w = torch.empty(p.shape).uniform_(-1, 1, generator=g) / H ** 0.5
            p.copy_(w)
            q.copy_(w.double())
    ref = ref.cuda()
    x = torch.randn(T, B, I, generator=g).cuda()
    h0 = (torch.randn(1, B, H, generator=g) * 0.5).cuda()
    gout = torch.randn(T, B, H, generator=g).cuda()

    def once(model, dtype):
        for p in model.parameters():
            p.grad = None
        xx = x.to(dtype).clone().requires_grad_(True)
        hh = h0.to(dtype).clone().requires_grad_(True)
        out, hn = model(xx, hh)
        (out * gout.to(dtype)).sum().backward()
        torch.cuda.synchronize()
        return [t.detach().clone() for t in [out, hn, xx.grad, hh.grad, *[p.grad for p in model.parameters()]]]

    # RNNFUSED_KERNEL=persistent: a refused cooperative launch raises (no silent stepwise run).
    first = once(fused, torch.float32)
    for r in range(1, args.runs):
        again = once(fused, torch.float32)
        for a, b in zip(first, again):
            if not torch.equal(a, b):
                print(f"FAIL: run {r} differs bit for bit from run 0 (max |diff| {(a - b).abs().max().item():.3g})")
                return 1
    print(f"{args.runs} runs of the persistent kernel (T={T}, B={B}, H={H}, float32, forward + backward): "
          "bitwise equal")
    os.environ["RNNFUSED_KERNEL"] = "stepwise"
    step = once(fused, torch.float32)
    exact = once(ref, torch.float64)
    cudnn32 = torch.nn.RNN(I, H).cuda()
    with torch.no_grad():
        for p, q in zip(cudnn32.parameters(), fused.parameters()):
            p.copy_(q)
    theirs = once(cudnn32, torch.float32)
    names = ["output", "h_n", "grad_input", "grad_h0"] + [f"grad_{n}" for n, _ in fused.named_parameters()]
    failed = False
    for name, a, s, e, c in zip(names, first, step, exact, theirs):
        scale = max(1.0, e.abs().max().item())
        err_p = (a.double() - e).abs().max().item()
        err_s = (s.double() - e).abs().max().item()
        err_c = (c.double() - e).abs().max().item()
        bound = 2 * err_c + 1e-5 * scale
        ok = err_p <= bound and err_s <= bound
        failed |= not ok
        print(f"{'ok  ' if ok else 'FAIL'} {name:18s} error vs float64: persistent {err_p:.3g}, stepwise {err_s:.3g}, "
              f"nn.RNN float32 {err_c:.3g} (bound {bound:.3g})")
    return 1 if failed else 0


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("device")
    sub.add_parser("coresidency")
    s = sub.add_parser("stress")
    s.add_argument("--runs", type=int, default=20)
    s.add_argument("--T", type=int, default=2000)
    s.add_argument("--B", type=int, default=64)
    s.add_argument("--H", type=int, default=1024)
    args = p.parse_args(argv)
    return {"device": device, "coresidency": coresidency, "stress": stress}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())

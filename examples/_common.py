"""What the examples share: their options, the agreement check, the control run, the plot.

Every example does the same two things:

1. Agreement: nn.RNN and FusedRNN with the same weights on the same batch give the same outputs
   and the same gradients for every parameter, to float32 rounding. The largest difference is
   printed. This is the claim rnnfused makes.
2. Training, both from the same initial weights on the same batches, in lockstep, beside a
   control: nn.RNN again, started from weights nudged by one unit in the last place (1 ulp).

Why a control: the two models compute the same sums in a different order, so their results
differ by rounding (about 1e-7 relative in float32). Training amplifies such differences: each
optimizer step feeds them into the next, and after a few hundred steps the runs take visibly
different paths (different final losses, a different held-out accuracy). nn.RNN does the same to
itself: started 1 ulp away, or run with another thread count, it parts from its own first run just
as far. So the distance between nn.RNN and FusedRNN at the end of training is this training
setup's noise, measured by the control; it is not a difference in quality.
"""
import argparse
import copy
import json

import torch

STYLES = {
    "nn.RNN": dict(lw=3, alpha=0.45),
    "FusedRNN": dict(lw=1.2, ls="--"),
    "nn.RNN, 1 ulp": dict(lw=1, ls=":", color="gray"),
}
CONTROL = "nn.RNN, 1 ulp"
WHY_DRIFT = """\
Why the three runs end apart: FusedRNN and nn.RNN add the same numbers in a different order, so
they differ by float32 rounding (see the agreement check above). Training amplifies that: every
step feeds the difference into the next, and after hundreds of steps the runs take different
paths. The control, nn.RNN itself started from weights 1 ulp away, parts from nn.RNN the same
way. Compare FusedRNN's distance from nn.RNN with the control's: that spread is the noise of this
training setup, not a quality difference."""


def parse_args(doc, steps, out, argv=None, seeds=None):
    """The options every example takes; sets torch's intra-op threads from --threads."""
    parser = argparse.ArgumentParser(description=doc.split("\n")[0])
    parser.add_argument("--steps", type=int, default=steps, help="training steps")
    if seeds is not None:
        parser.add_argument("--seeds", type=int, default=seeds,
                            help="training runs (seeds 0..N-1), to show the spread between runs")
    parser.add_argument("--quick", action="store_true",
                        help="a few steps, one seed: the agreement check and a short training run")
    parser.add_argument("--no-control", action="store_true",
                        help="skip the control run (nn.RNN from weights nudged by 1 ulp)")
    parser.add_argument("--out", default=out, help="PNG with the loss curves")
    parser.add_argument("--log", default=None, help="also write the agreement check and the loss curves as JSON here")
    parser.add_argument("--hidden", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1,
                        help="intra-op threads (models this small gain nothing from more, and on a "
                             "busy machine OpenMP's spinning threads slow nn.RNN's per-step ops badly)")
    args = parser.parse_args(argv)
    if args.quick:
        args.steps = min(args.steps, 30)
        if seeds is not None:
            args.seeds = 1
    torch.set_num_threads(args.threads)
    return args


def nudged(model):
    """A copy of model with every parameter moved by one unit in the last place (towards +inf)."""
    other = copy.deepcopy(model)
    with torch.no_grad():
        for p in other.parameters():
            p.copy_(torch.nextafter(p, torch.full_like(p, float("inf"))))
    return other


def models_for_training(reference, fused, control=True):
    """{name: model} in the order they train; the control is a 1-ulp-nudged copy of nn.RNN."""
    models = {"nn.RNN": reference, "FusedRNN": fused}
    if control:
        models[CONTROL] = nudged(reference)
    return models


def check_agreement(reference, fused, run):
    """Same weights, same batch: compare what run(model) -> (outputs tuple, loss) gives for the two,
    and the gradients of the loss for every parameter (matched by name). Prints the largest
    differences, returns them. Leaves no gradients behind."""
    ref_state, fused_state = reference.state_dict(), fused.state_dict()
    assert ref_state.keys() == fused_state.keys()
    assert all(torch.equal(ref_state[k], fused_state[k]) for k in ref_state), "weights differ"

    def outputs_and_grads(model):
        outs, loss = run(model)
        names, params = zip(*[(n, p) for n, p in model.named_parameters() if p.requires_grad])
        grads = torch.autograd.grad(loss, params)
        return [o.detach() for o in outs] + [loss.detach()], dict(zip(names, grads))

    outs_r, grads_r = outputs_and_grads(reference)
    outs_f, grads_f = outputs_and_grads(fused)
    assert grads_r.keys() == grads_f.keys()

    def largest(pairs):
        diff = max((a.double() - b.double()).abs().max().item() for a, b in pairs)
        scale = max(a.double().abs().max().item() for a, _ in pairs)
        return diff, scale

    out_diff, out_scale = largest(list(zip(outs_r, outs_f)))
    grad_diff, grad_scale = largest([(grads_r[n], grads_f[n]) for n in grads_r])
    dtype = next(reference.parameters()).dtype
    eps = torch.finfo(dtype).eps
    bound = 1000 * eps  # rounding: a few ulps per step, grown over the sequence; far below any bug
    ok = out_diff <= bound * max(1.0, out_scale) and grad_diff <= bound * max(1.0, grad_scale)
    print(f"Agreement check: nn.RNN and FusedRNN, same weights, same batch ({dtype}, eps {eps:.1e}):")
    print(f"  outputs and loss:         max |difference| {out_diff:.2e}   (largest value {out_scale:.2e})")
    print(f"  gradients of {len(grads_r):2d} tensors: max |difference| {grad_diff:.2e}   (largest value {grad_scale:.2e})")
    print(f"  -> {'they agree to float rounding' if ok else 'THEY DISAGREE'} "
          f"(bound {bound:.1e} x max(1, largest value))")
    return dict(out_diff=out_diff, out_scale=out_scale, grad_diff=grad_diff, grad_scale=grad_scale,
                n_grads=len(grads_r), bound=bound, ok=ok)


def save_curves(losses, args, title, ylabel, log_y=False, extra=None):
    """Plot one loss curve per model to args.out; with --log, dump the curves (and extra) as JSON."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for name, curve in losses.items():
        ax.plot(range(1, len(curve) + 1), curve, label=name, **STYLES.get(name, {}))
    if log_y:
        ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(args.out, dpi=100)
    plt.close(fig)
    if args.log:
        with open(args.log, "w") as f:
            json.dump({"losses": losses, **(extra or {})}, f)

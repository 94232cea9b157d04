"""What both examples share: their command-line options and the loss-curve plot."""
import argparse
import json

import torch


def parse_args(doc, steps, out, argv=None):
    """The options every example takes; sets torch's intra-op threads from --threads."""
    parser = argparse.ArgumentParser(description=doc.split("\n")[0])
    parser.add_argument("--steps", type=int, default=steps, help="training steps")
    parser.add_argument("--out", default=out, help="PNG with both loss curves")
    parser.add_argument("--log", default=None, help="also write both loss curves as JSON here")
    parser.add_argument("--hidden", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1,
                        help="intra-op threads (models this small gain nothing from more, and on a "
                             "busy machine OpenMP's spinning threads slow nn.RNN's per-step ops badly)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    return args


def save_curves(losses, args, title, ylabel, log_y=False):
    """Plot one loss curve per model to args.out (and dump them as JSON to args.log)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    styles = {"nn.RNN": dict(lw=3, alpha=0.5), "FusedRNN": dict(lw=1, ls="--")}
    for name, curve in losses.items():
        ax.plot(range(1, len(curve) + 1), curve, label=name, **styles.get(name, {}))
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
            json.dump(losses, f)

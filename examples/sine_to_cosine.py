"""Sine -> cosine regression with an Elman RNN, trained with truncated backpropagation through time.

Each batch holds long sine waves sin(w t + phi) with random frequency w and phase phi; the target is
cos(w t + phi), so the network must infer the frequency from what it has seen. The long sequences are
fed in chunks: the hidden state is carried from one chunk to the next and detached, so gradients
flow back at most one chunk (truncated BPTT).

First the script checks that nn.RNN and rnnfused.FusedRNN with the same weights give the same
outputs and gradients on one batch (and prints the largest difference). Then it trains both from
identical initial weights on identical data, beside a control (nn.RNN from weights nudged by one
ulp: see _common.py for why), prints the final losses and the time each took, and plots the loss
curves.

    python examples/sine_to_cosine.py --out sine_to_cosine.png
    python examples/sine_to_cosine.py --quick          # the agreement check and 30 steps
"""
import copy
import math
import time

import torch
from torch import nn

import rnnfused
from _common import WHY_DRIFT, check_agreement, models_for_training, parse_args, save_curves


class SineToCosine(nn.Module):
    def __init__(self, hidden_size=32, num_layers=1):
        super().__init__()
        self.rnn = nn.RNN(1, hidden_size, num_layers=num_layers, batch_first=True)
        self.head = nn.Linear(hidden_size, 1)

    def forward(self, x, h=None):
        out, h = self.rnn(x, h)
        return self.head(out), h


def make_sequences(gen, batch, length):
    """(input, target), each (batch, length, 1): sin and cos of w t + phi."""
    freq = 0.05 + 0.15 * torch.rand(batch, 1, generator=gen)
    phase = 2 * math.pi * torch.rand(batch, 1, generator=gen)
    angle = freq * torch.arange(length, dtype=torch.float32) + phase
    return torch.sin(angle).unsqueeze(-1), torch.cos(angle).unsqueeze(-1)


def train(models, steps, batch=16, chunk=50, chunks_per_sequence=8, lr=1e-2, seed=0):
    """Trains every model in `models` (name -> module) on the same chunks, in lockstep.
    Returns ({name: [loss per step]}, {name: seconds spent in its steps})."""
    opts = {k: torch.optim.Adam(m.parameters(), lr=lr) for k, m in models.items()}
    losses = {k: [] for k in models}
    seconds = {k: 0.0 for k in models}
    hidden = {k: None for k in models}
    gen = torch.Generator().manual_seed(seed)
    x_seq = y_seq = None
    for step in range(steps):
        c = step % chunks_per_sequence
        if c == 0:  # a new batch of long sequences: start from a zero state
            x_seq, y_seq = make_sequences(gen, batch, chunk * chunks_per_sequence)
            hidden = {k: None for k in models}
        x, y = x_seq[:, c * chunk:(c + 1) * chunk], y_seq[:, c * chunk:(c + 1) * chunk]
        for k, model in models.items():
            t0 = time.perf_counter()
            opts[k].zero_grad()
            pred, h = model(x, hidden[k])
            loss = nn.functional.mse_loss(pred, y)
            loss.backward()
            opts[k].step()
            hidden[k] = h.detach()  # carry the state, cut the graph: truncated BPTT
            seconds[k] += time.perf_counter() - t0
            losses[k].append(loss.item())
    return losses, seconds


def main(argv=None):
    args = parse_args(__doc__, steps=400, out="sine_to_cosine.png", argv=argv)

    torch.manual_seed(args.seed)
    reference = SineToCosine(args.hidden)
    fused = rnnfused.convert(copy.deepcopy(reference))  # identical initial weights

    # 1. Agreement: one batch of two chunks, the state carried from the first into the second.
    x, y = make_sequences(torch.Generator().manual_seed(args.seed + 100), 16, 100)

    def run(model):
        pred1, h = model(x[:, :50])
        pred2, h = model(x[:, 50:], h)
        pred = torch.cat([pred1, pred2], 1)
        return (pred, h), nn.functional.mse_loss(pred, y)

    agreement = check_agreement(reference, fused, run)
    if not agreement["ok"]:
        raise SystemExit("nn.RNN and FusedRNN disagree beyond rounding: this is a bug, please report it")

    # 2. Training in lockstep, from the same weights, on the same chunks.
    models = models_for_training(reference, fused, control=not args.no_control)
    losses, seconds = train(models, args.steps, seed=args.seed)
    save_curves(losses, args, "sine -> cosine, truncated BPTT", "loss", log_y=True,
                extra={"agreement": agreement})
    print(f"\nTraining, {args.steps} steps of truncated BPTT, same chunks for every model:")
    for name in losses:
        print(f"  {name:14s} final loss {losses[name][-1]:.6f}   training time {seconds[name]:.2f} s")
    if len(models) > 2:
        print(WHY_DRIFT)
    print(f"wrote {args.out}")
    return losses


if __name__ == "__main__":
    main()

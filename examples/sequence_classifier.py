"""Classify noisy sequences by level and volatility from an RNN's last hidden state.

Synthetic data, generated here: each sequence (20 to 60 steps) is Gaussian noise around a level of
-0.5 or +0.5 with a standard deviation of 0.3 (calm) or 1.5 (volatile): four classes. Telling them
apart takes integrating over the whole sequence: the level hides under the volatile noise and
the volatility needs the squares of the inputs. The variable-length batch goes in as a
PackedSequence, so h_n holds each sequence's state at its own last step; a linear layer on the top
layer's h_n gives the class.

First the script checks that nn.RNN and rnnfused.FusedRNN with the same weights give the same
logits and gradients on one packed batch (and prints the largest difference). Then it trains both
from identical initial weights on identical batches, beside a control (nn.RNN from weights nudged
by one ulp), for a few seeds, and prints every run's held-out accuracy: the spread between runs
that differ only by rounding is the yardstick for the difference between nn.RNN and FusedRNN
(_common.py says why runs drift apart at all). It plots the first seed's loss curves.

    python examples/sequence_classifier.py --out sequence_classifier.png
    python examples/sequence_classifier.py --seeds 4      # more runs, a better view of the spread
    python examples/sequence_classifier.py --quick        # the agreement check and 30 steps
"""
import copy
import time

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_sequence

import rnnfused
from _common import CONTROL, WHY_DRIFT, check_agreement, models_for_training, parse_args, save_curves

CLASSES = ["low calm", "high calm", "low volatile", "high volatile"]
LEVEL = [-0.5, 0.5, -0.5, 0.5]
NOISE = [0.3, 0.3, 1.5, 1.5]


class Classifier(nn.Module):
    def __init__(self, hidden_size=32, num_layers=1):
        super().__init__()
        self.rnn = nn.RNN(1, hidden_size, num_layers=num_layers, batch_first=True)
        self.head = nn.Linear(hidden_size, len(CLASSES))

    def forward(self, x, lengths):
        packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        _, h_n = self.rnn(packed)
        return self.head(h_n[-1])  # the top layer's state at each sequence's last step


def make_batch(gen, batch, min_len=20, max_len=60):
    """(padded input (batch, max length, 1), lengths, labels)."""
    labels = torch.randint(len(CLASSES), (batch,), generator=gen)
    lengths = torch.randint(min_len, max_len + 1, (batch,), generator=gen)
    seqs = [
        LEVEL[label] + NOISE[label] * torch.randn(length, generator=gen)
        for label, length in zip(labels.tolist(), lengths.tolist())
    ]
    return pad_sequence(seqs, batch_first=True).unsqueeze(-1), lengths, labels


def train(models, steps, batch=32, lr=3e-3, seed=0):
    """Trains every model (name -> module) on the same batches in lockstep. Returns
    ({name: [loss per step]}, {name: seconds spent in its steps})."""
    opts = {k: torch.optim.Adam(m.parameters(), lr=lr) for k, m in models.items()}
    losses = {k: [] for k in models}
    seconds = {k: 0.0 for k in models}
    gen = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        x, lengths, labels = make_batch(gen, batch)
        for k, model in models.items():
            t0 = time.perf_counter()
            opts[k].zero_grad()
            loss = nn.functional.cross_entropy(model(x, lengths), labels)
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opts[k].step()
            seconds[k] += time.perf_counter() - t0
            losses[k].append(loss.item())
    return losses, seconds


@torch.no_grad()
def accuracy(model, seed, n=512):
    x, lengths, labels = make_batch(torch.Generator().manual_seed(seed), n)
    return (model(x, lengths).argmax(-1) == labels).float().mean().item()


def main(argv=None):
    args = parse_args(__doc__, steps=300, out="sequence_classifier.png", argv=argv, seeds=2)

    # 1. Agreement: one packed batch of variable-length sequences, logits and every gradient.
    torch.manual_seed(args.seed)
    reference = Classifier(args.hidden)
    fused = rnnfused.convert(copy.deepcopy(reference))  # identical initial weights
    x, lengths, labels = make_batch(torch.Generator().manual_seed(args.seed + 100), 64)

    def run(model):
        logits = model(x, lengths)
        return (logits,), nn.functional.cross_entropy(logits, labels)

    agreement = check_agreement(reference, fused, run)
    if not agreement["ok"]:
        raise SystemExit("nn.RNN and FusedRNN disagree beyond rounding: this is a bug, please report it")

    # 2. Training in lockstep, per seed: nn.RNN, FusedRNN from the same weights, and the control.
    accuracies, first_losses, seconds = {}, None, {}
    for seed in range(args.seed, args.seed + args.seeds):
        torch.manual_seed(seed)
        reference = Classifier(args.hidden)
        fused = rnnfused.convert(copy.deepcopy(reference))
        models = models_for_training(reference, fused, control=not args.no_control)
        losses, secs = train(models, args.steps, seed=seed)
        first_losses = first_losses or losses
        for name, model in models.items():
            accuracies.setdefault(name, []).append(accuracy(model, seed=seed + 1))
            seconds[name] = seconds.get(name, 0.0) + secs[name]
    save_curves(first_losses, args, "level / volatility classification from the last hidden state",
                "cross-entropy", extra={"agreement": agreement, "accuracy": accuracies})

    names = list(accuracies)
    seeds = list(range(args.seed, args.seed + args.seeds))
    print(f"\nTraining, {args.steps} steps per run, same batches for every model of a seed; "
          f"held-out accuracy (512 sequences):")
    print("  " + f"{'seed':>6s}" + "".join(f"{n:>16s}" for n in names))
    for i, seed in enumerate(seeds):
        print("  " + f"{seed:6d}" + "".join(f"{accuracies[n][i]:16.3f}" for n in names))
    if len(seeds) > 1:
        print("  " + f"{'mean':>6s}" + "".join(f"{sum(accuracies[n]) / len(seeds):16.3f}" for n in names))
    print("  " + f"{'time':>6s}" + "".join(f"{seconds[n]:15.1f}s" for n in names))
    if CONTROL in accuracies:
        def gap(name):
            return sum(abs(a - b) for a, b in zip(accuracies[name], accuracies["nn.RNN"])) / len(seeds)
        print(f"Mean |accuracy - nn.RNN's|: FusedRNN {gap('FusedRNN'):.3f}, "
              f"control ({CONTROL}) {gap(CONTROL):.3f}.")
        print(WHY_DRIFT)
    print(f"wrote {args.out}")
    return first_losses


if __name__ == "__main__":
    main()

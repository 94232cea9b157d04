"""Classify noisy sequences by level and volatility from an RNN's last hidden state.

Synthetic data, generated here: each sequence (20 to 60 steps) is Gaussian noise around a level of
-0.5 or +0.5 with a standard deviation of 0.3 (calm) or 1.5 (volatile): four classes. Telling them
apart takes integrating over the whole sequence: the level hides under the volatile noise and
the volatility needs the squares of the inputs. The variable-length batch goes in as a
PackedSequence, so h_n holds each sequence's state at its own last step; a linear layer on the top
layer's h_n gives the class.

nn.RNN and rnnfused.FusedRNN are trained side by side from identical initial weights on identical
batches; the script prints both final losses, held-out accuracies and training times, and plots
both loss curves.

    python examples/sequence_classifier.py --steps 300 --out sequence_classifier.png
"""
import copy
import time

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_sequence

import rnnfused
from _common import parse_args, save_curves

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
    args = parse_args(__doc__, steps=300, out="sequence_classifier.png", argv=argv)

    torch.manual_seed(args.seed)
    reference = Classifier(args.hidden)
    fused = rnnfused.convert(copy.deepcopy(reference))  # identical initial weights
    models = {"nn.RNN": reference, "FusedRNN": fused}
    losses, seconds = train(models, args.steps, seed=args.seed)
    save_curves(losses, args, "level / volatility classification from the last hidden state", "cross-entropy")
    for name, model in models.items():
        acc = accuracy(model, seed=args.seed + 1)
        print(f"{name:9s} final loss {losses[name][-1]:.4f}   held-out accuracy {acc:.3f}   "
              f"training time {seconds[name]:.2f} s")
    print(f"wrote {args.out}")
    return losses


if __name__ == "__main__":
    main()

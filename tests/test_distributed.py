"""FusedRNN under DistributedDataParallel: two CPU processes (gloo, localhost), trained side by side
with nn.RNN from identical weights; parameters stay identical across ranks and equal to nn.RNN's,
and a state dict saved by one rank loads in the other (into FusedRNN and into nn.RNN)."""
import copy
import datetime
import os
import socket
import time

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP

WORLD = 2
STEPS = 4
TIMEOUT_S = 150

pytestmark = pytest.mark.skipif(
    not dist.is_available() or not dist.is_gloo_available(), reason="torch.distributed with gloo needed"
)


def _free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.rnn = nn.RNN(4, 16, num_layers=2, batch_first=True, bidirectional=True)
        self.head = nn.Linear(32, 1)

    def forward(self, x):
        out, h = self.rnn(x)
        return self.head(out).squeeze(-1) + h.mean(0).sum(-1, keepdim=True)


def _worker(rank, port, tmpdir):
    import rnnfused  # imported in the child (spawn)

    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD,
        timeout=datetime.timedelta(seconds=60),
    )
    try:
        torch.manual_seed(0)  # identical initial weights on every rank, for both models
        plain = Net()
        initial = copy.deepcopy(plain.state_dict())
        fused = rnnfused.convert(copy.deepcopy(plain))
        assert isinstance(fused.rnn, rnnfused.FusedRNN)
        models = {"nn.RNN": DDP(plain), "FusedRNN": DDP(fused)}
        opts = {k: torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9) for k, m in models.items()}
        g = torch.Generator().manual_seed(100 + rank)  # each rank its own data
        for _ in range(STEPS):
            x, y = torch.randn(3, 7, 4, generator=g), torch.randn(3, 7, generator=g)
            for k, m in models.items():
                opts[k].zero_grad()
                loss = ((m(x) - y) ** 2).mean()
                loss.backward()
                opts[k].step()

        # 1. Every parameter identical across ranks (DDP averaged the same gradients everywhere).
        for k, m in models.items():
            for n, p in m.module.named_parameters():
                gathered = [torch.empty_like(p) for _ in range(WORLD)]
                dist.all_gather(gathered, p.detach())
                assert torch.equal(gathered[0], gathered[1]), f"{k} {n} differs across ranks"
        # 2. FusedRNN trained like nn.RNN.
        for (n, a), (_, b) in zip(plain.named_parameters(), fused.named_parameters()):
            torch.testing.assert_close(b, a, atol=2e-5, rtol=1e-4, msg=f"FusedRNN vs nn.RNN: {n}")
        assert all(not torch.equal(p, initial[n]) for n, p in plain.named_parameters()), "no training"

        # 3. A state dict saved by one rank loads in the other.
        path = os.path.join(tmpdir, f"fused_rank{rank}.pt")
        torch.save(models["FusedRNN"].module.state_dict(), path)
        dist.barrier()
        other = os.path.join(tmpdir, f"fused_rank{1 - rank}.pt")
        state = torch.load(other, weights_only=True)
        x = torch.randn(2, 5, 4, generator=torch.Generator().manual_seed(7))
        with torch.no_grad():
            expected = fused(x)
            for cls in ("fused", "nn"):
                fresh = Net()
                if cls == "fused":
                    rnnfused.convert(fresh)
                fresh.load_state_dict(state)
                torch.testing.assert_close(fresh(x), expected, atol=2e-6, rtol=1e-5, msg=cls)
        with open(os.path.join(tmpdir, f"ok{rank}"), "w") as f:
            f.write("ok")
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_ddp_two_processes_fused_matches_nn_rnn(tmp_path):
    ctx = mp.spawn(_worker, args=(_free_port(), str(tmp_path)), nprocs=WORLD, join=False)
    deadline = time.monotonic() + TIMEOUT_S
    while not ctx.join(timeout=5):
        if time.monotonic() > deadline:
            for p in ctx.processes:
                if p.is_alive():
                    p.terminate()
            pytest.fail(f"DDP workers did not finish in {TIMEOUT_S}s")
    for rank in range(WORLD):
        assert (tmp_path / f"ok{rank}").read_text() == "ok"

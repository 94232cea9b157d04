"""Memory of one call, beside the timing (never during it).

- saved: bytes autograd keeps alive from the forward for the backward (every tensor a backward
  node saved, counted once per storage), through torch.autograd.graph.saved_tensors_hooks. Exact
  and device-independent; the part of training memory that grows with T*B*H. It does not count
  transient workspaces, the outputs, or the gradients. fwd+bwd rows only (under no_grad nothing is
  saved).
- peak (CUDA): torch.cuda.max_memory_allocated() during the call minus memory_allocated() before
  it: the peak of everything torch's CUDA allocator handed out for the call, workspaces (cuDNN's
  too), outputs and gradients included. There is no such counter for the CPU allocator, and the
  process's resident-set high-water mark is blind to reuse of already-resident heap pages, so the
  CPU rows report `saved` only.
"""
import gc

import torch


def saved_bytes(fn):
    """Bytes of the distinct storages saved for backward while fn() runs (fn's result is dropped)."""
    storages = {}

    def pack(t):
        try:
            s = t.untyped_storage()
            storages[(s.device.type, s.data_ptr())] = s.nbytes()
        except (RuntimeError, NotImplementedError):   # a tensor without storage (e.g. a subclass)
            pass
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn()
    del out
    return sum(storages.values())


def cuda_peak_bytes(fn):
    """Peak bytes torch's CUDA allocator handed out during fn(), above what was allocated before."""
    gc.collect()
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    out = fn()
    torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated() - base
    del out
    return peak


def measure_memory(con, runner, inp, mode, device):
    """{"{key}_saved_mb": ..., "{key}_peak_mb": ...} for one contender's call (what applies)."""
    out = {}
    call = lambda: runner(con, inp)   # noqa: E731
    if mode == "fwdbwd":
        out[f"{con.key}_saved_mb"] = saved_bytes(call) / 2 ** 20
    if device == "cuda":
        out[f"{con.key}_peak_mb"] = cuda_peak_bytes(call) / 2 ** 20
    return out

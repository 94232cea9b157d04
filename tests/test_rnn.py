"""FusedRNN against nn.RNN and FusedLSTM against nn.LSTM (proj_size too) with identical weights
(and a float64 reference for float32): outputs, the final state and the gradients of input, the
initial state and every parameter, over the feature matrix, on both CPU kernel paths (the LSTM
has one, the BLAS path, so far: its two runs check the forced switch changes nothing)."""
import copy

import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence

from support import CELLS, cell_kw, check_errors, compare_with_nn, make_pair, random_state, run_fwd_bwd


@pytest.fixture(autouse=True)
def _one_thread_for_lstm(request):
    """One intra-op thread for the LSTM cases (the conftest fixture's reason: nn.LSTM's per-step
    oneDNN calls, and FusedLSTM's per-step BLAS calls, cost ~100x more under OpenMP's spinning
    threads on a small shared CPU; the results do not depend on it). The Elman cases keep the
    default, as before."""
    callspec = getattr(request.node, "callspec", None)
    if callspec is None or callspec.params.get("cell") not in ("lstm", "lstm_proj"):
        yield
        return
    if callspec.params.get("cpu_kernel") == "fused":
        # Remove when the LSTM gains the fused forms (csrc/policy.cpp, cpu_seq_path).
        pytest.skip("the LSTM has one CPU path so far (BLAS per step, whatever RNNFUSED_CPU_KERNEL "
                    "says): its gemm run covers it")
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def pair(cell, H, dtype, **kw):
    """(nn module, its rnnfused twin) of cell id `cell` (support.CELLS), hidden size H."""
    module, ckw = cell_kw(cell, H)
    return make_pair(module=module, dtype=dtype, twin="load", hidden_size=H, **ckw, **kw)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("with_h0", [False, True])
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("num_layers", [1, 2, 3])
def test_feature_matrix(cpu_kernel, num_layers, cell, bias, batch_first, bidirectional, with_h0, dtype):
    I, H, T, B = 5, 6, 7, 3
    ref, fused = pair(cell, H, dtype, input_size=I, num_layers=num_layers, bias=bias, batch_first=batch_first,
                      bidirectional=bidirectional)
    x = torch.randn((B, T, I) if batch_first else (T, B, I), dtype=dtype)
    h0 = random_state(ref, B) if with_h0 else None
    compare_with_nn(ref, fused, x, h0, dtype)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("with_h0", [False, True])
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("cell", ["tanh", "lstm", "lstm_proj"])
@pytest.mark.parametrize("num_layers", [1, 2])
def test_unbatched(cpu_kernel, num_layers, cell, batch_first, bidirectional, with_h0, dtype):
    I, H, T = 4, 5, 6
    ref, fused = pair(cell, H, dtype, input_size=I, num_layers=num_layers, batch_first=batch_first,
                      bidirectional=bidirectional)
    x = torch.randn(T, I, dtype=dtype)
    D = 2 if bidirectional else 1
    h0 = random_state(ref, None, unbatched=True) if with_h0 else None
    out, _, _ = compare_with_nn(ref, fused, x, h0, dtype)
    P = getattr(ref, "proj_size", 0) or H
    assert out.shape == (T, D * P)
    got, want = fused(x)[1], ref(x)[1]  # unbatched states: (L*D, P) [and (L*D, H)]
    got, want = (got, want) if isinstance(got, tuple) else ((got,), (want,))
    assert [a.shape for a in got] == [b.shape for b in want]
    assert got[0].shape == (num_layers * D, P)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("with_h0", [False, True])
@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("num_layers", [1, 2])
@pytest.mark.parametrize("enforce_sorted", [True, False])
def test_packed_sequence(cpu_kernel, enforce_sorted, num_layers, bidirectional, cell, with_h0, dtype):
    I, H, T = 4, 6, 6
    lengths = torch.tensor([6, 4, 4, 1, 3]) if not enforce_sorted else torch.tensor([6, 4, 4, 3, 1])
    B = len(lengths)
    ref, fused = pair(cell, H, dtype, input_size=I, num_layers=num_layers, bidirectional=bidirectional)
    padded = torch.randn(T, B, I, dtype=dtype)
    x = pack_padded_sequence(padded, lengths, enforce_sorted=enforce_sorted)
    h0 = random_state(ref, B) if with_h0 else None
    out_packed, _ = fused(x, h0)
    assert type(out_packed).__name__ == "PackedSequence"
    torch.testing.assert_close(out_packed.batch_sizes, x.batch_sizes)
    if not enforce_sorted:
        torch.testing.assert_close(out_packed.unsorted_indices, x.unsorted_indices)
    compare_with_nn(ref, fused, x, h0, dtype)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("packed", [False, True])
@pytest.mark.parametrize("cell", ["tanh", "lstm_proj"])
def test_long_sequence(cpu_kernel, cell, packed, dtype):
    I, H, T, B = 8, 16, 600, 3
    ref, fused = pair(cell, H, dtype, input_size=I, num_layers=2, bidirectional=True)
    x = torch.randn(T, B, I, dtype=dtype)
    if packed:
        x = pack_padded_sequence(x, torch.tensor([600, 511, 2]), enforce_sorted=True)
    h0 = random_state(ref, B)
    # float32: the longer chain of roundings over 600 steps.
    tol = dict(rtol=1e-4, atol=2e-5) if dtype == torch.float32 else None
    compare_with_nn(ref, fused, x, h0, dtype, tol)


@pytest.mark.parametrize("T", [1, 2])
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("cell", ["tanh", "lstm"])
def test_length_one_and_two(cpu_kernel, cell, T, bidirectional):
    ref, fused = pair(cell, 4, torch.float64, input_size=3, num_layers=2, bidirectional=bidirectional)
    x = torch.randn(T, 2, 3, dtype=torch.float64)
    compare_with_nn(ref, fused, x, None, torch.float64)


@pytest.mark.parametrize("I,H,B", [(1, 1, 1), (3, 33, 2), (7, 65, 5), (9, 130, 3), (20, 260, 40)])
@pytest.mark.parametrize("cell", CELLS)
def test_odd_sizes_auto_kernel(I, H, B, cell, monkeypatch):
    """Sizes off the vector width, and the automatic choice of CPU path (the last one is large
    enough for the BLAS path)."""
    if cell == "lstm_proj" and H < 2:
        pytest.skip("proj_size needs hidden_size >= 2")
    monkeypatch.setenv("RNNFUSED_CPU_KERNEL", "auto")
    ref, fused = pair(cell, H, torch.float64, input_size=I, bidirectional=True)
    x = torch.randn(5, B, I, dtype=torch.float64)
    compare_with_nn(ref, fused, x, random_state(ref, B), torch.float64)


@pytest.mark.parametrize("cell", ["tanh", "lstm"])
def test_non_contiguous_inputs(cpu_kernel, cell):
    ref, fused = pair(cell, 5, torch.float64, input_size=4, batch_first=True, num_layers=2)
    base = torch.randn(6, 3, 8, dtype=torch.float64)
    x = base.transpose(0, 1)[:, :, ::2]  # (B, T, I) strided in every dimension
    h0 = torch.randn(3, 2, 5, dtype=torch.float64).transpose(0, 1)  # (L, B, H), not contiguous
    assert not x.is_contiguous() and not h0.is_contiguous()
    if cell == "lstm":
        h0 = (h0, torch.randn(5, 3, 2, dtype=torch.float64).permute(2, 1, 0))  # c0 (L, B, H), strided too
    compare_with_nn(ref, fused, x, h0, torch.float64)


@pytest.mark.parametrize("cell", ["tanh", "lstm_proj"])
def test_bfloat16_cpu_within_twice_nn_rnn_error(cell):
    """bfloat16 on the CPU: our error against the float64 reference is at most 2x nn.RNN's
    (nn.LSTM's) own error in bfloat16 (the numerical rule, tests/support.py)."""
    ref64, fused64 = pair(cell, 32, torch.float64, input_size=16, num_layers=2)
    x = torch.randn(50, 4, 16, dtype=torch.float64)
    exact = run_fwd_bwd(ref64, x)
    ref_bf = copy.deepcopy(ref64).bfloat16()
    fused_bf = copy.deepcopy(fused64).bfloat16()
    theirs = run_fwd_bwd(ref_bf, x.bfloat16())
    ours = run_fwd_bwd(fused_bf, x.bfloat16())

    def items(r):
        return [r[0], r[1], *r[2]]

    names = ["output", "h_n"] + [f"grad {k}" for k in range(len(exact[2]))]
    check_errors(items(ours), items(theirs), items(exact), names, torch.bfloat16)

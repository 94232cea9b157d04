"""FusedRNN against nn.RNN with identical weights (and a float64 reference for float32):
outputs, h_n and the gradients of input, h0 and every parameter, over the feature matrix,
on both CPU kernel paths."""
import copy

import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence

from support import check_errors, compare_with_nn, make_pair, run_fwd_bwd


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("with_h0", [False, True])
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("nonlinearity", ["tanh", "relu"])
@pytest.mark.parametrize("num_layers", [1, 2, 3])
def test_feature_matrix(cpu_kernel, num_layers, nonlinearity, bias, batch_first, bidirectional, with_h0, dtype):
    I, H, T, B = 5, 6, 7, 3
    ref, fused = make_pair(
        dtype=dtype, twin="load", input_size=I, hidden_size=H, num_layers=num_layers, nonlinearity=nonlinearity,
        bias=bias, batch_first=batch_first, bidirectional=bidirectional,
    )
    x = torch.randn((B, T, I) if batch_first else (T, B, I), dtype=dtype)
    D = 2 if bidirectional else 1
    h0 = torch.randn(num_layers * D, B, H, dtype=dtype) if with_h0 else None
    compare_with_nn(ref, fused, x, h0, dtype)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("with_h0", [False, True])
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("num_layers", [1, 2])
def test_unbatched(cpu_kernel, num_layers, batch_first, bidirectional, with_h0, dtype):
    I, H, T = 4, 5, 6
    ref, fused = make_pair(dtype=dtype, twin="load", input_size=I, hidden_size=H, num_layers=num_layers,
                           batch_first=batch_first, bidirectional=bidirectional)
    x = torch.randn(T, I, dtype=dtype)
    D = 2 if bidirectional else 1
    h0 = torch.randn(num_layers * D, H, dtype=dtype) if with_h0 else None
    out, hn, _ = compare_with_nn(ref, fused, x, h0, dtype)
    assert out.shape == (T, D * H) and hn.shape == (num_layers * D, H)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("with_h0", [False, True])
@pytest.mark.parametrize("nonlinearity", ["tanh", "relu"])
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("num_layers", [1, 2])
@pytest.mark.parametrize("enforce_sorted", [True, False])
def test_packed_sequence(cpu_kernel, enforce_sorted, num_layers, bidirectional, nonlinearity, with_h0, dtype):
    I, H, T = 4, 6, 6
    lengths = torch.tensor([6, 4, 4, 1, 3]) if not enforce_sorted else torch.tensor([6, 4, 4, 3, 1])
    B = len(lengths)
    ref, fused = make_pair(dtype=dtype, twin="load", input_size=I, hidden_size=H, num_layers=num_layers,
                           nonlinearity=nonlinearity, bidirectional=bidirectional)
    padded = torch.randn(T, B, I, dtype=dtype)
    x = pack_padded_sequence(padded, lengths, enforce_sorted=enforce_sorted)
    D = 2 if bidirectional else 1
    h0 = torch.randn(num_layers * D, B, H, dtype=dtype) if with_h0 else None
    out_packed, _ = fused(x, h0)
    assert type(out_packed).__name__ == "PackedSequence"
    torch.testing.assert_close(out_packed.batch_sizes, x.batch_sizes)
    if not enforce_sorted:
        torch.testing.assert_close(out_packed.unsorted_indices, x.unsorted_indices)
    compare_with_nn(ref, fused, x, h0, dtype)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("packed", [False, True])
def test_long_sequence(cpu_kernel, packed, dtype):
    I, H, T, B = 8, 16, 600, 3
    ref, fused = make_pair(input_size=I, hidden_size=H, num_layers=2, bidirectional=True,
                           dtype=dtype, twin="load")
    x = torch.randn(T, B, I, dtype=dtype)
    if packed:
        x = pack_padded_sequence(x, torch.tensor([600, 511, 2]), enforce_sorted=True)
    h0 = torch.randn(4, B, H, dtype=dtype)
    # float32: the longer chain of roundings over 600 steps.
    tol = dict(rtol=1e-4, atol=2e-5) if dtype == torch.float32 else None
    compare_with_nn(ref, fused, x, h0, dtype, tol)


@pytest.mark.parametrize("T", [1, 2])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_length_one_and_two(cpu_kernel, T, bidirectional):
    ref, fused = make_pair(input_size=3, hidden_size=4, num_layers=2, bidirectional=bidirectional,
                           dtype=torch.float64, twin="load")
    x = torch.randn(T, 2, 3, dtype=torch.float64)
    compare_with_nn(ref, fused, x, None, torch.float64)


@pytest.mark.parametrize("I,H,B", [(1, 1, 1), (3, 33, 2), (7, 65, 5), (9, 130, 3), (20, 260, 40)])
@pytest.mark.parametrize("nonlinearity", ["tanh", "relu"])
def test_odd_sizes_auto_kernel(I, H, B, nonlinearity, monkeypatch):
    """Sizes off the vector width, and the automatic choice of CPU path (the last one is large
    enough for the BLAS path)."""
    monkeypatch.setenv("RNNFUSED_CPU_KERNEL", "auto")
    ref, fused = make_pair(input_size=I, hidden_size=H, nonlinearity=nonlinearity, bidirectional=True,
                           dtype=torch.float64, twin="load")
    x = torch.randn(5, B, I, dtype=torch.float64)
    compare_with_nn(ref, fused, x, torch.randn(2, B, H, dtype=torch.float64), torch.float64)


def test_non_contiguous_inputs(cpu_kernel):
    ref, fused = make_pair(input_size=4, hidden_size=5, batch_first=True, num_layers=2,
                           dtype=torch.float64, twin="load")
    base = torch.randn(6, 3, 8, dtype=torch.float64)
    x = base.transpose(0, 1)[:, :, ::2]  # (B, T, I) strided in every dimension
    h0 = torch.randn(3, 2, 5, dtype=torch.float64).transpose(0, 1)  # (L, B, H), not contiguous
    assert not x.is_contiguous() and not h0.is_contiguous()
    compare_with_nn(ref, fused, x, h0, torch.float64)


def test_bfloat16_cpu_within_twice_nn_rnn_error():
    """bfloat16 on the CPU: our error against the float64 reference is at most 2x nn.RNN's own
    error in bfloat16 (the numerical rule, tests/support.py)."""
    ref64, fused64 = make_pair(input_size=16, hidden_size=32, num_layers=2, dtype=torch.float64, twin="load")
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

"""PyTorch's own module tests for nn.RNN, nn.RNNCell, nn.LSTM and nn.LSTMCell, run on FusedRNN,
FusedRNNCell, FusedLSTM and FusedLSTMCell side by side with the originals.

The samples come from the ModuleInfo database the torch wheel ships
(torch.testing._internal.common_modules.module_db: each entry's module_inputs_func and
module_error_inputs_func, the inputs PyTorch's test/test_modules.py runs). The checks are our own,
modelled on what test_modules.py checks: forward (against nn and the entry's reference_fn),
factory kwargs, gradcheck and gradgradcheck, pickling and state_dict, repr, non-contiguous inputs,
train/eval, dtype conversion, and the errors (same exception type and message). Each check runs
on nn's module too, so a check that nn fails is not asked of rnnfused."""
import copy
import io
import pickle

import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import PackedSequence

pytest.importorskip("expecttest")  # torch.testing._internal needs it
from torch.testing._internal.common_modules import ModuleErrorEnum, module_db  # noqa: E402

from rnnfused import FusedLSTM, FusedLSTMCell, FusedRNN, FusedRNNCell  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_intra_op_thread")

FUSED = {nn.RNN: FusedRNN, nn.RNNCell: FusedRNNCell, nn.LSTM: FusedLSTM, nn.LSTMCell: FusedLSTMCell}
INFOS = [info for info in module_db if info.module_cls in FUSED]
assert {info.module_cls for info in INFOS} == set(FUSED), "module_db lost an RNN / LSTM entry"


def _id(info):
    return info.module_cls.__name__


def _samples(info, dtype, requires_grad=False, training=False):
    samples = list(info.module_inputs_func(info, device="cpu", dtype=dtype, requires_grad=requires_grad,
                                           training=training))
    if info.module_cls in (nn.RNN, nn.GRU):  # also the PackedSequence samples their function can make (not nn.LSTM's)
        fn = info.module_inputs_func
        extra = fn.func(info, "cpu", dtype, requires_grad, training, with_packed_sequence=True, **fn.keywords)
        samples += [s for s in extra if isinstance(s.forward_input.args[0], PackedSequence)]
    assert samples
    return samples


def _build(info, sample, dtype, seed=0):
    """(nn module, fused module), constructed with the same arguments and the same random stream."""
    args, kwargs = sample.constructor_input.args, dict(sample.constructor_input.kwargs)
    kwargs.setdefault("dtype", dtype)
    torch.manual_seed(seed)
    ref = info.module_cls(*args, **kwargs)
    torch.manual_seed(seed)
    fused = FUSED[info.module_cls](*args, **kwargs)
    return ref, fused


def _clone_input(a):
    if isinstance(a, PackedSequence):
        return PackedSequence(a.data.detach().clone().requires_grad_(a.data.requires_grad), a.batch_sizes,
                              a.sorted_indices, a.unsorted_indices)
    if isinstance(a, torch.Tensor):
        return a.detach().clone().requires_grad_(a.requires_grad)
    if isinstance(a, tuple):  # nn.LSTM's (h_0, c_0)
        return tuple(_clone_input(t) for t in a)
    return a


def _call(module, sample):
    args = [_clone_input(a) for a in sample.forward_input.args]
    return module(*args, **sample.forward_input.kwargs)


def _flat(out):
    if isinstance(out, PackedSequence):
        return [out.data]
    if isinstance(out, torch.Tensor):
        return [out]
    return [t for o in out for t in _flat(o)]


def _assert_same(got, want, dtype, what):
    got, want = _flat(got), _flat(want)
    assert len(got) == len(want), what
    tol = dict(rtol=1e-5, atol=1e-6) if dtype == torch.float32 else dict(rtol=1e-12, atol=1e-12)
    for i, (a, b) in enumerate(zip(got, want)):
        assert a.shape == b.shape and a.dtype == b.dtype, f"{what} output {i}"
        torch.testing.assert_close(a, b, **tol, msg=f"{what} output {i}")


@pytest.mark.parametrize("info", INFOS, ids=_id)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_forward_like_nn_and_reference_fn(info, dtype):
    for sample in _samples(info, dtype):
        ref, fused = _build(info, sample, dtype)
        # Same construction, same initialisation: identical parameters.
        for (n, a), (m, b) in zip(fused.named_parameters(), ref.named_parameters()):
            assert n == m
            torch.testing.assert_close(a, b, rtol=0, atol=0, msg=n)
        want = _call(ref, sample)
        got = _call(fused, sample)
        _assert_same(got, want, dtype, "vs nn")
        packed = any(isinstance(a, PackedSequence) for a in sample.forward_input.args)
        if sample.reference_fn is not None and not packed:  # the no-batch-dim references take tensors
            args = [_clone_input(a) for a in sample.forward_input.args]
            ref_out = sample.reference_fn(fused, *args, **sample.forward_input.kwargs)  # passes the params itself
            _assert_same(got, ref_out, dtype, "vs reference_fn")


@pytest.mark.parametrize("info", INFOS, ids=_id)
def test_factory_kwargs_and_dtype_conversion(info):
    sample = _samples(info, torch.float32)[0]
    for dtype in (torch.float32, torch.float64):
        _, fused = _build(info, sample, dtype)
        assert all(p.dtype == dtype and p.device.type == "cpu" for p in fused.parameters())
    ref, fused = _build(info, sample, torch.float32)
    ref, fused = ref.double(), fused.double()
    sample64 = _samples(info, torch.float64)[0]
    _assert_same(_call(fused, sample64), _call(ref, sample64), torch.float64, "after .double()")
    meta = FUSED[info.module_cls](*sample.constructor_input.args, **sample.constructor_input.kwargs, device="meta")
    assert all(p.is_meta for p in meta.parameters())
    empty = meta.to_empty(device="cpu")
    assert all(p.device.type == "cpu" for p in empty.parameters())


def _grad_function(module, sample):
    """A function of (tensor inputs..., params...) -> flat outputs, for gradcheck."""
    args = list(sample.forward_input.args)
    names = [n for n, _ in module.named_parameters()]
    tensor_pos = [i for i, a in enumerate(args) if isinstance(a, (torch.Tensor, PackedSequence))]

    def leaf(a):
        return (a.data if isinstance(a, PackedSequence) else a).detach().clone().requires_grad_()

    leaves = [leaf(args[i]) for i in tensor_pos]

    def f(*flat):
        call_args = list(args)
        for i, t in zip(tensor_pos, flat[: len(tensor_pos)]):
            a = args[i]
            call_args[i] = PackedSequence(t, a.batch_sizes, a.sorted_indices, a.unsorted_indices) \
                if isinstance(a, PackedSequence) else t
        params = dict(zip(names, flat[len(tensor_pos):]))
        return tuple(_flat(torch.func.functional_call(module, params, tuple(call_args), sample.forward_input.kwargs)))

    return f, leaves + [p.detach().clone().requires_grad_() for p in module.parameters()]


@pytest.mark.parametrize("info", [pytest.param(i, marks=pytest.mark.slow) if i.module_cls in (nn.RNN, nn.LSTM) else i for i in INFOS],
                         ids=_id)
@pytest.mark.parametrize("check", ["gradcheck", "gradgradcheck"])
def test_gradcheck_and_gradgradcheck(info, check):
    assert info.supports_gradgrad  # the database says nn's modules support it; so must ours
    run = getattr(torch.autograd, check)
    samples = _samples(info, torch.float64, requires_grad=True)
    # Second derivatives by finite differences are slow: gradgradcheck in fast mode (a random
    # projection of the Jacobian, as PyTorch's gradcheck_fast_mode) on every third sample.
    # Batched gradients on, as PyTorch's test_modules.py test_grad / test_gradgrad run them (vmap
    # over the backward: rnnfused/_func.py, csrc/host/autograd.h).
    kw = dict(nondet_tol=info.gradcheck_nondet_tol, fast_mode=check == "gradgradcheck", check_batched_grad=True)
    for sample in samples[:: (1 if check == "gradcheck" else 3)]:
        ref, fused = _build(info, sample, torch.float64)
        f_ref, inputs = _grad_function(ref, sample)
        assert run(f_ref, inputs, **kw), "nn fails it: not asked of rnnfused"
        f_fused, inputs = _grad_function(fused, sample)
        assert run(f_fused, inputs, **kw)


@pytest.mark.parametrize("info", INFOS, ids=_id)
def test_pickle_deepcopy_state_dict_repr(info):
    for sample in _samples(info, torch.float32):
        ref, fused = _build(info, sample, torch.float32)
        want = _call(fused, sample)
        buf = io.BytesIO()
        torch.save(fused, buf)
        buf.seek(0)
        loaded = torch.load(buf, weights_only=False)
        _assert_same(_call(loaded, sample), want, torch.float32, "after torch.save/load")
        _assert_same(_call(pickle.loads(pickle.dumps(fused)), sample), want, torch.float32, "after pickle")
        _assert_same(_call(copy.deepcopy(fused), sample), want, torch.float32, "after deepcopy")
        # state_dict both ways
        other = copy.deepcopy(ref)
        for p in other.parameters():
            torch.nn.init.normal_(p)
        other.load_state_dict(fused.state_dict())
        _assert_same(_call(other, sample), want, torch.float32, "nn loading rnnfused's state_dict")
        assert list(fused.state_dict()) == list(ref.state_dict())
        cls = info.module_cls.__name__
        assert repr(fused) == repr(ref).replace(cls + "(", "Fused" + cls + "(", 1)


def _non_contiguous(a):
    if isinstance(a, torch.Tensor) and a.dim() > 0:
        nc = torch.repeat_interleave(a.detach(), 2, dim=-1)[..., ::2]
        assert not nc.is_contiguous() and torch.equal(nc, a.detach())
        return nc.requires_grad_(a.requires_grad)
    return a


@pytest.mark.parametrize("info", INFOS, ids=_id)
def test_non_contiguous_inputs(info):
    for sample in _samples(info, torch.float64):
        if any(isinstance(a, PackedSequence) for a in sample.forward_input.args):
            continue
        ref, fused = _build(info, sample, torch.float64)
        args = [_non_contiguous(a) for a in sample.forward_input.args]
        _assert_same(fused(*args), _call(fused, sample), torch.float64, "non-contiguous vs contiguous")
        _assert_same(fused(*args), ref(*args), torch.float64, "non-contiguous vs nn")


@pytest.mark.parametrize("info", INFOS, ids=_id)
def test_train_and_eval(info):
    """No dropout in these samples: train and eval give the same results, as for nn's module;
    with dropout, train differs from eval where nn's does (train_and_eval_differ)."""
    for sample in _samples(info, torch.float64):
        _, fused = _build(info, sample, torch.float64)
        _assert_same(_call(fused.train(), sample), _call(fused.eval(), sample), torch.float64, "train vs eval")
    if info.train_and_eval_differ:
        x = torch.randn(4, 2, 3, dtype=torch.float64)
        fused = FusedRNN(3, 5, num_layers=2, dropout=0.5, dtype=torch.float64)
        ref = nn.RNN(3, 5, num_layers=2, dropout=0.5, dtype=torch.float64)
        for m in (ref, fused):
            assert not torch.equal(m.train()(x)[0], m.eval()(x)[0])


@pytest.mark.parametrize("info", INFOS, ids=_id)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_errors_like_nn(info, dtype):
    errors = list(info.module_error_inputs_func(info, device="cpu", dtype=dtype, requires_grad=False, training=False))
    assert errors
    for err in errors:
        sample = err.module_error_input
        args, kwargs = sample.constructor_input.args, sample.constructor_input.kwargs
        for cls in (info.module_cls, FUSED[info.module_cls]):
            if err.error_on == ModuleErrorEnum.CONSTRUCTION_ERROR:
                with pytest.raises(err.error_type, match=err.error_regex):
                    cls(*args, **kwargs)
            else:
                m = cls(*args, **kwargs)
                with pytest.raises(err.error_type, match=err.error_regex):
                    m(*sample.forward_input.args, **sample.forward_input.kwargs)

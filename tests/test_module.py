"""FusedRNN and FusedLSTM as drop-ins: constructor, initialisation, repr, state_dict, conversion,
training trajectory, and bad input raising what nn.RNN / nn.LSTM raise (the LSTM's messages too)."""
import copy
import warnings

import pytest
import torch
from torch import nn

import rnnfused
from rnnfused import FusedLSTM, FusedRNN

# (nn module, rnnfused twin, constructor keyword arguments beyond the sizes)
MODULES = {
    "rnn": (nn.RNN, FusedRNN, dict(nonlinearity="relu")),
    "lstm": (nn.LSTM, FusedLSTM, dict()),
    "lstm_proj": (nn.LSTM, FusedLSTM, dict(proj_size=3)),
}


@pytest.mark.parametrize("kind", list(MODULES))
def test_same_parameters_init_and_repr(kind):
    module, twin, extra = MODULES[kind]
    kwargs = dict(input_size=3, hidden_size=5, num_layers=2, bias=True, batch_first=True, dropout=0.25,
                  bidirectional=True, **extra)
    torch.manual_seed(123)
    ref = module(**kwargs)
    torch.manual_seed(123)
    fused = twin(**kwargs)
    assert [n for n, _ in fused.named_parameters()] == [n for n, _ in ref.named_parameters()]
    for (n, a), (_, b) in zip(fused.named_parameters(), ref.named_parameters()):
        assert a.shape == b.shape, n
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=n)  # same initialisation, same RNG draws
    name = module.__name__
    assert repr(fused) == repr(ref).replace(f"{name}(", f"Fused{name}(", 1)
    for attr in ["input_size", "hidden_size", "num_layers", "bias", "batch_first", "dropout",
                 "bidirectional", "mode", "proj_size"] + (["nonlinearity"] if kind == "rnn" else []):
        assert getattr(fused, attr) == getattr(ref, attr), attr


def test_positional_constructor_like_nn_rnn():
    ref = nn.RNN(4, 6, 2, "relu", False, True)
    fused = FusedRNN(4, 6, 2, "relu", False, True)
    assert (fused.num_layers, fused.mode, fused.bias, fused.batch_first) == (2, "RNN_RELU", False, True)
    assert fused.state_dict().keys() == ref.state_dict().keys()


def test_device_dtype_kwargs():
    fused = FusedRNN(3, 4, dtype=torch.float64, device="cpu")
    assert all(p.dtype == torch.float64 for p in fused.parameters())


def test_not_an_nn_rnn_instance():
    """torch.compile(fullgraph=True) refuses nn.RNN/GRU/LSTM instances; FusedRNN is none."""
    assert not isinstance(FusedRNN(2, 3), (nn.RNN, nn.GRU, nn.LSTM))


@pytest.mark.parametrize("kind", list(MODULES))
def test_state_dict_round_trip_both_ways(kind):
    module, twin, extra = MODULES[kind]
    ref = module(3, 4, num_layers=2, bidirectional=True, **extra)
    fused = twin(3, 4, num_layers=2, bidirectional=True, **extra)
    fused.load_state_dict(ref.state_dict())
    x = torch.randn(5, 2, 3)
    torch.testing.assert_close(fused(x)[0], ref(x)[0])
    ref2 = module(3, 4, num_layers=2, bidirectional=True, **extra)
    ref2.load_state_dict(fused.state_dict())
    for (n, a), (_, b) in zip(ref2.state_dict().items(), fused.state_dict().items()):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=n)
    # strict loading catches a mismatched architecture, as for nn.RNN
    with pytest.raises(RuntimeError):
        twin(3, 4, num_layers=1, **extra).load_state_dict(ref.state_dict())


@pytest.mark.parametrize("proj_size", [0, 2])
def test_from_lstm_shares_parameters_and_mode(proj_size):
    ref = nn.LSTM(3, 4, num_layers=2, dropout=0.5, proj_size=proj_size).double().eval()
    fused = FusedLSTM.from_lstm(ref)
    assert not fused.training and fused.proj_size == proj_size
    assert all(a is b for a, b in zip(fused.parameters(), ref.parameters()))
    assert fused.weight_ih_l0.dtype == torch.float64
    x = torch.randn(4, 2, 3, dtype=torch.float64)
    got, want = fused(x), ref(x)
    torch.testing.assert_close(got[0], want[0])
    torch.testing.assert_close(got[1], want[1])
    with pytest.raises(TypeError):
        FusedLSTM.from_lstm(nn.GRU(3, 4))
    with pytest.raises(TypeError):
        FusedLSTM.from_lstm(nn.RNN(3, 4))


def test_from_rnn_shares_parameters_and_mode():
    ref = nn.RNN(3, 4, num_layers=2, dropout=0.5).double().eval()
    fused = FusedRNN.from_rnn(ref)
    assert not fused.training
    assert all(a is b for a, b in zip(fused.parameters(), ref.parameters()))
    assert fused.weight_ih_l0.dtype == torch.float64
    x = torch.randn(4, 2, 3, dtype=torch.float64)
    torch.testing.assert_close(fused(x)[0], ref(x)[0])
    with pytest.raises(TypeError):
        FusedRNN.from_rnn(nn.GRU(3, 4))


class Seq2One(nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder = nn.Sequential()
        self.encoder.add_module("rnn", nn.RNN(3, 8, num_layers=2, batch_first=True))
        self.rnn2 = nn.RNN(8, 6, bidirectional=True, batch_first=True)
        self.head = nn.Linear(12, 1)

    def forward(self, x):
        h, _ = self.encoder.rnn(x)
        h, _ = self.rnn2(h)
        return self.head(h[:, -1])


class LSTMModel(nn.Module):
    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(3, 8, num_layers=2, batch_first=True, proj_size=4)
        self.cell = nn.LSTMCell(4, 5)
        self.head = nn.Linear(5, 1)

    def forward(self, x):
        h, _ = self.lstm(x)
        hc = None
        for t in range(h.shape[1]):
            hc = self.cell(h[:, t], hc)
        return self.head(hc[0])


def test_convert_replaces_lstm_and_lstm_cell():
    model = LSTMModel().double()
    x = torch.randn(4, 7, 3, dtype=torch.float64)
    before = model(x)
    params_before = list(model.parameters())
    assert rnnfused.convert(model) is model
    assert isinstance(model.lstm, FusedLSTM) and isinstance(model.cell, rnnfused.FusedLSTMCell)
    assert all(a is b for a, b in zip(model.parameters(), params_before))
    torch.testing.assert_close(model(x), before)
    assert isinstance(rnnfused.convert(nn.LSTM(2, 3)), FusedLSTM)


def test_convert_replaces_every_rnn_in_place():
    model = Seq2One().double()
    x = torch.randn(4, 7, 3, dtype=torch.float64)
    before = model(x)
    params_before = list(model.parameters())
    out = rnnfused.convert(model)
    assert out is model
    assert isinstance(model.encoder.rnn, FusedRNN) and isinstance(model.rnn2, FusedRNN)
    assert all(a is b for a, b in zip(model.parameters(), params_before))
    torch.testing.assert_close(model(x), before)
    assert isinstance(rnnfused.convert(nn.RNN(2, 3)), FusedRNN)


def test_training_trajectory_matches_nn_rnn():
    """A model written for nn.RNN trains the same after convert(): same loss at every step."""
    torch.manual_seed(0)
    model_ref = Seq2One()
    model_fused = rnnfused.convert(copy.deepcopy(model_ref))
    opt_ref = torch.optim.Adam(model_ref.parameters(), lr=1e-2)
    opt_fused = torch.optim.Adam(model_fused.parameters(), lr=1e-2)
    x = torch.randn(16, 20, 3)
    y = x.sum(dim=(1, 2)).unsqueeze(1) * 0.1
    losses = []
    for _ in range(8):
        pair = []
        for model, opt in ((model_ref, opt_ref), (model_fused, opt_fused)):
            opt.zero_grad()
            loss = nn.functional.mse_loss(model(x), y)
            loss.backward()
            opt.step()
            pair.append(loss.item())
        losses.append(pair)
    for ref_loss, fused_loss in losses:
        assert fused_loss == pytest.approx(ref_loss, rel=1e-4)
    assert losses[-1][1] < losses[0][1]  # it did learn


def test_dropout_between_layers_only_in_training():
    fused = FusedRNN(4, 8, num_layers=3, dropout=0.5)
    x = torch.randn(6, 3, 4)
    fused.eval()
    a, b = fused(x)[0], fused(x)[0]
    torch.testing.assert_close(a, b, rtol=0, atol=0)  # eval: deterministic
    ref = nn.RNN(4, 8, num_layers=3, dropout=0.5).eval()
    ref.load_state_dict(fused.state_dict())
    torch.testing.assert_close(a, ref(x)[0])
    fused.train()
    torch.manual_seed(1)
    c = fused(x)[0]
    torch.manual_seed(2)
    d = fused(x)[0]
    assert not torch.allclose(c, d)  # training: dropout between layers is random
    # dropout=1 zeroes everything between layers: the last layer then sees only zeros
    full = FusedRNN(4, 8, num_layers=2, dropout=1.0).train()
    ref_full = nn.RNN(4, 8, num_layers=2, dropout=1.0).train()
    ref_full.load_state_dict(full.state_dict())
    torch.testing.assert_close(full(x)[0], ref_full(x)[0])


def test_dropout_one_layer_warns_like_nn_rnn():
    with pytest.warns(UserWarning, match="dropout"):
        FusedRNN(3, 4, num_layers=1, dropout=0.2)


def test_flatten_parameters_is_harmless():
    fused = FusedRNN(3, 4)
    fused.flatten_parameters()
    x = torch.randn(2, 1, 3)
    assert fused(x)[0].shape == (2, 1, 4)


# --- bad input: the same exception type as nn.RNN -------------------------------------------

def raised_by(fn):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            fn()
        except Exception as e:  # noqa: BLE001 - we want the type nn.RNN raises, whatever it is
            return type(e)
    return None


CTOR_CASES = {
    "hidden_size=0": dict(input_size=3, hidden_size=0),
    "input_size=0": dict(input_size=0, hidden_size=3),
    "num_layers=0": dict(input_size=3, hidden_size=3, num_layers=0),
    "dropout=1.5": dict(input_size=3, hidden_size=3, dropout=1.5),
    "dropout=True": dict(input_size=3, hidden_size=3, dropout=True),
    "nonlinearity=sigmoid": dict(input_size=3, hidden_size=3, nonlinearity="sigmoid"),
    "bias=str": dict(input_size=3, hidden_size=3, bias="yes"),
    "batch_first=int": dict(input_size=3, hidden_size=3, batch_first=1),
    "input_size=float": dict(input_size=3.0, hidden_size=3),
    "hidden_size=float": dict(input_size=3, hidden_size=3.5),
    "proj_size": dict(input_size=3, hidden_size=3, proj_size=2),
}


@pytest.mark.parametrize("name", list(CTOR_CASES))
def test_bad_constructor_args(name):
    kwargs = CTOR_CASES[name]
    expected = raised_by(lambda: nn.RNN(**kwargs))
    assert expected is not None
    with pytest.raises(expected):
        FusedRNN(**kwargs)


def raised(fn):
    """(type, message) of what fn raises, or None."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            fn()
        except Exception as e:  # noqa: BLE001 - we want what nn.LSTM raises, whatever it is
            return type(e), str(e)
    return None


LSTM_CTOR_CASES = {k: v for k, v in CTOR_CASES.items() if k not in ("nonlinearity=sigmoid", "proj_size")}
LSTM_CTOR_CASES.update({
    "proj_size=-1": dict(input_size=3, hidden_size=3, proj_size=-1),
    "proj_size=hidden_size": dict(input_size=3, hidden_size=3, proj_size=3),
    "nonlinearity": dict(input_size=3, hidden_size=3, nonlinearity="tanh"),
})


@pytest.mark.parametrize("name", list(LSTM_CTOR_CASES))
def test_bad_lstm_constructor_args_same_exception_and_message(name):
    kwargs = LSTM_CTOR_CASES[name]
    expected = raised(lambda: nn.LSTM(**kwargs))
    assert expected is not None
    assert raised(lambda: FusedLSTM(**kwargs)) == expected


def _forward_cases():
    def m(**kw):
        return dict(input_size=4, hidden_size=5, **kw)

    return {
        "input 4-D": (m(), lambda: (torch.randn(3, 2, 4, 1), None)),
        "input 1-D": (m(), lambda: (torch.randn(4), None)),
        "wrong feature size": (m(), lambda: (torch.randn(3, 2, 6), None)),
        "h0 wrong batch": (m(), lambda: (torch.randn(3, 2, 4), torch.randn(1, 3, 5))),
        "h0 wrong layers": (m(num_layers=2), lambda: (torch.randn(3, 2, 4), torch.randn(1, 2, 5))),
        "h0 wrong hidden": (m(), lambda: (torch.randn(3, 2, 4), torch.randn(1, 2, 6))),
        "h0 2-D for batched": (m(), lambda: (torch.randn(3, 2, 4), torch.randn(2, 5))),
        "h0 3-D for unbatched": (m(), lambda: (torch.randn(3, 4), torch.randn(1, 1, 5))),
        "input dtype != weights": (m(), lambda: (torch.randn(3, 2, 4, dtype=torch.float64), None)),
        "input integer": (m(), lambda: (torch.ones(3, 2, 4, dtype=torch.int64), None)),
        "h0 dtype != input": (m(), lambda: (torch.randn(3, 2, 4), torch.randn(1, 2, 5, dtype=torch.float64))),
        "empty sequence": (m(), lambda: (torch.randn(0, 2, 4), None)),
        "batch_first wrong feature": (m(batch_first=True), lambda: (torch.randn(2, 3, 5), None)),
    }


FORWARD_CASES = _forward_cases()


@pytest.mark.parametrize("name", list(FORWARD_CASES))
def test_bad_forward_input(name):
    kwargs, make = FORWARD_CASES[name]
    x, h0 = make()
    expected = raised_by(lambda: nn.RNN(**kwargs)(x, h0))
    assert expected is not None, f"nn.RNN accepts {name}?"
    with pytest.raises(expected):
        FusedRNN(**kwargs)(x, h0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_device_mismatch_raises_like_nn_rnn():
    for x, h0 in [(torch.randn(3, 2, 4, device="cuda"), None),
                  (torch.randn(3, 2, 4), torch.randn(1, 2, 5, device="cuda"))]:
        expected = raised_by(lambda: nn.RNN(4, 5)(x, h0))
        with pytest.raises(expected):
            FusedRNN(4, 5)(x, h0)


def _lstm_forward_cases():
    def m(**kw):
        return dict(input_size=4, hidden_size=5, **kw)

    def hc(*shape_h, shape_c=None, dtype=torch.float32):
        return torch.randn(*shape_h, dtype=dtype), torch.randn(*(shape_c or shape_h), dtype=dtype)

    return {
        "input 4-D": (m(), lambda: (torch.randn(3, 2, 4, 1), None)),
        "input 1-D": (m(), lambda: (torch.randn(4), None)),
        "wrong feature size": (m(), lambda: (torch.randn(3, 2, 6), None)),
        "h0 wrong batch": (m(), lambda: (torch.randn(3, 2, 4), hc(1, 3, 5))),
        "c0 wrong batch": (m(), lambda: (torch.randn(3, 2, 4), hc(1, 2, 5, shape_c=(1, 3, 5)))),
        "h0 wrong layers": (m(num_layers=2), lambda: (torch.randn(3, 2, 4), hc(1, 2, 5))),
        "h0 wrong hidden": (m(), lambda: (torch.randn(3, 2, 4), hc(1, 2, 6, shape_c=(1, 2, 5)))),
        "c0 wrong hidden": (m(), lambda: (torch.randn(3, 2, 4), hc(1, 2, 5, shape_c=(1, 2, 6)))),
        "h0 hidden not proj": (m(proj_size=2), lambda: (torch.randn(3, 2, 4), hc(1, 2, 5))),
        "h0 2-D for batched": (m(), lambda: (torch.randn(3, 2, 4), hc(2, 5))),
        "h0 3-D for unbatched": (m(), lambda: (torch.randn(3, 4), hc(1, 1, 5))),
        "input dtype != weights": (m(), lambda: (torch.randn(3, 2, 4, dtype=torch.float64), None)),
        "input integer": (m(), lambda: (torch.ones(3, 2, 4, dtype=torch.int64), None)),
        "batch_first wrong feature": (m(batch_first=True), lambda: (torch.randn(2, 3, 5), None)),
    }


LSTM_FORWARD_CASES = _lstm_forward_cases()


@pytest.mark.parametrize("name", list(LSTM_FORWARD_CASES))
def test_bad_lstm_forward_input_same_exception_and_message(name):
    kwargs, make = LSTM_FORWARD_CASES[name]
    x, hx = make()
    expected = raised(lambda: nn.LSTM(**kwargs)(x, hx))
    assert expected is not None, f"nn.LSTM accepts {name}?"
    assert raised(lambda: FusedLSTM(**kwargs)(x, hx)) == expected


@pytest.mark.parametrize("name", ["state dtype != input", "empty sequence"])
def test_bad_lstm_forward_input_same_exception(name):
    """Where nn.LSTM raises from inside ATen (its own wording), the same exception type."""
    x = torch.randn(0 if name == "empty sequence" else 3, 2, 4)
    hx = (torch.randn(1, 2, 5, dtype=torch.float64), torch.randn(1, 2, 5)) if name != "empty sequence" else None
    expected = raised_by(lambda: nn.LSTM(4, 5)(x, hx))
    assert expected is not None
    with pytest.raises(expected):
        FusedLSTM(4, 5)(x, hx)

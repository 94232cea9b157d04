"""Every RNNFUSED_* environment switch the extension reads (rnnfused._C.switches(), the one table in
csrc/switches.cpp): listed in README.md's run-time knob table with its choices, and strict: a bad
value raises a RuntimeError that names the switch and its choices, whichever switch it is."""
import re
from pathlib import Path

import pytest
import torch

from rnnfused import _C, ops

README = Path(__file__).resolve().parents[1] / "README.md"
SWITCHES = {name: (choices, what) for name, choices, what in _C.switches()}


def readme_knobs():
    """{name: [choices]} from the table under README.md's "## Run-time knobs" heading."""
    text = README.read_text()
    section = text.split("## Run-time knobs", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    knobs = {}
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        knobs[cells[0].strip("`")] = re.findall(r"`([^`]+)`", cells[1])
    return knobs


def test_switch_table_is_complete():
    assert {"RNNFUSED_INPUT_MODE", "RNNFUSED_CPU_KERNEL", "RNNFUSED_CPU_FORM", "RNNFUSED_CPU_PROJ",
            "RNNFUSED_CPU_ISA", "RNNFUSED_KERNEL", "RNNFUSED_CPU_SPLIT"} <= set(SWITCHES)
    for name, (choices, what) in SWITCHES.items():
        assert name.startswith("RNNFUSED_"), name
        assert choices and what, name
        assert choices[0] in ("auto", "N"), (name, choices)


def test_readme_lists_every_switch_with_its_choices():
    """README.md's run-time knob table holds exactly the switches the extension reads, each with
    the choices it accepts."""
    knobs = readme_knobs()
    assert set(knobs) == set(SWITCHES), (sorted(knobs), sorted(SWITCHES))
    for name, (choices, _) in SWITCHES.items():
        assert knobs[name] == choices, (name, knobs[name], choices)


def expected_message(name, choices):
    """switches.cpp's message: the forced choices first, then "or auto"; N: a positive integer."""
    if choices == ["N"]:
        return f"rnnfused: {name} must be a positive integer, got 'bogus'"
    return f"rnnfused: {name} must be {', '.join(choices[1:])} or auto, got 'bogus'"


def read_cpu_switches():
    """A call that reads every CPU switch: one hoisted layer (T = 3, B = 2) on the CPU reads the
    input mode, the projection's rule, the instruction set, and the recurrence's split, form and
    kernel."""
    x = torch.randn(3, 2, 4)
    h0 = torch.zeros(2, 4)
    w = torch.randn(4, 4)
    ops.rnn_layer(x, h0, w, w, None, None)


@pytest.mark.parametrize("name", sorted(n for n in SWITCHES if n != "RNNFUSED_KERNEL"))
def test_bad_value_raises_naming_the_choices(name, monkeypatch):
    for other in SWITCHES:
        monkeypatch.delenv(other, raising=False)
    monkeypatch.setenv(name, "bogus")
    with pytest.raises(RuntimeError, match=re.escape(expected_message(name, SWITCHES[name][0]))):
        read_cpu_switches()
    monkeypatch.delenv(name)
    read_cpu_switches()  # and it was that switch alone


@pytest.mark.emulated
def test_bad_cuda_kernel_switch_raises_naming_the_choices(monkeypatch):
    """RNNFUSED_KERNEL is read by the CUDA launchers only: under the emulator where there is no GPU."""
    if _C.built_with_cuda() and torch.cuda.is_available():
        read = lambda: _C.cuda_kernel_name(2, 64, "float32", False)  # noqa: E731
    else:
        import emu_support

        read = lambda: emu_support.extension().cuda_kernel_name(2, 64, "float32", False)  # noqa: E731
        emu_support.ctl().set_device("h100")
    name = "RNNFUSED_KERNEL"
    monkeypatch.setenv(name, "bogus")
    with pytest.raises(RuntimeError, match=re.escape(expected_message(name, SWITCHES[name][0]))):
        read()
    monkeypatch.delenv(name)
    assert read() in ("stepwise", "persistent")

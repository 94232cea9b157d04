#!/usr/bin/env python
"""Benchmark rnnfused.FusedRNN against torch.nn.RNN (cuDNN / native) on the same weights; with
--cell lstm, rnnfused.FusedLSTM against torch.nn.LSTM (cuDNN / oneDNN or native) and ONNX Runtime.

    python bench/bench_rnn.py                      # quick preset for the default device
    python bench/bench_rnn.py --full               # larger sweep: layers, bidirectional, T, dtypes
    python bench/bench_rnn.py --shapes 1,32,1000 64,256,300,128 --dtype fp32 bf16
    python bench/bench_rnn.py --report r.md --plot r.png --csv r.csv --json r.json
    python bench/bench_rnn.py --gpu-report bench/results/DATE-h100.md   # GPU preset + report
    python bench/bench_rnn.py --self-test          # nn.RNN on both sides: checks the harness
    python bench/bench_rnn.py --cell lstm --device cpu   # FusedLSTM vs nn.LSTM and ONNX Runtime

Timing, columns and targets are described in bench/README.md. Every row also checks FusedRNN's
(FusedLSTM's) output, h_n (and c_n) and (fwd+bwd) gradients against nn.RNN (nn.LSTM) with identical weights and flags a row whose
error exceeds a dtype-appropriate bound, so a fast wrong answer shows.

The code lives in bench/rnnbench/ (one module per concern; see its __init__.py); this file is the
command.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from rnnbench.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())

"""The benchmark behind bench/bench_rnn.py, split by concern:

    cells.py        what differs per cell (--cell rnn / lstm): classes, gate blocks, states, ONNX op
    config.py       dtypes, error bounds, Config (one row's shape), the presets
    targets.py      the one table of performance targets and the check of a row against it
    timing.py       the one timing helper (interleaved rounds), round count, GEMM rate
    contenders.py   what is timed: a small registry (fused, nn.RNN native/cuDNN, ...), inputs, runners
    rows.py         one configuration -> its rows (accuracy check, timing, memory, floors, targets)
    memory.py       memory of one call: bytes saved for backward; CUDA allocator peak
    env.py          the environment block (device, versions, threads, load) printed with every table
    report.py       text/markdown tables, the summary, the markdown report, CSV
    plot.py         the figures: speed-up and memory along controlled sweeps
    cli.py          the command line: options, main()

bench/bench_rnn.py is the command (python bench/bench_rnn.py --help).
"""

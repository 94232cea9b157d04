"""pytest fixtures shared by the test modules. The shared helpers (module pairs, runs, the
numerical rule) are in tests/support.py."""
import zlib

import pytest
import torch

CPU_KERNELS = ["fused", "gemm"]


@pytest.fixture(scope="module")
def one_intra_op_thread():
    """One intra-op thread for a module's tests (`pytestmark = usefixtures(...)`): on a small
    shared CPU, OpenMP's spinning threads make nn.RNN's per-step ops ~100x slower; the results
    do not depend on it."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(params=CPU_KERNELS)
def cpu_kernel(request, monkeypatch):
    """Run the test once per CPU kernel path (RNNFUSED_CPU_KERNEL), on the same inputs."""
    monkeypatch.setenv("RNNFUSED_CPU_KERNEL", request.param)
    return request.param


# The big option matrices of test_rnn.py: the quick tier (-m "not slow and not emulated", the
# README's check of an install) runs a fixed 1/N sample of each: for every cell and CPU kernel,
# the same option combinations (chosen by a checksum of their values); the others carry the
# `slow` and `matrix_rest` marks, so the full suite (CI) still runs every combination (CI's second,
# older-torch stage skips `matrix_rest`: the combinations do not depend on the torch version).
QUICK_SHARE = {
    "test_rnn.py::test_feature_matrix": 4,
    "test_rnn.py::test_unbatched": 3,
    "test_rnn.py::test_packed_sequence": 3,
}
_KEEP_WHOLE = ("cell", "cpu_kernel")  # every cell x kernel keeps its sample


@pytest.hookimpl(tryfirst=True)  # before -m selects by mark
def pytest_collection_modifyitems(config, items):
    for item in items:
        n = QUICK_SHARE.get(f"{item.path.name}::{item.originalname}")
        if not n or not hasattr(item, "callspec"):
            continue
        options = sorted((k, repr(v)) for k, v in item.callspec.params.items() if k not in _KEEP_WHOLE)
        if zlib.crc32(repr(options).encode()) % n:
            item.add_marker(pytest.mark.slow)
            item.add_marker(pytest.mark.matrix_rest)

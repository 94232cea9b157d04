"""pytest fixtures shared by the test modules. The shared helpers (module pairs, runs, the
numerical rule) are in tests/support.py."""
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

"""`python -m rnnfused`: what this install built and what runs here.

pip hides a build's own output unless -v, so this is where the build's mode and its reason are
shown after the install (the README's install command ends with it)."""
import sys

import torch

import rnnfused


def summary():
    """The lines `python -m rnnfused` prints."""
    info = rnnfused.build_info() or {}
    with_cuda = rnnfused.built_with_cuda()
    reason = info.get("MODE_REASON", "not recorded: built by an older setup.py")
    lines = [f"rnnfused {rnnfused.__version__} at {rnnfused.__file__.rsplit('/', 2)[0]}, "
             f"for torch {torch.__version__}"]
    if with_cuda:
        lines.append(f"build: CPU and CUDA kernels, for TORCH_CUDA_ARCH_LIST={info.get('CUDA_ARCH_LIST')} "
                     f"({reason}); rnnfused.built_with_cuda() = True")
    else:
        lines.append(f"build: CPU kernels only ({reason}); rnnfused.built_with_cuda() = False")
    lines.append(f"CPU kernels run with: {rnnfused.cpu_isa()} (rnnfused.cpu_isa())")
    if with_cuda and torch.cuda.is_available():
        kernels = ", ".join(f"B={B} H={H}: {rnnfused.cuda_kernel_name(B, H)}" for B, H in ((1, 256), (64, 1024)))
        lines.append(f"GPU: {torch.cuda.get_device_name()}; float32 forward runs "
                     f"{kernels} (rnnfused.cuda_kernel_name(B, H))")
    elif with_cuda:
        lines.append("GPU: none visible (CUDA tensors need one; the CPU kernels serve CPU tensors)")
    else:
        lines.append("GPU: " + ("one is visible, but this build has no CUDA kernels (the reason is "
                                "above); CUDA tensors raise" if torch.cuda.is_available() else "none visible"))
    return lines


if __name__ == "__main__":
    print("\n".join(summary()))
    sys.exit(0)

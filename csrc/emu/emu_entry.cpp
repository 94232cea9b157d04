// The CUDA entry points (dtype dispatch, RNNFUSED_KERNEL), compiled for the SIMT emulator.
#include "../cuda/rnn_cuda.cu"

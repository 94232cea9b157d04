// The CUDA recurrence for one storage type, compiled for the SIMT emulator (the same source as
// the GPU build: csrc/cuda/rnn_f64.cu).
#include "../cuda/rnn_f64.cu"

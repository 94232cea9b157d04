/* The machine's float32 FMA rate: 12 independent chains of fused multiply-adds on the widest
   vectors -march=native gives (64 bytes with AVX-512, else 32), one chain set per thread. Prints multiply-adds per second, all threads.
   Compiled and run by bench/rnnbench/cpu_floor.py:  cc -O3 -march=native -fopenmp fma_peak.c */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>

#ifdef __AVX512F__
#define LANES 16
#else
#define LANES 8
#endif
typedef float v16 __attribute__((vector_size(LANES * 4)));

int main(int argc, char** argv) {
  const int threads = argc > 1 ? atoi(argv[1]) : 1;
  const long n = 4000000;
  double best = 0;
  float sink = 0;
  for (int rep = 0; rep < 7; ++rep) {
    double t0 = omp_get_wtime();
#pragma omp parallel num_threads(threads) reduction(+ : sink)
    {
      v16 a[12];
      const v16 b = (v16){0} + 0.999999f, c = (v16){0} + 1e-7f;
      for (int i = 0; i < 12; ++i) a[i] = (v16){0} + 0.01f * (i + omp_get_thread_num());
      for (long k = 0; k < n; ++k)
        for (int i = 0; i < 12; ++i) a[i] = a[i] * b + c;
      for (int i = 0; i < 12; ++i) sink += a[i][0];
    }
    double s = omp_get_wtime() - t0;
    double rate = (double)n * 12 * LANES * threads / s;
    if (rate > best) best = rate;
  }
  printf("%.6e %g\n", best, sink);
  return 0;
}

/* Shared helpers for the floor programs: a monotonic clock and a
 * self-calibrating, median-of-REPS measurement. Each measurement prints one
 * line "name value unit".
 *
 * FLOOR_MS (env, default 300) is the target duration of one repetition. */
#ifndef FLOOR_H
#define FLOOR_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define REPS 3

static inline uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static inline uint64_t target_ns(void) {
  const char *s = getenv("FLOOR_MS");
  long ms = s ? atol(s) : 0;
  if (ms <= 0) ms = 300;
  return (uint64_t)ms * 1000000u;
}

/* A benchmark body runs n units of work and returns the elapsed ns. */
typedef uint64_t (*bench_fn)(void *ctx, uint64_t n);

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

/* Returns the median over REPS repetitions of ns per unit, with n grown
 * until one repetition lasts about FLOOR_MS. */
static inline double measure_ns(bench_fn f, void *ctx, uint64_t n0) {
  uint64_t target = target_ns(), n = n0 ? n0 : 1;
  for (;;) {
    uint64_t el = f(ctx, n);
    if (el >= target / 4 || n >= (UINT64_C(1) << 40)) break;
    uint64_t grow = el ? (target / el) : 16;
    if (grow < 2) grow = 2;
    if (grow > 16) grow = 16;
    n *= grow;
  }
  uint64_t el = f(ctx, n);
  if (el < target && el > 0) n = (uint64_t)((double)n * (double)target / (double)el) + 1;
  double v[REPS];
  for (int i = 0; i < REPS; i++) v[i] = (double)f(ctx, n) / (double)n;
  qsort(v, REPS, sizeof v[0], cmp_double);
  return v[REPS / 2];
}

static inline void report(const char *name, double value, const char *unit) {
  if (value >= 1000)
    printf("%s %.0f %s\n", name, value, unit);
  else
    printf("%s %.4g %s\n", name, value, unit);
  fflush(stdout);
}

#endif

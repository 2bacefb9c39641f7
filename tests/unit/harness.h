/* Minimal unit-test harness: each TEST_* check prints the expression, file and line on failure
 * and keeps going; TEST_MAIN runs the listed test functions and exits non-zero if any check
 * failed. Randomised tests take their seed from `-s SEED` (default fixed, always printed). */
#ifndef NTPG_HARNESS_H
#define NTPG_HARNESS_H

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>

static int harness_failures;
static int harness_checks;
static unsigned long harness_seed = 12345;

/* splitmix64: a tiny seedable generator to pick test inputs (seed test_rng_state from
 * harness_seed, so that `-s N` reruns a failure). */
static uint64_t test_rng_state;

static inline uint64_t
test_rng(void)
{
  uint64_t z = (test_rng_state += UINT64_C(0x9e3779b97f4a7c15));
  z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
  z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
  return z ^ (z >> 31);
}

#define TEST_CHECK(expr)                                                                      \
  do {                                                                                        \
    harness_checks++;                                                                         \
    if (!(expr)) {                                                                            \
      harness_failures++;                                                                     \
      fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #expr);                \
    }                                                                                         \
  } while (0)

#define TEST_EQ_INT(a, b)                                                                     \
  do {                                                                                        \
    long long harness_a = (long long)(a), harness_b = (long long)(b);                         \
    harness_checks++;                                                                         \
    if (harness_a != harness_b) {                                                             \
      harness_failures++;                                                                     \
      fprintf(stderr, "%s:%d: %s == %s failed: %lld != %lld\n", __FILE__, __LINE__, #a, #b,   \
              harness_a, harness_b);                                                          \
    }                                                                                         \
  } while (0)

#define TEST_EQ_STR(a, b)                                                                     \
  do {                                                                                        \
    const char *harness_a = (a), *harness_b = (b);                                            \
    harness_checks++;                                                                         \
    if (!harness_a || !harness_b || strcmp(harness_a, harness_b) != 0) {                      \
      harness_failures++;                                                                     \
      fprintf(stderr, "%s:%d: %s == %s failed: \"%s\" != \"%s\"\n", __FILE__, __LINE__, #a,   \
              #b, harness_a ? harness_a : "(null)", harness_b ? harness_b : "(null)");        \
    }                                                                                         \
  } while (0)

#define TEST_NEAR(a, b, eps)                                                                  \
  do {                                                                                        \
    double harness_a = (a), harness_b = (b);                                                  \
    harness_checks++;                                                                         \
    if (!(harness_a - harness_b <= (eps) && harness_b - harness_a <= (eps))) {                \
      harness_failures++;                                                                     \
      fprintf(stderr, "%s:%d: %s ~ %s failed: %.9g vs %.9g\n", __FILE__, __LINE__, #a, #b,    \
              harness_a, harness_b);                                                          \
    }                                                                                         \
  } while (0)

typedef void (*harness_fn)(void);
typedef struct {
  const char *name;
  harness_fn fn;
} harness_case;

#define TEST_CASE(fn)                                                                         \
  {                                                                                           \
#fn, fn                                                                                   \
  }

static inline int
harness_run(int argc, char **argv, const harness_case *cases, size_t n)
{
  const char *only = NULL;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "-s") == 0 && i + 1 < argc)
      harness_seed = strtoul(argv[++i], NULL, 0);
    else
      only = argv[i];
  }
  fprintf(stderr, "seed %lu (rerun with -s %lu)\n", harness_seed, harness_seed);
  int ran = 0;
  for (size_t i = 0; i < n; i++) {
    if (only && strcmp(only, cases[i].name) != 0)
      continue;
    int before = harness_failures;
    cases[i].fn();
    ran++;
    fprintf(stderr, "%s %s\n", harness_failures == before ? "ok  " : "FAIL", cases[i].name);
  }
  printf("%d tests, %d checks, %d failed checks\n", ran, harness_checks, harness_failures);
  return harness_failures ? 1 : 0;
}

#define TEST_MAIN(...)                                                                        \
  int main(int argc, char **argv)                                                             \
  {                                                                                           \
    static const harness_case harness_cases[] = {__VA_ARGS__};                                \
    return harness_run(argc, argv, harness_cases,                                             \
                       sizeof(harness_cases) / sizeof(harness_cases[0]));                     \
  }

#endif

/* confparse: the parser's own helpers, shared by its two files and by nothing else --
 * config.c (reading files and text into lines and tokens, messages, numbers, addresses,
 * options) and confdirs.c (the table of directives and the code that records each). Not a
 * public header: no module outside config may include it. */
#ifndef NTPG_CONFPARSE_H
#define NTPG_CONFPARSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "config.h"

/* Deeper nesting than this is an error (ntpd allows 5 levels; loops are caught by identity
 * before the depth limit is reached). */
#define MAX_INCLUDE_DEPTH 8

#define N_ELEMS(x) (sizeof(x) / sizeof((x)[0]))

/* The public struct plus the capacities of its arrays. */
typedef struct {
  CNF_Config pub; /* first member: a CNF_Config * converts back */
  size_t cap_assocs, cap_restricts, cap_interfaces, cap_keys;
} ConfigStore;

typedef struct {
  dev_t dev;
  ino_t ino;
} FileId;

typedef struct {
  CNF_Config *cfg;
  CNF_Errors *errs; /* may be NULL: errors are still counted */
  size_t n_errors;  /* errors found by this parse call */
  const char *file; /* name used in messages */
  int line;
  int depth; /* files/texts being read, 1 at top level */
  FileId open[MAX_INCLUDE_DEPTH + 1];
  int n_open;
  const char *top; /* top-level name, for end-of-parse checks */
  bool runtime;    /* runtime text: only CNF_DF_RUNTIME directives (CNF_ParseRuntimeText) */
} Parser;

/* One line's tokens and a cursor; `name` (the directive) prefixes every message. */
typedef struct {
  Parser *p;
  const char *name;
  char **tok;
  size_t n, i;
  bool failed; /* one error per line: the first one explains it */
} Args;

typedef enum { NUM_OK = 0, NUM_BAD, NUM_RANGE } NumStatus;

/* Allocation: every size is checked for overflow; NULL (nothing changed) on failure. */
void *cnf_alloc_array(void *old, size_t n, size_t size);
char *cnf_dup_str(const char *s);
/* Room for `need` items in arr (capacity *cap): the (maybe moved) array, or NULL. */
void *cnf_grow(void *arr, size_t *cap, size_t need, size_t size);
ConfigStore *cnf_store_of(CNF_Config *cfg);
void *cnf_field(void *base, size_t offset);

/* Messages: an error of the parse (not tied to a directive), an error of the current line
 * (only the first one per line is kept; returns false), a warning about it. */
void cnf_report(Parser *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
bool cnf_fail(Args *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void cnf_warn(Args *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
bool cnf_fail_oom(Args *a);

/* Tokens of the line. */
char *cnf_peek_tok(const Args *a);
char *cnf_next_tok(Args *a);
bool cnf_at_end(const Args *a);
/* The next token, or an error naming what was expected (NULL). */
char *cnf_need_tok(Args *a, const char *what);

/* Numbers: decimal integer with an optional '-'; the next token in lo..hi (`what` names it
 * in messages; NULL: the directive's own argument). */
NumStatus cnf_parse_ll(const char *s, long long *out);
bool cnf_arg_int(Args *a, const char *what, long long lo, long long hi, long long *out);
bool cnf_arg_double(Args *a, const char *what, double lo, double hi, double *out);

/* Addresses and names. */
bool cnf_looks_numeric(const char *s);
bool cnf_valid_hostname(const char *s);
const char *cnf_family_name(int family);
int cnf_family_flag(const char *t); /* "-4"/"-6" -> family, else ADR_NONE */
bool cnf_parse_addr_prefix(Args *a, const char *t, NetAddr *addr, int *prefix);
bool cnf_check_family(Args *a, const char *t, const NetAddr *addr, int family);

/* Options of group g (confdirs.h) up to the end of the line into target; seen (may be NULL)
 * gets bit i for table row i. */
bool cnf_parse_options(Args *a, CNF_OptGroup g, void *target, uint32_t *seen);

/* Directives: includefile (config.c, it reads files); every other supported directive by
 * its id (confdirs.c). False if the id has no handler. */
void cnf_include(Args *a, int unused);
bool cnf_run_handler(Args *a, CNF_DirId id);

#endif

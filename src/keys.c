/* keys: keys file parser, MAC computation and verification. See keys.h. */
/* The RFC 5905 digests use OpenSSL's one-shot digest structures (MD5_CTX, SHA256_CTX ...),
 * deprecated since OpenSSL 3.0 in favour of EVP: with EVP, OpenSSL 3.0 allocates the
 * provider's digest state at every EVP_DigestInit_ex2, even on a reused context, and the
 * packet path must not allocate (docs/design.md). The structures live on the stack. */
#define OPENSSL_SUPPRESS_DEPRECATED
#include "keys.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/md5.h>
#include <openssl/params.h>
#include <openssl/sha.h>

#define N_TYPES (KEY_TYPE_AES128CMAC + 1)
#define SHORT_KEY_WARN 10 /* octets (80 bits): chrony warns below this too */

/* ------------------------------------------------------------------------------------ */
/* Key types                                                                              */

typedef struct {
  const char *name;     /* canonical, as KEY_TypeName gives it */
  const char *aliases;  /* other accepted spellings, '|'-separated, or NULL */
  const char *evp_name; /* digest to fetch; NULL for CMAC */
  size_t digest_len;    /* octets carried in the MAC we send by default (NTPv4: <= 20) */
  size_t full_len;      /* the whole digest, which ntpdig and chrony may send instead */
} TypeDesc;

static const TypeDesc types[N_TYPES] = {
    [KEY_TYPE_MD5] = {"MD5", "M", "MD5", 16, 16},
    [KEY_TYPE_SHA1] = {"SHA1", "SHA-1", "SHA1", 20, 20},
    [KEY_TYPE_SHA224] = {"SHA224", NULL, "SHA224", 20, 20}, /* no long form on the wire */
    [KEY_TYPE_SHA256] = {"SHA256", NULL, "SHA256", 20, 32},
    [KEY_TYPE_SHA384] = {"SHA384", NULL, "SHA384", 20, 48},
    [KEY_TYPE_SHA512] = {"SHA512", NULL, "SHA512", 20, 64},
    [KEY_TYPE_AES128CMAC] = {"AES128CMAC", "CMAC|AES128|AES|AES-128", NULL, 16, 16},
};

static bool
alias_matches(const char *aliases, const char *tok, size_t len)
{
  while (aliases && *aliases) {
    const char *bar = strchr(aliases, '|');
    size_t n = bar ? (size_t)(bar - aliases) : strlen(aliases);
    if (n == len && strncasecmp(aliases, tok, len) == 0)
      return true;
    aliases = bar ? bar + 1 : NULL;
  }
  return false;
}

/* The type named by tok[0..len), case-insensitive; 0 if none. */
static KEY_Type
type_from_token(const char *tok, size_t len)
{
  for (int t = KEY_TYPE_MD5; t < N_TYPES; t++) {
    if (strlen(types[t].name) == len && strncasecmp(types[t].name, tok, len) == 0)
      return (KEY_Type)t;
    if (alias_matches(types[t].aliases, tok, len))
      return (KEY_Type)t;
  }
  return 0;
}

const char *
KEY_TypeName(KEY_Type type)
{
  if (type < KEY_TYPE_MD5 || type >= N_TYPES)
    return "unknown";
  return types[type].name;
}

const char *
KEY_VerdictName(KEY_Verdict v)
{
  switch (v) {
    case KEY_OK:
      return "ok";
    case KEY_CRYPTO_NAK:
      return "crypto-nak";
    case KEY_NO_MAC:
      return "no-mac";
    case KEY_UNKNOWN_KEY:
      return "unknown-key";
    case KEY_UNTRUSTED_KEY:
      return "untrusted-key";
    case KEY_BAD_LENGTH:
      return "bad-length";
    case KEY_ADDR_NOT_ALLOWED:
      return "addr-not-allowed";
    case KEY_BAD_DIGEST:
      return "bad-digest";
    case KEY_CRYPTO_FAILED:
      return "crypto-failed";
  }
  return "unknown";
}

/* ------------------------------------------------------------------------------------ */
/* Table                                                                                  */

typedef struct {
  NetAddr addr; /* masked */
  NetAddr mask;
} AddrRule;

typedef struct {
  uint16_t id;
  uint8_t type; /* KEY_Type */
  bool trusted;
  uint8_t secret_len; /* AES128CMAC keys are held padded to 16 octets */
  uint8_t digest_len;
  int line;
  uint8_t secret[KEY_MAX_SECRET];
  uint64_t serial; /* AES128CMAC: unique for the life of the process (thread_cmac) */
  AddrRule *addrs;
  size_t n_addrs;
} Key;

struct KEY_Table {
  Key *keys; /* sorted by id once parsing is done */
  size_t n, cap;
  EVP_MD *md[N_TYPES]; /* fetched on first use while parsing */
  EVP_MAC *cmac;
};

static void
free_keys(Key *keys, size_t n)
{
  for (size_t i = 0; i < n; i++) {
    free(keys[i].addrs);
    OPENSSL_cleanse(keys[i].secret, sizeof(keys[i].secret));
  }
  free(keys);
}

void
KEY_Destroy(KEY_Table *t)
{
  if (!t)
    return;
  free_keys(t->keys, t->n);
  for (int i = 0; i < N_TYPES; i++)
    EVP_MD_free(t->md[i]);
  EVP_MAC_free(t->cmac);
  free(t);
}

static int
cmp_key(const void *a, const void *b)
{
  const Key *x = a, *y = b;
  return (x->id > y->id) - (x->id < y->id);
}

static const Key *
find_key(const KEY_Table *t, uint32_t id)
{
  if (!t || t->n == 0 || id == 0 || id > KEY_MAX_ID)
    return NULL;
  Key probe = {.id = (uint16_t)id};
  return bsearch(&probe, t->keys, t->n, sizeof(Key), cmp_key);
}

size_t
KEY_Count(const KEY_Table *t)
{
  return t ? t->n : 0;
}

bool
KEY_GetInfo(const KEY_Table *t, uint32_t id, KEY_Info *out)
{
  const Key *k = find_key(t, id);
  if (!k)
    return false;
  *out = (KEY_Info){.id = k->id,
                    .type = (KEY_Type)k->type,
                    .digest_len = k->digest_len,
                    .trusted = k->trusted,
                    .n_addrs = k->n_addrs,
                    .line = k->line};
  return true;
}

size_t
KEY_SetTrusted(KEY_Table *t, const CNF_KeyRange *ranges, size_t n)
{
  size_t trusted = 0;
  for (size_t i = 0; t && i < t->n; i++) {
    Key *k = &t->keys[i];
    k->trusted = false;
    for (size_t r = 0; r < n && !k->trusted; r++)
      k->trusted = ranges[r].lo <= k->id && k->id <= ranges[r].hi;
    trusted += k->trusted;
  }
  return trusted;
}

/* ------------------------------------------------------------------------------------ */
/* Parser                                                                                 */

typedef struct {
  const char *s;
  size_t len;
} Tok;

#define MAX_TOKS 5 /* id type key addrs, and one more to detect extra text */

typedef struct {
  KEY_Table *t;
  KEY_Errors *errs; /* may be NULL */
  const char *name;
  int line;
  size_t n_errors;
  bool stopped;  /* KEY_MAX_ERRORS reached */
  uint8_t *seen; /* bitmap of defined ids */
  bool fetch_failed[N_TYPES];
} Parser;

__attribute__((format(printf, 3, 4))) static void
error_at(Parser *p, int line, const char *fmt, ...)
{
  if (p->stopped)
    return;
  p->n_errors++;
  if (p->n_errors > KEY_MAX_ERRORS) {
    /* Probably not a keys file at all (a log file?): do not flood the caller's log. */
    p->stopped = true;
    if (p->errs)
      MSG_Add(&p->errs->errors, p->name, 0,
              "more than %d errors: the rest of the file was not read", KEY_MAX_ERRORS);
    return;
  }
  if (p->errs) {
    va_list ap;
    va_start(ap, fmt);
    MSG_VAdd(&p->errs->errors, p->name, line, fmt, ap);
    va_end(ap);
  }
}

__attribute__((format(printf, 2, 3))) static void
warn(Parser *p, const char *fmt, ...)
{
  if (!p->errs)
    return;
  va_list ap;
  va_start(ap, fmt);
  MSG_VAdd(&p->errs->warnings, p->name, p->line, fmt, ap);
  va_end(ap);
}

/* Split one line into whitespace-separated tokens; '#' starts a comment (a key can never
 * hold one, as in ntpd). Returns the number of tokens, at most MAX_TOKS. */
static size_t
split_line(const char *s, const char *end, Tok *tok)
{
  size_t n = 0;
  while (s < end && n < MAX_TOKS) {
    while (s < end && (*s == ' ' || *s == '\t' || *s == '\r' || *s == '\v' || *s == '\f'))
      s++;
    if (s == end || *s == '#')
      break;
    const char *start = s;
    while (s < end && *s != ' ' && *s != '\t' && *s != '\r' && *s != '\v' && *s != '\f' &&
           *s != '#')
      s++;
    tok[n++] = (Tok){start, (size_t)(s - start)};
  }
  return n;
}

static bool
all_digits(const Tok *t)
{
  for (size_t i = 0; i < t->len; i++)
    if (t->s[i] < '0' || t->s[i] > '9')
      return false;
  return t->len > 0;
}

/* Decimal value of an all-digit token, capped at KEY_MAX_ID + 1 (leading zeros are fine). */
static uint32_t
decimal_value(const Tok *t)
{
  uint32_t v = 0;
  for (size_t i = 0; i < t->len && v <= KEY_MAX_ID; i++)
    v = v * 10 + (uint32_t)(t->s[i] - '0');
  return v <= KEY_MAX_ID ? v : KEY_MAX_ID + 1;
}

static int
hex_value(char c)
{
  if (c >= '0' && c <= '9')
    return c - '0';
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  if (c >= 'A' && c <= 'F')
    return c - 'A' + 10;
  return -1;
}

/* Decode the key field as ntpd reads it: up to 20 characters are the key itself (printable
 * ASCII), longer text is hex. On failure returns a reason that never quotes the key. */
static const char *
decode_secret(const Tok *t, uint8_t *out, uint8_t *out_len)
{
  if (t->len <= KEY_MAX_ASCII) {
    for (size_t i = 0; i < t->len; i++)
      if ((unsigned char)t->s[i] < 0x21 || (unsigned char)t->s[i] > 0x7e)
        return "the key has a character that is not printable ASCII";
    memcpy(out, t->s, t->len);
    *out_len = (uint8_t)t->len;
    return NULL;
  }
  if (t->len > 2 * KEY_MAX_SECRET)
    return "the key is longer than 32 octets (64 hex digits)";
  if (t->len % 2 != 0)
    return "a key longer than 20 characters is hex, and this one has an odd number of digits";
  for (size_t i = 0; i < t->len; i += 2) {
    int hi = hex_value(t->s[i]), lo = hex_value(t->s[i + 1]);
    if (hi < 0 || lo < 0) {
      OPENSSL_cleanse(out, KEY_MAX_SECRET);
      return "a key longer than 20 characters is hex, and this one has a non-hex character";
    }
    out[i / 2] = (uint8_t)(hi << 4 | lo);
  }
  *out_len = (uint8_t)(t->len / 2);
  return NULL;
}

/* One element of the address list: ADDR or ADDR/PREFIX, numeric only. IPv4-mapped IPv6
 * rules become IPv4 rules, as sources are matched after unmapping. */
static bool
parse_rule(const char *s, size_t len, AddrRule *r)
{
  char buf[ADR_STRLEN + 8];
  int prefix;
  if (len == 0 || len >= sizeof(buf))
    return false;
  memcpy(buf, s, len);
  buf[len] = '\0';
  char *slash = strchr(buf, '/');
  if (slash) {
    Tok digits = {slash + 1, strlen(slash + 1)};
    if (!all_digits(&digits) || !ADR_ParsePrefix(buf, &r->addr, &prefix))
      return false;
  } else {
    if (!ADR_Parse(buf, &r->addr))
      return false;
    prefix = ADR_Bits(&r->addr);
  }
  NetAddr mapped = r->addr;
  ADR_Unmap(&mapped);
  if (mapped.family != r->addr.family && prefix >= 96) {
    r->addr = mapped;
    prefix -= 96;
  }
  r->addr.port = 0;
  ADR_MaskFromPrefix(r->addr.family, prefix, &r->mask);
  ADR_ApplyMask(&r->addr, &r->mask, &r->addr);
  return true;
}

/* Fill k->addrs from a comma-separated list. Elements are never quoted in messages: a key
 * with spaces in it would put its pieces here. */
static bool
parse_addr_list(Parser *p, Key *k, const Tok *t)
{
  size_t n = 1;
  for (size_t i = 0; i < t->len; i++)
    n += t->s[i] == ',';
  if (n > KEY_MAX_ADDRS) {
    error_at(p, p->line, "key %u: more than %d entries in the address list", k->id,
             KEY_MAX_ADDRS);
    return false;
  }
  k->addrs = calloc(n, sizeof(*k->addrs));
  if (!k->addrs) {
    error_at(p, p->line, "out of memory");
    return false;
  }
  const char *s = t->s, *end = t->s + t->len;
  for (size_t i = 0; i < n; i++) {
    const char *comma = memchr(s, ',', (size_t)(end - s));
    size_t len = comma ? (size_t)(comma - s) : (size_t)(end - s);
    if (!parse_rule(s, len, &k->addrs[i])) {
      error_at(p, p->line,
               "key %u: entry %zu of the address list is not a numeric address or "
               "ADDRESS/PREFIX",
               k->id, i + 1);
      return false;
    }
    s += len + 1;
  }
  k->n_addrs = n;
  return true;
}

/* Fetch the algorithm of `type` into the table once. */
static bool
fetch_type(Parser *p, KEY_Type type)
{
  KEY_Table *t = p->t;
  if (p->fetch_failed[type])
    return false;
  if (type == KEY_TYPE_AES128CMAC) {
    if (!t->cmac)
      t->cmac = EVP_MAC_fetch(NULL, OSSL_MAC_NAME_CMAC, NULL);
    p->fetch_failed[type] = !t->cmac;
  } else {
    if (!t->md[type])
      t->md[type] = EVP_MD_fetch(NULL, types[type].evp_name, NULL);
    p->fetch_failed[type] = !t->md[type];
  }
  return !p->fetch_failed[type];
}

static _Atomic uint64_t cmac_serials; /* numbers AES128CMAC keys (Key.serial) */

/* ntpd's AES-CMAC keys are 16 octets: shorter ones are zero-padded, longer ones cut. Then
 * check once that OpenSSL can key a CMAC with it; the MACs use the thread's contexts. */
static bool
setup_cmac_key(Parser *p, Key *k)
{
  if (k->secret_len < KEY_CMAC_KEY_LEN)
    warn(p, "key %u: AES128CMAC key of %u octets is zero-padded to 16 (as ntpd does)", k->id,
         (unsigned)k->secret_len);
  else if (k->secret_len > KEY_CMAC_KEY_LEN)
    warn(p, "key %u: AES128CMAC key of %u octets: only the first 16 are used (as ntpd does)",
         k->id, (unsigned)k->secret_len);
  memset(k->secret + k->secret_len, 0, sizeof(k->secret) - k->secret_len);
  k->secret_len = KEY_CMAC_KEY_LEN;
  OSSL_PARAM params[] = {
      OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_CIPHER, "AES-128-CBC", 0),
      OSSL_PARAM_construct_end(),
  };
  k->serial = atomic_fetch_add(&cmac_serials, 1) + 1;
  EVP_MAC_CTX *c = EVP_MAC_CTX_new(p->t->cmac);
  bool ok = c && EVP_MAC_init(c, k->secret, KEY_CMAC_KEY_LEN, params);
  EVP_MAC_CTX_free(c);
  if (ok)
    return true;
  error_at(p, p->line, "key %u: OpenSSL could not set up AES-128-CMAC", k->id);
  return false;
}

static Key *
append_key(Parser *p)
{
  KEY_Table *t = p->t;
  if (t->n == t->cap) {
    size_t cap = t->cap ? 2 * t->cap : 16;
    Key *keys = calloc(cap, sizeof(*keys));
    if (!keys)
      return NULL;
    if (t->n)
      memcpy(keys, t->keys, t->n * sizeof(*keys));
    /* The old array held secrets: clear it rather than hand it to realloc. */
    if (t->keys)
      OPENSSL_cleanse(t->keys, t->n * sizeof(*keys));
    free(t->keys);
    t->keys = keys;
    t->cap = cap;
  }
  Key *k = &t->keys[t->n];
  memset(k, 0, sizeof(*k));
  return k;
}

/* The id (1..65535) from the first token, or 0 after reporting why not. */
static uint32_t
line_id(Parser *p, const Tok *tok)
{
  uint32_t id = all_digits(tok) ? decimal_value(tok) : 0;
  if (id >= 1 && id <= KEY_MAX_ID)
    return id;
  if (!all_digits(tok))
    error_at(p, p->line, "the key id must be a number from 1 to 65535");
  else if (id == 0)
    error_at(p, p->line, "key id 0 is reserved by the NTP standard");
  else
    error_at(p, p->line, "key id above 65535 (those were Autokey session keys)");
  return 0;
}

/* Was id defined before? Report the first definition's line. */
static bool
check_duplicate(Parser *p, uint32_t id)
{
  if (!(p->seen[id / 8] & (1u << (id % 8)))) {
    p->seen[id / 8] |= (uint8_t)(1u << (id % 8));
    return true;
  }
  int first = 0;
  for (size_t i = 0; i < p->t->n; i++)
    if (p->t->keys[i].id == id)
      first = p->t->keys[i].line;
  error_at(p, p->line, "key %u is already defined at line %d", id, first);
  return false;
}

/* Type and key fields of a line into k; false after reporting an error. */
static bool
parse_type_and_secret(Parser *p, Key *k, const Tok *tok, size_t n)
{
  if (n == 1) {
    error_at(p, p->line, "key %u: missing key type and key", k->id);
    return false;
  }
  if (n == 2) { /* chrony's "ID KEY" form: the second field may well be the key */
    error_at(p, p->line, "key %u: missing key (the type is required)", k->id);
    return false;
  }
  KEY_Type type = type_from_token(tok[1].s, tok[1].len);
  if (!type) {
    error_at(p, p->line,
             "key %u: unknown key type (use MD5, SHA1, SHA224, SHA256, SHA384, SHA512 or "
             "AES128CMAC)",
             k->id);
    return false;
  }
  const char *why = decode_secret(&tok[2], k->secret, &k->secret_len);
  if (why) {
    error_at(p, p->line, "key %u: %s", k->id, why);
    return false;
  }
  if (!fetch_type(p, type)) {
    error_at(p, p->line, "key %u: OpenSSL does not provide %s here", k->id, types[type].name);
    return false;
  }
  k->type = (uint8_t)type;
  k->digest_len = (uint8_t)types[type].digest_len;
  return true;
}

static void
parse_line(Parser *p, const char *s, const char *end)
{
  Tok tok[MAX_TOKS];
  size_t n = split_line(s, end, tok);
  if (n == 0)
    return;
  uint32_t id = line_id(p, &tok[0]);
  if (!id)
    return;
  Key *k = append_key(p);
  if (!k) {
    error_at(p, p->line, "out of memory");
    return;
  }
  k->id = (uint16_t)id;
  k->line = p->line;
  bool ok = parse_type_and_secret(p, k, tok, n) && (n < 4 || parse_addr_list(p, k, &tok[3]));
  if (ok && n > 4) {
    error_at(p, p->line, "key %u: unexpected text after the address list", k->id);
    ok = false;
  }
  if (ok && !check_duplicate(p, id))
    ok = false;
  if (ok && k->type == KEY_TYPE_AES128CMAC)
    ok = setup_cmac_key(p, k);
  else if (ok && k->secret_len < SHORT_KEY_WARN)
    warn(p, "key %u is shorter than 80 bits", k->id);
  if (!ok) {
    free(k->addrs);
    OPENSSL_cleanse(k, sizeof(*k));
    return;
  }
  p->t->n++;
}

typedef struct {
  uint16_t id;
  size_t pos;
} IdPos;

static int
cmp_idpos(const void *a, const void *b)
{
  const IdPos *x = a, *y = b;
  return (x->id > y->id) - (x->id < y->id);
}

/* Order the keys by id for bsearch. The sort moves only (id, position) pairs: qsort may
 * copy its elements through a scratch buffer it frees without clearing, and Key holds the
 * secret. The old array is cleared before it is freed. */
static bool
sort_keys(KEY_Table *t)
{
  if (t->n < 2)
    return true;
  IdPos *order = malloc(t->n * sizeof(*order));
  Key *sorted = malloc(t->n * sizeof(*sorted));
  if (!order || !sorted) {
    free(order);
    free(sorted);
    return false;
  }
  for (size_t i = 0; i < t->n; i++)
    order[i] = (IdPos){t->keys[i].id, i};
  qsort(order, t->n, sizeof(*order), cmp_idpos);
  for (size_t i = 0; i < t->n; i++)
    sorted[i] = t->keys[order[i].pos];
  OPENSSL_cleanse(t->keys, t->cap * sizeof(*t->keys));
  free(t->keys);
  free(order);
  t->keys = sorted;
  t->cap = t->n;
  return true;
}

KEY_Table *
KEY_ParseText(const char *name, const char *text, KEY_Errors *errs)
{
  Parser p = {.errs = errs, .name = name ? name : "(keys)"};
  p.t = calloc(1, sizeof(*p.t));
  p.seen = calloc((KEY_MAX_ID + 1) / 8, 1);
  if (!p.t || !p.seen || !text) {
    error_at(&p, 0, p.t && p.seen ? "no text" : "out of memory");
    free(p.seen);
    KEY_Destroy(p.t);
    return NULL;
  }
  for (const char *s = text; *s && !p.stopped;) {
    const char *nl = strchr(s, '\n');
    const char *end = nl ? nl : s + strlen(s);
    p.line++;
    parse_line(&p, s, end);
    s = nl ? nl + 1 : end;
  }
  free(p.seen);
  if (p.n_errors == 0 && !sort_keys(p.t))
    error_at(&p, 0, "out of memory");
  if (p.n_errors) {
    KEY_Destroy(p.t);
    return NULL;
  }
  return p.t;
}

/* ------------------------------------------------------------------------------------ */
/* Loading a file                                                                         */

/* Open path as a regular file of at most KEY_MAX_FILE_SIZE octets (never blocking on a
 * FIFO). Returns the descriptor, or -1 with *why set. */
static int
open_keys_file(const char *path, struct stat *st, const char **why)
{
  int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
  if (fd < 0 || fstat(fd, st) != 0)
    *why = strerror(errno);
  else if (!S_ISREG(st->st_mode))
    *why = "not a regular file";
  else if (st->st_size > KEY_MAX_FILE_SIZE)
    *why = "larger than 8 MiB; not a keys file";
  else
    return fd;
  if (fd >= 0)
    close(fd);
  return -1;
}

/* Read exactly size octets from fd into buf. NULL on success, else the reason. */
static const char *
read_exactly(int fd, char *buf, size_t size)
{
  size_t got = 0;
  while (got < size) {
    ssize_t r = read(fd, buf + got, size - got);
    if (r < 0 && errno == EINTR)
      continue;
    if (r < 0)
      return strerror(errno);
    if (r == 0)
      return "shorter than its size (changed while read?)";
    got += (size_t)r;
  }
  return NULL;
}

/* The whole file as a NUL-terminated text of *size octets, or NULL after an error. */
static char *
read_keys_file(const char *path, KEY_Errors *errs, size_t *size)
{
  struct stat st;
  const char *why = NULL;
  char *buf = NULL;
  int fd = open_keys_file(path, &st, &why);
  if (fd >= 0) {
    *size = (size_t)st.st_size;
    buf = malloc(*size + 1);
    why = buf ? read_exactly(fd, buf, *size) : "out of memory";
    close(fd);
    if (buf && !why && memchr(buf, '\0', *size))
      why = "contains a NUL octet; not a text file";
  }
  if (!buf || why) {
    if (errs)
      MSG_Add(&errs->errors, path, 0, "cannot read keys: %s", why ? why : "?");
    if (buf)
      OPENSSL_cleanse(buf, *size);
    free(buf);
    return NULL;
  }
  if ((st.st_mode & S_IROTH) && errs)
    MSG_Add(&errs->warnings, path, 0, "is readable by every user; keys should be secret");
  buf[*size] = '\0';
  return buf;
}

KEY_Table *
KEY_LoadFile(const char *path, KEY_Errors *errs)
{
  size_t size = 0;
  char *text = read_keys_file(path, errs, &size);
  if (!text)
    return NULL;
  KEY_Table *t = KEY_ParseText(path, text, errs);
  OPENSSL_cleanse(text, size);
  free(text);
  return t;
}

/* ------------------------------------------------------------------------------------ */
/* MACs                                                                                   */

/* H(key || data), the RFC 5905 digest, with the state on the stack (no allocation). */
static bool
digest_mac(const Key *k, const uint8_t *data, size_t len, uint8_t *out)
{
  union {
    MD5_CTX md5;
    SHA_CTX sha1;
    SHA256_CTX sha256;
    SHA512_CTX sha512;
  } c;
  bool ok = false;
  switch (k->type) {
    case KEY_TYPE_MD5:
      ok = MD5_Init(&c.md5) && MD5_Update(&c.md5, k->secret, k->secret_len) &&
           MD5_Update(&c.md5, data, len) && MD5_Final(out, &c.md5);
      break;
    case KEY_TYPE_SHA1:
      ok = SHA1_Init(&c.sha1) && SHA1_Update(&c.sha1, k->secret, k->secret_len) &&
           SHA1_Update(&c.sha1, data, len) && SHA1_Final(out, &c.sha1);
      break;
    case KEY_TYPE_SHA224:
    case KEY_TYPE_SHA256:
      ok = (k->type == KEY_TYPE_SHA224 ? SHA224_Init(&c.sha256) : SHA256_Init(&c.sha256)) &&
           SHA256_Update(&c.sha256, k->secret, k->secret_len) &&
           SHA256_Update(&c.sha256, data, len) && SHA256_Final(out, &c.sha256);
      break;
    case KEY_TYPE_SHA384:
    case KEY_TYPE_SHA512:
      ok = (k->type == KEY_TYPE_SHA384 ? SHA384_Init(&c.sha512) : SHA512_Init(&c.sha512)) &&
           SHA512_Update(&c.sha512, k->secret, k->secret_len) &&
           SHA512_Update(&c.sha512, data, len) && SHA512_Final(out, &c.sha512);
      break;
    default:
      break;
  }
  OPENSSL_cleanse(&c, sizeof(c)); /* it held a state derived from the key */
  return ok;
}

/* AES-128-CMAC contexts of the calling thread, each keyed with one key (Key.serial): a MAC
 * under a key that has one restarts it (EVP_MAC_init without a key: no allocation, and half
 * the cost of duplicating a keyed context); another key re-keys the oldest slot. Created on
 * first use, freed when the thread exits. They hold the AES key schedules of the last keys
 * used until then (a reload does not clear them; EVP_MAC_CTX_free cleanses). */
#define CMAC_SLOTS 4

typedef struct {
  EVP_MAC_CTX *ctx[CMAC_SLOTS];
  uint64_t serial[CMAC_SLOTS]; /* 0: not keyed */
  unsigned next;
} CmacCache;

static pthread_once_t cmac_once = PTHREAD_ONCE_INIT;
static pthread_key_t cmac_tls;
static _Thread_local CmacCache *cmac_cache;

static void
free_cmac_cache(void *arg)
{
  CmacCache *c = arg;
  for (int i = 0; i < CMAC_SLOTS; i++)
    EVP_MAC_CTX_free(c->ctx[i]);
  free(c);
}

static void
make_cmac_tls(void)
{
  pthread_key_create(&cmac_tls, free_cmac_cache);
}

static EVP_MAC_CTX *
thread_cmac(const KEY_Table *t, const Key *k)
{
  CmacCache *c = cmac_cache;
  if (!c) {
    pthread_once(&cmac_once, make_cmac_tls);
    c = calloc(1, sizeof(*c));
    if (!c || pthread_setspecific(cmac_tls, c) != 0) {
      free(c);
      return NULL;
    }
    cmac_cache = c;
  }
  for (int i = 0; i < CMAC_SLOTS; i++)
    if (c->ctx[i] && c->serial[i] == k->serial)
      return EVP_MAC_init(c->ctx[i], NULL, 0, NULL) ? c->ctx[i] : NULL;
  unsigned i = c->next++ % CMAC_SLOTS;
  c->serial[i] = 0;
  if (!c->ctx[i]) {
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_CIPHER, "AES-128-CBC", 0),
        OSSL_PARAM_construct_end(),
    };
    c->ctx[i] = EVP_MAC_CTX_new(t->cmac);
    if (!c->ctx[i] || !EVP_MAC_CTX_set_params(c->ctx[i], params)) {
      EVP_MAC_CTX_free(c->ctx[i]);
      c->ctx[i] = NULL;
      return NULL;
    }
  }
  if (!EVP_MAC_init(c->ctx[i], k->secret, KEY_CMAC_KEY_LEN, NULL))
    return NULL;
  c->serial[i] = k->serial;
  return c->ctx[i];
}

/* AES-128-CMAC(key, data), RFC 4493 as RFC 8573 uses it. */
static bool
cmac_mac(const KEY_Table *t, const Key *k, const uint8_t *data, size_t len, uint8_t *out)
{
  EVP_MAC_CTX *ctx = thread_cmac(t, k);
  size_t n = 0;
  return ctx && EVP_MAC_update(ctx, data, len) &&
         EVP_MAC_final(ctx, out, &n, EVP_MAX_MD_SIZE) && n == k->digest_len;
}

/* The full-length MAC of data under k into out (EVP_MAX_MD_SIZE octets); the first
 * k->digest_len octets go on the wire. */
static bool
compute_mac(const KEY_Table *t, const Key *k, const uint8_t *data, size_t len, uint8_t *out)
{
  if (k->type == KEY_TYPE_AES128CMAC)
    return cmac_mac(t, k, data, len, out);
  return digest_mac(k, data, len, out);
}

/* May a MAC of k carry digest_len octets: the default (truncated) length or the whole
 * digest? */
static bool
digest_len_ok(const Key *k, size_t digest_len)
{
  return digest_len == k->digest_len || digest_len == types[k->type].full_len;
}

/* Sign a packet whose MAC may start at min_len octets at the earliest, with digest_len
 * octets of digest (0: the key's default). */
static size_t
sign_at(const KEY_Table *t, uint32_t id, uint8_t *pkt, size_t len, size_t bufsize,
        size_t min_len, size_t digest_len)
{
  const Key *k = find_key(t, id);
  if (!k || !pkt || len < min_len || len % 4 != 0)
    return 0;
  if (digest_len == 0)
    digest_len = k->digest_len;
  if (!digest_len_ok(k, digest_len))
    return 0;
  size_t out_len = len + 4 + digest_len;
  if (out_len > bufsize || out_len > PKT_MAX_LEN)
    return 0;
  uint8_t d[EVP_MAX_MD_SIZE];
  if (!compute_mac(t, k, pkt, len, d))
    return 0;
  PKT_Put32(pkt + len, id);
  memcpy(pkt + len + 4, d, digest_len);
  return out_len;
}

size_t
KEY_Sign(const KEY_Table *t, uint32_t id, uint8_t *pkt, size_t len, size_t bufsize)
{
  return sign_at(t, id, pkt, len, bufsize, PKT_HEADER_LEN, 0);
}

size_t
KEY_SignAs(const KEY_Table *t, uint32_t id, uint8_t *pkt, size_t len, size_t bufsize,
           size_t digest_len)
{
  return sign_at(t, id, pkt, len, bufsize, PKT_HEADER_LEN, digest_len);
}

size_t
KEY_SignControl(const KEY_Table *t, uint32_t id, uint8_t *pkt, size_t len, size_t bufsize)
{
  return sign_at(t, id, pkt, len, bufsize, KEY_CONTROL_HEADER_LEN, 0);
}

/* Does the trailer describe exactly this packet, with the digest length of k's type? */
static bool
mac_fits(const Key *k, size_t len, const PKT_Trailer *tr, size_t min_len)
{
  return digest_len_ok(k, tr->digest_len) && tr->mac_offset >= min_len &&
         tr->mac_offset % 4 == 0 && (size_t)tr->mac_offset + 4 + tr->digest_len == len;
}

static bool
addr_allowed(const Key *k, const NetAddr *src)
{
  if (k->n_addrs == 0)
    return true;
  if (!src)
    return false;
  NetAddr a = *src;
  ADR_Unmap(&a);
  for (size_t i = 0; i < k->n_addrs; i++) {
    NetAddr masked;
    if (a.family != k->addrs[i].addr.family)
      continue;
    ADR_ApplyMask(&a, &k->addrs[i].mask, &masked);
    if (ADR_Equal(&masked, &k->addrs[i].addr))
      return true;
  }
  return false;
}

static KEY_Verdict
verify_at(const KEY_Table *t, const uint8_t *pkt, size_t len, const PKT_Trailer *tr,
          const NetAddr *src, size_t min_len)
{
  if (tr->crypto_nak)
    return KEY_CRYPTO_NAK;
  if (!tr->has_mac)
    return KEY_NO_MAC;
  const Key *k = find_key(t, tr->key_id);
  if (!k)
    return KEY_UNKNOWN_KEY;
  if (!k->trusted)
    return KEY_UNTRUSTED_KEY;
  if (!pkt || !mac_fits(k, len, tr, min_len))
    return KEY_BAD_LENGTH;
  if (!addr_allowed(k, src))
    return KEY_ADDR_NOT_ALLOWED;
  uint8_t d[EVP_MAX_MD_SIZE];
  if (!compute_mac(t, k, pkt, tr->mac_offset, d))
    return KEY_CRYPTO_FAILED;
  /* Constant time (CVE-2016-1550): how much of a forged digest matched must not show. */
  if (CRYPTO_memcmp(d, pkt + tr->mac_offset + 4, tr->digest_len) != 0)
    return KEY_BAD_DIGEST;
  return KEY_OK;
}

KEY_Verdict
KEY_Verify(const KEY_Table *t, const uint8_t *pkt, size_t len, const PKT_Trailer *tr,
           const NetAddr *src)
{
  return verify_at(t, pkt, len, tr, src, PKT_HEADER_LEN);
}

KEY_Verdict
KEY_VerifyControl(const KEY_Table *t, const uint8_t *pkt, size_t len, const PKT_Trailer *tr,
                  const NetAddr *src)
{
  return verify_at(t, pkt, len, tr, src, KEY_CONTROL_HEADER_LEN);
}

size_t
KEY_AppendCryptoNak(uint8_t *pkt, size_t len, size_t bufsize)
{
  if (!pkt || len != PKT_HEADER_LEN || bufsize < PKT_HEADER_LEN + 4)
    return 0;
  PKT_Put32(pkt + len, 0);
  return PKT_HEADER_LEN + 4;
}

#include "ntscookie.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

bool
NCK_NeedsRotation(const NCK_Keys *k, int64_t now, int64_t interval)
{
  return k->n == 0 || now - k->keys[0].created >= interval || now < k->keys[0].created;
}

static bool
held(const NCK_Keys *k, uint32_t id)
{
  for (size_t i = 0; i < k->n; i++)
    if (k->keys[i].id == id)
      return true;
  return false;
}

void
NCK_Rotate(NCK_Keys *k, int64_t now, uint32_t id, const uint8_t key[SIV_KEY_LEN])
{
  while (held(k, id))
    id++;
  size_t keep = k->n < NCK_MAX_KEYS ? k->n : NCK_MAX_KEYS - 1;
  memmove(&k->keys[1], &k->keys[0], keep * sizeof(k->keys[0]));
  k->keys[0].id = id;
  memcpy(k->keys[0].key, key, SIV_KEY_LEN);
  k->keys[0].created = now;
  k->n = keep + 1;
}

static void
put32(uint8_t *p, uint32_t v)
{
  p[0] = (uint8_t)(v >> 24);
  p[1] = (uint8_t)(v >> 16);
  p[2] = (uint8_t)(v >> 8);
  p[3] = (uint8_t)v;
}

bool
NCK_Seal(const NCK_Keys *k, SIV_Ctx *siv, const uint8_t c2s[SIV_KEY_LEN],
         const uint8_t s2c[SIV_KEY_LEN], const uint8_t nonce[NCK_NONCE_LEN],
         uint8_t out[NCK_COOKIE_LEN])
{
  uint8_t pt[2 * SIV_KEY_LEN];
  if (k->n == 0)
    return false;
  put32(out, k->keys[0].id);
  memcpy(out + 4, nonce, NCK_NONCE_LEN);
  memcpy(pt, c2s, SIV_KEY_LEN);
  memcpy(pt + SIV_KEY_LEN, s2c, SIV_KEY_LEN);
  return SIV_Seal(siv, k->keys[0].key, out, 4, nonce, NCK_NONCE_LEN, pt, sizeof(pt),
                  out + 4 + NCK_NONCE_LEN);
}

NCK_Status
NCK_Open(const NCK_Keys *k, SIV_Ctx *siv, const uint8_t *cookie, size_t len,
         uint8_t c2s[SIV_KEY_LEN], uint8_t s2c[SIV_KEY_LEN])
{
  uint8_t pt[2 * SIV_KEY_LEN];
  if (len != NCK_COOKIE_LEN)
    return NCK_BAD_LENGTH;
  uint32_t id = (uint32_t)cookie[0] << 24 | (uint32_t)cookie[1] << 16 |
                (uint32_t)cookie[2] << 8 | cookie[3];
  const NCK_MasterKey *m = NULL;
  for (size_t i = 0; i < k->n && !m; i++)
    if (k->keys[i].id == id)
      m = &k->keys[i];
  if (!m)
    return NCK_UNKNOWN_KEY;
  if (!SIV_Open(siv, m->key, cookie, 4, cookie + 4, NCK_NONCE_LEN, cookie + 4 + NCK_NONCE_LEN,
                len - 4 - NCK_NONCE_LEN, pt))
    return NCK_UNDECRYPTABLE;
  memcpy(c2s, pt, SIV_KEY_LEN);
  memcpy(s2c, pt + SIV_KEY_LEN, SIV_KEY_LEN);
  return NCK_OK;
}

size_t
NCK_Format(const NCK_Keys *k, char *buf, size_t size)
{
  size_t pos = 0;
  for (size_t i = 0; i < k->n; i++) {
    char hex[2 * SIV_KEY_LEN + 1];
    for (size_t j = 0; j < SIV_KEY_LEN; j++)
      snprintf(hex + 2 * j, 3, "%02x", k->keys[i].key[j]);
    int w = snprintf(buf + pos, size - pos, "%" PRIu32 " %s %" PRId64 "\n", k->keys[i].id, hex,
                     k->keys[i].created);
    if (w < 0 || (size_t)w >= size - pos)
      return 0;
    pos += (size_t)w;
  }
  return pos;
}

static bool
parse_hex(const char *s, uint8_t *out, size_t n)
{
  for (size_t i = 0; i < n; i++) {
    int v = 0;
    for (int j = 0; j < 2; j++) {
      char c = s[2 * i + (size_t)j];
      int d = c >= '0' && c <= '9'   ? c - '0'
              : c >= 'a' && c <= 'f' ? c - 'a' + 10
              : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                     : -1;
      if (d < 0)
        return false;
      v = v * 16 + d;
    }
    out[i] = (uint8_t)v;
  }
  return s[2 * n] == '\0';
}

/* One line "ID HEXKEY CREATED" (already split at blanks). */
static bool
parse_line(char *l, NCK_MasterKey *m, const char **why)
{
  char *save = NULL, *id = strtok_r(l, " \t", &save), *hex = strtok_r(NULL, " \t", &save),
       *cr = strtok_r(NULL, " \t", &save), *end;
  if (!id || !hex || !cr || strtok_r(NULL, " \t", &save))
    return *why = "expected three fields: ID HEXKEY CREATED", false;
  unsigned long long v = strtoull(id, &end, 10);
  if (*end || end == id || v > UINT32_MAX)
    return *why = "bad key id", false;
  m->id = (uint32_t)v;
  if (!parse_hex(hex, m->key, SIV_KEY_LEN))
    return *why = "the key is not 64 hexadecimal digits", false;
  long long c = strtoll(cr, &end, 10);
  if (*end || end == cr || c < 0)
    return *why = "bad creation time", false;
  m->created = c;
  return true;
}

bool
NCK_Parse(const char *text, NCK_Keys *k, int *line, const char **why)
{
  NCK_Keys out = {.n = 0};
  char l[256];
  *line = 0;
  while (*text) {
    const char *nl = strchr(text, '\n');
    size_t len = nl ? (size_t)(nl - text) : strlen(text);
    ++*line;
    if (len >= sizeof(l))
      return *why = "line too long", false;
    memcpy(l, text, len);
    l[len] = '\0';
    text += len + (nl ? 1 : 0);
    if (l[0] == '\0' || l[0] == '#')
      continue;
    if (out.n == NCK_MAX_KEYS)
      return *why = "more keys than are kept", false;
    if (!parse_line(l, &out.keys[out.n], why))
      return false;
    if (held(&out, out.keys[out.n].id))
      return *why = "key id repeated", false;
    out.n++;
  }
  memset(l, 0, sizeof(l));
  *k = out;
  return true;
}

struct NCK_Store {
  pthread_mutex_t lock;
  NCK_Keys keys;        /* under lock */
  _Atomic uint64_t gen; /* bumped after each publication */
};

NCK_Store *
NCK_StoreCreate(void)
{
  NCK_Store *s = calloc(1, sizeof(*s));
  if (s && pthread_mutex_init(&s->lock, NULL) != 0) {
    free(s);
    return NULL;
  }
  return s;
}

void
NCK_StoreDestroy(NCK_Store *s)
{
  if (!s)
    return;
  pthread_mutex_destroy(&s->lock);
  memset(&s->keys, 0, sizeof(s->keys));
  free(s);
}

void
NCK_StorePublish(NCK_Store *s, const NCK_Keys *k)
{
  pthread_mutex_lock(&s->lock);
  s->keys = *k;
  pthread_mutex_unlock(&s->lock);
  atomic_fetch_add_explicit(&s->gen, 1, memory_order_release);
}

bool
NCK_StoreRefresh(NCK_Store *s, NCK_Keys *copy, uint64_t *gen)
{
  uint64_t g = atomic_load_explicit(&s->gen, memory_order_acquire);
  if (g == *gen || pthread_mutex_trylock(&s->lock) != 0)
    return false;
  *copy = s->keys;
  g = atomic_load_explicit(&s->gen, memory_order_relaxed);
  pthread_mutex_unlock(&s->lock);
  *gen = g;
  return true;
}

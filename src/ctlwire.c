#include "ctlwire.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

/* ------------------------------------------------------------------------------------ */
/* Requests                                                                              */

/* A MAC trailer of exactly key id + 16 or 20 digest octets at off? */
static bool
find_mac_at(const uint8_t *buf, size_t len, size_t off, PKT_Trailer *tr)
{
  if (off > len)
    return false;
  size_t rest = len - off;
  if (rest != 4 + 16 && rest != 4 + 20)
    return false;
  tr->has_mac = true;
  tr->key_id = PKT_Get32(buf + off);
  tr->mac_offset = (uint16_t)off;
  tr->digest_len = (uint16_t)(rest - 4);
  return true;
}

static void
find_mac(const uint8_t *buf, size_t len, size_t count, PKT_Trailer *tr)
{
  size_t end = CTW_HEADER_LEN + count;
  memset(tr, 0, sizeof(*tr));
  if (!find_mac_at(buf, len, (end + 7) & ~(size_t)7, tr))
    find_mac_at(buf, len, (end + 3) & ~(size_t)3, tr);
}

CTW_ParseResult
CTW_ParseRequest(const uint8_t *buf, size_t len, CTW_Header *h)
{
  memset(h, 0, sizeof(*h));
  if (!buf || len < CTW_HEADER_LEN)
    return CTW_PARSE_SHORT;
  h->leap = buf[0] >> 6;
  h->version = (buf[0] >> 3) & 7;
  h->mode = buf[0] & 7;
  h->rem = buf[1] & (CTW_RESPONSE | CTW_ERROR | CTW_MORE);
  h->opcode = buf[1] & CTW_OPCODE_MASK;
  h->sequence = PKT_Get16(buf + 2);
  h->status = PKT_Get16(buf + 4);
  h->associd = PKT_Get16(buf + 6);
  h->offset = PKT_Get16(buf + 8);
  h->count = PKT_Get16(buf + 10);
  h->data = buf + CTW_HEADER_LEN;
  if (h->mode != PKT_MODE_CONTROL)
    return CTW_PARSE_MODE;
  if (h->rem != 0 || h->offset != 0)
    return CTW_PARSE_RESPONSE;
  if (h->version < 1 || h->version > PKT_VERSION)
    return CTW_PARSE_VERSION;
  if (len % 4 != 0)
    return CTW_PARSE_LENGTH;
  if (h->count > len - CTW_HEADER_LEN || h->count > CTW_MAX_DATA)
    return CTW_PARSE_COUNT;
  find_mac(buf, len, h->count, &h->mac);
  return CTW_PARSE_OK;
}

static bool
is_space(char c)
{
  return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

static void
trim(const char **s, size_t *n)
{
  while (*n > 0 && is_space(**s)) {
    (*s)++;
    (*n)--;
  }
  while (*n > 0 && is_space((*s)[*n - 1]))
    (*n)--;
}

bool
CTW_NextItem(const char **p, const char *end, CTW_Item *it)
{
  const char *s = *p;
  while (s < end && (*s == ',' || is_space(*s) || *s == '\0'))
    s++;
  if (s >= end) {
    *p = end;
    return false;
  }
  const char *e = s, *eq = NULL;
  while (e < end && *e != ',') {
    if (*e == '=' && !eq)
      eq = e;
    e++;
  }
  it->name = s;
  it->name_len = (size_t)((eq ? eq : e) - s);
  trim(&it->name, &it->name_len);
  it->value = NULL;
  it->value_len = 0;
  if (eq) {
    it->value = eq + 1;
    it->value_len = (size_t)(e - eq - 1);
    trim(&it->value, &it->value_len);
  }
  *p = e < end ? e + 1 : end;
  return true;
}

bool
CTW_ItemIs(const CTW_Item *it, const char *s)
{
  return strlen(s) == it->name_len && memcmp(it->name, s, it->name_len) == 0;
}

/* ------------------------------------------------------------------------------------ */
/* Responses                                                                             */

void
CTW_WriterInit(CTW_Writer *w, CTW_Datagrams *out, size_t max_frags)
{
  if (max_frags < 1)
    max_frags = 1;
  if (max_frags > CTW_MAX_FRAGS)
    max_frags = CTW_MAX_FRAGS;
  memset(w, 0, sizeof(*w));
  w->out = out;
  w->cap = max_frags * CTW_MAX_DATA;
  out->count = 0;
}

/* Copy without checks: the caller made sure it fits. */
static void
copy_in(CTW_Writer *w, const void *data, size_t n)
{
  const uint8_t *d = data;
  while (n > 0) {
    size_t frag = w->pos / CTW_MAX_DATA, at = w->pos % CTW_MAX_DATA;
    size_t k = CTW_MAX_DATA - at < n ? CTW_MAX_DATA - at : n;
    memcpy(w->out->buf[frag] + CTW_HEADER_LEN + at, d, k);
    w->pos += k;
    d += k;
    n -= k;
  }
}

bool
CTW_PutBytes(CTW_Writer *w, const void *data, size_t n)
{
  if (n > w->cap - w->pos) {
    w->overflow = true;
    return false;
  }
  copy_in(w, data, n);
  w->any = true;
  return true;
}

bool
CTW_PutItem(CTW_Writer *w, const char *item)
{
  size_t n = strlen(item);
  bool wrap = w->any && (size_t)w->line + 1 + n + 1 >= CTW_LINE_LEN;
  const char *sep = !w->any ? "" : wrap ? ",\r\n" : ", ";
  size_t seplen = strlen(sep);
  if (seplen + n > w->cap - w->pos) {
    w->overflow = true;
    return false;
  }
  copy_in(w, sep, seplen);
  copy_in(w, item, n);
  w->line = (wrap ? 0 : w->line + (int)seplen) + (int)n;
  w->any = true;
  w->text = true;
  return true;
}

static bool
put_pair(CTW_Writer *w, const char *name, const char *quote, const char *value)
{
  char item[512];
  int n = snprintf(item, sizeof(item), "%s=%s%s%s", name, quote, value, quote);
  if (n < 0 || (size_t)n >= sizeof(item)) {
    w->overflow = true;
    return false;
  }
  return CTW_PutItem(w, item);
}

bool
CTW_PutUint(CTW_Writer *w, const char *name, uint64_t v)
{
  char b[24];
  snprintf(b, sizeof(b), "%" PRIu64, v);
  return put_pair(w, name, "", b);
}

bool
CTW_PutInt(CTW_Writer *w, const char *name, int64_t v)
{
  char b[24];
  snprintf(b, sizeof(b), "%" PRId64, v);
  return put_pair(w, name, "", b);
}

bool
CTW_PutHex(CTW_Writer *w, const char *name, uint64_t v)
{
  char b[24];
  snprintf(b, sizeof(b), "0x%" PRIx64, v);
  return put_pair(w, name, "", b);
}

bool
CTW_PutDouble(CTW_Writer *w, const char *name, int decimals, double v)
{
  char b[64];
  if (v != v) /* NaN: not a number ntpq can parse */
    v = 0.0;
  if (v > 1e15 || v < -1e15)
    v = v > 0 ? 1e15 : -1e15;
  snprintf(b, sizeof(b), "%.*f", decimals, v);
  return put_pair(w, name, "", b);
}

bool
CTW_PutStamp(CTW_Writer *w, const char *name, NTT_Stamp ts)
{
  char b[24];
  snprintf(b, sizeof(b), "0x%08" PRIx32 ".%08" PRIx32, (uint32_t)(ts >> 32), (uint32_t)ts);
  return put_pair(w, name, "", b);
}

bool
CTW_PutString(CTW_Writer *w, const char *name, const char *s)
{
  return put_pair(w, name, "\"", s);
}

bool
CTW_PutRaw(CTW_Writer *w, const char *name, const char *s)
{
  return put_pair(w, name, "", s);
}

static void
put_header(uint8_t *p, const CTW_Reply *r, uint8_t bits, uint16_t status, uint16_t offset,
           uint16_t count)
{
  p[0] = (uint8_t)(((r->leap & 3u) << 6) | ((r->version & 7u) << 3) | PKT_MODE_CONTROL);
  p[1] = (uint8_t)(CTW_RESPONSE | bits | (r->opcode & CTW_OPCODE_MASK));
  PKT_Put16(p + 2, r->sequence);
  PKT_Put16(p + 4, status);
  PKT_Put16(p + 6, r->associd);
  PKT_Put16(p + 8, offset);
  PKT_Put16(p + 10, count);
}

/* Pad the datagram of len octets (to 4, or to 8 and add the MAC when signing). */
static size_t
seal(uint8_t *p, size_t len, const CTW_Reply *r)
{
  size_t plain = (len + 3) & ~(size_t)3;
  memset(p + len, 0, CTW_MAX_DATAGRAM - len);
  if (!r->sign)
    return plain;
  size_t padded = (len + 7) & ~(size_t)7;
  size_t signed_len = r->sign(r->keys, r->key_id, p, padded, CTW_MAX_DATAGRAM);
  return signed_len ? signed_len : plain;
}

void
CTW_Finish(CTW_Writer *w, const CTW_Reply *r)
{
  /* ntpd ends text with "\r\n" when it fits in the last datagram */
  size_t last = w->pos == 0 ? 0 : (w->pos - 1) % CTW_MAX_DATA + 1;
  if (w->text && last + 2 <= CTW_MAX_DATA && w->pos + 2 <= w->cap)
    copy_in(w, "\r\n", 2);
  size_t n = (w->pos + CTW_MAX_DATA - 1) / CTW_MAX_DATA;
  if (n == 0)
    n = 1;
  for (size_t i = 0; i < n; i++) {
    size_t off = i * CTW_MAX_DATA;
    size_t cnt = w->pos - off < CTW_MAX_DATA ? w->pos - off : CTW_MAX_DATA;
    uint8_t *p = w->out->buf[i];
    put_header(p, r, i + 1 < n ? CTW_MORE : 0, r->status, (uint16_t)off, (uint16_t)cnt);
    w->out->len[i] = seal(p, CTW_HEADER_LEN + cnt, r);
  }
  w->out->count = n;
}

void
CTW_SetError(CTW_Datagrams *out, const CTW_Reply *r, uint8_t err)
{
  put_header(out->buf[0], r, CTW_ERROR, (uint16_t)(err << 8), 0, 0);
  out->len[0] = seal(out->buf[0], CTW_HEADER_LEN, r);
  out->count = 1;
}

size_t
CTW_TotalLen(const CTW_Datagrams *out)
{
  size_t total = 0;
  for (size_t i = 0; i < out->count; i++)
    total += out->len[i];
  return total;
}

/* ------------------------------------------------------------------------------------ */
/* Reassembly                                                                            */

typedef struct {
  const uint8_t *p;
  uint16_t offset, count;
  bool more;
} Frag;

static CTW_ReassembleResult
check_frag(const uint8_t *p, size_t len, uint16_t sequence, uint8_t opcode, size_t mac_len,
           Frag *f)
{
  if (len < CTW_HEADER_LEN || (p[0] & 7) != PKT_MODE_CONTROL || !(p[1] & CTW_RESPONSE) ||
      PKT_Get16(p + 2) != sequence || (p[1] & CTW_OPCODE_MASK) != opcode)
    return CTW_RA_BAD_HEADER;
  if (p[1] & CTW_ERROR)
    return CTW_RA_SERVER_ERROR;
  if (len % 4 != 0)
    return CTW_RA_BAD_PADDING;
  f->p = p;
  f->offset = PKT_Get16(p + 8);
  f->count = PKT_Get16(p + 10);
  f->more = (p[1] & CTW_MORE) != 0;
  if (f->count > len - CTW_HEADER_LEN)
    return CTW_RA_BAD_COUNT;
  if (mac_len > 0 && ((CTW_HEADER_LEN + f->count + 7) & ~(size_t)7) + mac_len != len)
    return CTW_RA_BAD_MAC;
  return CTW_RA_OK;
}

CTW_ReassembleResult
CTW_Reassemble(const uint8_t *const *dgrams, const size_t *lens, size_t n, uint16_t sequence,
               uint8_t opcode, size_t mac_len, uint8_t *data, size_t cap, size_t *data_len,
               uint16_t *status)
{
  Frag f[CTW_MAX_FRAGS * 2];
  size_t k = 0;
  *data_len = 0;
  if (n > sizeof(f) / sizeof(f[0]))
    return CTW_RA_TOO_LONG;
  for (size_t i = 0; i < n; i++) {
    CTW_ReassembleResult r = check_frag(dgrams[i], lens[i], sequence, opcode, mac_len, &f[k]);
    if (r == CTW_RA_SERVER_ERROR)
      *status = PKT_Get16(dgrams[i] + 4);
    if (r != CTW_RA_OK)
      return r;
    /* insertion by offset */
    size_t j = k++;
    Frag cur = f[j];
    while (j > 0 && f[j - 1].offset > cur.offset) {
      f[j] = f[j - 1];
      j--;
    }
    f[j] = cur;
  }
  size_t end = 0;
  for (size_t i = 0; i < k; i++) {
    if (f[i].offset != end)
      return CTW_RA_GAP;
    if (f[i].more != (i + 1 < k))
      return CTW_RA_NO_LAST;
    if (end + f[i].count > cap)
      return CTW_RA_TOO_LONG;
    memcpy(data + end, f[i].p + CTW_HEADER_LEN, f[i].count);
    end += f[i].count;
    if (!f[i].more)
      *status = PKT_Get16(f[i].p + 4);
  }
  if (k == 0)
    return CTW_RA_NO_LAST;
  *data_len = end;
  return CTW_RA_OK;
}

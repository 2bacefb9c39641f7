#include "ntsef.h"

#include <string.h>

#include "packet.h"

#define PLAINTEXT_MAX PKT_MAX_LEN

static size_t
padded(size_t n)
{
  return (n + 3) & ~(size_t)3;
}

/* One field at off (with len the end of the area): type, whole length, body. False if it
 * does not fit or breaks RFC 7822's length rules. */
static bool
field(const uint8_t *p, size_t off, size_t len, uint16_t *type, size_t *flen)
{
  if (len - off < 4)
    return false;
  *type = PKT_Get16(p + off);
  *flen = PKT_Get16(p + off + 2);
  return *flen >= NEF_MIN_EF && *flen % 4 == 0 && *flen <= len - off;
}

static bool
is_nts(uint16_t type)
{
  return type == NEF_UNIQUE_ID || type == NEF_COOKIE || type == NEF_PLACEHOLDER ||
         type == NEF_AUTHENTICATOR;
}

/* The authenticator's body (RFC 8915 section 5.6): nonce and ciphertext lengths, each
 * padded to 4, the nonce's span at least NEF_NONCE_LEN, the ciphertext at least a tag. */
static bool
take_auth(const uint8_t *p, size_t off, size_t flen, NEF_Request *r)
{
  size_t body = flen - 4, nl = PKT_Get16(p + off + 4), cl = PKT_Get16(p + off + 6);
  size_t span = padded(nl) < NEF_NONCE_LEN ? NEF_NONCE_LEN : padded(nl);
  if (nl == 0 || cl < SIV_TAG_LEN || 4 + span + padded(cl) > body)
    return false;
  r->auth_off = (uint16_t)off;
  r->nonce_off = (uint16_t)(off + 8);
  r->nonce_len = (uint16_t)nl;
  r->ct_off = (uint16_t)(off + 8 + padded(nl));
  r->ct_len = (uint16_t)cl;
  return true;
}

/* One field of a request; false if it breaks a rule. */
static bool
take_field(const uint8_t *p, size_t off, uint16_t type, size_t flen, NEF_Request *r,
           unsigned *seen)
{
  switch (type) {
    case NEF_UNIQUE_ID:
      if ((*seen & 1) || flen - 4 < NEF_MIN_UID)
        return false;
      r->uid_off = (uint16_t)off;
      r->uid_len = (uint16_t)flen;
      *seen |= 1;
      return true;
    case NEF_COOKIE:
      if (*seen & 2)
        return false;
      r->cookie_off = (uint16_t)(off + 4);
      r->cookie_len = (uint16_t)(flen - 4);
      *seen |= 2;
      return true;
    case NEF_PLACEHOLDER:
      r->placeholders++;
      *seen |= 8;
      return true;
    case NEF_AUTHENTICATOR:
      *seen |= 4;
      return take_auth(p, off, flen, r);
    default:
      return true;
  }
}

/* Placeholders must be as long as the cookie (the padded field, as the client sent it). */
static bool
placeholders_match(const uint8_t *p, size_t end, const NEF_Request *r)
{
  uint16_t type;
  size_t flen;
  for (size_t off = PKT_HEADER_LEN; off < end; off += flen) {
    if (!field(p, off, end, &type, &flen))
      return false;
    if (type == NEF_PLACEHOLDER && flen - 4 != padded(r->cookie_len))
      return false;
  }
  return true;
}

NEF_Status
NEF_ParseRequest(const uint8_t *pkt, size_t len, NEF_Request *r)
{
  unsigned seen = 0;
  bool ok = true;
  uint16_t type;
  size_t flen, off = PKT_HEADER_LEN;
  memset(r, 0, sizeof(*r));
  if (len < PKT_HEADER_LEN || len > PKT_MAX_LEN)
    return NEF_NOT_NTS;
  while (off < len) {
    if (!field(pkt, off, len, &type, &flen)) { /* a MAC, or garbage */
      ok = false;
      break;
    }
    if (is_nts(type) && (seen & 4)) /* an NTS field after the authenticator */
      ok = false;
    if (is_nts(type) && !take_field(pkt, off, type, flen, r, &seen))
      ok = false;
    off += flen;
  }
  if (seen == 0)
    return NEF_NOT_NTS;
  if (!ok || (seen & 7) != 7 || r->auth_off + (size_t)PKT_Get16(pkt + r->auth_off + 2) != len)
    return NEF_MALFORMED;
  if (r->cookie_len == 0 || !placeholders_match(pkt, r->auth_off, r))
    return NEF_MALFORMED;
  return NEF_OK;
}

/* Count the encrypted placeholders (fields in the plaintext); false if it is not a run of
 * well-formed fields or a placeholder has the wrong length. */
static bool
inner_placeholders(const uint8_t *pt, size_t len, size_t cookie_len, unsigned *n)
{
  uint16_t type;
  size_t flen;
  for (size_t off = 0; off < len; off += flen) {
    if (!field(pt, off, len, &type, &flen))
      return false;
    if (type == NEF_PLACEHOLDER) {
      if (flen - 4 != padded(cookie_len))
        return false;
      ++*n;
    }
  }
  return true;
}

NEF_OpenStatus
NEF_Open(const uint8_t *pkt, const NEF_Request *r, const NCK_Keys *k, SIV_Ctx *siv,
         NEF_Session *s)
{
  uint8_t pt[PLAINTEXT_MAX];
  memset(s, 0, sizeof(*s));
  if (NCK_Open(k, siv, pkt + r->cookie_off, r->cookie_len, s->c2s, s->s2c) != NCK_OK)
    return NEF_OPEN_COOKIE;
  if ((size_t)r->ct_len - SIV_TAG_LEN > sizeof(pt) ||
      !SIV_Open(siv, s->c2s, pkt, r->auth_off, pkt + r->nonce_off, r->nonce_len,
                pkt + r->ct_off, r->ct_len, pt))
    return NEF_OPEN_AUTH;
  unsigned inner = 0;
  if (!inner_placeholders(pt, r->ct_len - SIV_TAG_LEN, r->cookie_len, &inner))
    return NEF_OPEN_MALFORMED;
  unsigned want = 1u + r->placeholders + inner;
  s->want = want > NEF_MAX_COOKIES ? NEF_MAX_COOKIES : want;
  return NEF_OPEN_OK;
}

size_t
NEF_BuildReply(uint8_t *out, size_t cap, const uint8_t *pkt, const NEF_Request *r,
               const NEF_Session *s, const NCK_Keys *k, SIV_Ctx *siv, const uint8_t *rnd,
               size_t rndlen, NEF_Pending *p, size_t *used)
{
  size_t off = PKT_HEADER_LEN + r->uid_len, fixed = 8 + NEF_NONCE_LEN + SIV_TAG_LEN;
  *used = 0;
  if (cap > PKT_MAX_LEN)
    cap = PKT_MAX_LEN;
  if (off + fixed > cap || rndlen < NEF_NONCE_LEN)
    return 0;
  size_t n = s->want, room = (cap - off - fixed) / NEF_COOKIE_EF,
         nonces = rndlen / NEF_NONCE_LEN - 1;
  n = n < room ? n : room;
  n = n < nonces ? n : nonces;
  memcpy(out + PKT_HEADER_LEN, pkt + r->uid_off, r->uid_len);
  size_t alen = fixed + n * NEF_COOKIE_EF;
  PKT_Put16(out + off, NEF_AUTHENTICATOR);
  PKT_Put16(out + off + 2, (uint16_t)alen);
  PKT_Put16(out + off + 4, NEF_NONCE_LEN);
  PKT_Put16(out + off + 6, (uint16_t)(SIV_TAG_LEN + n * NEF_COOKIE_EF));
  memcpy(out + off + 8, rnd, NEF_NONCE_LEN);
  *p = (NEF_Pending){.auth_off = (uint16_t)off,
                     .nonce_off = (uint16_t)(off + 8),
                     .ct_off = (uint16_t)(off + 8 + NEF_NONCE_LEN),
                     .pt_len = (uint16_t)(n * NEF_COOKIE_EF)};
  memcpy(p->s2c, s->s2c, SIV_KEY_LEN);
  memset(out + p->ct_off, 0, SIV_TAG_LEN);
  uint8_t *c = out + p->ct_off + SIV_TAG_LEN;
  for (size_t i = 0; i < n; i++, c += NEF_COOKIE_EF) {
    PKT_Put16(c, NEF_COOKIE);
    PKT_Put16(c + 2, NEF_COOKIE_EF);
    if (!NCK_Seal(k, siv, s->c2s, s->s2c, rnd + NEF_NONCE_LEN * (i + 1), c + 4))
      return 0;
  }
  *used = NEF_NONCE_LEN * (n + 1);
  return off + alen;
}

bool
NEF_Seal(uint8_t *out, const NEF_Pending *p, SIV_Ctx *siv)
{
  uint8_t *ct = out + p->ct_off;
  return SIV_Seal(siv, p->s2c, out, p->auth_off, out + p->nonce_off, NEF_NONCE_LEN,
                  ct + SIV_TAG_LEN, p->pt_len, ct);
}

size_t
NEF_BuildNak(uint8_t *out, const uint8_t *pkt, const NEF_Request *r)
{
  memcpy(out + PKT_HEADER_LEN, pkt + r->uid_off, r->uid_len);
  return PKT_HEADER_LEN + (size_t)r->uid_len;
}

/* ---- the client's side ---- */

/* A field's length for a body of blen octets: padded, and at least NEF_MIN_EF. */
static size_t
field_len(size_t blen)
{
  size_t flen = 4 + padded(blen);
  return flen < NEF_MIN_EF ? NEF_MIN_EF : flen;
}

static size_t
put_field(uint8_t *out, size_t off, uint16_t type, const uint8_t *body, size_t blen)
{
  size_t flen = field_len(blen);
  PKT_Put16(out + off, type);
  PKT_Put16(out + off + 2, (uint16_t)flen);
  memset(out + off + 4, 0, flen - 4);
  if (body)
    memcpy(out + off + 4, body, blen);
  return off + flen;
}

size_t
NEF_BuildRequest(uint8_t *out, size_t cap, const uint8_t *uid, size_t uid_len,
                 const uint8_t *cookie, size_t cookie_len, unsigned placeholders,
                 const uint8_t c2s[SIV_KEY_LEN], const uint8_t nonce[NEF_NONCE_LEN],
                 SIV_Ctx *siv)
{
  size_t need = PKT_HEADER_LEN + field_len(uid_len) +
                (1 + placeholders) * field_len(cookie_len) + 8 + NEF_NONCE_LEN + SIV_TAG_LEN;
  if (need > cap || need > PKT_MAX_LEN || placeholders > 64)
    return 0;
  size_t off = put_field(out, PKT_HEADER_LEN, NEF_UNIQUE_ID, uid, uid_len);
  off = put_field(out, off, NEF_COOKIE, cookie, cookie_len);
  for (unsigned i = 0; i < placeholders; i++)
    off = put_field(out, off, NEF_PLACEHOLDER, NULL, cookie_len);
  size_t auth = off;
  PKT_Put16(out + off, NEF_AUTHENTICATOR);
  PKT_Put16(out + off + 2, 8 + NEF_NONCE_LEN + SIV_TAG_LEN);
  PKT_Put16(out + off + 4, NEF_NONCE_LEN);
  PKT_Put16(out + off + 6, SIV_TAG_LEN);
  memcpy(out + off + 8, nonce, NEF_NONCE_LEN);
  if (!SIV_Seal(siv, c2s, out, auth, nonce, NEF_NONCE_LEN, NULL, 0,
                out + off + 8 + NEF_NONCE_LEN))
    return 0;
  return need;
}

/* The cookies inside a reply's plaintext. */
static bool
take_cookies(const uint8_t *pt, size_t len, uint8_t *cookies, size_t cap, size_t *lens,
             size_t max, size_t *n)
{
  uint16_t type;
  size_t flen;
  for (size_t off = 0; off < len; off += flen) {
    if (!field(pt, off, len, &type, &flen))
      return false;
    if (type != NEF_COOKIE || *n == max)
      continue;
    if (flen - 4 > cap)
      return false;
    memcpy(cookies + *n * cap, pt + off + 4, flen - 4);
    lens[(*n)++] = flen - 4;
  }
  return true;
}

NEF_ReplyStatus
NEF_OpenReply(const uint8_t *pkt, size_t len, const uint8_t *uid, size_t uid_len,
              const uint8_t s2c[SIV_KEY_LEN], SIV_Ctx *siv, uint8_t *cookies,
              size_t cookie_cap, size_t *lens, size_t max, size_t *n)
{
  uint8_t pt[PLAINTEXT_MAX];
  uint16_t type;
  size_t flen;
  bool uid_ok = false;
  *n = 0;
  if (len < PKT_HEADER_LEN || len > PKT_MAX_LEN)
    return NEF_REPLY_MALFORMED;
  for (size_t off = PKT_HEADER_LEN; off < len; off += flen) {
    if (!field(pkt, off, len, &type, &flen))
      return NEF_REPLY_MALFORMED;
    if (type == NEF_UNIQUE_ID)
      uid_ok = flen - 4 >= uid_len && memcmp(pkt + off + 4, uid, uid_len) == 0;
    if (type != NEF_AUTHENTICATOR)
      continue;
    NEF_Request r;
    if (!uid_ok)
      return NEF_REPLY_BAD_UID;
    if (!take_auth(pkt, off, flen, &r) || !SIV_Open(siv, s2c, pkt, off, pkt + r.nonce_off,
                                                    r.nonce_len, pkt + r.ct_off, r.ct_len, pt))
      return NEF_REPLY_BAD_AUTH;
    return take_cookies(pt, r.ct_len - SIV_TAG_LEN, cookies, cookie_cap, lens, max, n)
               ? NEF_REPLY_OK
               : NEF_REPLY_MALFORMED;
  }
  if (!uid_ok)
    return NEF_REPLY_BAD_UID;
  return pkt[1] == 0 && PKT_Get32(pkt + 12) == PKT_RefidFromCode("NTSN") ? NEF_REPLY_NAK
                                                                         : NEF_REPLY_BAD_AUTH;
}

#include "ntske.h"

#include <string.h>

static uint16_t
get16(const uint8_t *p)
{
  return (uint16_t)(p[0] << 8 | p[1]);
}

static void
put16(uint8_t *p, uint16_t v)
{
  p[0] = (uint8_t)(v >> 8);
  p[1] = (uint8_t)v;
}

typedef struct {
  bool next_seen, aead_seen;
} Seen;

static NKE_Status
bad(NKE_Request *out, uint16_t type, const char *why)
{
  out->bad_type = type;
  out->why = why;
  return NKE_BAD_REQUEST;
}

/* A list of 16-bit ids: sets *has if `want` is among them. */
static bool
id_list(const uint8_t *body, size_t blen, uint16_t want, bool *has)
{
  if (blen % 2 != 0)
    return false;
  for (size_t i = 0; i < blen; i += 2)
    if (get16(body + i) == want)
      *has = true;
  return true;
}

/* One record of the request (not End of Message): NKE_OK to go on, or the failure. */
static NKE_Status
record(uint16_t type, bool crit, const uint8_t *body, size_t blen, Seen *s, NKE_Request *out)
{
  switch (type) {
    case NKE_REC_NEXT_PROTO:
      if (s->next_seen)
        return bad(out, type, "next protocol record repeated");
      if (!crit)
        return bad(out, type, "next protocol record not critical");
      s->next_seen = true;
      return id_list(body, blen, NKE_PROTO_NTPV4, &out->ntpv4)
                 ? NKE_OK
                 : bad(out, type, "next protocol record of odd length");
    case NKE_REC_AEAD:
      if (s->aead_seen)
        return bad(out, type, "AEAD record repeated");
      s->aead_seen = out->aead_given = true;
      return id_list(body, blen, NKE_AEAD_AES_SIV_CMAC_256, &out->aead_siv)
                 ? NKE_OK
                 : bad(out, type, "AEAD record of odd length");
    case NKE_REC_ERROR:
    case NKE_REC_WARNING:
    case NKE_REC_COOKIE:
      return bad(out, type, "a record only servers send");
    case NKE_REC_SERVER:
      return NKE_OK; /* a client's hint; we name our own server or none */
    case NKE_REC_PORT:
      return blen == 2 ? NKE_OK : bad(out, type, "port record not 2 octets");
    default:
      if (crit) {
        out->bad_type = type;
        return NKE_UNKNOWN_CRITICAL;
      }
      return NKE_OK; /* unknown and not critical: ignored (section 4) */
  }
}

static NKE_Status
end_of_message(bool crit, size_t blen, size_t pos, size_t len, const Seen *s, NKE_Request *out)
{
  if (blen != 0)
    return bad(out, NKE_REC_END, "end of message with a body");
  if (!crit)
    return bad(out, NKE_REC_END, "end of message not critical");
  if (pos + 4 != len)
    return bad(out, NKE_REC_END, "data after end of message");
  if (!s->next_seen)
    return bad(out, NKE_REC_NEXT_PROTO, "no next protocol record");
  if (out->ntpv4 && !s->aead_seen)
    return bad(out, NKE_REC_AEAD, "NTPv4 without an AEAD record");
  out->length = len;
  return NKE_OK;
}

NKE_Status
NKE_ParseRequest(const uint8_t *buf, size_t len, NKE_Request *out)
{
  memset(out, 0, sizeof(*out));
  Seen s = {false, false};
  size_t pos = 0;
  if (len > NKE_MAX_REQUEST)
    return bad(out, 0, "request too long");
  while (len - pos >= 4) {
    uint16_t raw = get16(buf + pos), type = raw & 0x7fff;
    size_t blen = get16(buf + pos + 2);
    bool crit = (raw & NKE_CRITICAL) != 0;
    if (pos + 4 + blen > NKE_MAX_REQUEST)
      return bad(out, type, "request too long");
    if (len - pos - 4 < blen)
      break; /* the rest of this record has not arrived */
    if (type == NKE_REC_END)
      return end_of_message(crit, blen, pos, len, &s, out);
    NKE_Status st = record(type, crit, buf + pos + 4, blen, &s, out);
    if (st != NKE_OK)
      return st;
    pos += 4 + blen;
  }
  memset(out, 0, sizeof(*out));
  return NKE_INCOMPLETE;
}

bool
NKE_CanGrant(const NKE_Request *rq)
{
  return rq->ntpv4 && rq->aead_siv;
}

/* One record into out at *pos; false (nothing written) if it does not fit. */
static bool
put_record(uint8_t *out, size_t cap, size_t *pos, uint16_t type, const uint8_t *body,
           size_t blen)
{
  if (blen > 0xffff || cap - *pos < 4 + blen)
    return false;
  put16(out + *pos, type);
  put16(out + *pos + 2, (uint16_t)blen);
  if (blen)
    memcpy(out + *pos + 4, body, blen);
  *pos += 4 + blen;
  return true;
}

static bool
put_grant(const NKE_Grant *g, uint8_t *out, size_t cap, size_t *pos)
{
  uint8_t port[2];
  if (g->server && !put_record(out, cap, pos, NKE_CRITICAL | NKE_REC_SERVER,
                               (const uint8_t *)g->server, strlen(g->server)))
    return false;
  put16(port, g->port);
  if (g->port && !put_record(out, cap, pos, NKE_CRITICAL | NKE_REC_PORT, port, 2))
    return false;
  for (size_t i = 0; i < g->n_cookies; i++)
    if (!put_record(out, cap, pos, NKE_REC_COOKIE, g->cookies + i * g->cookie_len,
                    g->cookie_len))
      return false;
  return true;
}

size_t
NKE_BuildResponse(const NKE_Request *rq, const NKE_Grant *g, uint8_t *out, size_t cap)
{
  uint8_t proto[2], aead[2];
  size_t pos = 0;
  bool grant = NKE_CanGrant(rq);
  put16(proto, NKE_PROTO_NTPV4);
  put16(aead, NKE_AEAD_AES_SIV_CMAC_256);
  /* the server's lists hold only what the client offered (section 4.1.2, 4.1.5) */
  if (!put_record(out, cap, &pos, NKE_CRITICAL | NKE_REC_NEXT_PROTO, proto,
                  rq->ntpv4 ? 2 : 0) ||
      !put_record(out, cap, &pos, NKE_CRITICAL | NKE_REC_AEAD, aead, rq->aead_siv ? 2 : 0) ||
      (grant && !put_grant(g, out, cap, &pos)) ||
      !put_record(out, cap, &pos, NKE_CRITICAL | NKE_REC_END, NULL, 0))
    return 0;
  return pos;
}

size_t
NKE_BuildError(uint16_t code, uint8_t *out, size_t cap)
{
  uint8_t body[2];
  size_t pos = 0;
  put16(body, code);
  if (!put_record(out, cap, &pos, NKE_CRITICAL | NKE_REC_ERROR, body, 2) ||
      !put_record(out, cap, &pos, NKE_CRITICAL | NKE_REC_END, NULL, 0))
    return 0;
  return pos;
}

uint16_t
NKE_ErrorCode(NKE_Status s)
{
  return s == NKE_UNKNOWN_CRITICAL ? NKE_ERR_UNRECOGNIZED_CRITICAL : NKE_ERR_BAD_REQUEST;
}

void
NKE_ExporterContext(uint16_t aead, bool s2c, uint8_t out[5])
{
  put16(out, NKE_PROTO_NTPV4);
  put16(out + 2, aead);
  out[4] = s2c ? 1 : 0;
}

/* ---- the client's side ---- */

size_t
NKE_BuildClientRequest(uint8_t *out, size_t cap)
{
  uint8_t proto[2], aead[2];
  size_t pos = 0;
  put16(proto, NKE_PROTO_NTPV4);
  put16(aead, NKE_AEAD_AES_SIV_CMAC_256);
  if (!put_record(out, cap, &pos, NKE_CRITICAL | NKE_REC_NEXT_PROTO, proto, 2) ||
      !put_record(out, cap, &pos, NKE_CRITICAL | NKE_REC_AEAD, aead, 2) ||
      !put_record(out, cap, &pos, NKE_CRITICAL | NKE_REC_END, NULL, 0))
    return 0;
  return pos;
}

typedef struct {
  bool next_seen, next_ok, aead_seen, aead_ok;
} RespSeen;

static NKE_RespStatus
resp_bad(NKE_Response *out, const char *why)
{
  out->why = why;
  return NKE_RESP_BAD;
}

/* The one id a server's list may hold: the one we offered (ok), none (refused), or another
 * (bad). */
static NKE_RespStatus
resp_choice(const uint8_t *body, size_t blen, uint16_t want, bool *seen, bool *ok,
            NKE_Response *out, const char *what)
{
  if (*seen)
    return resp_bad(out, what);
  *seen = true;
  if (blen == 0)
    return NKE_RESP_OK; /* refused: decided at End of Message */
  if (blen != 2 || get16(body) != want)
    return resp_bad(out, what);
  *ok = true;
  return NKE_RESP_OK;
}

static bool
server_name_ok(const uint8_t *body, size_t blen)
{
  if (blen == 0 || blen > NKE_MAX_SERVER)
    return false;
  for (size_t i = 0; i < blen; i++)
    if (body[i] <= 0x20 || body[i] >= 0x7f)
      return false;
  return true;
}

static NKE_RespStatus
resp_record(uint16_t type, bool crit, const uint8_t *buf, size_t pos, size_t blen, RespSeen *s,
            NKE_Response *out)
{
  const uint8_t *body = buf + pos + 4;
  switch (type) {
    case NKE_REC_NEXT_PROTO:
      return resp_choice(body, blen, NKE_PROTO_NTPV4, &s->next_seen, &s->next_ok, out,
                         "next protocol record repeated or not one we offered");
    case NKE_REC_AEAD:
      return resp_choice(body, blen, NKE_AEAD_AES_SIV_CMAC_256, &s->aead_seen, &s->aead_ok,
                         out, "AEAD record repeated or not one we offered");
    case NKE_REC_ERROR:
    case NKE_REC_WARNING:
      if (blen != 2)
        return resp_bad(out, "error or warning record not 2 octets");
      out->code = get16(body);
      out->why = type == NKE_REC_ERROR ? "error record" : "warning record";
      return type == NKE_REC_ERROR ? NKE_RESP_ERROR : NKE_RESP_WARNING;
    case NKE_REC_COOKIE:
      if (blen == 0 || blen > NKE_MAX_COOKIE)
        return resp_bad(out, "cookie empty or longer than 256 octets");
      if (out->n_cookies < NKE_COOKIES) {
        out->cookie_off[out->n_cookies] = (uint16_t)(pos + 4);
        out->cookie_len[out->n_cookies++] = (uint16_t)blen;
      }
      return NKE_RESP_OK;
    case NKE_REC_SERVER:
      if (out->has_server || !server_name_ok(body, blen))
        return resp_bad(out, "server record repeated, empty or not a host name");
      memcpy(out->server, body, blen);
      out->server[blen] = '\0';
      out->has_server = true;
      return NKE_RESP_OK;
    case NKE_REC_PORT:
      if (out->has_port || blen != 2 || get16(body) == 0)
        return resp_bad(out, "port record repeated, not 2 octets or zero");
      out->port = get16(body);
      out->has_port = true;
      return NKE_RESP_OK;
    default:
      return crit ? resp_bad(out, "unknown critical record") : NKE_RESP_OK;
  }
}

static NKE_RespStatus
resp_end(size_t blen, size_t pos, size_t len, const RespSeen *s, NKE_Response *out)
{
  if (blen != 0)
    return resp_bad(out, "end of message with a body");
  if (pos + 4 != len)
    return resp_bad(out, "data after end of message");
  if (!s->next_seen)
    return resp_bad(out, "no next protocol record");
  if (s->next_ok && !s->aead_seen)
    return resp_bad(out, "NTPv4 without an AEAD record");
  out->length = len;
  if (!s->next_ok || !s->aead_ok) {
    out->why = "NTPv4 or AES-SIV-CMAC-256 refused";
    return NKE_RESP_NOT_NEGOTIATED;
  }
  if (out->n_cookies == 0) {
    out->why = "no cookie";
    return NKE_RESP_NO_COOKIE;
  }
  return NKE_RESP_OK;
}

NKE_RespStatus
NKE_ParseResponse(const uint8_t *buf, size_t len, NKE_Response *out)
{
  RespSeen s = {false, false, false, false};
  size_t pos = 0;
  memset(out, 0, sizeof(*out));
  if (len > NKE_MAX_RESPONSE)
    return resp_bad(out, "response too long");
  while (len - pos >= 4) {
    uint16_t raw = get16(buf + pos), type = raw & 0x7fff;
    size_t blen = get16(buf + pos + 2);
    if (pos + 4 + blen > NKE_MAX_RESPONSE)
      return resp_bad(out, "response too long");
    if (len - pos - 4 < blen)
      break;
    if (type == NKE_REC_END)
      return resp_end(blen, pos, len, &s, out);
    NKE_RespStatus st = resp_record(type, (raw & NKE_CRITICAL) != 0, buf, pos, blen, &s, out);
    if (st != NKE_RESP_OK)
      return st;
    pos += 4 + blen;
  }
  memset(out, 0, sizeof(*out));
  out->why = "incomplete";
  return NKE_RESP_INCOMPLETE;
}

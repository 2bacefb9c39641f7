#include "ntsassoc.h"

#include <string.h>

#include <openssl/crypto.h>

#include "ntsef.h"
#include "packet.h"

void
NTA_Init(NTA_State *s)
{
  memset(s, 0, sizeof(*s));
  s->rekey = true;
}

void
NTA_Clear(NTA_State *s)
{
  OPENSSL_cleanse(s, sizeof(*s));
}

double
NTA_Backoff(unsigned failures)
{
  if (failures == 0)
    return 0;
  double b = NTA_BACKOFF_MIN;
  for (unsigned i = 1; i < failures && b < NTA_BACKOFF_MAX; i++)
    b *= 2;
  return b < NTA_BACKOFF_MAX ? b : NTA_BACKOFF_MAX;
}

static int64_t
after(int64_t now_ns, double s)
{
  return now_ns + (int64_t)(s * 1e9);
}

/* A handshake is wanted: at once after good service since the last one (or for the first),
 * else after the back-off, so a server that answers NTS-KE but never NTP is not hammered. */
static void
want_rekey(NTA_State *s, int64_t now_ns)
{
  if (s->rekey)
    return;
  s->rekey = true;
  if (s->handshakes == 0 || s->authed) {
    s->ke_due_ns = now_ns;
    return;
  }
  s->failures++;
  s->ke_due_ns = after(now_ns, NTA_Backoff(s->failures));
}

bool
NTA_KeDue(const NTA_State *s, int64_t now_ns)
{
  return s->rekey && !s->running && now_ns >= s->ke_due_ns;
}

void
NTA_KeStarted(NTA_State *s)
{
  s->running = true;
}

double
NTA_KeFailed(NTA_State *s, int64_t now_ns)
{
  s->running = false;
  s->rekey = true;
  if (s->failures < 64)
    s->failures++;
  double b = NTA_Backoff(s->failures);
  s->ke_due_ns = after(now_ns, b);
  return b;
}

bool
NTA_KeDone(NTA_State *s, const uint8_t c2s[SIV_KEY_LEN], const uint8_t s2c[SIV_KEY_LEN],
           const uint8_t *const *cookies, const uint16_t *lens, size_t n, int64_t now_ns)
{
  unsigned usable = 0;
  for (size_t i = 0; i < n; i++)
    usable += lens[i] > 0 && lens[i] <= NKE_MAX_COOKIE;
  if (usable == 0) {
    NTA_KeFailed(s, now_ns);
    return false;
  }
  /* RFC 8915 5.7: the old cookies and keys are discarded once a handshake succeeds */
  OPENSSL_cleanse(s->jar, sizeof(s->jar));
  s->n = 0;
  for (size_t i = 0; i < n && s->n < NTA_JAR; i++) {
    if (lens[i] == 0 || lens[i] > NKE_MAX_COOKIE)
      continue;
    memcpy(s->jar[s->n], cookies[i], lens[i]);
    s->jar_len[s->n++] = lens[i];
  }
  memcpy(s->c2s, c2s, SIV_KEY_LEN);
  memcpy(s->s2c, s2c, SIV_KEY_LEN);
  s->have_keys = true;
  s->pending = false;
  s->running = s->rekey = s->nak = s->authed = false;
  if (s->handshakes < 0xffffffffu)
    s->handshakes++;
  return true;
}

/* A field's whole length for a body of blen octets (RFC 7822: padded, at least 16). */
static size_t
ef_len(size_t blen)
{
  size_t f = 4 + ((blen + 3) & ~(size_t)3);
  return f < NEF_MIN_EF ? NEF_MIN_EF : f;
}

NTA_TxStatus
NTA_Seal(NTA_State *s, uint8_t *pkt, size_t cap, const uint8_t rnd[NTA_RANDOM], SIV_Ctx *siv,
         int64_t now_ns, size_t *len)
{
  *len = 0;
  if (s->nak) /* the poll after an NTSN: re-key, and use an old cookie meanwhile */
    want_rekey(s, now_ns);
  if (s->n == 0) {
    want_rekey(s, now_ns);
    return NTA_TX_NO_COOKIE;
  }
  if (!s->have_keys)
    return NTA_TX_FAIL;
  if (cap > PKT_MAX_LEN)
    cap = PKT_MAX_LEN;
  unsigned k = s->n - 1;
  size_t clen = s->jar_len[k];
  size_t fixed = PKT_HEADER_LEN + ef_len(NTA_UID_LEN) + 8 + NEF_NONCE_LEN + SIV_TAG_LEN;
  unsigned ph = NTA_JAR - s->n;
  while (ph > 0 && fixed + (1 + ph) * ef_len(clen) > cap)
    ph--;
  size_t n = NEF_BuildRequest(pkt, cap, rnd, NTA_UID_LEN, s->jar[k], clen, ph, s->c2s,
                              rnd + NTA_UID_LEN, siv);
  if (n == 0)
    return NTA_TX_FAIL;
  OPENSSL_cleanse(s->jar[k], clen); /* used once */
  s->n--;
  memcpy(s->uid, rnd, NTA_UID_LEN);
  s->pending = true;
  *len = n;
  return NTA_TX_OK;
}

static bool
is_kod(const uint8_t *pkt, size_t len)
{
  return len >= PKT_HEADER_LEN && (pkt[0] >> 6) == PKT_LEAP_UNSYNC && pkt[1] == 0;
}

NTA_RxStatus
NTA_Open(NTA_State *s, const uint8_t *pkt, size_t len, SIV_Ctx *siv, int64_t now_ns,
         unsigned *fresh)
{
  uint8_t cookies[NTA_JAR * NKE_MAX_COOKIE];
  size_t lens[NTA_JAR], n = 0;
  (void)now_ns;
  *fresh = 0;
  if (!s->pending || !s->have_keys)
    return NTA_RX_NOT_PENDING;
  NEF_ReplyStatus st = NEF_OpenReply(pkt, len, s->uid, NTA_UID_LEN, s->s2c, siv, cookies,
                                     NKE_MAX_COOKIE, lens, NTA_JAR, &n);
  if (st == NEF_REPLY_NAK) {
    s->pending = false;
    s->nak = true;
    return NTA_RX_NAK;
  }
  if (st != NEF_REPLY_OK)
    return is_kod(pkt, len) ? NTA_RX_UNAUTH_KOD : NTA_RX_UNAUTH;
  s->pending = false;
  s->authed = true;
  s->nak = false;
  s->failures = 0;
  for (size_t i = 0; i < n && s->n < NTA_JAR; i++) {
    if (lens[i] == 0 || lens[i] > NKE_MAX_COOKIE)
      continue;
    memcpy(s->jar[s->n], cookies + i * NKE_MAX_COOKIE, lens[i]);
    s->jar_len[s->n++] = (uint16_t)lens[i];
    ++*fresh;
  }
  OPENSSL_cleanse(cookies, sizeof(cookies));
  return NTA_RX_AUTH;
}

const char *
NTA_RxName(NTA_RxStatus st)
{
  static const char *const names[] = {"auth", "ntsn", "not_pending", "unauth", "unauth_kod"};
  return (unsigned)st < NTA_RX_COUNT ? names[st] : "unknown";
}

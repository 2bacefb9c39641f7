/* libFuzzer target: the NTS extension field parser and the server's answer (ntsef.c). No
 * crash, no read past the datagram; a well-formed request's fields lie inside it; an
 * opened request's reply is never larger than the request and seals; a NAK is the header
 * and the identifier. The master key is fixed (id 1, octets 0..31) so that the seed corpus
 * (fuzz/corpus/ntsef: requests sealed under it) reaches the open, build and seal paths. */
#include <stdlib.h>
#include <string.h>

#include "ntsef.h"
#include "packet.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static SIV_Ctx *siv;
static NCK_Keys keys;

static void
setup(void)
{
  uint8_t mk[SIV_KEY_LEN];
  for (int i = 0; i < SIV_KEY_LEN; i++)
    mk[i] = (uint8_t)i;
  siv = SIV_Create();
  if (!siv)
    abort();
  NCK_Rotate(&keys, 0, 1, mk);
}

static void
check_fields(const NEF_Request *r, size_t size)
{
  if ((size_t)r->uid_off + r->uid_len > size || (size_t)r->cookie_off + r->cookie_len > size ||
      (size_t)r->nonce_off + r->nonce_len > size || (size_t)r->ct_off + r->ct_len > size ||
      r->auth_off < PKT_HEADER_LEN || r->uid_len < 4 + NEF_MIN_UID)
    abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  static uint8_t out[PKT_MAX_LEN], rnd[NEF_NONCE_LEN * (1 + NEF_MAX_COOKIES)];
  if (!siv)
    setup();
  NEF_Request r;
  NEF_Status st = NEF_ParseRequest(data, size, &r);
  if (st != NEF_OK && st != NEF_NOT_NTS && st != NEF_MALFORMED)
    abort();
  if (st != NEF_OK)
    return 0;
  check_fields(&r, size);
  NEF_Session s;
  NEF_OpenStatus os = NEF_Open(data, &r, &keys, siv, &s);
  if (os == NEF_OPEN_COOKIE || os == NEF_OPEN_AUTH) {
    if (NEF_BuildNak(out, data, &r) != PKT_HEADER_LEN + (size_t)r.uid_len)
      abort();
    return 0;
  }
  if (os != NEF_OPEN_OK)
    return 0;
  if (s.want < 1 || s.want > NEF_MAX_COOKIES)
    abort();
  NEF_Pending p;
  size_t used;
  memset(out, 0, PKT_HEADER_LEN);
  size_t len =
      NEF_BuildReply(out, size, data, &r, &s, &keys, siv, rnd, sizeof(rnd), &p, &used);
  if (len == 0 || len > size || !NEF_Seal(out, &p, siv))
    abort();
  return 0;
}

/* libFuzzer target: the NTS-KE request parser and response builder, and the client's
 * response parser, on the same input (ntske.c). No crash; an accepted request's every prefix
 * is incomplete; a response always fits its bound, and our client takes what our server
 * builds; a parsed response's cookies lie inside the input. */
#include <stdlib.h>
#include <string.h>

#include "ntske.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  NKE_Response rs;
  NKE_RespStatus rst = NKE_ParseResponse(data, size, &rs);
  if (rst > NKE_RESP_NO_COOKIE || (rst == NKE_RESP_OK && rs.length != size))
    abort();
  for (size_t i = 0; rst == NKE_RESP_OK && i < rs.n_cookies; i++)
    if ((size_t)rs.cookie_off[i] + rs.cookie_len[i] > size)
      abort();
  NKE_Request rq;
  NKE_Status st = NKE_ParseRequest(data, size, &rq);
  if (st >= NKE_STATUS_COUNT)
    abort();
  uint8_t out[1200];
  if (st != NKE_OK) {
    if (st != NKE_INCOMPLETE && NKE_BuildError(NKE_ErrorCode(st), out, sizeof(out)) != 10)
      abort();
    return 0;
  }
  if (rq.length != size)
    abort();
  for (size_t n = 0; n < size; n++) {
    NKE_Request p;
    if (NKE_ParseRequest(data, n, &p) != NKE_INCOMPLETE)
      abort();
  }
  uint8_t cookies[NKE_COOKIES * 100] = {0};
  NKE_Grant g = {cookies, NKE_COOKIES, 100, "ntp.example", 123};
  size_t len = NKE_BuildResponse(&rq, &g, out, sizeof(out));
  if (len == 0 || len > sizeof(out) || (NKE_CanGrant(&rq) && len < NKE_COOKIES * 104))
    abort();
  rst = NKE_ParseResponse(out, len, &rs);
  if (rst != (NKE_CanGrant(&rq) ? NKE_RESP_OK : NKE_RESP_NOT_NEGOTIATED))
    abort();
  return 0;
}

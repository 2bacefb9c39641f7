/* libFuzzer target: the NTS-KE request parser and response builder (ntske.c). No crash; an
 * accepted request's every prefix is incomplete; a response always fits its bound. */
#include <stdlib.h>
#include <string.h>

#include "ntske.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
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
  return 0;
}

/* libFuzzer target: the metrics endpoint's HTTP request parser (http.h), whole. No crash, no
 * read past the input; HTP_OK only with a head length within the input, and the answer
 * head for every outcome fits its buffer. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  /* a copy of exactly size octets, so ASan sees any read past the end */
  char *buf = malloc(size ? size : 1);
  if (!buf)
    return 0;
  memcpy(buf, data, size);
  HTP_Request rq;
  HTP_Status st = HTP_Parse(buf, size, &rq);
  if (st == HTP_OK && (rq.length == 0 || rq.length > size))
    abort();
  if (st != HTP_OK && rq.length != 0)
    abort();
  char head[256];
  if (st != HTP_INCOMPLETE &&
      HTP_ResponseHead(HTP_Code(st), "text/plain", size, head, sizeof(head)) == 0)
    abort();
  free(buf);
  return 0;
}

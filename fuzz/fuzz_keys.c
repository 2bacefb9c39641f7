/* libFuzzer target: the keys-file parser. No crash, no leak; a table that parses can sign
 * and verify a packet with each of its keys. */
#include <stdlib.h>
#include <string.h>

#include "keys.h"
#include "fuzz_text.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  char *text = fuzz_text(data, size);
  if (!text)
    return 0;
  KEY_Errors errs;
  KEY_InitErrors(&errs);
  KEY_Table *t = KEY_ParseText("fuzz.keys", text, &errs);
  if (t) {
    CNF_KeyRange all = {1, 65535};
    KEY_SetTrusted(t, &all, 1);
    for (uint32_t id = 1; id < 20; id++) {
      uint8_t pkt[PKT_HEADER_LEN + KEY_MAX_MAC] = {0x23};
      size_t len = KEY_Sign(t, id, pkt, PKT_HEADER_LEN, sizeof(pkt));
      if (len == 0)
        continue;
      PKT_Trailer tr;
      KEY_Info info;
      if (!KEY_GetInfo(t, id, &info) || PKT_ParseTrailer(pkt, len, &tr) != PKT_TRAILER_OK)
        abort();
      KEY_Verdict v = KEY_Verify(t, pkt, len, &tr, NULL);
      if (v != (info.n_addrs ? KEY_ADDR_NOT_ALLOWED : KEY_OK))
        abort();
    }
  }
  KEY_Destroy(t);
  KEY_ClearErrors(&errs);
  free(text);
  return 0;
}

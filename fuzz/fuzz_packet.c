/* libFuzzer target: the packet codec. Decoding any datagram must not crash, a decoded header
 * must encode back to the same 48 octets, and the trailer parser must describe only octets
 * that are inside the datagram. */
#include <stdlib.h>
#include <string.h>

#include "packet.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  PKT_Header h;
  if (PKT_DecodeHeader(data, size, &h)) {
    uint8_t out[PKT_HEADER_LEN];
    PKT_EncodeHeader(&h, out);
    if (memcmp(out, data, PKT_HEADER_LEN) != 0)
      abort();
  }
  PKT_Trailer t;
  if (PKT_ParseTrailer(data, size, &t) == PKT_TRAILER_OK) {
    if (t.has_mac && (size_t)t.mac_offset + 4 + t.digest_len != size)
      abort();
    for (int i = 0; i < t.ef_count && i < PKT_MAX_EF; i++)
      if ((size_t)t.ef[i].offset + t.ef[i].length > size)
        abort();
  }
  if (size > 0) {
    (void)PKT_PeekMode(data);
    (void)PKT_PeekVersion(data);
  }
  return 0;
}

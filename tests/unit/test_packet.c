/* Unit tests for packet: header codec, trailer (EF/MAC/crypto-NAK) framing, refids. */
#include "packet.h"

#include "harness.h"

#define V4_CLIENT 0x23 /* LI 0, VN 4, mode 3 */
#define V3_CLIENT 0x1B /* LI 0, VN 3, mode 3 */

static size_t
rng_below(size_t n)
{
  return (size_t)(test_rng() % n);
}

/* A datagram of `len` octets: first octet `b0`, the rest zero. */
static void
packet_init(uint8_t *buf, size_t len, uint8_t b0)
{
  memset(buf, 0, len);
  buf[0] = b0;
}

/* Put an extension field header (type, length) at `off`; the body stays as it is. */
static void
put_ef(uint8_t *buf, size_t off, uint16_t type, uint16_t length)
{
  PKT_Put16(buf + off, type);
  PKT_Put16(buf + off + 2, length);
}

static PKT_TrailerStatus
parse(const uint8_t *buf, size_t len, PKT_Trailer *t)
{
  return PKT_ParseTrailer(buf, len, t);
}

static void
test_pkt_decode_first_octet_v4_client(void)
{
  uint8_t buf[PKT_HEADER_LEN];
  PKT_Header h;
  packet_init(buf, sizeof(buf), 0x23);
  TEST_CHECK(PKT_DecodeHeader(buf, sizeof(buf), &h));
  TEST_EQ_INT(h.leap, PKT_LEAP_NONE);
  TEST_EQ_INT(h.version, 4);
  TEST_EQ_INT(h.mode, PKT_MODE_CLIENT);
}

static void
test_pkt_decode_first_octet_unsynced_v4_server(void)
{
  uint8_t buf[PKT_HEADER_LEN];
  PKT_Header h;
  packet_init(buf, sizeof(buf), 0xE4);
  TEST_CHECK(PKT_DecodeHeader(buf, sizeof(buf), &h));
  TEST_EQ_INT(h.leap, PKT_LEAP_UNSYNC);
  TEST_EQ_INT(h.version, 4);
  TEST_EQ_INT(h.mode, PKT_MODE_SERVER);
}

static void
test_pkt_decode_first_octet_v3_client(void)
{
  uint8_t buf[PKT_HEADER_LEN];
  PKT_Header h;
  packet_init(buf, sizeof(buf), 0x1B);
  TEST_CHECK(PKT_DecodeHeader(buf, sizeof(buf), &h));
  TEST_EQ_INT(h.leap, PKT_LEAP_NONE);
  TEST_EQ_INT(h.version, 3);
  TEST_EQ_INT(h.mode, PKT_MODE_CLIENT);
}

static void
test_pkt_encode_first_octet_known_values(void)
{
  PKT_Header h;
  uint8_t buf[PKT_HEADER_LEN];
  memset(&h, 0, sizeof(h));
  h.leap = PKT_LEAP_NONE, h.version = 4, h.mode = PKT_MODE_SERVER;
  PKT_EncodeHeader(&h, buf);
  TEST_EQ_INT(buf[0], 0x24);
  h.leap = PKT_LEAP_UNSYNC;
  PKT_EncodeHeader(&h, buf);
  TEST_EQ_INT(buf[0], 0xE4);
}

static void
test_pkt_peek_matches_decode_for_every_first_octet(void)
{
  uint8_t buf[PKT_HEADER_LEN];
  PKT_Header h;
  for (int b = 0; b < 256; b++) {
    packet_init(buf, sizeof(buf), (uint8_t)b);
    PKT_DecodeHeader(buf, sizeof(buf), &h);
    TEST_EQ_INT(PKT_PeekMode(buf), h.mode);
    TEST_EQ_INT(PKT_PeekVersion(buf), h.version);
  }
}

static void
test_pkt_first_octet_roundtrip_all_values(void)
{
  uint8_t in[PKT_HEADER_LEN], out[PKT_HEADER_LEN];
  PKT_Header h;
  for (int b = 0; b < 256; b++) {
    packet_init(in, sizeof(in), (uint8_t)b);
    PKT_DecodeHeader(in, sizeof(in), &h);
    PKT_EncodeHeader(&h, out);
    TEST_EQ_INT(out[0], b);
  }
}

static void
test_pkt_decode_known_vector(void)
{
  /* A server reply laid out by hand from the RFC 5905 figure, one distinct value per field. */
  static const uint8_t buf[PKT_HEADER_LEN] = {
      0x24, 0x02, 0x06, 0xEC, /* LI0 VN4 mode4, st 2, poll 6, prec -20 */
      0x00, 0x01, 0x80, 0x00, /* root delay 1.5 s */
      0x00, 0x00, 0x00, 0x10, /* root dispersion 16/65536 s */
      0x7F, 0x00, 0x00, 0x01, /* refid 127.0.0.1 */
      0xE9, 0x00, 0x00, 0x00, 0x80, 0x00, 0x00, 0x00, /* ref */
      0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, /* org */
      0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18, /* rx */
      0xF1, 0xF2, 0xF3, 0xF4, 0xF5, 0xF6, 0xF7, 0xF8, /* tx */
  };
  PKT_Header h;
  TEST_CHECK(PKT_DecodeHeader(buf, sizeof(buf), &h));
  TEST_EQ_INT(h.stratum, 2);
  TEST_EQ_INT(h.poll, 6);
  TEST_EQ_INT(h.precision, -20);
  TEST_EQ_INT(h.root_delay, 0x00018000);
  TEST_EQ_INT(h.root_disp, 0x10);
  TEST_EQ_INT(h.refid, 0x7F000001);
  TEST_CHECK(h.ref_ts == UINT64_C(0xE900000080000000));
  TEST_CHECK(h.org_ts == UINT64_C(0x0102030405060708));
  TEST_CHECK(h.rx_ts == UINT64_C(0x1112131415161718));
  TEST_CHECK(h.tx_ts == UINT64_C(0xF1F2F3F4F5F6F7F8));
}

static void
test_pkt_decode_short_rejected(void)
{
  uint8_t buf[PKT_HEADER_LEN] = {V4_CLIENT};
  PKT_Header h;
  for (size_t len = 0; len < PKT_HEADER_LEN; len++)
    TEST_CHECK(!PKT_DecodeHeader(buf, len, &h));
  TEST_CHECK(!PKT_DecodeHeader(NULL, PKT_HEADER_LEN, &h));
}

static void
test_pkt_signed_fields_roundtrip(void)
{
  PKT_Header h, back;
  uint8_t buf[PKT_HEADER_LEN];
  memset(&h, 0, sizeof(h));
  for (int v = -128; v <= 127; v++) {
    h.poll = (int8_t)v;
    h.precision = (int8_t)(-1 - v);
    PKT_EncodeHeader(&h, buf);
    PKT_DecodeHeader(buf, sizeof(buf), &back);
    TEST_EQ_INT(back.poll, v);
    TEST_EQ_INT(back.precision, -1 - v);
  }
}

static void
test_pkt_encode_fields_at_rfc_offsets(void)
{
  PKT_Header h;
  uint8_t buf[PKT_HEADER_LEN];
  memset(&h, 0, sizeof(h));
  h.stratum = 0xA1, h.poll = -6, h.precision = 0x7F;
  h.root_delay = 0xB1B2B3B4U, h.root_disp = 0xC1C2C3C4U, h.refid = 0xD1D2D3D4U;
  h.ref_ts = UINT64_C(0x1011121314151617), h.org_ts = UINT64_C(0x2021222324252627);
  h.rx_ts = UINT64_C(0x3031323334353637), h.tx_ts = UINT64_C(0x4041424344454647);
  PKT_EncodeHeader(&h, buf);
  TEST_EQ_INT(buf[1], 0xA1);
  TEST_EQ_INT(buf[2], 0xFA);
  TEST_EQ_INT(buf[3], 0x7F);
  TEST_EQ_INT(PKT_Get32(buf + 4), 0xB1B2B3B4U);
  TEST_EQ_INT(PKT_Get32(buf + 8), 0xC1C2C3C4U);
  TEST_EQ_INT(PKT_Get32(buf + 12), 0xD1D2D3D4U);
  TEST_CHECK(PKT_Get64(buf + 16) == h.ref_ts);
  TEST_CHECK(PKT_Get64(buf + 24) == h.org_ts);
  TEST_CHECK(PKT_Get64(buf + 32) == h.rx_ts);
  TEST_CHECK(PKT_Get64(buf + 40) == h.tx_ts);
}

static void
test_pkt_encode_masks_out_of_range_bitfields(void)
{
  /* Out-of-range leap/version/mode must not spill into their neighbours in octet 0. */
  PKT_Header h;
  uint8_t buf[PKT_HEADER_LEN];
  memset(&h, 0, sizeof(h));
  h.leap = 0xFC, h.version = 0xF8 | 4, h.mode = 0xF8 | 3;
  PKT_EncodeHeader(&h, buf);
  TEST_EQ_INT(buf[0], 0x23);
}

static void
test_pkt_encode_writes_only_48_octets(void)
{
  PKT_Header h;
  uint8_t buf[PKT_HEADER_LEN + 8];
  memset(&h, 0xFF, sizeof(h));
  memset(buf, 0x5A, sizeof(buf));
  PKT_EncodeHeader(&h, buf);
  for (size_t i = PKT_HEADER_LEN; i < sizeof(buf); i++)
    TEST_EQ_INT(buf[i], 0x5A);
}

static bool
headers_equal(const PKT_Header *a, const PKT_Header *b)
{
  return a->leap == b->leap && a->version == b->version && a->mode == b->mode &&
         a->stratum == b->stratum && a->poll == b->poll && a->precision == b->precision &&
         a->root_delay == b->root_delay && a->root_disp == b->root_disp &&
         a->refid == b->refid && a->ref_ts == b->ref_ts && a->org_ts == b->org_ts &&
         a->rx_ts == b->rx_ts && a->tx_ts == b->tx_ts;
}

static void
test_pkt_decode_roundtrip(void)
{
  /* Property: every 48-octet string decodes to fields that encode back to the same octets,
   * and re-decoding gives the same fields, so no bit is lost or moved. */
  uint8_t in[PKT_HEADER_LEN], out[PKT_HEADER_LEN];
  PKT_Header h, again;
  test_rng_state = harness_seed;
  for (int i = 0; i < 5000; i++) {
    for (size_t j = 0; j < sizeof(in); j++)
      in[j] = (uint8_t)test_rng();
    TEST_CHECK(PKT_DecodeHeader(in, sizeof(in), &h));
    PKT_EncodeHeader(&h, out);
    TEST_CHECK(memcmp(in, out, sizeof(in)) == 0);
    PKT_DecodeHeader(out, sizeof(out), &again);
    TEST_CHECK(headers_equal(&h, &again));
  }
}

static void
test_pkt_trailer_none(void)
{
  uint8_t buf[PKT_HEADER_LEN];
  PKT_Trailer t;
  packet_init(buf, sizeof(buf), V4_CLIENT);
  TEST_EQ_INT(parse(buf, sizeof(buf), &t), PKT_TRAILER_OK);
  TEST_CHECK(!t.has_mac && !t.crypto_nak);
  TEST_EQ_INT(t.ef_count, 0);
}

static void
check_mac_only(uint8_t b0, size_t mac_len)
{
  uint8_t buf[PKT_HEADER_LEN + 24];
  size_t len = PKT_HEADER_LEN + mac_len;
  PKT_Trailer t;
  packet_init(buf, len, b0);
  PKT_Put32(buf + PKT_HEADER_LEN, 0x0000ABCDU);
  TEST_EQ_INT(parse(buf, len, &t), PKT_TRAILER_OK);
  TEST_CHECK(t.has_mac && !t.crypto_nak);
  TEST_EQ_INT(t.ef_count, 0);
  TEST_EQ_INT(t.key_id, 0xABCD);
  TEST_EQ_INT(t.mac_offset, PKT_HEADER_LEN);
  TEST_EQ_INT(t.digest_len, mac_len - 4);
}

static void
test_pkt_trailer_mac20(void)
{
  check_mac_only(V4_CLIENT, 20);
  check_mac_only(V3_CLIENT, 20);
}

static void
test_pkt_trailer_mac24(void)
{
  check_mac_only(V4_CLIENT, 24);
  check_mac_only(V3_CLIENT, 24);
}

static void
test_pkt_trailer_crypto_nak(void)
{
  uint8_t buf[PKT_HEADER_LEN + 4];
  PKT_Trailer t;
  const uint8_t versions[] = {V4_CLIENT, V3_CLIENT};
  for (size_t i = 0; i < sizeof(versions); i++) {
    packet_init(buf, sizeof(buf), versions[i]);
    TEST_EQ_INT(parse(buf, sizeof(buf), &t), PKT_TRAILER_OK);
    TEST_CHECK(t.crypto_nak && !t.has_mac);
  }
}

static void
test_pkt_trailer_nonzero_4_octets_rejected(void)
{
  uint8_t buf[PKT_HEADER_LEN + 4];
  PKT_Trailer t;
  packet_init(buf, sizeof(buf), V4_CLIENT);
  buf[PKT_HEADER_LEN + 3] = 1;
  TEST_EQ_INT(parse(buf, sizeof(buf), &t), PKT_TRAILER_BAD_MAC);
  TEST_CHECK(!t.crypto_nak && !t.has_mac);
}

static void
test_pkt_trailer_ef_then_mac(void)
{
  uint8_t buf[PKT_HEADER_LEN + 16 + 20];
  PKT_Trailer t;
  packet_init(buf, sizeof(buf), V4_CLIENT);
  put_ef(buf, PKT_HEADER_LEN, 0x0104, 16);
  PKT_Put32(buf + PKT_HEADER_LEN + 16, 7);
  TEST_EQ_INT(parse(buf, sizeof(buf), &t), PKT_TRAILER_OK);
  TEST_EQ_INT(t.ef_count, 1);
  TEST_EQ_INT(t.ef[0].type, 0x0104);
  TEST_EQ_INT(t.ef[0].length, 16);
  TEST_EQ_INT(t.ef[0].offset, PKT_HEADER_LEN);
  TEST_CHECK(t.has_mac);
  TEST_EQ_INT(t.key_id, 7);
  TEST_EQ_INT(t.mac_offset, PKT_HEADER_LEN + 16);
  TEST_EQ_INT(t.digest_len, 16);
}

static void
test_pkt_trailer_two_efs_then_mac24(void)
{
  uint8_t buf[PKT_HEADER_LEN + 32 + 16 + 24];
  PKT_Trailer t;
  packet_init(buf, sizeof(buf), V4_CLIENT);
  put_ef(buf, PKT_HEADER_LEN, 0x0204, 32);
  put_ef(buf, PKT_HEADER_LEN + 32, 0x0304, 16);
  TEST_EQ_INT(parse(buf, sizeof(buf), &t), PKT_TRAILER_OK);
  TEST_EQ_INT(t.ef_count, 2);
  TEST_EQ_INT(t.ef[1].type, 0x0304);
  TEST_EQ_INT(t.ef[1].offset, PKT_HEADER_LEN + 32);
  TEST_CHECK(t.has_mac);
  TEST_EQ_INT(t.mac_offset, PKT_HEADER_LEN + 48);
  TEST_EQ_INT(t.digest_len, 20);
}

static void
test_pkt_trailer_ef_alone_28(void)
{
  uint8_t buf[PKT_HEADER_LEN + 28];
  PKT_Trailer t;
  packet_init(buf, sizeof(buf), V4_CLIENT);
  put_ef(buf, PKT_HEADER_LEN, 0x0404, 28);
  TEST_EQ_INT(parse(buf, sizeof(buf), &t), PKT_TRAILER_OK);
  TEST_EQ_INT(t.ef_count, 1);
  TEST_EQ_INT(t.ef[0].length, 28);
  TEST_CHECK(!t.has_mac);
}

static void
test_pkt_trailer_ef_alone_under_28_rejected(void)
{
  /* A last EF of 16 octets with no MAC is refused (it could be mistaken for a MAC). */
  uint8_t buf[PKT_HEADER_LEN + 16];
  PKT_Trailer t;
  packet_init(buf, sizeof(buf), V4_CLIENT);
  put_ef(buf, PKT_HEADER_LEN, 0x0104, 16);
  TEST_EQ_INT(parse(buf, sizeof(buf), &t), PKT_TRAILER_BAD_MAC);
  TEST_EQ_INT(t.ef_count, 0);
}

static void
test_pkt_trailer_24_octets_is_always_mac(void)
{
  /* Even when it looks like a 24-octet EF, 24 trailing octets frame as a SHA-1 MAC. */
  uint8_t buf[PKT_HEADER_LEN + 24];
  PKT_Trailer t;
  packet_init(buf, sizeof(buf), V4_CLIENT);
  put_ef(buf, PKT_HEADER_LEN, 0x0104, 24);
  TEST_EQ_INT(parse(buf, sizeof(buf), &t), PKT_TRAILER_OK);
  TEST_CHECK(t.has_mac);
  TEST_EQ_INT(t.ef_count, 0);
  TEST_EQ_INT(t.key_id, 0x01040018);
}

static void
test_pkt_trailer_ef_length_too_short(void)
{
  static const uint16_t lengths[] = {0, 4, 8, 12};
  uint8_t buf[PKT_HEADER_LEN + 28];
  PKT_Trailer t;
  for (size_t i = 0; i < sizeof(lengths) / sizeof(lengths[0]); i++) {
    packet_init(buf, sizeof(buf), V4_CLIENT);
    put_ef(buf, PKT_HEADER_LEN, 0x0104, lengths[i]);
    TEST_EQ_INT(parse(buf, sizeof(buf), &t), PKT_TRAILER_BAD_EF);
  }
}

static void
test_pkt_trailer_ef_length_unaligned(void)
{
  uint8_t buf[PKT_HEADER_LEN + 32];
  PKT_Trailer t;
  for (uint16_t len = 17; len < 32; len++) {
    if (len % 4 == 0)
      continue;
    packet_init(buf, sizeof(buf), V4_CLIENT);
    put_ef(buf, PKT_HEADER_LEN, 0x0104, len);
    TEST_EQ_INT(parse(buf, sizeof(buf), &t), PKT_TRAILER_BAD_EF);
  }
}

/* ntpdig and chrony send SHA-256 keys' whole digest: a 36-octet trailer that is not an
 * extension field is a MAC; one that is a valid extension field stays one. */
static void
test_pkt_trailer_long_sha2_mac(void)
{
  uint8_t buf[PKT_HEADER_LEN + 36];
  PKT_Trailer t;
  packet_init(buf, sizeof(buf), V4_CLIENT);
  PKT_Put32(buf + PKT_HEADER_LEN, 3); /* key id 3: as an EF, type 0 with length 3 */
  TEST_EQ_INT(parse(buf, sizeof(buf), &t), PKT_TRAILER_OK);
  TEST_CHECK(t.has_mac);
  TEST_EQ_INT(t.key_id, 3);
  TEST_EQ_INT(t.digest_len, 32);
  TEST_EQ_INT(t.mac_offset, PKT_HEADER_LEN);
  packet_init(buf, sizeof(buf), V4_CLIENT);
  put_ef(buf, PKT_HEADER_LEN, 0x0104, 36);
  TEST_EQ_INT(parse(buf, sizeof(buf), &t), PKT_TRAILER_OK);
  TEST_CHECK(!t.has_mac);
  TEST_EQ_INT(t.ef_count, 1);
}

static void
test_pkt_trailer_ef_length_past_end(void)
{
  uint8_t buf[PKT_HEADER_LEN + 28];
  PKT_Trailer t;
  packet_init(buf, sizeof(buf), V4_CLIENT);
  put_ef(buf, PKT_HEADER_LEN, 0x0104, 32);
  TEST_EQ_INT(parse(buf, sizeof(buf), &t), PKT_TRAILER_BAD_EF);
  put_ef(buf, PKT_HEADER_LEN, 0x0104, 0xFFFC);
  TEST_EQ_INT(parse(buf, sizeof(buf), &t), PKT_TRAILER_BAD_EF);
}

static void
test_pkt_trailer_leftover_after_ef_rejected(void)
{
  /* 28 octets holding a 16-octet EF leave 12: neither an EF nor a MAC. The EF found so far is
   * still reported. */
  uint8_t buf[PKT_HEADER_LEN + 28];
  PKT_Trailer t;
  packet_init(buf, sizeof(buf), V4_CLIENT);
  put_ef(buf, PKT_HEADER_LEN, 0x0104, 16);
  TEST_EQ_INT(parse(buf, sizeof(buf), &t), PKT_TRAILER_BAD_MAC);
  TEST_EQ_INT(t.ef_count, 1);
}

static void
test_pkt_trailer_crypto_nak_after_ef_rejected(void)
{
  uint8_t buf[PKT_HEADER_LEN + 28 + 4];
  PKT_Trailer t;
  packet_init(buf, sizeof(buf), V4_CLIENT);
  put_ef(buf, PKT_HEADER_LEN, 0x0104, 28);
  TEST_EQ_INT(parse(buf, sizeof(buf), &t), PKT_TRAILER_BAD_MAC);
  TEST_CHECK(!t.crypto_nak);
}

static void
test_pkt_trailer_many_efs_counted_first_described(void)
{
  /* 10 EFs of 16 then one of 28: all 11 counted, only PKT_MAX_EF described. */
  uint8_t buf[PKT_HEADER_LEN + 10 * 16 + 28];
  PKT_Trailer t;
  packet_init(buf, sizeof(buf), V4_CLIENT);
  for (uint16_t i = 0; i < 10; i++)
    put_ef(buf, PKT_HEADER_LEN + 16u * i, (uint16_t)(0x100 + i), 16);
  put_ef(buf, PKT_HEADER_LEN + 160, 0x200, 28);
  TEST_EQ_INT(parse(buf, sizeof(buf), &t), PKT_TRAILER_OK);
  TEST_EQ_INT(t.ef_count, 11);
  TEST_EQ_INT(t.ef[PKT_MAX_EF - 1].type, 0x100 + PKT_MAX_EF - 1);
  TEST_EQ_INT(t.ef[PKT_MAX_EF - 1].offset, PKT_HEADER_LEN + 16 * (PKT_MAX_EF - 1));
  TEST_CHECK(!t.has_mac);
}

static void
test_pkt_trailer_bad_alignment(void)
{
  uint8_t buf[PKT_HEADER_LEN + 32];
  PKT_Trailer t;
  packet_init(buf, sizeof(buf), V4_CLIENT);
  for (size_t len = PKT_HEADER_LEN; len <= sizeof(buf); len++) {
    if (len % 4 != 0)
      TEST_EQ_INT(parse(buf, len, &t), PKT_TRAILER_ALIGN);
  }
}

static void
test_pkt_trailer_odd_sizes_4_to_16_rejected(void)
{
  /* Trailers of 4 (non-zero), 8, 12 and 16 octets are neither EF nor MAC, in any version. */
  uint8_t buf[PKT_HEADER_LEN + 16];
  PKT_Trailer t;
  const uint8_t versions[] = {V4_CLIENT, V3_CLIENT};
  for (size_t v = 0; v < sizeof(versions); v++) {
    for (size_t rem = 4; rem <= 16; rem += 4) {
      packet_init(buf, sizeof(buf), versions[v]);
      memset(buf + PKT_HEADER_LEN, 0x11, rem);
      TEST_EQ_INT(parse(buf, PKT_HEADER_LEN + rem, &t), PKT_TRAILER_BAD_MAC);
    }
  }
}

static void
test_pkt_trailer_lengths_0_to_47_rejected(void)
{
  uint8_t buf[PKT_HEADER_LEN] = {V4_CLIENT};
  PKT_Trailer t;
  for (size_t len = 0; len < PKT_HEADER_LEN; len++)
    TEST_EQ_INT(parse(buf, len, &t), PKT_TRAILER_SHORT);
  TEST_EQ_INT(parse(NULL, PKT_HEADER_LEN, &t), PKT_TRAILER_SHORT);
}

static void
test_pkt_trailer_v3_has_no_efs(void)
{
  /* A trailer that is a valid 28-octet EF in v4 is just a bad MAC size in v3. */
  uint8_t buf[PKT_HEADER_LEN + 28];
  PKT_Trailer t;
  packet_init(buf, sizeof(buf), V3_CLIENT);
  put_ef(buf, PKT_HEADER_LEN, 0x0404, 28);
  TEST_EQ_INT(parse(buf, sizeof(buf), &t), PKT_TRAILER_BAD_MAC);
  TEST_EQ_INT(t.ef_count, 0);
}

static void
test_pkt_trailer_over_max_len_rejected(void)
{
  static uint8_t buf[PKT_MAX_LEN + 4];
  PKT_Trailer t;
  packet_init(buf, sizeof(buf), V4_CLIENT);
  put_ef(buf, PKT_HEADER_LEN, 0x0104, (uint16_t)(sizeof(buf) - PKT_HEADER_LEN));
  TEST_EQ_INT(parse(buf, sizeof(buf), &t), PKT_TRAILER_BAD_MAC);
  TEST_EQ_INT(parse(buf, PKT_MAX_LEN, &t), PKT_TRAILER_BAD_EF); /* Length now runs past end */
}

static void
test_pkt_trailer_status_names(void)
{
  TEST_EQ_STR(PKT_TrailerStatusName(PKT_TRAILER_OK), "ok");
  TEST_EQ_STR(PKT_TrailerStatusName(PKT_TRAILER_SHORT), "short");
  TEST_EQ_STR(PKT_TrailerStatusName(PKT_TRAILER_ALIGN), "align");
  TEST_EQ_STR(PKT_TrailerStatusName(PKT_TRAILER_BAD_EF), "bad-ef");
  TEST_EQ_STR(PKT_TrailerStatusName(PKT_TRAILER_BAD_MAC), "bad-mac");
  TEST_EQ_STR(PKT_TrailerStatusName((PKT_TrailerStatus)99), "unknown");
}

/* Random trailer: mostly chains of plausible EF headers, so the walk goes deep. */
static size_t
fill_random_packet(uint8_t *buf, size_t cap)
{
  size_t len = rng_below(cap + 1);
  for (size_t i = 0; i < len; i++)
    buf[i] = (uint8_t)test_rng();
  if (len > 0)
    buf[0] = (uint8_t)((buf[0] & 0xC7) | (rng_below(4) ? 4 << 3 : (rng_below(8) << 3)));
  if (rng_below(2))
    len &= ~(size_t)3;
  for (size_t off = PKT_HEADER_LEN; off + 4 <= len && rng_below(8) != 0;) {
    size_t ef = 16 + 4 * rng_below(16);
    if (rng_below(16) == 0)
      ef = rng_below(70); /* occasionally broken */
    PKT_Put16(buf + off + 2, (uint16_t)ef);
    off += ef ? ef : 4;
  }
  return len;
}

/* What an accepted trailer promises: everything it describes lies inside the datagram. */
static void
check_trailer_in_bounds(const PKT_Trailer *t, size_t len)
{
  size_t end = t->has_mac ? t->mac_offset : len;
  for (size_t i = 0; i < t->ef_count && i < PKT_MAX_EF; i++) {
    TEST_CHECK(t->ef[i].offset >= PKT_HEADER_LEN);
    TEST_CHECK((size_t)t->ef[i].offset + t->ef[i].length <= end);
  }
  if (t->has_mac)
    TEST_CHECK((size_t)t->mac_offset + 4 + t->digest_len == len);
}

static void
test_pkt_trailer_random_never_reads_past_len(void)
{
  /* Each packet sits at the very end of its own heap block, so under ASan a read even one
   * octet past `len` aborts the test. */
  static uint8_t scratch[1400];
  test_rng_state = harness_seed;
  for (int i = 0; i < 20000; i++) {
    size_t len = fill_random_packet(scratch, sizeof(scratch));
    uint8_t *exact = malloc(len ? len : 1);
    TEST_CHECK(exact != NULL);
    if (!exact)
      return;
    memcpy(exact, scratch, len);
    PKT_Trailer t;
    PKT_TrailerStatus st = PKT_ParseTrailer(exact, len, &t);
    if (st == PKT_TRAILER_OK)
      check_trailer_in_bounds(&t, len);
    else
      TEST_CHECK(len < PKT_HEADER_LEN || len % 4 != 0 || st >= PKT_TRAILER_BAD_EF);
    free(exact);
  }
}

static void
test_pkt_refid_code_roundtrip(void)
{
  static const char *codes[] = {"GPS", "LOCL", "RATE", "X", "PPS"};
  char out[5];
  for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++) {
    PKT_RefidToCode(PKT_RefidFromCode(codes[i]), out);
    TEST_EQ_STR(out, codes[i]);
  }
  TEST_EQ_INT(PKT_RefidFromCode("GPS"), 0x47505300);
}

static void
test_pkt_refid_code_truncated_to_4(void)
{
  char out[5];
  PKT_RefidToCode(PKT_RefidFromCode("ABCDEF"), out);
  TEST_EQ_STR(out, "ABCD");
  TEST_EQ_INT(PKT_RefidFromCode(""), 0);
  TEST_EQ_INT(PKT_RefidFromCode(NULL), 0);
}

static void
test_pkt_refid_binary_is_not_a_code(void)
{
  char out[5];
  PKT_RefidToCode(0x7F000001U, out); /* an IPv4 address */
  TEST_EQ_STR(out, "");
  PKT_RefidToCode(0, out);
  TEST_EQ_STR(out, "");
  PKT_RefidToCode(0x47005053U, out); /* "G\0PS": text after the padding */
  TEST_EQ_STR(out, "");
  PKT_RefidToCode(0x47205300U, out); /* "G PS": space is not part of a code */
  TEST_EQ_STR(out, "");
}

static void
test_pkt_refid_ipv4_loopback(void)
{
  NetAddr a;
  memset(&a, 0, sizeof(a));
  a.family = ADR_INET4;
  a.bytes[0] = 127, a.bytes[3] = 1;
  TEST_EQ_INT(PKT_RefidFromAddr(&a), 0x7F000001);
}

static void
test_pkt_refid_ipv6_loopback(void)
{
  /* Expected value computed once outside this code:
   *   printf '\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\1' | openssl dgst -md5
   *   MD5(stdin)= cf404dc806178c245b5b4fe2531e6d8c
   * (python3 hashlib.md5(bytes(15) + b'\x01') agrees); refid = first four octets. */
  NetAddr a;
  memset(&a, 0, sizeof(a));
  a.family = ADR_INET6;
  a.bytes[15] = 1;
  TEST_EQ_INT(PKT_RefidFromAddr(&a), 0xCF404DC8U);
}

static void
test_pkt_refid_no_family_is_zero(void)
{
  NetAddr a;
  memset(&a, 0, sizeof(a));
  TEST_EQ_INT(PKT_RefidFromAddr(&a), 0);
  TEST_EQ_INT(PKT_RefidFromAddr(NULL), 0);
}

TEST_MAIN(
    TEST_CASE(test_pkt_decode_first_octet_v4_client),
    TEST_CASE(test_pkt_decode_first_octet_unsynced_v4_server),
    TEST_CASE(test_pkt_decode_first_octet_v3_client),
    TEST_CASE(test_pkt_encode_first_octet_known_values),
    TEST_CASE(test_pkt_peek_matches_decode_for_every_first_octet),
    TEST_CASE(test_pkt_first_octet_roundtrip_all_values),
    TEST_CASE(test_pkt_decode_known_vector), TEST_CASE(test_pkt_decode_short_rejected),
    TEST_CASE(test_pkt_signed_fields_roundtrip),
    TEST_CASE(test_pkt_encode_fields_at_rfc_offsets),
    TEST_CASE(test_pkt_encode_masks_out_of_range_bitfields),
    TEST_CASE(test_pkt_encode_writes_only_48_octets), TEST_CASE(test_pkt_decode_roundtrip),
    TEST_CASE(test_pkt_trailer_none), TEST_CASE(test_pkt_trailer_mac20),
    TEST_CASE(test_pkt_trailer_mac24), TEST_CASE(test_pkt_trailer_crypto_nak),
    TEST_CASE(test_pkt_trailer_nonzero_4_octets_rejected),
    TEST_CASE(test_pkt_trailer_ef_then_mac), TEST_CASE(test_pkt_trailer_two_efs_then_mac24),
    TEST_CASE(test_pkt_trailer_ef_alone_28),
    TEST_CASE(test_pkt_trailer_ef_alone_under_28_rejected),
    TEST_CASE(test_pkt_trailer_24_octets_is_always_mac),
    TEST_CASE(test_pkt_trailer_ef_length_too_short),
    TEST_CASE(test_pkt_trailer_ef_length_unaligned), TEST_CASE(test_pkt_trailer_long_sha2_mac),
    TEST_CASE(test_pkt_trailer_ef_length_past_end),
    TEST_CASE(test_pkt_trailer_leftover_after_ef_rejected),
    TEST_CASE(test_pkt_trailer_crypto_nak_after_ef_rejected),
    TEST_CASE(test_pkt_trailer_many_efs_counted_first_described),
    TEST_CASE(test_pkt_trailer_bad_alignment),
    TEST_CASE(test_pkt_trailer_odd_sizes_4_to_16_rejected),
    TEST_CASE(test_pkt_trailer_lengths_0_to_47_rejected),
    TEST_CASE(test_pkt_trailer_v3_has_no_efs),
    TEST_CASE(test_pkt_trailer_over_max_len_rejected),
    TEST_CASE(test_pkt_trailer_status_names),
    TEST_CASE(test_pkt_trailer_random_never_reads_past_len),
    TEST_CASE(test_pkt_refid_code_roundtrip), TEST_CASE(test_pkt_refid_code_truncated_to_4),
    TEST_CASE(test_pkt_refid_binary_is_not_a_code), TEST_CASE(test_pkt_refid_ipv4_loopback),
    TEST_CASE(test_pkt_refid_ipv6_loopback), TEST_CASE(test_pkt_refid_no_family_is_zero))

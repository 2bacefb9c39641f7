/* Unit tests for the `nts` directive (confdirs.c) and the NTS-KE ALPN choice (ntstls.c). */
#include "config.h"

#include "harness.h"
#include "ntstls.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static CNF_Config *
parse(const char *text, CNF_Errors *e, bool *ok)
{
  CNF_Config *cfg = CNF_Create();
  CNF_InitErrors(e);
  *ok = CNF_ParseText(cfg, "t.conf", text, e);
  return cfg;
}

/* The first error of text, formatted ("" if it parsed). */
static const char *
first_error(const char *text)
{
  static char buf[512];
  CNF_Errors e;
  bool ok;
  CNF_Config *cfg = parse(text, &e, &ok);
  buf[0] = '\0';
  if (e.errors.count > 0)
    CNF_FormatMessage(&e.errors.items[0], buf, sizeof(buf));
  CNF_ClearErrors(&e);
  CNF_Destroy(cfg);
  return buf;
}

static void
test_nts_defaults(void)
{
  CNF_Config *cfg = CNF_Create();
  TEST_CHECK(!cfg->nts.enable);
  TEST_EQ_INT(cfg->nts.port, 4460);
  TEST_EQ_INT(cfg->nts.aead, 15);
  TEST_CHECK(cfg->nts.cert == NULL && cfg->nts.key == NULL && cfg->nts.cookie == NULL);
  CNF_Destroy(cfg);
}

static void
test_nts_keywords_one_a_line_and_several_on_one(void)
{
  CNF_Errors e;
  bool ok;
  CNF_Config *cfg = parse("nts enable\n"
                          "nts cert /a/chain.pem key /a/key.pem\n"
                          "nts cookie /var/lib/ntpgate/cookies\n"
                          "nts ca /etc/ssl/certs mintls TLS1.3 maxtls TLSv1.3\n"
                          "nts tlsciphersuites TLS_AES_256_GCM_SHA384\n"
                          "nts tlsecdhcurves X25519:P-256 aead AES_SIV_CMAC_256 port 14460\n",
                          &e, &ok);
  TEST_CHECK(ok);
  TEST_CHECK(cfg->nts.enable);
  TEST_EQ_STR(cfg->nts.cert, "/a/chain.pem");
  TEST_EQ_STR(cfg->nts.key, "/a/key.pem");
  TEST_EQ_STR(cfg->nts.cookie, "/var/lib/ntpgate/cookies");
  TEST_EQ_STR(cfg->nts.ca, "/etc/ssl/certs");
  TEST_EQ_STR(cfg->nts.ciphersuites, "TLS_AES_256_GCM_SHA384");
  TEST_EQ_STR(cfg->nts.ecdhcurves, "X25519:P-256");
  TEST_EQ_INT(cfg->nts.aead, CNF_NTS_AEAD_AES_SIV_CMAC_256);
  TEST_EQ_INT(cfg->nts.port, 14460);
  TEST_EQ_INT(cfg->nts.line, 6);
  CNF_ClearErrors(&e);
  CNF_Destroy(cfg);
}

static void
test_nts_last_value_wins_and_disable(void)
{
  CNF_Errors e;
  bool ok;
  CNF_Config *cfg = parse("nts enable cert a key b\nnts cert c\nnts disable\n", &e, &ok);
  TEST_CHECK(ok);
  TEST_CHECK(!cfg->nts.enable);
  TEST_EQ_STR(cfg->nts.cert, "c");
  TEST_EQ_STR(cfg->nts.key, "b");
  CNF_ClearErrors(&e);
  CNF_Destroy(cfg);
}

static void
test_nts_errors_name_file_and_line(void)
{
  TEST_EQ_STR(
      first_error("\nnts mintls TLS1.2\n"),
      "t.conf:2: nts: mintls TLS1.2: NTS-KE runs over TLS 1.3 only (RFC 8915 section 3)");
  TEST_EQ_STR(first_error("nts maxtls SSL3\n"),
              "t.conf:1: nts: maxtls: unknown TLS version 'SSL3' (TLS1.3)");
  TEST_EQ_STR(
      first_error("nts aead AES_SIV_CMAC_512\n"),
      "t.conf:1: nts: aead 'AES_SIV_CMAC_512' is not supported (only AES_SIV_CMAC_256)");
  TEST_EQ_STR(first_error("nts port 0\n"),
              "t.conf:1: nts: NTS-KE port 0 is out of range 1..65535");
  TEST_EQ_STR(first_error("nts port 65536\n"),
              "t.conf:1: nts: NTS-KE port 65536 is out of range 1..65535");
  TEST_EQ_STR(first_error("nts enable bogus\n"), "t.conf:1: nts: unknown keyword 'bogus'");
  TEST_EQ_STR(first_error("nts\n"), "t.conf:1: nts: missing keyword");
  TEST_CHECK(strstr(first_error("nts cert\n"), "t.conf:1: nts:") != NULL);
  TEST_CHECK(strstr(first_error("nts key\n"), "private key file") != NULL);
}

static void
test_nts_client_options(void)
{
  CNF_Errors e;
  bool ok;
  CNF_Config *cfg = parse("server 192.0.2.1 nts ca /etc/ca.pem port 4461 iburst\n"
                          "pool pool.example nts noval\n"
                          "server ntp.example nts\n",
                          &e, &ok);
  TEST_CHECK(ok);
  TEST_EQ_INT(cfg->n_assocs, 3);
  TEST_CHECK(cfg->assocs[0].options & CNF_AO_NTS);
  TEST_EQ_STR(cfg->assocs[0].ca, "/etc/ca.pem");
  TEST_EQ_INT(cfg->assocs[0].ke_port, 4461); /* with nts, port is the NTS-KE port */
  TEST_EQ_INT(cfg->assocs[0].port, 123);
  TEST_CHECK((cfg->assocs[1].options & (CNF_AO_NTS | CNF_AO_NOVAL)) ==
             (CNF_AO_NTS | CNF_AO_NOVAL));
  TEST_CHECK(cfg->assocs[1].ca == NULL);
  TEST_EQ_INT(cfg->assocs[2].ke_port, 0); /* the `nts port` default, 4460 */
  CNF_ClearErrors(&e);
  CNF_Destroy(cfg);
  TEST_EQ_STR(first_error("server 192.0.2.1 ca /x\n"),
              "t.conf:1: server: 'ca' and 'noval' apply to NTS sources only: add 'nts'");
  TEST_EQ_STR(first_error("\nserver 192.0.2.1 noval\n"),
              "t.conf:2: server: 'ca' and 'noval' apply to NTS sources only: add 'nts'");
  TEST_EQ_STR(first_error("server 192.0.2.1 nts ca\n"),
              "t.conf:1: server: missing value for ca");
  TEST_EQ_STR(
      first_error("peer 192.0.2.1 nts\n"),
      "t.conf:1: peer: NTS is for 'server' and 'pool' lines (RFC 8915 has no symmetric "
      "mode)");
  TEST_EQ_STR(first_error("server 192.0.2.1 nts key 3\n"),
              "t.conf:1: server: 'nts' and 'key' exclude each other: NTS authenticates the "
              "source");
  TEST_EQ_STR(first_error("pool p.example nts version 3\n"),
              "t.conf:1: pool: NTS needs NTP version 4, not 3");
  cfg = parse("server 192.0.2.1 nts ca /x noval\n", &e, &ok);
  TEST_CHECK(ok);
  TEST_EQ_INT(e.warnings.count, 1);
  CNF_ClearErrors(&e);
  CNF_Destroy(cfg);
}

static void
test_nts_tlsciphers_warns(void)
{
  CNF_Errors e;
  bool ok;
  CNF_Config *cfg = parse("nts tlsciphers HIGH\n", &e, &ok);
  TEST_CHECK(ok);
  TEST_EQ_INT(e.warnings.count, 1);
  CNF_ClearErrors(&e);
  CNF_Destroy(cfg);
}

static void
test_alpn_picks_ntske_only(void)
{
  const unsigned char *out = NULL;
  unsigned char outlen = 0;
  static const unsigned char both[] = "\x02h2\x07ntske/1";
  TEST_CHECK(NTL_SelectAlpn(both, sizeof(both) - 1, &out, &outlen));
  TEST_EQ_INT(outlen, 7);
  TEST_CHECK(out == both + 4 && memcmp(out, "ntske/1", 7) == 0);
  static const unsigned char h2[] = "\x02h2\x08http/1.1";
  TEST_CHECK(!NTL_SelectAlpn(h2, sizeof(h2) - 1, &out, &outlen));
  static const unsigned char near[] = "\x07ntske/2\x08ntske/10";
  TEST_CHECK(!NTL_SelectAlpn(near, sizeof(near) - 1, &out, &outlen));
  /* a length running past the end, and a zero length, end the list */
  static const unsigned char over[] = "\x09ntske/1";
  TEST_CHECK(!NTL_SelectAlpn(over, sizeof(over) - 1, &out, &outlen));
  static const unsigned char zero[] = "\x00\x07ntske/1";
  TEST_CHECK(!NTL_SelectAlpn(zero, sizeof(zero) - 1, &out, &outlen));
  TEST_CHECK(!NTL_SelectAlpn(NULL, 0, &out, &outlen));
}

static void
test_server_context_needs_cert_and_key(void)
{
  CNF_Nts n = {.enable = true, .aead = 15, .port = 4460};
  char why[256] = "";
  TEST_CHECK(NTL_CreateServer(&n, why, sizeof(why)) == NULL);
  TEST_CHECK(strstr(why, "nts cert FILE") != NULL);
  n.cert = (char *)"/nonexistent/chain.pem";
  n.key = (char *)"/nonexistent/key.pem";
  TEST_CHECK(NTL_CreateServer(&n, why, sizeof(why)) == NULL);
  TEST_CHECK(strstr(why, "cannot load the certificate chain /nonexistent/chain.pem") != NULL);
}

/* The client's context: a CA that cannot be read or holds no certificate is refused with
 * the reason; the system's store and noval (which reads no CA) are taken. */
static void
test_client_context_checks_the_ca(void)
{
  char why[512] = "";
  TEST_CHECK(NTL_CreateClient("/nonexistent/ca.pem", false, why, sizeof(why)) == NULL);
  TEST_CHECK(strstr(why, "cannot read the CA /nonexistent/ca.pem") != NULL);
  char path[] = "/tmp/ntpg-ntsconf-XXXXXX";
  int fd = mkstemp(path);
  TEST_CHECK(fd >= 0);
  TEST_CHECK(write(fd, "not a certificate\n", 18) == 18);
  close(fd);
  TEST_CHECK(NTL_CreateClient(path, false, why, sizeof(why)) == NULL);
  TEST_CHECK(strstr(why, "cannot load the CA file") != NULL);
  NTL_Ctx *c = NTL_CreateClient(path, true, why, sizeof(why));
  TEST_CHECK(c != NULL);
  NTL_Destroy(c);
  unlink(path);
  c = NTL_CreateClient(NULL, false, why, sizeof(why));
  TEST_CHECK(c != NULL);
  NTL_Destroy(c);
}

TEST_MAIN(TEST_CASE(test_nts_defaults),
          TEST_CASE(test_nts_keywords_one_a_line_and_several_on_one),
          TEST_CASE(test_nts_last_value_wins_and_disable),
          TEST_CASE(test_nts_errors_name_file_and_line), TEST_CASE(test_nts_client_options),
          TEST_CASE(test_nts_tlsciphers_warns), TEST_CASE(test_alpn_picks_ntske_only),
          TEST_CASE(test_server_context_needs_cert_and_key),
          TEST_CASE(test_client_context_checks_the_ca))

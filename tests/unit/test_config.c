/* Unit tests for the ntp.conf parser (config.c). */
#include "config.h"

#include "harness.h"
#include "monitor.h"
#include "runtime.h"
#include "shed.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- helpers ---- */

/* Parse text as "t.conf" into a fresh config; *ok gets the return value. */
static CNF_Config *
parse(const char *text, CNF_Errors *e, bool *ok)
{
  CNF_Config *cfg = CNF_Create();
  CNF_InitErrors(e);
  bool r = CNF_ParseText(cfg, "t.conf", text, e);
  if (ok)
    *ok = r;
  return cfg;
}

static const char *
fmt_msg(const CNF_MessageList *l, size_t i)
{
  static char buf[512];
  if (i >= l->count)
    return "(no such message)";
  CNF_FormatMessage(&l->items[i], buf, sizeof(buf));
  return buf;
}

static const char *
err(const CNF_Errors *e, size_t i)
{
  return fmt_msg(&e->errors, i);
}

static const char *
wrn(const CNF_Errors *e, size_t i)
{
  return fmt_msg(&e->warnings, i);
}

/* The one error a one-line text produces. */
static const char *
only_error(const char *text)
{
  static char buf[1024];
  CNF_Errors e;
  bool ok;
  CNF_Config *cfg = parse(text, &e, &ok);
  if (ok || e.errors.count != 1)
    snprintf(buf, sizeof(buf), "(ok=%d, %zu errors) %s", ok, e.errors.count, err(&e, 0));
  else
    snprintf(buf, sizeof(buf), "%s", err(&e, 0));
  CNF_ClearErrors(&e);
  CNF_Destroy(cfg);
  return buf;
}

static bool
clean_parse(const char *text, CNF_Config **out)
{
  CNF_Errors e;
  bool ok;
  *out = parse(text, &e, &ok);
  for (size_t i = 0; i < e.errors.count; i++)
    fprintf(stderr, "  unexpected error: %s\n", err(&e, i));
  ok = ok && e.errors.count == 0 && e.warnings.count == 0;
  for (size_t i = 0; i < e.warnings.count; i++)
    fprintf(stderr, "  unexpected warning: %s\n", wrn(&e, i));
  CNF_ClearErrors(&e);
  return ok;
}

static const char *
addr_str(const NetAddr *a)
{
  static char buf[ADR_STRLEN];
  return ADR_Format(a, buf, sizeof(buf));
}

/* ---- defaults and lexical rules ---- */

static void
test_defaults(void)
{
  CNF_Config *c = CNF_Create();
  TEST_CHECK(c != NULL);
  TEST_EQ_INT(c->n_assocs, 0);
  TEST_EQ_INT(c->n_restricts, 0);
  TEST_EQ_INT(c->port, 123);
  TEST_EQ_INT(c->threads, 0);
  TEST_EQ_INT(c->discard.average, 3);
  TEST_EQ_INT(c->discard.minimum, 2);
  TEST_EQ_INT(c->discard.monitor, 3000);
  TEST_EQ_INT(c->discard.leak, 4);
  TEST_EQ_INT(c->discard.kodlimit, 1);
  TEST_EQ_INT(c->discard.netprefix4, 0);
  TEST_EQ_INT(c->discard.netprefix6, 0);
  TEST_EQ_INT(c->discard.netaverage, -3);
  TEST_CHECK(c->mru.max.in_kib && c->mru.max.value == 1024);
  TEST_CHECK(c->mru.init.in_kib && c->mru.init.value == 4);
  TEST_CHECK(c->mru.inc.in_kib && c->mru.inc.value == 4);
  TEST_EQ_INT(c->mru.mindepth, 600);
  TEST_EQ_INT(c->mru.maxage, 64);
  TEST_EQ_INT(c->tos.orphan, 0);
  TEST_EQ_INT(c->tos.orphanwait, 300);
  TEST_EQ_INT(c->tos.minclock, 3);
  TEST_EQ_INT(c->tos.minsane, 1);
  TEST_EQ_INT(c->tos.maxclock, 10);
  TEST_NEAR(c->tos.maxdist, 1.5, 1e-12);
  TEST_NEAR(c->tos.mindist, 0.001, 1e-12);
  TEST_EQ_INT(c->tos.floor, 1);
  TEST_EQ_INT(c->tos.ceiling, 15);
  TEST_CHECK(c->sw.auth && c->sw.kernel && c->sw.monitor && c->sw.ntp);
  TEST_CHECK(!c->sw.bclient && !c->sw.calibrate && c->sw.stats && !c->sw.mode7);
  TEST_CHECK(!c->local_clock.configured);
  TEST_EQ_INT(c->local_clock.stratum, 5);
  TEST_EQ_STR(c->local_clock.refid, "LOCL");
  TEST_CHECK(c->driftfile == NULL && c->keysfile == NULL);
  TEST_EQ_INT(c->control_key, 0);
  CNF_Destroy(c);
  CNF_Destroy(NULL);
}

static void
test_comments_blanks_quotes_crlf(void)
{
  CNF_Config *c;
  TEST_CHECK(clean_parse("# comment\n"
                         "\n"
                         "   \t  \n"
                         "  # indented comment\n"
                         "driftfile \"/var/lib/my dir/drift\"  # trailing comment\n"
                         "logfile /var/log/ntp#1.log\r\n"
                         "port 1123",
                         &c));
  TEST_EQ_STR(c->driftfile, "/var/lib/my dir/drift");
  TEST_EQ_STR(c->logfile, "/var/log/ntp#1.log");
  TEST_EQ_INT(c->port, 1123);
  CNF_Destroy(c);
  TEST_EQ_STR(only_error("\n\nlogfile \"/x y\n"), "t.conf:3: unterminated quoted string");
  TEST_EQ_STR(only_error("logfile \"/x\"y\n"), "t.conf:1: missing space after quoted string");
}

/* ---- associations ---- */

static void
test_server_pool_peer(void)
{
  CNF_Config *c;
  TEST_CHECK(clean_parse("server 192.0.2.1 iburst\n"
                         "pool pool.ntp.org iburst burst prefer noselect true\n"
                         "peer -6 peer.example.net key 42 version 3 minpoll 4 maxpoll 8\n"
                         "server ::1 port 12345 minpoll 0 maxpoll 17\n"
                         "server -4 time.example.com\n",
                         &c));
  TEST_EQ_INT(c->n_assocs, 5);
  const CNF_Assoc *s = &c->assocs[0];
  TEST_EQ_INT(s->type, CNF_SERVER);
  TEST_EQ_STR(s->host, "192.0.2.1");
  TEST_CHECK(s->numeric && s->addr.family == ADR_INET4);
  TEST_EQ_INT(s->port, 123);
  TEST_EQ_INT(s->addr.port, 123);
  TEST_EQ_INT(s->options, CNF_AO_IBURST);
  TEST_EQ_INT(s->minpoll, 6);
  TEST_EQ_INT(s->maxpoll, 10);
  TEST_EQ_INT(s->version, 4);
  TEST_EQ_INT(s->key, 0);
  TEST_EQ_INT(s->line, 1);
  s = &c->assocs[1];
  TEST_EQ_INT(s->type, CNF_POOL);
  TEST_CHECK(!s->numeric);
  TEST_EQ_STR(s->host, "pool.ntp.org");
  TEST_EQ_INT(s->options,
              CNF_AO_IBURST | CNF_AO_BURST | CNF_AO_PREFER | CNF_AO_NOSELECT | CNF_AO_TRUE);
  s = &c->assocs[2];
  TEST_EQ_INT(s->type, CNF_PEER);
  TEST_EQ_INT(s->family, ADR_INET6);
  TEST_EQ_INT(s->key, 42);
  TEST_EQ_INT(s->version, 3);
  TEST_EQ_INT(s->minpoll, 4);
  TEST_EQ_INT(s->maxpoll, 8);
  s = &c->assocs[3];
  TEST_CHECK(s->numeric && s->addr.family == ADR_INET6);
  TEST_EQ_INT(s->port, 12345);
  TEST_EQ_INT(s->addr.port, 12345);
  TEST_EQ_INT(s->minpoll, 0);
  TEST_EQ_INT(s->maxpoll, 17);
  TEST_EQ_INT(c->assocs[4].family, ADR_INET4);
  TEST_EQ_STR(c->assocs[4].host, "time.example.com");
  CNF_Destroy(c);
}

static void
test_server_poll_rules(void)
{
  CNF_Config *c;
  TEST_CHECK(clean_parse("server a.example minpoll 12\nserver b.example maxpoll 4\n", &c));
  TEST_EQ_INT(c->assocs[0].minpoll, 12);
  TEST_EQ_INT(c->assocs[0].maxpoll, 12);
  TEST_EQ_INT(c->assocs[1].minpoll, 4);
  TEST_EQ_INT(c->assocs[1].maxpoll, 4);
  CNF_Destroy(c);
  TEST_EQ_STR(only_error("server a.example minpoll 9 maxpoll 8"),
              "t.conf:1: server: minpoll 9 is greater than maxpoll 8");
  TEST_EQ_STR(only_error("server a.example minpoll 18"),
              "t.conf:1: server: minpoll 18 is out of range 0..17");
  TEST_EQ_STR(only_error("server a.example maxpoll -1"),
              "t.conf:1: server: maxpoll -1 is out of range 0..17");
  TEST_EQ_STR(only_error("server a.example key 0"),
              "t.conf:1: server: key 0 is out of range 1..65535");
  TEST_EQ_STR(only_error("server a.example key 65536"),
              "t.conf:1: server: key 65536 is out of range 1..65535");
  TEST_EQ_STR(only_error("server a.example version 5"),
              "t.conf:1: server: version 5 is out of range 1..4");
  TEST_EQ_STR(only_error("server a.example port 0"),
              "t.conf:1: server: port 0 is out of range 1..65535");
  TEST_EQ_STR(only_error("server a.example minpoll"),
              "t.conf:1: server: missing value for minpoll");
  TEST_EQ_STR(only_error("server a.example minpoll six"),
              "t.conf:1: server: minpoll 'six' is not a number");
  TEST_EQ_STR(only_error("server a.example minpoll 99999999999999999999999"),
              "t.conf:1: server: minpoll 99999999999999999999999 is out of range 0..17");
  TEST_EQ_STR(only_error("server a.example frobnicate"),
              "t.conf:1: server: unknown option 'frobnicate'");
  /* ntpd's and NTPsec's other options: a warning where ignoring them changes nothing
   * relied on (Ubuntu's ntpsec default has `pool ... iburst preempt`), else an error */
  CNF_Errors e;
  bool ok;
  CNF_Config *pc = parse("pool 0.ubuntu.pool.ntp.org iburst preempt\n"
                         "server b.example ttl 3 xleave\n",
                         &e, &ok);
  TEST_CHECK(ok);
  TEST_EQ_INT(pc->n_assocs, 2);
  TEST_EQ_INT(e.warnings.count, 3);
  TEST_EQ_STR(wrn(&e, 0), "t.conf:1: pool: option 'preempt' has no effect here: a pool member "
                          "that stops answering or refuses us is replaced anyway");
  CNF_ClearErrors(&e);
  CNF_Destroy(pc);
  TEST_EQ_STR(only_error("server time.cloudflare.com nts"),
              "t.conf:1: server: option 'nts' is not supported: ntpgated serves NTS ('nts "
              "enable') but is not yet an NTS client; use symmetric keys ('key N')");
  TEST_EQ_STR(only_error("server a.example autokey"),
              "t.conf:1: server: option 'autokey' is not supported: Autokey is not supported; "
              "use symmetric keys ('key N')");
  TEST_EQ_STR(only_error("server"), "t.conf:1: server: missing address or host name");
  TEST_EQ_STR(only_error("server -4"), "t.conf:1: server: missing address or host name");
  TEST_EQ_STR(only_error("server 10.0.0.256"),
              "t.conf:1: server: bad address or host name '10.0.0.256'");
  TEST_EQ_STR(only_error("server bad!name"),
              "t.conf:1: server: bad address or host name 'bad!name'");
  TEST_EQ_STR(only_error("server -6 192.0.2.1"),
              "t.conf:1: server: '192.0.2.1' is not an IPv6 address");
  TEST_EQ_STR(
      only_error("server 224.0.1.1"),
      "t.conf:1: server: multicast address '224.0.1.1': broadcast and manycast are not "
      "supported");
}

static void
test_local_clock(void)
{
  CNF_Config *c;
  TEST_CHECK(clean_parse("server 127.127.1.0 prefer minpoll 4 maxpoll 4\n"
                         "fudge 127.127.1.0 stratum 10 refid XLOC\n",
                         &c));
  TEST_EQ_INT(c->n_assocs, 0);
  TEST_CHECK(c->local_clock.configured);
  TEST_CHECK(c->local_clock.fudged);
  TEST_EQ_INT(c->local_clock.unit, 0);
  TEST_EQ_INT(c->local_clock.minpoll, 4);
  TEST_EQ_INT(c->local_clock.options, CNF_AO_PREFER);
  TEST_EQ_INT(c->local_clock.stratum, 10);
  TEST_EQ_STR(c->local_clock.refid, "XLOC");
  CNF_Destroy(c);

  TEST_CHECK(clean_parse("server 127.127.1.2\n", &c));
  TEST_EQ_INT(c->local_clock.unit, 2);
  TEST_EQ_INT(c->local_clock.stratum, 5);
  TEST_EQ_STR(c->local_clock.refid, "LOCL");
  CNF_Destroy(c);

  TEST_EQ_STR(only_error("fudge 127.127.1.0 stratum 16"),
              "t.conf:1: fudge: stratum 16 is out of range 0..15");
  TEST_EQ_STR(only_error("fudge 127.127.1.0 refid TOOLONG"),
              "t.conf:1: fudge: refid 'TOOLONG' must be 1 to 4 printable ASCII characters");
  TEST_EQ_STR(only_error("fudge 192.0.2.1 stratum 3"),
              "t.conf:1: fudge: '192.0.2.1' is not a reference clock address (127.127.t.u)");
  TEST_EQ_STR(only_error("server 127.127.20.0"),
              "t.conf:1: server: reference clock type 20 is not supported (only the LOCAL "
              "driver, 127.127.1.u)");
  TEST_EQ_STR(only_error("server 127.127.1.4"),
              "t.conf:1: server: local clock unit 4 is out of range 0..3");
  TEST_EQ_STR(only_error("pool 127.127.1.0"),
              "t.conf:1: pool: a reference clock address is only valid with 'server'");
  TEST_EQ_STR(only_error("server 127.127.1.0\nserver 127.127.1.1"),
              "t.conf:2: server: the local clock is already configured");

  CNF_Errors e;
  bool ok;
  c = parse("fudge 127.127.1.0 stratum 8\n", &e, &ok);
  TEST_CHECK(ok);
  TEST_EQ_INT(e.warnings.count, 1);
  TEST_EQ_STR(wrn(&e, 0),
              "t.conf: fudge 127.127.1.0 has no effect: no 'server 127.127.1.0' line");
  CNF_ClearErrors(&e);
  CNF_Destroy(c);

  c = parse("server 127.127.1.0 iburst\nfudge 127.127.1.0 time1 0.5\n", &e, &ok);
  TEST_CHECK(ok);
  TEST_EQ_INT(e.warnings.count, 2);
  TEST_EQ_STR(wrn(&e, 0), "t.conf:1: server: iburst, burst, key, version and port have no "
                          "effect on the local clock");
  TEST_EQ_STR(wrn(&e, 1), "t.conf:2: fudge: 'time1' has no effect on the local clock");
  CNF_ClearErrors(&e);
  CNF_Destroy(c);
}

/* ---- restrict ---- */

static void
test_restrict_default_forms(void)
{
  CNF_Config *c;
  TEST_CHECK(clean_parse("restrict default kod limited nomodify\n"
                         "restrict -4 default noquery\n"
                         "restrict -6 default ignore\n",
                         &c));
  TEST_EQ_INT(c->n_restricts, 4);
  const CNF_Restrict *r = c->restricts;
  TEST_EQ_INT(r[0].kind, CNF_RST_DEFAULT);
  TEST_EQ_INT(r[0].op, CNF_RST_ADD);
  TEST_EQ_INT(r[0].family, ADR_INET4);
  TEST_EQ_INT(r[1].family, ADR_INET6);
  TEST_EQ_INT(r[0].flags, RST_KOD | RST_LIMITED | RST_NOMODIFY);
  TEST_EQ_INT(r[1].flags, RST_KOD | RST_LIMITED | RST_NOMODIFY);
  TEST_EQ_INT(r[0].prefix, 0);
  TEST_EQ_INT(r[0].mask.family, ADR_INET4);
  TEST_EQ_INT(r[1].addr.family, ADR_INET6);
  TEST_EQ_INT(r[0].ippeerlimit, -1);
  TEST_EQ_INT(r[0].line, 1);
  TEST_EQ_INT(r[1].line, 1);
  TEST_EQ_INT(r[2].family, ADR_INET4);
  TEST_EQ_INT(r[2].flags, RST_NOQUERY);
  TEST_EQ_INT(r[3].family, ADR_INET6);
  TEST_EQ_INT(r[3].flags, RST_IGNORE);
  CNF_Destroy(c);
}

static void
test_restrict_addresses(void)
{
  CNF_Config *c;
  TEST_CHECK(clean_parse("restrict 192.0.2.7\n"
                         "restrict 10.0.0.0 mask 255.0.0.0 nomodify\n"
                         "restrict 172.16.0.0/12 noquery\n"
                         "restrict 2001:db8:: mask ffff:ffff:: notrust\n"
                         "restrict 2001:db8:1::/48 ntpport\n"
                         "restrict ::1\n"
                         "restrict -6 fe80::/10\n",
                         &c));
  TEST_EQ_INT(c->n_restricts, 7);
  const CNF_Restrict *r = c->restricts;
  TEST_EQ_INT(r[0].kind, CNF_RST_ADDR);
  TEST_EQ_STR(addr_str(&r[0].addr), "192.0.2.7");
  TEST_EQ_STR(addr_str(&r[0].mask), "255.255.255.255");
  TEST_EQ_INT(r[0].prefix, 32);
  TEST_EQ_INT(r[0].flags, 0);
  TEST_EQ_STR(addr_str(&r[1].mask), "255.0.0.0");
  TEST_EQ_INT(r[1].prefix, 8);
  TEST_EQ_INT(r[1].flags, RST_NOMODIFY);
  TEST_EQ_STR(addr_str(&r[2].addr), "172.16.0.0");
  TEST_EQ_STR(addr_str(&r[2].mask), "255.240.0.0");
  TEST_EQ_INT(r[2].prefix, 12);
  TEST_EQ_INT(r[3].family, ADR_INET6);
  TEST_EQ_INT(r[3].prefix, 32);
  TEST_EQ_INT(r[3].flags, RST_NOTRUST);
  TEST_EQ_INT(r[4].prefix, 48);
  TEST_EQ_INT(r[4].flags, 0);
  TEST_EQ_INT(r[4].match, RST_M_NTPPORT);
  TEST_EQ_STR(addr_str(&r[4].mask), "ffff:ffff:ffff::");
  TEST_EQ_INT(r[5].prefix, 128);
  TEST_EQ_STR(addr_str(&r[5].addr), "::1");
  TEST_EQ_INT(r[6].prefix, 10);
  CNF_Destroy(c);
}

static void
test_restrict_masks_bits_outside(void)
{
  CNF_Errors e;
  bool ok;
  CNF_Config *c =
      parse("restrict 10.1.2.3 mask 255.255.0.0\nrestrict 2001:db8::1/32\n", &e, &ok);
  TEST_CHECK(ok);
  TEST_EQ_INT(c->n_restricts, 2);
  TEST_EQ_STR(addr_str(&c->restricts[0].addr), "10.1.0.0");
  TEST_EQ_STR(addr_str(&c->restricts[1].addr), "2001:db8::");
  TEST_EQ_INT(e.warnings.count, 2);
  TEST_EQ_STR(
      wrn(&e, 0),
      "t.conf:1: restrict: address 10.1.2.3 has bits outside its /16 mask; using 10.1.0.0");
  TEST_EQ_STR(wrn(&e, 1), "t.conf:2: restrict: address 2001:db8::1 has bits outside its /32 "
                          "mask; using 2001:db8::");
  CNF_ClearErrors(&e);
  CNF_Destroy(c);

  TEST_EQ_STR(only_error("restrict 10.0.0.0 mask 255.0.255.0"),
              "t.conf:1: restrict: mask 255.0.255.0 has holes");
  TEST_EQ_STR(only_error("restrict 2001:db8:: mask ffff:0:ffff::"),
              "t.conf:1: restrict: mask ffff:0:ffff:: has holes");
  TEST_EQ_STR(only_error("restrict 10.0.0.0 mask ffff::"),
              "t.conf:1: restrict: mask ffff:: is not an IPv4 mask");
  TEST_EQ_STR(only_error("restrict 10.0.0.0 mask 255.0.0.300"),
              "t.conf:1: restrict: bad mask '255.0.0.300'");
  TEST_EQ_STR(only_error("restrict 10.0.0.0 mask"),
              "t.conf:1: restrict: missing value for mask");
  TEST_EQ_STR(only_error("restrict 10.0.0.0/33"),
              "t.conf:1: restrict: bad prefix length in '10.0.0.0/33'");
  TEST_EQ_STR(only_error("restrict 2001:db8::/129"),
              "t.conf:1: restrict: bad prefix length in '2001:db8::/129'");
  TEST_EQ_STR(only_error("restrict 10.0.0.0/x"),
              "t.conf:1: restrict: bad prefix length in '10.0.0.0/x'");
  TEST_EQ_STR(only_error("restrict 10.0.0.0/8 mask 255.0.0.0"),
              "t.conf:1: restrict: give either /prefix or mask, not both");
  TEST_EQ_STR(only_error("restrict 10.0.0.999"),
              "t.conf:1: restrict: bad address '10.0.0.999'");
  TEST_EQ_STR(only_error("restrict 2001:db8:::1"),
              "t.conf:1: restrict: bad address '2001:db8:::1'");
  TEST_EQ_STR(only_error("restrict -4 ::1"),
              "t.conf:1: restrict: '::1' is not an IPv4 address");
  TEST_EQ_STR(only_error("restrict default mask 255.0.0.0"),
              "t.conf:1: restrict: mask is only valid after an address");
}

static void
test_restrict_host_and_source(void)
{
  CNF_Config *c;
  TEST_CHECK(clean_parse("restrict -4 ntp.example.org nomodify\n"
                         "restrict -6 ntp.example.org\n"
                         "restrict any.example.org\n"
                         "restrict source ippeerlimit 3 nomodify noquery\n",
                         &c));
  TEST_EQ_INT(c->n_restricts, 4);
  const CNF_Restrict *r = c->restricts;
  TEST_EQ_INT(r[0].kind, CNF_RST_HOST);
  TEST_EQ_STR(r[0].host, "ntp.example.org");
  TEST_EQ_INT(r[0].family, ADR_INET4);
  TEST_EQ_INT(r[0].prefix, -1);
  TEST_EQ_INT(r[1].family, ADR_INET6);
  TEST_EQ_INT(r[2].family, ADR_NONE);
  TEST_EQ_INT(r[3].kind, CNF_RST_SOURCE);
  TEST_EQ_INT(r[3].match, RST_M_SOURCE);
  TEST_EQ_INT(r[3].ippeerlimit, 3);
  TEST_EQ_INT(r[3].flags, RST_NOMODIFY | RST_NOQUERY);
  TEST_CHECK(r[3].host == NULL);
  CNF_Destroy(c);

  CNF_Errors e;
  bool ok;
  c = parse("restrict -4 host.example mask 255.255.255.0\n", &e, &ok);
  TEST_CHECK(ok);
  TEST_EQ_STR(wrn(&e, 0), "t.conf:1: restrict: mask ignored for host name 'host.example'");
  CNF_ClearErrors(&e);
  CNF_Destroy(c);
  TEST_EQ_STR(only_error("restrict -6 source"),
              "t.conf:1: restrict: -4/-6 cannot be used with 'source'");
  TEST_EQ_STR(only_error("restrict bad_host!"), "t.conf:1: restrict: bad address 'bad_host!'");
}

static void
test_restrict_every_flag(void)
{
  CNF_Config *c;
  TEST_CHECK(
      clean_parse("restrict 192.0.2.1 ignore kod limited lowpriotrap nomodify noquery "
                  "nopeer noserve notrap notrust ntpport version nomrulist noepeer flake "
                  "serverresponse fuzz\n",
                  &c));
  uint32_t all = RST_IGNORE | RST_KOD | RST_LIMITED | RST_LOWPRIOTRAP | RST_NOMODIFY |
                 RST_NOQUERY | RST_NOPEER | RST_NOSERVE | RST_NOTRAP | RST_NOTRUST |
                 RST_VERSION | RST_NOMRULIST | RST_NOEPEER | RST_FLAKE | RST_FUZZ;
  TEST_EQ_INT(c->restricts[0].flags, all);
  TEST_EQ_INT(c->restricts[0].match, RST_M_NTPPORT);
  CNF_Destroy(c);

  CNF_Errors e;
  bool ok;
  c = parse("restrict default mssntp\n", &e, &ok);
  TEST_CHECK(ok);
  TEST_EQ_INT(c->restricts[0].flags, RST_MSSNTP);
  TEST_EQ_STR(wrn(&e, 0),
              "t.conf:1: restrict: 'mssntp' is accepted for compatibility and has no effect");
  CNF_ClearErrors(&e);
  CNF_Destroy(c);
  TEST_EQ_STR(only_error("restrict default nosuchflag"),
              "t.conf:1: restrict: unknown flag 'nosuchflag'");
  TEST_EQ_STR(only_error("restrict default serverresponse"),
              "t.conf:1: restrict: serverresponse must be followed by 'fuzz'");
  TEST_EQ_STR(only_error("restrict"), "t.conf:1: restrict: missing address");
}

static void
test_restrict_kod_without_limited_warns(void)
{
  CNF_Errors e;
  bool ok;
  CNF_Config *c = parse("restrict default kod nomodify\nrestrict ::1 kod limited\n", &e, &ok);
  TEST_CHECK(ok);
  TEST_EQ_INT(e.errors.count, 0);
  TEST_EQ_INT(e.warnings.count, 1);
  TEST_EQ_STR(wrn(&e, 0), "t.conf:1: restrict: 'kod' without 'limited' sends no RATE KoDs "
                          "(only DENY, RSTR and CRYP)");
  TEST_EQ_INT(c->n_restricts, 3);
  TEST_EQ_INT(c->restricts[0].flags, RST_KOD | RST_NOMODIFY);
  CNF_ClearErrors(&e);
  CNF_Destroy(c);
}

static void
test_restrict_ippeerlimit(void)
{
  CNF_Errors e;
  bool ok;
  CNF_Config *c = parse("restrict default ippeerlimit -1\n"
                        "restrict 192.0.2.1 ippeerlimit 100\n"
                        "restrict 192.0.2.2 ippeerlimit 101\n"
                        "restrict 192.0.2.3 ippeerlimit -2 nopeer\n",
                        &e, &ok);
  TEST_CHECK(ok);
  TEST_EQ_INT(c->n_restricts, 5);
  TEST_EQ_INT(c->restricts[0].ippeerlimit, -1);
  TEST_EQ_INT(c->restricts[2].ippeerlimit, 100);
  TEST_EQ_INT(c->restricts[3].ippeerlimit, 0);
  TEST_EQ_INT(c->restricts[4].ippeerlimit, 0);
  TEST_EQ_INT(c->restricts[4].flags, RST_NOPEER);
  TEST_EQ_INT(e.warnings.count, 2);
  TEST_EQ_STR(wrn(&e, 0),
              "t.conf:3: restrict: ippeerlimit 101 is out of range -1..100; using 0");
  TEST_EQ_STR(wrn(&e, 1),
              "t.conf:4: restrict: ippeerlimit -2 is out of range -1..100; using 0");
  CNF_ClearErrors(&e);
  CNF_Destroy(c);
  TEST_EQ_STR(only_error("restrict default ippeerlimit x"),
              "t.conf:1: restrict: ippeerlimit 'x' is not a number");
}

static void
test_restrict_removals(void)
{
  CNF_Config *c;
  TEST_CHECK(clean_parse("delrestrict 192.0.2.1\n"
                         "delrestrict 10.0.0.0 mask 255.0.0.0 ntpport\n"
                         "delrestrict source 192.0.2.9\n"
                         "unrestrict 2001:db8::/32\n"
                         "unrestrict 10.0.0.0 mask 255.0.0.0 noquery limited\n"
                         "unrestrict -4 default limited\n"
                         "unrestrict 192.0.2.0/24 ntpport\n",
                         &c));
  TEST_EQ_INT(c->n_restricts, 7);
  const CNF_Restrict *r = c->restricts;
  TEST_EQ_INT(r[0].op, CNF_RST_DELETE);
  TEST_EQ_INT(r[0].prefix, 32);
  TEST_EQ_INT(r[1].op, CNF_RST_DELETE);
  TEST_EQ_INT(r[1].prefix, 8);
  TEST_EQ_INT(r[1].match, RST_M_NTPPORT);
  TEST_EQ_INT(r[2].op, CNF_RST_DELETE);
  TEST_EQ_INT(r[2].match, RST_M_SOURCE);
  TEST_EQ_STR(addr_str(&r[2].addr), "192.0.2.9");
  TEST_EQ_INT(r[3].op, CNF_RST_DELETE);
  TEST_EQ_INT(r[3].prefix, 32);
  TEST_EQ_INT(r[4].op, CNF_RST_CLEAR);
  TEST_EQ_INT(r[4].flags, RST_NOQUERY | RST_LIMITED);
  TEST_EQ_INT(r[5].op, CNF_RST_CLEAR);
  TEST_EQ_INT(r[5].kind, CNF_RST_DEFAULT);
  TEST_EQ_INT(r[5].family, ADR_INET4);
  TEST_EQ_INT(r[6].op, CNF_RST_DELETE);
  TEST_EQ_INT(r[6].match, RST_M_NTPPORT);
  TEST_EQ_INT(r[6].prefix, 24);
  CNF_Destroy(c);

  TEST_EQ_STR(only_error("delrestrict default"),
              "t.conf:1: delrestrict: the default entries cannot be removed");
  TEST_EQ_STR(only_error("delrestrict source 192.0.2.1 mask 255.0.0.0"),
              "t.conf:1: delrestrict: mask cannot be used here");
  TEST_EQ_STR(only_error("delrestrict 192.0.2.1 noquery"),
              "t.conf:1: delrestrict: unexpected 'noquery'");
  TEST_EQ_STR(only_error("unrestrict source"),
              "t.conf:1: unrestrict: 'source' cannot be used here");
  TEST_EQ_STR(only_error("unrestrict 192.0.2.1 ippeerlimit 3"),
              "t.conf:1: unrestrict: unknown flag 'ippeerlimit'");

  CNF_Errors e;
  bool ok;
  c = parse("unrestrict default\n", &e, &ok);
  TEST_CHECK(ok);
  TEST_EQ_INT(c->n_restricts, 0);
  TEST_EQ_STR(wrn(&e, 0), "t.conf:1: unrestrict: the default entries cannot be removed; this "
                          "line has no effect");
  CNF_ClearErrors(&e);
  CNF_Destroy(c);
}

/* ---- discard, mru, tos ---- */

static void
test_discard(void)
{
  CNF_Config *c;
  TEST_CHECK(clean_parse("discard average 4 minimum 1 monitor 1000\n"
                         "discard leak 0 kodlimit 0 netprefix 24/56 netaverage -4\n",
                         &c));
  TEST_EQ_INT(c->discard.average, 4);
  TEST_EQ_INT(c->discard.minimum, 1);
  TEST_EQ_INT(c->discard.monitor, 1000);
  TEST_EQ_INT(c->discard.leak, 0);
  TEST_EQ_INT(c->discard.kodlimit, 0);
  TEST_EQ_INT(c->discard.netprefix4, 24);
  TEST_EQ_INT(c->discard.netprefix6, 56);
  TEST_EQ_INT(c->discard.netaverage, -4);
  CNF_Destroy(c);

  CNF_Errors e;
  bool ok;
  c = parse("discard average 30\n", &e, &ok);
  TEST_CHECK(ok);
  TEST_EQ_INT(c->discard.average, 17);
  TEST_EQ_STR(wrn(&e, 0), "t.conf:1: discard: average 30 is above 17; using 17");
  CNF_ClearErrors(&e);
  CNF_Destroy(c);

  TEST_EQ_STR(only_error("discard average 256"),
              "t.conf:1: discard: average 256 is out of range 0..255");
  TEST_EQ_STR(only_error("discard leak 17"),
              "t.conf:1: discard: leak 17 is out of range 0..16");
  TEST_EQ_STR(only_error("discard monitor 0"),
              "t.conf:1: discard: monitor 0 is out of range 1..1000000000");
  TEST_EQ_STR(only_error("discard netprefix 24"),
              "t.conf:1: discard: netprefix '24' is not of the form N/M");
  TEST_EQ_STR(only_error("discard netprefix 33/64"),
              "t.conf:1: discard: netprefix 33/64 is out of range 0..32/0..128");
  TEST_EQ_STR(only_error("discard"), "t.conf:1: discard: missing argument");
  TEST_EQ_STR(only_error("discard average 4 minimum"),
              "t.conf:1: discard: missing value for minimum");
  /* A bad line changes nothing, even the options before the error. */
  c = parse("discard average 5 bogus 1\n", &e, &ok);
  TEST_CHECK(!ok);
  TEST_EQ_INT(c->discard.average, 3);
  CNF_ClearErrors(&e);
  CNF_Destroy(c);
}

static void
test_mru(void)
{
  CNF_Config *c;
  TEST_CHECK(
      clean_parse("mru maxmem 2048 mindepth 100 maxage 30 initalloc 50 incmem 8\n", &c));
  TEST_CHECK(c->mru.max.in_kib && c->mru.max.value == 2048);
  TEST_CHECK(!c->mru.init.in_kib && c->mru.init.value == 50);
  TEST_CHECK(c->mru.inc.in_kib && c->mru.inc.value == 8);
  TEST_EQ_INT(c->mru.mindepth, 100);
  TEST_EQ_INT(c->mru.maxage, 30);
  CNF_Destroy(c);
  /* The last of a pair wins. */
  TEST_CHECK(clean_parse("mru maxmem 64 maxdepth 5000 initmem 16 incalloc 10\n", &c));
  TEST_CHECK(!c->mru.max.in_kib && c->mru.max.value == 5000);
  TEST_CHECK(c->mru.init.in_kib && c->mru.init.value == 16);
  TEST_CHECK(!c->mru.inc.in_kib && c->mru.inc.value == 10);
  CNF_Destroy(c);
  TEST_CHECK(clean_parse("mru maxdepth 5000\nmru maxmem 64\n", &c));
  TEST_CHECK(c->mru.max.in_kib && c->mru.max.value == 64);
  CNF_Destroy(c);
  TEST_EQ_STR(only_error("mru maxdepth -1"),
              "t.conf:1: mru: maxdepth -1 is out of range 1..16777216");
  TEST_EQ_STR(only_error("mru minage 5"), "t.conf:1: mru: unknown option 'minage'");
}

static void
test_tos(void)
{
  CNF_Config *c;
  TEST_CHECK(clean_parse("tos orphan 10 orphanwait 60 minclock 4 minsane 2 maxclock 12\n"
                         "tos maxdist 0.5 mindist 0.002 floor 2 ceiling 10\n",
                         &c));
  TEST_EQ_INT(c->tos.orphan, 10);
  TEST_EQ_INT(c->tos.orphanwait, 60);
  TEST_EQ_INT(c->tos.minclock, 4);
  TEST_EQ_INT(c->tos.minsane, 2);
  TEST_EQ_INT(c->tos.maxclock, 12);
  TEST_NEAR(c->tos.maxdist, 0.5, 1e-12);
  TEST_NEAR(c->tos.mindist, 0.002, 1e-12);
  TEST_EQ_INT(c->tos.floor, 2);
  TEST_EQ_INT(c->tos.ceiling, 10);
  CNF_Destroy(c);
  TEST_EQ_STR(only_error("tos orphan 17"), "t.conf:1: tos: orphan 17 is out of range 1..16");
  TEST_EQ_STR(only_error("tos orphan 0"), "t.conf:1: tos: orphan 0 is out of range 1..16");
  TEST_EQ_STR(only_error("tos maxdist 20"),
              "t.conf:1: tos: maxdist 20 is out of range 0.001..16");
  TEST_EQ_STR(only_error("tos maxdist 1.5x"), "t.conf:1: tos: maxdist '1.5x' is not a number");
  TEST_EQ_STR(only_error("tos floor 5 ceiling 5"),
              "t.conf:1: tos: floor 5 must be below ceiling 5");
  TEST_EQ_STR(only_error("tos minclock 20"),
              "t.conf:1: tos: minclock 20 is greater than maxclock 10");
  TEST_EQ_STR(only_error("tos maxsane 3"), "t.conf:1: tos: unknown option 'maxsane'");
  /* ntpd's options that mean nothing here warn, with the reason, and change nothing */
  CNF_Errors e;
  bool ok;
  c = parse("tos cohort 0 beacon 3600 minsane 2", &e, &ok);
  TEST_CHECK(ok);
  TEST_EQ_INT(e.warnings.count, 2);
  TEST_EQ_STR(wrn(&e, 0), "t.conf:1: tos: option 'cohort' has no effect here: a server at our "
                          "own stratum is never refused for it (ntpd's cohort 1)");
  TEST_CHECK(strstr(wrn(&e, 1), "'beacon' has no effect here: ") != NULL);
  TEST_EQ_INT(c->tos.minsane, 2);
  CNF_ClearErrors(&e);
  CNF_Destroy(c);
}

static void
test_tinker(void)
{
  CNF_Config *c = CNF_Create();
  TEST_NEAR(c->tinker.step, 0.128, 1e-12); /* ntpd's defaults */
  TEST_NEAR(c->tinker.stepback, 0.128, 1e-12);
  TEST_NEAR(c->tinker.stepfwd, 0.128, 1e-12);
  TEST_NEAR(c->tinker.panic, 1000, 1e-12);
  TEST_NEAR(c->tinker.stepout, 900, 1e-12);
  TEST_NEAR(c->tinker.dispersion, 15, 1e-12);
  TEST_NEAR(c->tinker.huffpuff, 0, 0);
  CNF_Destroy(c);
  TEST_CHECK(clean_parse("tinker panic 0 step 0.5 stepout 60\n"
                         "tinker dispersion 100 huffpuff 7200\n",
                         &c));
  TEST_NEAR(c->tinker.panic, 0, 0);
  TEST_NEAR(c->tinker.stepback, 0.5, 1e-12); /* step sets both directions */
  TEST_NEAR(c->tinker.stepfwd, 0.5, 1e-12);
  TEST_NEAR(c->tinker.stepout, 60, 1e-12);
  TEST_NEAR(c->tinker.dispersion, 100, 1e-12);
  TEST_NEAR(c->tinker.huffpuff, 7200, 1e-12);
  CNF_Destroy(c);
  /* stepback / stepfwd set one direction, on the step line or after it */
  TEST_CHECK(clean_parse("tinker stepback 0 step 1\ntinker stepfwd 2\n", &c));
  TEST_NEAR(c->tinker.stepback, 0, 0);
  TEST_NEAR(c->tinker.stepfwd, 2, 1e-12);
  CNF_Destroy(c);
  TEST_EQ_STR(only_error("tinker step -1"),
              "t.conf:1: tinker: step -1 is out of range 0..3600");
  TEST_EQ_STR(only_error("tinker huffpuff 60"),
              "t.conf:1: tinker: huffpuff 60 is out of range 900..86400");
  TEST_EQ_STR(only_error("tinker dispersion 0"),
              "t.conf:1: tinker: dispersion 0 is out of range 0.01..1000");
  TEST_EQ_STR(only_error("tinker panic 10 step 20"),
              "t.conf:1: tinker: a step threshold (20 s) above the panic threshold 10 s");
  TEST_EQ_STR(only_error("tinker"), "t.conf:1: tinker: missing argument");
  TEST_EQ_STR(only_error("tinker wander 3"), "t.conf:1: tinker: unknown option 'wander'");
  TEST_CHECK(strstr(only_error("tinker allan 1500"),
                    "t.conf:1: tinker: option 'allan' is not supported: the loop has no "
                    "PLL/FLL crossover") != NULL);
  TEST_CHECK(strstr(only_error("tinker freq 12.5"),
                    "option 'freq' is not supported: the starting frequency comes from the "
                    "drift file") != NULL);
  TEST_CHECK(strstr(only_error("tinker tick 0.01"), "option 'tick' is not supported") != NULL);
  /* a bad line changes nothing, even what came before the bad option on it */
  CNF_Errors e;
  bool ok;
  c = parse("tinker panic 0\ntinker step 0.3 allan 7\n", &e, &ok);
  TEST_CHECK(!ok);
  TEST_NEAR(c->tinker.panic, 0, 0);
  TEST_NEAR(c->tinker.stepfwd, 0.128, 1e-12);
  CNF_ClearErrors(&e);
  CNF_Destroy(c);
}

/* ---- network, files, keys, switches, compatibility ---- */

static void
test_metrics_listen(void)
{
  CNF_Config *c;
  TEST_CHECK(clean_parse("metrics listen 127.0.0.1\nmetrics listen ::1 port 8080\n", &c));
  TEST_EQ_INT(c->n_metrics, 2);
  TEST_EQ_STR(addr_str(&c->metrics[0]), "127.0.0.1");
  TEST_EQ_INT(c->metrics[0].port, CNF_METRICS_PORT);
  TEST_EQ_INT(c->metrics[1].family, ADR_INET6);
  TEST_EQ_INT(c->metrics[1].port, 8080);
  CNF_Destroy(c);
  TEST_CHECK(strstr(only_error("metrics talk 127.0.0.1\n"), "is not listen") != NULL);
  TEST_CHECK(strstr(only_error("metrics listen\n"), "missing") != NULL);
  TEST_CHECK(strstr(only_error("metrics listen host.example\n"), "bad address") != NULL);
  TEST_CHECK(strstr(only_error("metrics listen 10.0.0.0/8\n"), "a network") != NULL);
  TEST_CHECK(strstr(only_error("metrics listen 127.0.0.1 port 0\n"), "out of range") != NULL);
  TEST_CHECK(strstr(only_error("metrics listen 127.0.0.1 prot 1\n"), "is not port") != NULL);
  TEST_CHECK(strstr(only_error("metrics listen 127.0.0.1 port 1 x\n"), "unexpected") != NULL);
  char text[1024] = "";
  for (int i = 0; i <= CNF_MAX_METRICS; i++)
    strcat(text, "metrics listen 127.0.0.1\n");
  TEST_CHECK(strstr(only_error(text), "more than") != NULL);
}

static void
test_interface_port_threads(void)
{
  CNF_Config *c;
  TEST_CHECK(clean_parse("interface ignore wildcard\n"
                         "interface listen 127.0.0.1\n"
                         "interface listen ::1\n"
                         "interface drop 10.0.0.0/8\n"
                         "interface ignore eth0\n"
                         "nic listen ipv4\n"
                         "interface drop ipv6\n"
                         "interface listen all\n"
                         "port 10123\n"
                         "threads 4\n",
                         &c));
  TEST_EQ_INT(c->n_interfaces, 8);
  const CNF_Interface *in = c->interfaces;
  TEST_EQ_INT(in[0].action, CNF_IF_IGNORE);
  TEST_EQ_INT(in[0].match, CNF_IFM_WILDCARD);
  TEST_EQ_INT(in[1].action, CNF_IF_LISTEN);
  TEST_EQ_INT(in[1].match, CNF_IFM_ADDR);
  TEST_EQ_STR(addr_str(&in[1].addr), "127.0.0.1");
  TEST_EQ_INT(in[1].prefix, -1);
  TEST_EQ_INT(in[2].addr.family, ADR_INET6);
  TEST_EQ_INT(in[3].action, CNF_IF_DROP);
  TEST_EQ_INT(in[3].prefix, 8);
  TEST_EQ_INT(in[4].match, CNF_IFM_NAME);
  TEST_EQ_STR(in[4].name, "eth0");
  TEST_EQ_INT(in[5].match, CNF_IFM_IPV4);
  TEST_EQ_INT(in[6].match, CNF_IFM_IPV6);
  TEST_EQ_INT(in[7].match, CNF_IFM_ALL);
  TEST_EQ_INT(c->port, 10123);
  TEST_EQ_INT(c->threads, 4);
  CNF_Destroy(c);
  TEST_EQ_STR(only_error("interface listen"), "t.conf:1: interface: missing interface");
  TEST_EQ_STR(only_error("interface allow eth0"),
              "t.conf:1: interface: 'allow' is not listen, ignore or drop");
  TEST_EQ_STR(only_error("interface listen 10.0.0.0/40"),
              "t.conf:1: interface: bad prefix length in '10.0.0.0/40'");
  TEST_EQ_STR(only_error("interface listen averyveryverylongifname"),
              "t.conf:1: interface: bad interface name 'averyveryverylongifname'");
  TEST_EQ_STR(only_error("port 0"), "t.conf:1: port: 0 is out of range 1..65535");
  TEST_EQ_STR(only_error("port 65536"), "t.conf:1: port: 65536 is out of range 1..65535");
  TEST_EQ_STR(only_error("port"), "t.conf:1: port: missing argument");
  TEST_EQ_STR(only_error("port 123 456"), "t.conf:1: port: unexpected '456'");
  TEST_EQ_STR(only_error("threads 65"), "t.conf:1: threads: 65 is out of range 0..64");
  TEST_EQ_STR(only_error("threads many"), "t.conf:1: threads: 'many' is not a number");
}

static void
test_files_and_keys(void)
{
  CNF_Config *c;
  TEST_CHECK(clean_parse("driftfile /var/lib/ntp/drift\n"
                         "logfile /var/log/ntp.log\n"
                         "pidfile /run/ntpgate.pid\n"
                         "keys /etc/ntp.keys\n"
                         "trustedkey 1 2 (5 ... 9)\n"
                         "trustedkey ( 20 ... 22 ) 30\n"
                         "controlkey 7\n"
                         "requestkey 8\n",
                         &c));
  TEST_EQ_STR(c->driftfile, "/var/lib/ntp/drift");
  TEST_EQ_STR(c->logfile, "/var/log/ntp.log");
  TEST_EQ_STR(c->pidfile, "/run/ntpgate.pid");
  TEST_EQ_STR(c->keysfile, "/etc/ntp.keys");
  TEST_EQ_INT(c->n_trusted_keys, 5);
  TEST_EQ_INT(c->trusted_keys[2].lo, 5);
  TEST_EQ_INT(c->trusted_keys[2].hi, 9);
  TEST_CHECK(CNF_IsTrustedKey(c, 1) && CNF_IsTrustedKey(c, 2));
  TEST_CHECK(!CNF_IsTrustedKey(c, 3) && !CNF_IsTrustedKey(c, 4));
  TEST_CHECK(CNF_IsTrustedKey(c, 5) && CNF_IsTrustedKey(c, 7) && CNF_IsTrustedKey(c, 9));
  TEST_CHECK(!CNF_IsTrustedKey(c, 10) && CNF_IsTrustedKey(c, 21) && CNF_IsTrustedKey(c, 30));
  TEST_EQ_INT(c->control_key, 7);
  TEST_EQ_INT(c->request_key, 8);
  CNF_Destroy(c);

  /* Last path wins; the driftfile wander threshold is accepted with a warning. */
  CNF_Errors e;
  bool ok;
  c = parse("driftfile /a\ndriftfile /b 1e-7\n", &e, &ok);
  TEST_CHECK(ok);
  TEST_EQ_STR(c->driftfile, "/b");
  TEST_EQ_STR(wrn(&e, 0), "t.conf:2: driftfile: the wander threshold is accepted for "
                          "compatibility and has no effect");
  CNF_ClearErrors(&e);
  CNF_Destroy(c);

  TEST_EQ_STR(only_error("keys"), "t.conf:1: keys: missing file name");
  TEST_EQ_STR(only_error("pidfile \"\""), "t.conf:1: pidfile: empty file name");
  TEST_EQ_STR(only_error("logfile /a /b"), "t.conf:1: logfile: unexpected '/b'");
  TEST_EQ_STR(only_error("trustedkey"), "t.conf:1: trustedkey: missing argument");
  TEST_EQ_STR(only_error("trustedkey 0"),
              "t.conf:1: trustedkey: key 0 is out of range 1..65535");
  TEST_EQ_STR(only_error("trustedkey 1 (9 ... 5)"),
              "t.conf:1: trustedkey: key range 9 ... 5 is backwards");
  TEST_EQ_STR(only_error("trustedkey (5 9)"),
              "t.conf:1: trustedkey: a key range is written ( LOW ... HIGH )");
  TEST_EQ_STR(only_error("trustedkey (5 ... 9"),
              "t.conf:1: trustedkey: a key range is written ( LOW ... HIGH )");
  TEST_EQ_STR(only_error("trustedkey (5 ..."), "t.conf:1: trustedkey: incomplete key range");
  TEST_EQ_STR(only_error("trustedkey x"), "t.conf:1: trustedkey: 'x' is not a key number");
  TEST_EQ_STR(only_error("controlkey 70000"),
              "t.conf:1: controlkey: 70000 is out of range 1..65535");
  /* A bad trustedkey line adds none of its keys. */
  c = parse("trustedkey 3 4 x\n", &e, &ok);
  TEST_EQ_INT(c->n_trusted_keys, 0);
  CNF_ClearErrors(&e);
  CNF_Destroy(c);
}

static void
test_enable_disable(void)
{
  CNF_Config *c;
  TEST_CHECK(clean_parse("enable bclient calibrate stats mode7\n"
                         "disable auth kernel monitor ntp\n",
                         &c));
  TEST_CHECK(c->sw.bclient && c->sw.calibrate && c->sw.stats && c->sw.mode7);
  TEST_CHECK(!c->sw.auth && !c->sw.kernel && !c->sw.monitor && !c->sw.ntp);
  CNF_Destroy(c);
  TEST_CHECK(clean_parse("disable monitor\nenable monitor\n", &c));
  TEST_CHECK(c->sw.monitor);
  CNF_Destroy(c);
  TEST_EQ_STR(only_error("enable pps"), "t.conf:1: enable: unknown flag 'pps'");
  TEST_EQ_STR(only_error("disable"), "t.conf:1: disable: missing argument");
}

static void
test_compat_no_effect(void)
{
  static const char *const names[] = {"rlimit memlock 32 stacksize 1024",
                                      "broadcastdelay 0.008",
                                      "logconfig =syncall +clockall",
                                      "nonvolatile 0.000001"};
  for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
    CNF_Errors e;
    bool ok;
    CNF_Config *c = parse(names[i], &e, &ok);
    TEST_CHECK(ok);
    TEST_EQ_INT(e.warnings.count, 1);
    char want[256], dir[32];
    sscanf(names[i], "%31s", dir);
    const CNF_Directive *d = CNF_FindDirective(dir);
    TEST_CHECK(d && d->status == CNF_DS_NOEFFECT && d->why);
    snprintf(want, sizeof(want),
             "t.conf:1: %s: accepted for compatibility; it has no effect here: %s", dir,
             d ? d->why : "");
    TEST_EQ_STR(wrn(&e, 0), want);
    CNF_ClearErrors(&e);
    CNF_Destroy(c);
  }
}

/* ---- statistics files ---- */

static void
test_stats_defaults_off_day_link(void)
{
  CNF_Config *c = CNF_Create();
  TEST_CHECK(c && c->statsdir == NULL);
  for (int i = 0; c && i < STF_KIND_COUNT; i++) {
    TEST_CHECK(!c->filegen[i].enabled && c->filegen[i].link && !c->filegen[i].file);
    TEST_EQ_INT(c->filegen[i].type, STF_TYPE_DAY);
  }
  CNF_Destroy(c);
}

static void
test_stats_debian_lines(void)
{
  CNF_Errors e;
  bool ok;
  CNF_Config *c = parse("statsdir /var/log/ntpstats/\n"
                        "statistics loopstats peerstats sysstats protostats\n"
                        "filegen loopstats file loops type week nolink enable\n"
                        "filegen peerstats file peerstats type day enable\n"
                        "filegen sysstats disable\n"
                        "filegen protostats type none link\n",
                        &e, &ok);
  TEST_CHECK(ok);
  TEST_EQ_INT(e.warnings.count, 0);
  TEST_EQ_STR(c->statsdir, "/var/log/ntpstats/");
  const CNF_FileGen *g = c->filegen;
  TEST_CHECK(g[STF_LOOPSTATS].enabled && !g[STF_LOOPSTATS].link);
  TEST_EQ_STR(g[STF_LOOPSTATS].file, "loops");
  TEST_EQ_INT(g[STF_LOOPSTATS].type, STF_TYPE_WEEK);
  TEST_CHECK(g[STF_PEERSTATS].enabled && g[STF_PEERSTATS].link);
  TEST_CHECK(!g[STF_SYSSTATS].enabled);
  TEST_CHECK(g[STF_PROTOSTATS].enabled && g[STF_PROTOSTATS].file == NULL);
  TEST_EQ_INT(g[STF_PROTOSTATS].type, STF_TYPE_NONE);
  TEST_CHECK(!g[STF_CLOCKSTATS].enabled);
  CNF_ClearErrors(&e);
  CNF_Destroy(c);
}

static void
test_stats_clockstats_warns(void)
{
  CNF_Errors e;
  bool ok;
  CNF_Config *c = parse("statistics loopstats clockstats\n", &e, &ok);
  TEST_CHECK(ok);
  TEST_EQ_INT(e.warnings.count, 1);
  TEST_EQ_STR(wrn(&e, 0),
              "t.conf:1: statistics: 'clockstats' is accepted; ntpgated writes no clockstats "
              "records");
  TEST_CHECK(c->filegen[STF_LOOPSTATS].enabled && c->filegen[STF_CLOCKSTATS].enabled);
  CNF_ClearErrors(&e);
  CNF_Destroy(c);
}

static void
test_stats_errors(void)
{
  TEST_EQ_STR(only_error("statistics loopstats bogusstats"),
              "t.conf:1: statistics: unknown statistics name 'bogusstats'");
  TEST_EQ_STR(only_error("statistics"), "t.conf:1: statistics: missing argument");
  TEST_EQ_STR(only_error("filegen"), "t.conf:1: filegen: missing statistics name");
  TEST_EQ_STR(only_error("filegen loopstats type pid"),
              "t.conf:1: filegen: unknown type 'pid' (none, day, week, month or year; ntpd's "
              "pid and age are not supported)");
  TEST_EQ_STR(only_error("filegen loopstats type"), "t.conf:1: filegen: missing type");
  TEST_EQ_STR(only_error("filegen loopstats file ../x"),
              "t.conf:1: filegen: bad file name '../x' (a name in statsdir, without '/')");
  TEST_EQ_STR(only_error("filegen loopstats enable sometimes"),
              "t.conf:1: filegen: unexpected 'sometimes'");
  TEST_EQ_STR(only_error("statsdir"), "t.conf:1: statsdir: missing file name");
}

static void
test_stats_bad_filegen_changes_nothing(void)
{
  CNF_Errors e;
  bool ok;
  CNF_Config *c = parse("filegen loopstats file a type week enable bogus\n", &e, &ok);
  TEST_CHECK(!ok);
  TEST_CHECK(!c->filegen[STF_LOOPSTATS].enabled && !c->filegen[STF_LOOPSTATS].file);
  TEST_EQ_INT(c->filegen[STF_LOOPSTATS].type, STF_TYPE_DAY);
  CNF_ClearErrors(&e);
  CNF_Destroy(c);
}

/* ---- error reporting ---- */

static void
test_unknown_directive(void)
{
  TEST_EQ_STR(only_error("frobnicate 1 2 3"), "t.conf:1: unknown directive 'frobnicate'");
  TEST_EQ_STR(only_error("Server 192.0.2.1"), "t.conf:1: unknown directive 'Server'");
}

static void
test_every_error_reported_with_lines(void)
{
  CNF_Errors e;
  bool ok;
  CNF_Config *c = parse("server 192.0.2.1\n"                   /* 1 ok */
                        "bogus\n"                              /* 2 */
                        "# comment\n"                          /* 3 */
                        "server a.example minpoll 99\n"        /* 4 */
                        "restrict 10.0.0.0 mask 255.0.255.0\n" /* 5 */
                        "restrict default kod\n"               /* 6 warning only */
                        "port 0\n"                             /* 7 */
                        "\n"                                   /* 8 */
                        "tos orphan x\n"                       /* 9 */
                        "restrict ::1\n"                       /* 10 ok */
                        "threads 99",                          /* 11, no final newline */
                        &e, &ok);
  TEST_CHECK(!ok);
  TEST_EQ_INT(e.errors.count, 6);
  TEST_EQ_STR(err(&e, 0), "t.conf:2: unknown directive 'bogus'");
  TEST_EQ_STR(err(&e, 1), "t.conf:4: server: minpoll 99 is out of range 0..17");
  TEST_EQ_STR(err(&e, 2), "t.conf:5: restrict: mask 255.0.255.0 has holes");
  TEST_EQ_STR(err(&e, 3), "t.conf:7: port: 0 is out of range 1..65535");
  TEST_EQ_STR(err(&e, 4), "t.conf:9: tos: orphan 'x' is not a number");
  TEST_EQ_STR(err(&e, 5), "t.conf:11: threads: 99 is out of range 0..64");
  TEST_EQ_INT(e.warnings.count, 1);
  TEST_EQ_STR(wrn(&e, 0), "t.conf:6: restrict: 'kod' without 'limited' sends no RATE KoDs "
                          "(only DENY, RSTR and CRYP)");
  /* The good lines still recorded; the bad ones did not. */
  TEST_EQ_INT(c->n_assocs, 1);
  TEST_EQ_INT(c->n_restricts, 3);
  TEST_EQ_INT(c->port, 123);
  CNF_Destroy(c);

  /* A second parse call appends to the same lists and reports only its own result. */
  c = CNF_Create();
  TEST_CHECK(CNF_ParseText(c, "second.conf", "port 4123\n", &e));
  TEST_EQ_INT(e.errors.count, 6);
  TEST_CHECK(!CNF_ParseText(c, "third.conf", "\nport x\n", &e));
  TEST_EQ_INT(e.errors.count, 7);
  TEST_EQ_STR(err(&e, 6), "third.conf:2: port: 'x' is not a number");
  CNF_ClearErrors(&e);
  TEST_EQ_INT(e.errors.count, 0);
  TEST_EQ_INT(e.warnings.count, 0);
  CNF_Destroy(c);
}

static void
test_null_errs_and_format(void)
{
  CNF_Config *c = CNF_Create();
  TEST_CHECK(!CNF_ParseText(c, NULL, "bogus\n", NULL));
  TEST_CHECK(CNF_ParseText(c, NULL, "restrict default kod\n", NULL));
  TEST_CHECK(CNF_ParseText(c, "x", NULL, NULL));
  CNF_Destroy(c);

  CNF_Message m = {.file = (char[]){"f.conf"}, .line = 12, .text = (char[]){"boom"}};
  char buf[64];
  TEST_EQ_INT(CNF_FormatMessage(&m, buf, sizeof(buf)), 15);
  TEST_EQ_STR(buf, "f.conf:12: boom");
  m.line = 0;
  CNF_FormatMessage(&m, buf, sizeof(buf));
  TEST_EQ_STR(buf, "f.conf: boom");
  char small[5];
  m.line = 3;
  TEST_EQ_INT(CNF_FormatMessage(&m, small, sizeof(small)), 14);
  TEST_EQ_STR(small, "f.co");
}

static void
test_control_characters_sanitized(void)
{
  /* refused before anything reads a word of the line, so none reaches a message */
  TEST_EQ_STR(only_error("bo\033[2Jgus"),
              "t.conf:1: control character 0x1b at column 3: only tab and the newline that "
              "ends a line may appear; the line is ignored");
  TEST_EQ_STR(only_error("bo\177gus"),
              "t.conf:1: control character 0x7f at column 3: only tab and the newline that "
              "ends a line may appear; the line is ignored");
}

static void
test_long_lines(void)
{
  size_t n = 200000;
  char *text = malloc(n + 64);
  TEST_CHECK(text != NULL);
  if (!text)
    return;
  /* A very long comment, then a very long host name argument (an error), then a long list. */
  memset(text, '#', n);
  strcpy(text + n, "\nport 1234\n");
  CNF_Config *c;
  TEST_CHECK(clean_parse(text, &c));
  TEST_EQ_INT(c->port, 1234);
  CNF_Destroy(c);

  strcpy(text, "server ");
  memset(text + 7, 'a', n);
  strcpy(text + 7 + n, "\n");
  char want[200];
  snprintf(want, sizeof(want), "t.conf:1: server: bad address or host name '%.64s'", text + 7);
  TEST_EQ_STR(only_error(text), want);

  size_t len = 0;
  len += (size_t)sprintf(text + len, "restrict default");
  while (len < n - 16)
    len += (size_t)sprintf(text + len, " nomodify");
  TEST_CHECK(clean_parse(text, &c));
  TEST_EQ_INT(c->restricts[0].flags, RST_NOMODIFY);
  CNF_Destroy(c);
  free(text);
}

static void
test_typical_public_server(void)
{
  CNF_Config *c;
  TEST_CHECK(clean_parse("# /etc/ntp.conf for a public server\n"
                         "driftfile /var/lib/ntp/ntp.drift\n"
                         "pool 0.debian.pool.ntp.org iburst\n"
                         "pool 1.debian.pool.ntp.org iburst\n"
                         "server 192.0.2.10 iburst prefer\n"
                         "restrict default kod limited nomodify nopeer noquery notrap\n"
                         "restrict -6 default kod limited nomodify nopeer noquery notrap\n"
                         "restrict 127.0.0.1\n"
                         "restrict ::1\n"
                         "restrict source notrap nomodify noquery\n"
                         "discard average 3 minimum 2\n"
                         "disable monitor\n",
                         &c));
  TEST_EQ_INT(c->n_assocs, 3);
  TEST_EQ_INT(c->n_restricts, 6);
  uint32_t bcp = RST_KOD | RST_LIMITED | RST_NOMODIFY | RST_NOPEER | RST_NOQUERY | RST_NOTRAP;
  TEST_EQ_INT(c->restricts[0].family, ADR_INET4);
  TEST_EQ_INT(c->restricts[0].flags, bcp);
  TEST_EQ_INT(c->restricts[1].family, ADR_INET6);
  TEST_EQ_INT(c->restricts[2].family, ADR_INET6);
  TEST_EQ_INT(c->restricts[2].flags, bcp);
  TEST_EQ_INT(c->restricts[3].flags, 0);
  TEST_EQ_INT(c->restricts[3].prefix, 32);
  TEST_EQ_INT(c->restricts[4].prefix, 128);
  TEST_EQ_INT(c->restricts[5].kind, CNF_RST_SOURCE);
  CNF_Destroy(c);
}

/* ---- files and includes ---- */

static char tmpdir[64];

static void
write_file(const char *name, const char *text)
{
  char path[256];
  snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
  FILE *f = fopen(path, "w");
  TEST_CHECK(f != NULL);
  if (f) {
    fputs(text, f);
    fclose(f);
  }
}

static const char *
tpath(const char *name)
{
  static char path[256];
  snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
  return path;
}

static void
remove_tmpdir(void)
{
  static const char *const files[] = {"main.conf",   "inc.conf",    "sub/deep.conf",
                                      "loop_a.conf", "loop_b.conf", "self.conf",
                                      "nul.conf"};
  for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++)
    unlink(tpath(files[i]));
  rmdir(tpath("sub"));
  rmdir(tmpdir);
}

static bool
make_tmpdir(void)
{
  snprintf(tmpdir, sizeof(tmpdir), "/tmp/test_config.XXXXXX");
  if (!mkdtemp(tmpdir))
    return false;
  mkdir(tpath("sub"), 0700);
  return true;
}

static void
test_parse_file_and_relative_include(void)
{
  TEST_CHECK(make_tmpdir());
  write_file("main.conf", "port 2123\nincludefile inc.conf\nrestrict ::1\n");
  write_file("inc.conf", "server 192.0.2.5\nincludefile sub/deep.conf\n");
  write_file("sub/deep.conf", "threads 2\nbogus here\n");
  CNF_Config *c = CNF_Create();
  CNF_Errors e;
  CNF_InitErrors(&e);
  char main_path[256];
  snprintf(main_path, sizeof(main_path), "%s", tpath("main.conf"));
  TEST_CHECK(!CNF_ParseFile(c, main_path, &e));
  TEST_EQ_INT(c->port, 2123);
  TEST_EQ_INT(c->n_assocs, 1);
  TEST_EQ_INT(c->threads, 2);
  TEST_EQ_INT(c->n_restricts, 1);
  TEST_EQ_INT(e.errors.count, 1);
  char want[512];
  snprintf(want, sizeof(want), "%s/sub/deep.conf:2: unknown directive 'bogus'", tmpdir);
  TEST_EQ_STR(err(&e, 0), want);
  CNF_ClearErrors(&e);
  CNF_Destroy(c);

  /* ParseText takes relative includes from the directory of its name. */
  c = CNF_Create();
  char name[256];
  snprintf(name, sizeof(name), "%s/virtual.conf", tmpdir);
  write_file("sub/deep.conf", "threads 3\n");
  TEST_CHECK(CNF_ParseText(c, name, "includefile sub/deep.conf\n", &e));
  TEST_EQ_INT(c->threads, 3);
  CNF_Destroy(c);
  CNF_ClearErrors(&e);
  remove_tmpdir();
}

static void
test_include_errors(void)
{
  TEST_CHECK(make_tmpdir());
  write_file("loop_a.conf", "port 1000\nincludefile loop_b.conf\n");
  write_file("loop_b.conf", "\n\nincludefile loop_a.conf\nthreads 1\n");
  write_file("self.conf", "includefile self.conf\n");
  write_file("main.conf", "includefile nope.conf\nincludefile\nincludefile sub\n"
                          "includefile loop_a.conf\nincludefile self.conf\nport 9\n");
  CNF_Config *c = CNF_Create();
  CNF_Errors e;
  CNF_InitErrors(&e);
  char main_path[256];
  snprintf(main_path, sizeof(main_path), "%s", tpath("main.conf"));
  TEST_CHECK(!CNF_ParseFile(c, main_path, &e));
  TEST_EQ_INT(e.errors.count, 3);
  TEST_EQ_INT(e.warnings.count, 2);
  char want[512];
  /* a file that cannot be opened is skipped with a warning, as ntpd does */
  snprintf(want, sizeof(want),
           "%s:1: includefile: cannot open '%s/nope.conf': No such file or directory; skipped",
           main_path, tmpdir);
  TEST_EQ_STR(wrn(&e, 0), want);
  snprintf(want, sizeof(want), "%s:2: includefile: missing file name", main_path);
  TEST_EQ_STR(err(&e, 0), want);
  snprintf(want, sizeof(want),
           "%s:3: includefile: cannot open '%s/sub': not a regular file; skipped", main_path,
           tmpdir);
  TEST_EQ_STR(wrn(&e, 1), want);
  snprintf(
      want, sizeof(want),
      "%s/loop_b.conf:3: includefile: include loop: '%s/loop_a.conf' is already being read",
      tmpdir, tmpdir);
  TEST_EQ_STR(err(&e, 1), want);
  snprintf(want, sizeof(want),
           "%s/self.conf:1: includefile: include loop: '%s/self.conf' is already being read",
           tmpdir, tmpdir);
  TEST_EQ_STR(err(&e, 2), want);
  /* Lines after the loop in each file were still read. */
  TEST_EQ_INT(c->port, 9);
  TEST_EQ_INT(c->threads, 1);
  CNF_ClearErrors(&e);
  CNF_Destroy(c);

  /* Top-level file missing: one error with no line number. */
  c = CNF_Create();
  TEST_CHECK(!CNF_ParseFile(c, tpath("missing.conf"), &e));
  snprintf(want, sizeof(want), "%s/missing.conf: cannot open: No such file or directory",
           tmpdir);
  TEST_EQ_STR(err(&e, 0), want);
  CNF_ClearErrors(&e);
  CNF_Destroy(c);
  remove_tmpdir();
}

static void
test_include_depth_limit(void)
{
  TEST_CHECK(make_tmpdir());
  /* d0 includes d1 includes ... d10: distinct files, so only the depth limit stops it. */
  char name[64], text[128];
  for (int i = 0; i < 10; i++) {
    snprintf(name, sizeof(name), "sub/d%d.conf", i);
    snprintf(text, sizeof(text), "includefile d%d.conf\n", i + 1);
    write_file(name, text);
  }
  write_file("sub/d10.conf", "port 7\n");
  CNF_Config *c = CNF_Create();
  CNF_Errors e;
  CNF_InitErrors(&e);
  TEST_CHECK(!CNF_ParseFile(c, tpath("sub/d0.conf"), &e));
  TEST_EQ_INT(e.errors.count, 1);
  char want[512];
  snprintf(want, sizeof(want),
           "%s/sub/d7.conf:1: includefile: includes nested deeper than 8 levels", tmpdir);
  TEST_EQ_STR(err(&e, 0), want);
  TEST_EQ_INT(c->port, 123);
  CNF_ClearErrors(&e);
  CNF_Destroy(c);
  for (int i = 0; i <= 10; i++) {
    snprintf(name, sizeof(name), "sub/d%d.conf", i);
    unlink(tpath(name));
  }
  remove_tmpdir();
}

static void
test_file_with_nul_and_crlf(void)
{
  TEST_CHECK(make_tmpdir());
  FILE *f = fopen(tpath("nul.conf"), "w");
  TEST_CHECK(f != NULL);
  if (f) {
    static const char data[] = "port 1\r\nthreads \0 2\nthreads 3\r\n";
    fwrite(data, 1, sizeof(data) - 1, f);
    fclose(f);
  }
  CNF_Config *c = CNF_Create();
  CNF_Errors e;
  CNF_InitErrors(&e);
  TEST_CHECK(!CNF_ParseFile(c, tpath("nul.conf"), &e));
  TEST_EQ_INT(e.errors.count, 1);
  char want[512];
  snprintf(want, sizeof(want), "%s/nul.conf:2: line contains a NUL byte", tmpdir);
  TEST_EQ_STR(err(&e, 0), want);
  TEST_EQ_INT(c->port, 1);
  TEST_EQ_INT(c->threads, 3);
  CNF_ClearErrors(&e);
  CNF_Destroy(c);
  remove_tmpdir();
}

/* ---- control characters and runtime text (ntpq :config) ---- */

/* Parse text as runtime text "rt"; the first error formatted, or "" if it parsed clean. */
static const char *
runtime_result(const char *text, size_t *n_errors)
{
  static char buf[512];
  CNF_Config *c = CNF_Create();
  CNF_Errors e;
  CNF_InitErrors(&e);
  bool ok = CNF_ParseRuntimeText(c, "rt", text, &e);
  snprintf(buf, sizeof(buf), "%s", ok ? "" : fmt_msg(&e.errors, 0));
  if (n_errors)
    *n_errors = e.errors.count;
  CNF_ClearErrors(&e);
  CNF_Destroy(c);
  return buf;
}

static void
test_control_characters_are_not_blanks(void)
{
  /* \r, \v, \f once read as blanks: "\rincludefile FILE" was an includefile line to the
   * parser and a line with an empty first word to :config's allow-list */
  static const char *const lines[] = {"\rport 5",      "\vport 5",  "\fport 5",
                                      "port\r5",       "port 5\v",  "port 5\r\r\n",
                                      "port 5 \f # x", "\x01port 5"};
  for (size_t i = 0; i < sizeof(lines) / sizeof(lines[0]); i++) {
    CNF_Errors e;
    bool ok;
    CNF_Config *c = parse(lines[i], &e, &ok);
    TEST_CHECK(!ok);
    TEST_EQ_INT(e.errors.count, 1);
    TEST_CHECK(strstr(err(&e, 0), "t.conf:1: control character 0x") == err(&e, 0));
    TEST_EQ_INT(c->port, 123); /* nothing of the line was applied */
    CNF_ClearErrors(&e);
    CNF_Destroy(c);
  }
  /* tab is a blank; "\r\n" and "\n" end a line */
  CNF_Config *c = NULL;
  TEST_CHECK(clean_parse("\tport\t5\t\r\nthreads 2\n", &c));
  if (c) {
    TEST_EQ_INT(c->port, 5);
    TEST_EQ_INT(c->threads, 2);
  }
  CNF_Destroy(c);
}

static void
test_runtime_text_access_control_only(void)
{
  size_t n = 0;
  TEST_EQ_STR(runtime_result("restrict 192.0.2.1 noserve kod\n"
                             "unrestrict 192.0.2.1 kod\n"
                             "delrestrict 192.0.2.1\n"
                             "discard average 4 leak 2\n"
                             "mru maxdepth 1000\n"
                             "\t# a comment\n\n",
                             &n),
              "");
  TEST_EQ_INT(n, 0);
  /* the proof of concept of the :config bypass, and its plain forms */
  TEST_EQ_STR(runtime_result("\rincludefile /etc/passwd\n", &n),
              "rt:1: control character 0x0d at column 1: only tab and the newline that ends "
              "a line may appear; the line is ignored");
  TEST_EQ_STR(runtime_result("restrict default\n\vkeys /tmp/k\n", &n),
              "rt:2: control character 0x0b at column 1: only tab and the newline that ends "
              "a line may appear; the line is ignored");
  TEST_EQ_STR(runtime_result("includefile /etc/passwd", &n),
              "rt:1: includefile: 'includefile' cannot be changed at runtime (only restrict, "
              "unrestrict, delrestrict, discard and mru can)");
  TEST_EQ_STR(runtime_result("  controlkey 3", &n),
              "rt:1: controlkey: 'controlkey' cannot be changed at runtime (only restrict, "
              "unrestrict, delrestrict, discard and mru can)");
  /* every directive of the table that is not marked for runtime is refused there, whatever
   * its arguments, also when it is only accepted with a warning in a file */
  size_t nd;
  const CNF_Directive *d = CNF_Directives(&nd);
  size_t allowed = 0;
  for (size_t i = 0; i < nd; i++) {
    char line[128], want[256];
    snprintf(line, sizeof(line), "restrict 192.0.2.9\n%s 1 /tmp/x\n", d[i].name);
    runtime_result(line, &n);
    if (d[i].flags & CNF_DF_RUNTIME) {
      allowed++;
      continue;
    }
    snprintf(want, sizeof(want), "rt:2: %s: '%s' cannot be changed at runtime", d[i].name,
             d[i].name);
    TEST_CHECK(strncmp(runtime_result(line, &n), want, strlen(want)) == 0);
    TEST_EQ_INT(n, 1);
  }
  TEST_EQ_INT(allowed, 5);
  /* the file parser is not restricted */
  CNF_Config *c = NULL;
  TEST_CHECK(clean_parse("controlkey 3\n", &c));
  CNF_Destroy(c);
}

static void
test_field_directives(void)
{
  /* rlimit stopped the daemon; ntpd and NTPsec accept it: a warning now */
  CNF_Errors e;
  bool ok;
  CNF_Config *c = parse("rlimit memlock 0\n", &e, &ok);
  TEST_CHECK(ok);
  TEST_EQ_INT(e.warnings.count, 1);
  TEST_EQ_STR(wrn(&e, 0),
              "t.conf:1: rlimit: accepted for compatibility; it has no effect here: ntpgated "
              "neither locks its memory nor changes resource limits");
  CNF_ClearErrors(&e);
  CNF_Destroy(c);
  /* refused where ignoring the line would change what the operator relies on */
  /* leap seconds work: the list's path and the smear interval are recorded */
  c = parse("leapfile /usr/share/zoneinfo/leap-seconds.list\nleapsmearinterval 86400\n", &e,
            &ok);
  TEST_CHECK(ok && e.warnings.count == 0);
  TEST_EQ_STR(c ? c->leapfile : NULL, "/usr/share/zoneinfo/leap-seconds.list");
  TEST_EQ_INT(c ? c->leap_smear : -1, 86400);
  CNF_ClearErrors(&e);
  CNF_Destroy(c);
  TEST_CHECK(strstr(only_error("leapsmearinterval 86401"), "86401") != NULL);
  TEST_CHECK(strstr(only_error("leapfile"), "t.conf:1: leapfile") != NULL);
  TEST_EQ_STR(only_error("broadcast 192.0.2.255"),
              "t.conf:1: broadcast: not supported: broadcast mode is not supported");
  TEST_EQ_STR(only_error("crypto pw secret"),
              "t.conf:1: crypto: not supported: Autokey is not supported; use symmetric keys "
              "('keys', 'key N')");
  /* every row says why unless it works; every name is unique */
  size_t nd;
  const CNF_Directive *d = CNF_Directives(&nd);
  for (size_t i = 0; i < nd; i++) {
    TEST_CHECK((d[i].status == CNF_DS_SUPPORTED) == (d[i].why == NULL));
    TEST_CHECK((d[i].status == CNF_DS_SUPPORTED) == (d[i].id != CNF_D_NONE));
    TEST_CHECK(CNF_FindDirective(d[i].name) == &d[i]);
  }
}

/* ---- one place for each setting: the table against the modules and the docs ---- */

/* Where a discard/mru option lands in the monitor's and the shed table's parameters. */
typedef struct {
  const char *name;
  size_t mon;       /* offset in MON_Params + 1, 0 = not there */
  int mon_int;      /* 1: int field, 0: uint32_t */
  bool mon_checked; /* MON_ValidateParams checks the range */
  size_t shd;       /* offset in SHD_Params + 1, 0 = not there */
  int shd_int;
} ParamMap;

#define MON_AT(f) (offsetof(MON_Params, f) + 1)
#define SHD_AT(f) (offsetof(SHD_Params, f) + 1)

static const ParamMap param_map[] = {
    {"average", MON_AT(average), 1, true, 0, 0},
    {"minimum", MON_AT(minimum), 1, true, 0, 0},
    {"monitor", MON_AT(monitor), 0, false, 0, 0},
    {"leak", MON_AT(leak), 1, true, SHD_AT(leak), 1},
    {"kodlimit", MON_AT(kodlimit), 0, false, 0, 0},
    {"netaverage", MON_AT(netaverage), 1, true, 0, 0},
    {"shedrate", 0, 0, false, SHD_AT(rate), 0},
    {"sheddepth", 0, 0, false, SHD_AT(depth), 0},
    {"shedhold", 0, 0, false, SHD_AT(hold_s), 0},
    {"shedwait", 0, 0, false, SHD_AT(wait_ms), 0},
};

static void
put(void *base, size_t at, int is_int, long long v)
{
  char *p = (char *)base + at - 1;
  if (is_int)
    *(int *)(void *)p = (int)v;
  else
    *(uint32_t *)(void *)p = (uint32_t)v;
}

static long long
get(const void *base, size_t at, int is_int)
{
  const char *p = (const char *)base + at - 1;
  if (is_int)
    return *(const int *)(const void *)p;
  return *(const uint32_t *)(const void *)p;
}

static bool
mon_ok(const ParamMap *m, long long v)
{
  MON_Params p;
  MON_DefaultParams(&p);
  put(&p, m->mon, m->mon_int, v);
  return MON_ValidateParams(&p, NULL, 0);
}

static bool
shd_ok(const ParamMap *m, long long v)
{
  SHD_Params p;
  char e[128];
  SHD_DefaultParams(&p);
  put(&p, m->shd, m->shd_int, v);
  return SHD_ValidateParams(&p, e, sizeof(e));
}

static void
test_table_matches_monitor_and_shed(void)
{
  MON_Params mp;
  SHD_Params sp;
  MON_DefaultParams(&mp);
  SHD_DefaultParams(&sp);
  for (size_t i = 0; i < sizeof(param_map) / sizeof(param_map[0]); i++) {
    const ParamMap *m = &param_map[i];
    const CNF_Option *o = CNF_FindOption(CNF_OG_DISCARD, m->name);
    TEST_CHECK(o != NULL);
    if (!o)
      continue;
    long long lo = (long long)o->lo, hi = (long long)(o->clamp > 0 ? o->clamp : o->hi);
    if (m->mon) {
      TEST_EQ_INT(get(&mp, m->mon, m->mon_int), (long long)o->def);
      TEST_CHECK(mon_ok(m, lo) && mon_ok(m, hi));
      if (m->mon_checked)
        TEST_CHECK(!mon_ok(m, lo - 1) && !mon_ok(m, hi + 1));
    }
    if (m->shd) {
      TEST_EQ_INT(get(&sp, m->shd, m->shd_int), (long long)o->def);
      TEST_CHECK(shd_ok(m, lo) && shd_ok(m, hi));
      TEST_CHECK((lo == 0 && !m->shd_int) || !shd_ok(m, lo - 1)); /* unsigned 0 - 1 wraps */
      TEST_CHECK(!shd_ok(m, hi + 1));
    }
  }
  /* netprefix: both halves */
  const CNF_Option *np = CNF_FindOption(CNF_OG_DISCARD, "netprefix");
  TEST_EQ_INT(mp.netprefix4, (int)np->def);
  TEST_EQ_INT(mp.netprefix6, (int)np->def);
  MON_Params p = mp;
  p.netprefix4 = (int)np->hi;
  p.netprefix6 = (int)np->hi2;
  TEST_CHECK(MON_ValidateParams(&p, NULL, 0));
  p.netprefix4++;
  TEST_CHECK(!MON_ValidateParams(&p, NULL, 0));
  /* mru: the default maxmem is the monitor's default maxdepth (64 octets a record with its
   * index), and the largest maxdepth / maxmem are the largest table it accepts */
  const CNF_Option *mm = CNF_FindOption(CNF_OG_MRU, "maxmem");
  const CNF_Option *md = CNF_FindOption(CNF_OG_MRU, "maxdepth");
  TEST_EQ_INT(mp.maxdepth, (long long)mm->def * 1024 / (MON_RECORD_BYTES + 4));
  TEST_EQ_INT((long long)mm->hi * 1024 / (MON_RECORD_BYTES + 4), (long long)md->hi);
  p = mp;
  p.maxdepth = (uint32_t)md->hi;
  TEST_CHECK(MON_ValidateParams(&p, NULL, 0));
  p.maxdepth++;
  TEST_CHECK(!MON_ValidateParams(&p, NULL, 0));
  p.maxdepth = (uint32_t)md->lo - 1;
  TEST_CHECK(!MON_ValidateParams(&p, NULL, 0));
  TEST_EQ_INT(mp.mindepth, (long long)CNF_FindOption(CNF_OG_MRU, "mindepth")->def);
  TEST_EQ_INT(mp.maxage, (long long)CNF_FindOption(CNF_OG_MRU, "maxage")->def);
}

/* Every option's default is what CNF_Create holds, and a value just outside its range is
 * an error at its line, so no range error is left for a later stage without FILE:LINE. */
static void
test_table_ranges_enforced_at_the_line(void)
{
  static const char *const dirs[CNF_OG_COUNT] = {"server 192.0.2.1", "discard", "mru", "tos",
                                                 "tinker"};
  for (int g = 0; g < CNF_OG_COUNT; g++) {
    size_t n;
    const CNF_Option *o = CNF_Options((CNF_OptGroup)g, &n);
    for (size_t i = 0; i < n; i++) {
      if (o[i].kind == CNF_OK_FLAG || (o[i].flags & (CNF_OF_NOEFFECT | CNF_OF_REFUSED)))
        continue;
      char line[160];
      if (o[i].kind == CNF_OK_PAIR)
        snprintf(line, sizeof(line), "\n%s %s %.0f/0", dirs[g], o[i].name, o[i].hi + 1);
      else if (o[i].kind == CNF_OK_DBL)
        snprintf(line, sizeof(line), "\n%s %s %g", dirs[g], o[i].name, o[i].hi * 2);
      else
        snprintf(line, sizeof(line), "\n%s %s %.0f", dirs[g], o[i].name, o[i].hi + 1);
      CNF_Errors e;
      bool ok;
      CNF_Config *c = parse(line, &e, &ok);
      TEST_CHECK(!ok);
      TEST_CHECK(strstr(err(&e, 0), "t.conf:2: ") == err(&e, 0));
      TEST_CHECK(strstr(err(&e, 0), "out of range") != NULL);
      CNF_ClearErrors(&e);
      CNF_Destroy(c);
    }
  }
  CNF_Config *c = CNF_Create();
  TEST_EQ_INT(c->discard.leak, (long long)CNF_FindOption(CNF_OG_DISCARD, "leak")->def);
  TEST_EQ_INT(c->discard.netaverage,
              (long long)CNF_FindOption(CNF_OG_DISCARD, "netaverage")->def);
  TEST_EQ_INT(c->mru.max.value, 1024);
  TEST_CHECK(c->mru.max.in_kib);
  TEST_EQ_INT(c->tos.kod_backoff_max, 17);
  CNF_Destroy(c);
}

/* ---- docs/configuration.md says what the table says ---- */

static char *
read_doc(void)
{
  /* the source tree: NTPG_SRC (CMake sets it for every unit test), else this file's path
   * (a package build maps __FILE__ to a relative one with -ffile-prefix-map) */
  char path[1024];
  const char *top = getenv("NTPG_SRC");
  if (top && *top) {
    snprintf(path, sizeof(path), "%s/docs/configuration.md", top);
  } else {
    snprintf(path, sizeof(path), "%s", __FILE__);
    char *cut = strstr(path, "tests/unit/test_config.c");
    if (!cut)
      return NULL;
    snprintf(cut, sizeof(path) - (size_t)(cut - path), "docs/configuration.md");
  }
  FILE *f = fopen(path, "r");
  if (!f)
    return NULL;
  static char buf[1 << 18];
  size_t n = fread(buf, 1, sizeof(buf) - 1, f);
  fclose(f);
  buf[n] = '\0';
  return buf;
}

/* The table row of docs that starts with "| `NAME" (after `after`), as a string, or "". */
static const char *
doc_row(const char *doc, const char *after, const char *name)
{
  static char row[1024];
  const char *from = after ? strstr(doc, after) : doc;
  char key[96];
  snprintf(key, sizeof(key), "\n| `%s", name);
  const char *r = from ? from : doc;
  for (;;) {
    r = strstr(r, key);
    if (!r)
      return "";
    char c = r[strlen(key)];
    if (c == ' ' || c == '`')
      break;
    r++;
  }
  const char *end = strchr(r + 1, '\n');
  size_t len = end ? (size_t)(end - r) : strlen(r);
  len = len > 0 ? len - 1 : 0;
  snprintf(row, sizeof(row), "%.*s", (int)(len < sizeof(row) ? len : sizeof(row) - 1), r + 1);
  return row;
}

static void
test_docs_match_table(void)
{
  const char *doc = read_doc();
  TEST_CHECK(doc != NULL);
  if (!doc)
    return;
  /* every directive in the directive table of the docs, with what ntpgate does */
  size_t nd;
  const CNF_Directive *d = CNF_Directives(&nd);
  static const char *const status[] = {"works", "no effect (warning)", "refused (error)"};
  for (size_t i = 0; i < nd; i++) {
    const char *row = doc_row(doc, "## Every directive", d[i].name);
    if (!strstr(row, status[d[i].status]))
      fprintf(stderr, "docs: directive %s: row '%s' should say '%s'\n", d[i].name, row,
              status[d[i].status]);
    TEST_CHECK(strstr(row, status[d[i].status]) != NULL);
  }
  /* every option with its range and default in its section's table */
  static const char *const sections[CNF_OG_COUNT] = {"## Associations", "## `discard`",
                                                     "## `mru`", "## `tos`", "## `tinker`"};
  for (int g = 0; g < CNF_OG_COUNT; g++) {
    size_t n;
    const CNF_Option *o = CNF_Options((CNF_OptGroup)g, &n);
    for (size_t i = 0; i < n; i++) {
      if (o[i].flags & (CNF_OF_NOEFFECT | CNF_OF_REFUSED)) {
        const char *row = doc_row(doc, sections[g], o[i].name);
        const char *says = o[i].flags & CNF_OF_NOEFFECT ? "no effect (warning)" : "refused";
        if (!strstr(row, says))
          fprintf(stderr, "docs: option %s: row '%s' should say '%s'\n", o[i].name, row, says);
        TEST_CHECK(strstr(row, says) != NULL);
        continue;
      }
      if (o[i].kind == CNF_OK_FLAG)
        continue;
      const char *row = doc_row(doc, sections[g], o[i].name);
      char range[96], def[48];
      if (o[i].kind == CNF_OK_PAIR)
        snprintf(range, sizeof(range), "%.0f..%.0f / %.0f..%.0f", o[i].lo, o[i].hi, o[i].lo,
                 o[i].hi2);
      else if (o[i].kind == CNF_OK_DBL)
        snprintf(range, sizeof(range), "%g..%g", o[i].lo, o[i].hi);
      else
        snprintf(range, sizeof(range), "%.0f..%.0f", o[i].lo, o[i].hi);
      if (o[i].kind == CNF_OK_DBL)
        snprintf(def, sizeof(def), "| %g", o[i].def);
      else
        snprintf(def, sizeof(def), "| %.0f", o[i].def);
      bool good = strstr(row, range) != NULL &&
                  ((o[i].flags & CNF_OF_NODEFAULT) || strstr(row, def) != NULL);
      if (!good)
        fprintf(stderr, "docs: option %s: row '%s' should give '%s' and default '%s'\n",
                o[i].name, row, range, def);
      TEST_CHECK(good);
    }
  }
}

/* ---- messages reach the daemon as records with a severity ---- */

static void
test_run_errors_are_records(void)
{
  TEST_CHECK(make_tmpdir());
  /* an error whose text says ": warning: " (a quoted token) once logged as a warning */
  write_file("main.conf", "rlimit memlock 32\n\"a: warning: b\"\n");
  RUN_Errors e = {0};
  TEST_CHECK(!RUN_CheckFile(tpath("main.conf"), &e));
  TEST_EQ_INT(e.count, 2);
  TEST_EQ_INT(e.errors, 1);
  const RUN_Message *err_m = NULL, *warn_m = NULL;
  for (size_t i = 0; i < e.count; i++) {
    if (e.items[i].severity == RUN_SEV_ERROR)
      err_m = &e.items[i];
    else
      warn_m = &e.items[i];
  }
  TEST_CHECK(err_m && warn_m);
  if (err_m && warn_m) {
    TEST_EQ_STR(err_m->msg.file, tpath("main.conf"));
    TEST_EQ_INT(err_m->msg.line, 2);
    TEST_EQ_STR(err_m->msg.text, "unknown directive 'a: warning: b'");
    TEST_EQ_INT(warn_m->msg.line, 1);
    char buf[512], want[512];
    RUN_FormatMessage(warn_m, true, buf, sizeof(buf));
    snprintf(want, sizeof(want),
             "%s:1: warning: rlimit: accepted for compatibility; it has no effect here: "
             "ntpgated neither locks its memory nor changes resource limits",
             tpath("main.conf"));
    TEST_EQ_STR(buf, want);
    RUN_FormatMessage(err_m, true, buf, sizeof(buf));
    snprintf(want, sizeof(want), "%s:2: unknown directive 'a: warning: b'",
             tpath("main.conf"));
    TEST_EQ_STR(buf, want);
  }
  RUN_FreeErrors(&e);
  TEST_EQ_INT(e.count, 0);
  remove_tmpdir();
}

TEST_MAIN(TEST_CASE(test_defaults), TEST_CASE(test_comments_blanks_quotes_crlf),
          TEST_CASE(test_server_pool_peer), TEST_CASE(test_server_poll_rules),
          TEST_CASE(test_local_clock), TEST_CASE(test_restrict_default_forms),
          TEST_CASE(test_restrict_addresses), TEST_CASE(test_restrict_masks_bits_outside),
          TEST_CASE(test_restrict_host_and_source), TEST_CASE(test_restrict_every_flag),
          TEST_CASE(test_restrict_kod_without_limited_warns),
          TEST_CASE(test_restrict_ippeerlimit), TEST_CASE(test_restrict_removals),
          TEST_CASE(test_discard), TEST_CASE(test_mru), TEST_CASE(test_tos),
          TEST_CASE(test_tinker), TEST_CASE(test_interface_port_threads),
          TEST_CASE(test_files_and_keys), TEST_CASE(test_enable_disable),
          TEST_CASE(test_compat_no_effect), TEST_CASE(test_stats_defaults_off_day_link),
          TEST_CASE(test_stats_debian_lines), TEST_CASE(test_stats_clockstats_warns),
          TEST_CASE(test_stats_errors), TEST_CASE(test_stats_bad_filegen_changes_nothing),
          TEST_CASE(test_unknown_directive),
          TEST_CASE(test_every_error_reported_with_lines),
          TEST_CASE(test_null_errs_and_format), TEST_CASE(test_control_characters_sanitized),
          TEST_CASE(test_long_lines), TEST_CASE(test_typical_public_server),
          TEST_CASE(test_parse_file_and_relative_include), TEST_CASE(test_include_errors),
          TEST_CASE(test_include_depth_limit), TEST_CASE(test_file_with_nul_and_crlf),
          TEST_CASE(test_control_characters_are_not_blanks),
          TEST_CASE(test_runtime_text_access_control_only), TEST_CASE(test_field_directives),
          TEST_CASE(test_table_matches_monitor_and_shed),
          TEST_CASE(test_table_ranges_enforced_at_the_line), TEST_CASE(test_docs_match_table),
          TEST_CASE(test_run_errors_are_records), TEST_CASE(test_metrics_listen))

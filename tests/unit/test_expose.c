/* Unit tests for expose: every family has HELP and TYPE lines, the values of a snapshot land
 * in the right series, every drop reason is a label, NaN for what is unknown, and a buffer
 * too small gives nothing. */
#include "expose.h"

#include <math.h>

#include "harness.h"

static char out[256 * 1024];

static EXP_Snapshot snap;

static void
fill(void)
{
  memset(&snap, 0, sizeof(snap));
  snap.version = "9.9\"x";
  snap.received = 1000;
  snap.sent = 900;
  snap.reasons[SRV_R_KOD_RATE] = 7;
  snap.reasons[SRV_R_KOD_DENY] = 3;
  snap.reasons[SRV_R_DROP_LIMITED] = 11;
  snap.reasons[SRV_R_DROP_SHORT] = 2;
  snap.oversize = 5;
  snap.mon_entries = 12;
  snap.mon_capacity = 16384;
  snap.mon_evictions = 4;
  snap.shed_now = 1;
  snap.stratum = 3;
  snap.leap = 0;
  snap.root_delay = 0.0125;
  snap.root_dispersion = 0.5;
}

/* The value of the first sample line that starts with series + " ". */
static double
value(const char *text, const char *series)
{
  size_t n = strlen(series);
  for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
    if (strncmp(p, series, n) == 0 && p[n] == ' ')
      return strtod(p + n + 1, NULL);
  return -12345;
}

static void
test_exp_counters_in_their_series(void)
{
  fill();
  size_t n = EXP_Format(&snap, out, sizeof(out));
  TEST_CHECK(n > 0 && n == strlen(out));
  TEST_EQ_INT(value(out, "ntpgate_requests_received_total"), 1000);
  TEST_EQ_INT(value(out, "ntpgate_responses_sent_total"), 900);
  TEST_EQ_INT(value(out, "ntpgate_kod_sent_total{code=\"RATE\"}"), 7);
  TEST_EQ_INT(value(out, "ntpgate_kod_sent_total{code=\"DENY\"}"), 3);
  TEST_EQ_INT(value(out, "ntpgate_kod_sent_total{code=\"NTSN\"}"), 0);
  TEST_EQ_INT(value(out, "ntpgate_requests_dropped_total{reason=\"limited\"}"), 11);
  TEST_EQ_INT(value(out, "ntpgate_requests_dropped_total{reason=\"short\"}"), 2);
  TEST_EQ_INT(value(out, "ntpgate_requests_dropped_total{reason=\"oversize\"}"), 5);
  TEST_EQ_INT(value(out, "ntpgate_monitor_entries"), 12);
  TEST_EQ_INT(value(out, "ntpgate_monitor_capacity"), 16384);
  TEST_EQ_INT(value(out, "ntpgate_monitor_evictions_total"), 4);
  TEST_EQ_INT(value(out, "ntpgate_shed_sources"), 1);
  TEST_EQ_INT(value(out, "ntpgate_system_stratum"), 3);
  TEST_NEAR(value(out, "ntpgate_system_root_delay_seconds"), 0.0125, 1e-12);
  TEST_NEAR(value(out, "ntpgate_system_root_dispersion_seconds"), 0.5, 1e-12);
}

static void
test_exp_every_drop_reason_is_a_label(void)
{
  fill();
  EXP_Format(&snap, out, sizeof(out));
  char series[160];
  int drops = 0;
  for (int r = 0; r < SRV_R_COUNT; r++) {
    const char *name = SRV_ReasonName((SRV_Reason)r);
    if (strncmp(name, "dropped_", 8) != 0)
      continue;
    drops++;
    snprintf(series, sizeof(series), "ntpgate_requests_dropped_total{reason=\"%s\"}",
             name + 8);
    TEST_CHECK(value(out, series) >= 0);
  }
  TEST_CHECK(drops >= 20);
}

/* Each family named in the issue has a HELP and a TYPE line, and every sample's family was
 * announced before it. */
static void
test_exp_every_family_has_help_and_type(void)
{
  static const char *const names[] = {"ntpgate_build_info",
                                      "ntpgate_requests_received_total",
                                      "ntpgate_responses_sent_total",
                                      "ntpgate_requests_dropped_total",
                                      "ntpgate_kod_sent_total",
                                      "ntpgate_monitor_entries",
                                      "ntpgate_monitor_capacity",
                                      "ntpgate_monitor_evictions_total",
                                      "ntpgate_shed_sources",
                                      "ntpgate_system_stratum",
                                      "ntpgate_system_leap",
                                      "ntpgate_system_offset_seconds",
                                      "ntpgate_system_frequency_ppm",
                                      "ntpgate_system_jitter_seconds",
                                      "ntpgate_system_root_delay_seconds",
                                      "ntpgate_system_root_dispersion_seconds",
                                      "ntpgate_peer_offset_seconds",
                                      "ntpgate_peer_delay_seconds",
                                      "ntpgate_peer_jitter_seconds",
                                      "ntpgate_peer_poll_seconds",
                                      "ntpgate_peer_reach",
                                      "ntpgate_peer_kod_received_total"};
  fill();
  out[0] = '\n'; /* so that every line, the first too, follows a newline */
  EXP_Format(&snap, out + 1, sizeof(out) - 1);
  char line[200];
  for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
    snprintf(line, sizeof(line), "\n# HELP %s ", names[i]);
    TEST_CHECK(strstr(out, line) != NULL);
    snprintf(line, sizeof(line), "\n# TYPE %s ", names[i]);
    TEST_CHECK(strstr(out, line) != NULL);
  }
  const char *announced = "";
  for (const char *p = out + 1; *p; p = strchr(p, '\n') + 1) {
    if (strncmp(p, "# TYPE ", 7) == 0) {
      announced = p + 7;
    } else if (p[0] != '#') {
      size_t n = strcspn(announced, " ");
      TEST_CHECK(strncmp(p, announced, n) == 0 && (p[n] == ' ' || p[n] == '{'));
    }
  }
}

static void
test_exp_label_values_escaped(void)
{
  fill();
  EXP_Format(&snap, out, sizeof(out));
  TEST_CHECK(strstr(out, "ntpgate_build_info{version=\"9.9\\\"x\"} 1\n") != NULL);
}

static void
test_exp_no_client_gives_nan(void)
{
  fill();
  EXP_Format(&snap, out, sizeof(out));
  TEST_CHECK(strstr(out, "\nntpgate_system_offset_seconds NaN\n") != NULL);
  TEST_CHECK(strstr(out, "\nntpgate_leap_list_expiry_timestamp_seconds NaN\n") != NULL);
  snap.leap_expiry = 1798761600;
  EXP_Format(&snap, out, sizeof(out));
  TEST_NEAR(value(out, "ntpgate_leap_list_expiry_timestamp_seconds"), 1798761600, 0.5);
  snap.have_client = true;
  snap.offset = -0.25;
  snap.frequency_ppm = 12.5;
  EXP_Format(&snap, out, sizeof(out));
  TEST_NEAR(value(out, "ntpgate_system_offset_seconds"), -0.25, 1e-12);
  TEST_NEAR(value(out, "ntpgate_system_frequency_ppm"), 12.5, 1e-12);
}

static void
test_exp_peers_by_address(void)
{
  fill();
  snap.n_peers = 2;
  ADR_Parse("192.0.2.1", &snap.peers[0].addr);
  ADR_Parse("2001:db8::1", &snap.peers[1].addr);
  snap.peers[0] = (EXP_Peer){.addr = snap.peers[0].addr,
                             .reach = 255,
                             .poll = 6,
                             .have_sample = true,
                             .offset = 0.001,
                             .delay = 0.02,
                             .kod_rate = 2,
                             .kod_rstr = 1};
  snap.peers[1].reach = 1;
  EXP_Format(&snap, out, sizeof(out));
  TEST_EQ_INT(value(out, "ntpgate_peer_reach{peer=\"192.0.2.1\"}"), 255);
  TEST_EQ_INT(value(out, "ntpgate_peer_reach{peer=\"2001:db8::1\"}"), 1);
  TEST_EQ_INT(value(out, "ntpgate_peer_poll_seconds{peer=\"192.0.2.1\"}"), 64);
  TEST_NEAR(value(out, "ntpgate_peer_delay_seconds{peer=\"192.0.2.1\"}"), 0.02, 1e-12);
  TEST_CHECK(strstr(out, "ntpgate_peer_offset_seconds{peer=\"2001:db8::1\"} NaN\n") != NULL);
  TEST_EQ_INT(value(out, "ntpgate_peer_kod_received_total{peer=\"192.0.2.1\",code=\"RATE\"}"),
              2);
  TEST_EQ_INT(value(out, "ntpgate_peer_kod_received_total{peer=\"192.0.2.1\",code=\"RSTR\"}"),
              1);
}

/* The NTS rows: a family each when there are rows, every row a labelled sample under the
 * family's HELP and TYPE; no rows, no family. */
static void
test_exp_nts_rows(void)
{
  fill();
  EXP_Format(&snap, out, sizeof(out));
  TEST_CHECK(strstr(out, "ntpgate_nts_ke_events_total") == NULL);
  TEST_CHECK(strstr(out, "ntpgate_client_nts_events_total") == NULL);
  snap.nts_ke[0] = (EXP_Row){"handshakes", 42};
  snap.nts_ke[1] = (EXP_Row){"tls_failed", 3};
  snap.n_nts_ke = 2;
  snap.client_nts[0] = (EXP_Row){"ke_ok", 1};
  snap.client_nts[1] = (EXP_Row){"auth", 17};
  snap.client_nts[2] = (EXP_Row){"we\"ird", 5};
  snap.n_client_nts = 3;
  TEST_CHECK(EXP_Format(&snap, out, sizeof(out)) > 0);
  TEST_CHECK(strstr(out, "# TYPE ntpgate_nts_ke_events_total counter\n") != NULL);
  TEST_CHECK(strstr(out, "# TYPE ntpgate_client_nts_events_total counter\n") != NULL);
  TEST_CHECK(value(out, "ntpgate_nts_ke_events_total{event=\"handshakes\"}") == 42);
  TEST_CHECK(value(out, "ntpgate_nts_ke_events_total{event=\"tls_failed\"}") == 3);
  TEST_CHECK(value(out, "ntpgate_client_nts_events_total{event=\"ke_ok\"}") == 1);
  TEST_CHECK(value(out, "ntpgate_client_nts_events_total{event=\"auth\"}") == 17);
  TEST_CHECK(value(out, "ntpgate_client_nts_events_total{event=\"we\\\"ird\"}") == 5);
}

static void
test_exp_too_small_gives_zero(void)
{
  fill();
  size_t full = EXP_Format(&snap, out, sizeof(out));
  TEST_CHECK(full > 0);
  TEST_EQ_INT(EXP_Format(&snap, out, full), 0); /* no room for the terminator */
  TEST_EQ_INT(EXP_Format(&snap, out, full + 1), full);
  TEST_EQ_INT(EXP_Format(&snap, out, 0), 0);
}

TEST_MAIN(TEST_CASE(test_exp_counters_in_their_series),
          TEST_CASE(test_exp_every_drop_reason_is_a_label),
          TEST_CASE(test_exp_every_family_has_help_and_type),
          TEST_CASE(test_exp_label_values_escaped), TEST_CASE(test_exp_no_client_gives_nan),
          TEST_CASE(test_exp_peers_by_address), TEST_CASE(test_exp_nts_rows),
          TEST_CASE(test_exp_too_small_gives_zero))

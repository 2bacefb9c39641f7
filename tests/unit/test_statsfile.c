/* statsfile: ntpd's record lines field by field, and the file generation names and ends. */
#include "statsfile.h"

#include "harness.h"

#define T_20261205 INT64_C(1796428800) /* 2026-12-05 00:00:00 UTC, MJD 61379 */

static struct timespec
ts(int64_t s, long ns)
{
  struct timespec t = {(time_t)s, ns};
  return t;
}

static void
test_stf_stamp_is_mjd_and_seconds_past_midnight(void)
{
  char b[64];
  struct timespec t = ts(T_20261205 + 3 * 3600 + 25 * 60 + 7, 987654321);
  STF_FormatStamp(&t, b, sizeof(b));
  TEST_EQ_STR(b, "61379 12307.987");
  t = ts(0, 0);
  STF_FormatStamp(&t, b, sizeof(b));
  TEST_EQ_STR(b, "40587 0.000");
  /* the last millisecond of a day stays in that day */
  t = ts(T_20261205 - 1, 999999999);
  STF_FormatStamp(&t, b, sizeof(b));
  TEST_EQ_STR(b, "61378 86399.999");
}

static void
test_stf_loop_line(void)
{
  char b[160];
  struct timespec t = ts(T_20261205 + 60, 500000000);
  STF_Loop r = {0.000123456789, -12.3456, 0.0000021, 0.0123456, 6};
  size_t n = STF_FormatLoop(&t, &r, b, sizeof(b));
  TEST_EQ_STR(b, "61379 60.500 0.000123457 -12.346 0.000002100 0.012346 6\n");
  TEST_EQ_INT(n, strlen(b));
}

static void
test_stf_peer_line(void)
{
  char b[160];
  struct timespec t = ts(T_20261205 + 86399, 0);
  STF_Peer r = {"127.77.9.1", 0x9614, -0.0000123, 0.000045, 0.000937, 0.0000071};
  STF_FormatPeer(&t, &r, b, sizeof(b));
  TEST_EQ_STR(b, "61379 86399.000 127.77.9.1 9614 -0.000012300 0.000045000 0.000937000 "
                 "0.000007100\n");
  STF_Peer v6 = {"::1", 0x8011, 0, 0, 16, 0};
  STF_FormatPeer(&t, &v6, b, sizeof(b));
  TEST_EQ_STR(b, "61379 86399.000 ::1 8011 0.000000000 0.000000000 16.000000000 "
                 "0.000000000\n");
}

static void
test_stf_sys_line_has_eleven_counters(void)
{
  char b[256];
  struct timespec t = ts(T_20261205 + 3600, 0);
  STF_Sys r = {3600, 100, 90, 80, 10, 3, 2, 1, 4, 5, 6};
  STF_FormatSys(&t, &r, b, sizeof(b));
  TEST_EQ_STR(b, "61379 3600.000 3600 100 90 80 10 3 2 1 4 5 6\n");
}

static void
test_stf_proto_line(void)
{
  char b[160];
  struct timespec t = ts(T_20261205 + 1, 0);
  STF_Proto p = {"127.77.9.1", 0x961a, 0x8a, "sys_peer"};
  STF_FormatProto(&t, &p, b, sizeof(b));
  TEST_EQ_STR(b, "61379 1.000 127.77.9.1 961a 8a sys_peer\n");
  STF_Proto s = {"0.0.0.0", 0x0615, 0x05, "clock_sync"};
  STF_FormatProto(&t, &s, b, sizeof(b));
  TEST_EQ_STR(b, "61379 1.000 0.0.0.0 0615 05 clock_sync\n");
}

static void
test_stf_truncated_line_reports_full_length(void)
{
  char b[20];
  struct timespec t = ts(T_20261205, 0);
  STF_Loop r = {0, 0, 0, 0, 6};
  size_t n = STF_FormatLoop(&t, &r, b, sizeof(b));
  TEST_CHECK(n >= sizeof(b));
  TEST_EQ_INT(strlen(b), sizeof(b) - 1);
  n = STF_FormatLoop(&t, &r, NULL, 0);
  TEST_EQ_INT(n, strlen("61379 0.000 0.000000000 0.000 0.000000000 0.000000 6\n"));
}

static void
test_stf_day_generation_changes_at_midnight(void)
{
  char s[32];
  int64_t from, until;
  STF_Generation(STF_TYPE_DAY, T_20261205 - 1, s, sizeof(s), &from, &until);
  TEST_EQ_STR(s, ".20261204");
  TEST_EQ_INT(until, T_20261205);
  STF_Generation(STF_TYPE_DAY, T_20261205, s, sizeof(s), &from, &until);
  TEST_EQ_STR(s, ".20261205");
  TEST_EQ_INT(from, T_20261205);
  TEST_EQ_INT(until, T_20261205 + 86400);
  STF_Generation(STF_TYPE_DAY, INT64_C(951782400), s, sizeof(s), &from, &until); /* leap day */
  TEST_EQ_STR(s, ".20000229");
  STF_Generation(STF_TYPE_DAY, INT64_C(946598400) + 86399, s, sizeof(s), &from, &until);
  TEST_EQ_STR(s, ".19991231");
  TEST_EQ_INT(until, INT64_C(946684800));
}

static void
test_stf_week_generation_is_iso_week(void)
{
  char s[32];
  int64_t from, until;
  STF_Generation(STF_TYPE_WEEK, T_20261205, s, sizeof(s), &from, &until);
  TEST_EQ_STR(s, ".2026w49");
  TEST_EQ_INT(from, T_20261205 - 5 * 86400);  /* Monday 2026-11-30 */
  TEST_EQ_INT(until, T_20261205 + 2 * 86400); /* Saturday: the week ends after Sunday */
  /* 2021-01-03 */
  STF_Generation(STF_TYPE_WEEK, INT64_C(1609632000), s, sizeof(s), &from, &until);
  TEST_EQ_STR(s, ".2020w53");
  TEST_EQ_INT(until, INT64_C(1609718400));
  /* 2021-01-04 */
  STF_Generation(STF_TYPE_WEEK, INT64_C(1609718400), s, sizeof(s), &from, &until);
  TEST_EQ_STR(s, ".2021w01");
  /* 2024-12-30 */
  STF_Generation(STF_TYPE_WEEK, INT64_C(1735516800), s, sizeof(s), &from, &until);
  TEST_EQ_STR(s, ".2025w01");
  /* 2024-12-29 */
  STF_Generation(STF_TYPE_WEEK, INT64_C(1735430400), s, sizeof(s), &from, &until);
  TEST_EQ_STR(s, ".2024w52");
  TEST_EQ_INT(until, INT64_C(1735516800));
}

static void
test_stf_month_year_none_generations(void)
{
  char s[32];
  int64_t from, until;
  STF_Generation(STF_TYPE_MONTH, T_20261205, s, sizeof(s), &from, &until);
  TEST_EQ_STR(s, ".202612");
  TEST_EQ_INT(from, T_20261205 - 4 * 86400);
  TEST_EQ_INT(until, INT64_C(1798761600)); /* 2027-01-01 */
  STF_Generation(STF_TYPE_YEAR, T_20261205, s, sizeof(s), &from, &until);
  TEST_EQ_STR(s, ".2026");
  TEST_EQ_INT(from, INT64_C(1767225600)); /* 2026-01-01 */
  TEST_EQ_INT(until, INT64_C(1798761600));
  STF_Generation(STF_TYPE_NONE, T_20261205, s, sizeof(s), &from, &until);
  TEST_EQ_STR(s, "");
  TEST_EQ_INT(from, INT64_MIN);
  TEST_EQ_INT(until, INT64_MAX);
}

static void
test_stf_file_name_joins_dir(void)
{
  char b[64];
  TEST_CHECK(STF_FileName("/var/log/ntpstats/", "loopstats", ".20261205", b, sizeof(b)));
  TEST_EQ_STR(b, "/var/log/ntpstats/loopstats.20261205");
  TEST_CHECK(STF_FileName("/var/log/ntpstats", "peerstats", "", b, sizeof(b)));
  TEST_EQ_STR(b, "/var/log/ntpstats/peerstats");
  TEST_CHECK(STF_FileName("", "sysstats", ".2026", b, sizeof(b)));
  TEST_EQ_STR(b, "sysstats.2026");
  char small[32];
  TEST_CHECK(
      !STF_FileName("/var/log/ntpstats", "loopstats", ".20261205", small, sizeof(small)));
}

static void
test_stf_names_round_trip(void)
{
  for (int i = 0; i < STF_KIND_COUNT; i++) {
    STF_Kind k;
    TEST_CHECK(STF_KindByName(STF_KindName((STF_Kind)i), &k));
    TEST_EQ_INT(k, i);
  }
  STF_Kind k;
  TEST_CHECK(!STF_KindByName("loopstat", &k));
  STF_Type t;
  TEST_CHECK(STF_TypeByName("week", &t));
  TEST_EQ_INT(t, STF_TYPE_WEEK);
  TEST_CHECK(!STF_TypeByName("pid", &t));
  TEST_CHECK(STF_KindWritten(STF_PROTOSTATS));
  TEST_CHECK(!STF_KindWritten(STF_CLOCKSTATS));
}

TEST_MAIN(TEST_CASE(test_stf_stamp_is_mjd_and_seconds_past_midnight),
          TEST_CASE(test_stf_loop_line), TEST_CASE(test_stf_peer_line),
          TEST_CASE(test_stf_sys_line_has_eleven_counters), TEST_CASE(test_stf_proto_line),
          TEST_CASE(test_stf_truncated_line_reports_full_length),
          TEST_CASE(test_stf_day_generation_changes_at_midnight),
          TEST_CASE(test_stf_week_generation_is_iso_week),
          TEST_CASE(test_stf_month_year_none_generations),
          TEST_CASE(test_stf_file_name_joins_dir), TEST_CASE(test_stf_names_round_trip))

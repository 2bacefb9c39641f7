/* leapsec: the leap-second list as tzdata ships it (IERS data: its #$, #@, #h and data lines,
 * comments left out, which the SHA-1 does not cover), tampered and malformed lists with the
 * line each error names, expiry warnings, announcement window, smear and ntpq rendering. */
#include "leapsec.h"

#include "harness.h"

/* /usr/share/zoneinfo/leap-seconds.list of Debian tzdata 2025b, without its comment lines. */
static const char real_list[] = "#$ 3960835200\n"
                                "#@ 3991593600\n"
                                "2272060800      10      # 1 Jan 1972\n"
                                "2287785600      11      # 1 Jul 1972\n"
                                "2303683200      12      # 1 Jan 1973\n"
                                "2335219200      13      # 1 Jan 1974\n"
                                "2366755200      14      # 1 Jan 1975\n"
                                "2398291200      15      # 1 Jan 1976\n"
                                "2429913600      16      # 1 Jan 1977\n"
                                "2461449600      17      # 1 Jan 1978\n"
                                "2492985600      18      # 1 Jan 1979\n"
                                "2524521600      19      # 1 Jan 1980\n"
                                "2571782400      20      # 1 Jul 1981\n"
                                "2603318400      21      # 1 Jul 1982\n"
                                "2634854400      22      # 1 Jul 1983\n"
                                "2698012800      23      # 1 Jul 1985\n"
                                "2776982400      24      # 1 Jan 1988\n"
                                "2840140800      25      # 1 Jan 1990\n"
                                "2871676800      26      # 1 Jan 1991\n"
                                "2918937600      27      # 1 Jul 1992\n"
                                "2950473600      28      # 1 Jul 1993\n"
                                "2982009600      29      # 1 Jul 1994\n"
                                "3029443200      30      # 1 Jan 1996\n"
                                "3076704000      31      # 1 Jul 1997\n"
                                "3124137600      32      # 1 Jan 1999\n"
                                "3345062400      33      # 1 Jan 2006\n"
                                "3439756800      34      # 1 Jan 2009\n"
                                "3550089600      35      # 1 Jul 2012\n"
                                "3644697600      36      # 1 Jul 2015\n"
                                "3692217600      37      # 1 Jan 2017\n"
                                "#h 49db2447 571e5e1b 2f002a53 9c8da8e4 39b8e49e\n";

#define NTP_UNIX 2208988800LL
#define DAY 86400LL
/* 2017-01-01 00:00:00 UTC, the latest leap; 2026-12-05; the list's #@ expiry 2026-06-28. */
#define LEAP_2017 1483228800LL
#define NOW_2026 1796428800LL
#define EXPIRES (3991593600LL - NTP_UNIX)

static size_t
line_count(const char *text)
{
  size_t n = 0;
  for (; *text; text++)
    n += *text == '\n';
  return n;
}

static void
test_lsc_real_list(void)
{
  LSC_List l;
  MSG_Errors errs = {0};
  TEST_CHECK(LSC_Parse(&l, "leap-seconds.list", real_list, strlen(real_list), &errs));
  TEST_EQ_INT(errs.errors.count, 0);
  TEST_EQ_INT(errs.warnings.count, 0);
  TEST_CHECK(l.hashed);
  TEST_EQ_INT(l.n, 28);
  TEST_EQ_INT(l.e[0].when, 63072000); /* 1 Jan 1972 */
  TEST_EQ_INT(l.e[0].tai, 10);
  TEST_EQ_INT(l.expires, EXPIRES);
  TEST_EQ_INT(l.updated, 3960835200LL - NTP_UNIX);
  LSC_State s;
  LSC_At(&l, NOW_2026, &s);
  TEST_EQ_INT(s.tai, 37);
  TEST_EQ_INT(s.dir, 0);
  TEST_EQ_INT(s.next, 0);
  TEST_EQ_INT(s.last, LEAP_2017);
  LSC_At(&l, LEAP_2017 - 1, &s); /* the last second before it: 36, the leap ahead */
  TEST_EQ_INT(s.tai, 36);
  TEST_EQ_INT(s.dir, 1);
  TEST_EQ_INT(s.next, LEAP_2017);
  TEST_EQ_INT(LSC_LeapIndicator(s.next, s.dir, LEAP_2017 - 1), 1);
  LSC_At(&l, 0, &s);
  TEST_EQ_INT(s.tai, 0); /* before the table */
  char buf[13];
  LSC_FormatStamp(s.last, buf);
  TEST_EQ_STR(buf, "201701010000");
  LSC_FormatStamp(l.expires, buf);
  TEST_EQ_STR(buf, "202606280000");
  MSG_Clear(&errs);
}

/* Change one digit the hash covers and the #h line names the mismatch; the list is unused. */
static void
test_lsc_tampered(void)
{
  char text[sizeof(real_list)];
  memcpy(text, real_list, sizeof(real_list));
  char *p = strstr(text, "#$ 3960835200");
  TEST_CHECK(p != NULL);
  if (!p)
    return;
  p[12] = '1'; /* updated one second later */
  LSC_List l;
  MSG_Errors errs = {0};
  TEST_CHECK(!LSC_Parse(&l, "x.list", text, strlen(text), &errs));
  TEST_EQ_INT(l.n, 0);
  TEST_EQ_INT(errs.errors.count, 1);
  if (errs.errors.count == 1) {
    TEST_EQ_INT(errs.errors.items[0].line, (long long)line_count(real_list));
    TEST_CHECK(strstr(errs.errors.items[0].text, "does not match") != NULL);
    TEST_EQ_STR(errs.errors.items[0].file, "x.list");
  }
  MSG_Clear(&errs);
  /* A hash word damaged in its form, not its value. */
  memcpy(text, real_list, sizeof(real_list));
  p = strstr(text, "#h ");
  p[5] = 'x';
  TEST_CHECK(!LSC_Parse(&l, "x.list", text, strlen(text), &errs));
  TEST_CHECK(errs.errors.count == 1 && strstr(errs.errors.items[0].text, "hexadecimal"));
  MSG_Clear(&errs);
}

static void
test_lsc_unhashed_list_warns(void)
{
  const char *text = "#@ 3991593600\n2272060800 10\n2287785600 11\n";
  LSC_List l;
  MSG_Errors errs = {0};
  TEST_CHECK(LSC_Parse(&l, "y.list", text, strlen(text), &errs));
  TEST_CHECK(!l.hashed);
  TEST_EQ_INT(l.n, 2);
  TEST_EQ_INT(errs.warnings.count, 1);
  TEST_CHECK(errs.warnings.count == 1 && strstr(errs.warnings.items[0].text, "#h"));
  MSG_Clear(&errs);
}

typedef struct {
  const char *text;
  int line;
  const char *reason;
} BadCase;

static void
test_lsc_errors_with_lines(void)
{
  static const BadCase cases[] = {
      {"#@ 3991593600\n2272060800 10\n2272060801 11\n", 3, "00:00:00"},
      {"#@ 3991593600\n2287785600 10\n2272060800 11\n", 3, "not later"},
      {"#@ 3991593600\n2272060800 10\n2287785600 12\n", 3, "one second"},
      {"#@ 3991593600\n\n2272060800 10\nhello\n", 4, "not a leap-second line"},
      {"#@ 3991593600\n2272060800 10 11\n", 2, "not a leap-second line"},
      {"#@\n2272060800 10\n", 1, "#@ line"},
      {"2272060800 10\n", 0, "no #@"},
      {"#@ 3991593600\n# only comments\n", 0, "no leap-second entries"},
      {"#@ 3991593600\n2272060800 10\n#h 1 2 3 4 5\n#h 1 2 3 4 5\n", 4, "second #h"},
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    LSC_List l;
    MSG_Errors errs = {0};
    bool ok = LSC_Parse(&l, "bad.list", cases[i].text, strlen(cases[i].text), &errs);
    TEST_CHECK(!ok);
    TEST_EQ_INT(l.n, 0);
    TEST_CHECK(errs.errors.count >= 1);
    if (errs.errors.count >= 1) {
      TEST_EQ_INT(errs.errors.items[0].line, cases[i].line);
      if (!strstr(errs.errors.items[0].text, cases[i].reason)) {
        fprintf(stderr, "case %zu: '%s' lacks '%s'\n", i, errs.errors.items[0].text,
                cases[i].reason);
        TEST_CHECK(false);
      }
    }
    MSG_Clear(&errs);
  }
  /* A NUL inside a line. */
  const char nul[] = "#@ 3991593600\n2272060800\0 10\n";
  LSC_List l;
  MSG_Errors errs = {0};
  TEST_CHECK(!LSC_Parse(&l, "nul.list", nul, sizeof(nul) - 1, &errs));
  TEST_CHECK(errs.errors.count >= 1 && errs.errors.items[0].line == 2);
  MSG_Clear(&errs);
}

static void
test_lsc_expiry(void)
{
  LSC_List l = {.expires = EXPIRES};
  TEST_EQ_INT(LSC_CheckExpiry(&l, EXPIRES - 29 * DAY), LSC_EXPIRY_OK);
  TEST_EQ_INT(LSC_CheckExpiry(&l, EXPIRES - 28 * DAY), LSC_EXPIRY_SOON);
  TEST_EQ_INT(LSC_CheckExpiry(&l, EXPIRES - 1), LSC_EXPIRY_SOON);
  TEST_EQ_INT(LSC_CheckExpiry(&l, EXPIRES), LSC_EXPIRY_PAST);
  TEST_EQ_INT(LSC_CheckExpiry(&l, NOW_2026), LSC_EXPIRY_PAST);
}

/* A future insertion and a deletion: announced in the last day only, cleared at the leap. */
static void
test_lsc_announce_window(void)
{
  int64_t leap = 1814400000LL; /* 2027-07-01 00:00:00 UTC */
  TEST_EQ_INT(leap % DAY, 0);
  TEST_EQ_INT(LSC_LeapIndicator(leap, 1, leap - DAY - 1), 0);
  TEST_EQ_INT(LSC_LeapIndicator(leap, 1, leap - DAY), 1);
  TEST_EQ_INT(LSC_LeapIndicator(leap, 1, leap - 1), 1);
  TEST_EQ_INT(LSC_LeapIndicator(leap, 1, leap), 0);
  TEST_EQ_INT(LSC_LeapIndicator(leap, -1, leap - 10), 2);
  TEST_EQ_INT(LSC_LeapIndicator(leap, 0, leap - 10), 0);

  char text[256];
  snprintf(text, sizeof(text), "#@ %lld\n2272060800 10\n%lld 11\n%lld 10\n",
           (long long)(leap + 400 * DAY + NTP_UNIX), (long long)(leap + NTP_UNIX),
           (long long)(leap + 184 * DAY + NTP_UNIX));
  LSC_List l;
  TEST_CHECK(LSC_Parse(&l, "future.list", text, strlen(text), NULL));
  LSC_State s;
  LSC_At(&l, leap - 3600, &s);
  TEST_EQ_INT(s.tai, 10);
  TEST_EQ_INT(s.next, leap);
  TEST_EQ_INT(s.dir, 1);
  LSC_At(&l, leap, &s);
  TEST_EQ_INT(s.tai, 11);
  TEST_EQ_INT(s.next, leap + 184 * DAY);
  TEST_EQ_INT(s.dir, -1);
  TEST_EQ_INT(s.last, leap + 184 * DAY);
}

static void
test_lsc_smear(void)
{
  int64_t leap = 1814400000LL;
  double iv = 86400.0;
  TEST_CHECK(LSC_SmearOffset(leap, 1, iv, (double)leap - iv - 1) == 0.0);
  TEST_CHECK(LSC_SmearOffset(leap, 1, iv, (double)leap - iv) == 0.0);
  TEST_CHECK(LSC_SmearOffset(leap, 1, iv, (double)leap - iv / 2) == -0.5);
  double near = LSC_SmearOffset(leap, 1, iv, (double)leap - 0.001);
  TEST_CHECK(near < -0.99999 && near > -1.0);
  TEST_CHECK(LSC_SmearOffset(leap, 1, iv, (double)leap) == 0.0); /* the clock took the leap */
  TEST_CHECK(LSC_SmearOffset(leap, -1, iv, (double)leap - iv / 4) == 0.75);
  TEST_CHECK(LSC_SmearOffset(leap, 1, 0.0, (double)leap - 1) == 0.0);
  TEST_CHECK(LSC_SmearOffset(leap, 0, iv, (double)leap - 1) == 0.0);
  /* The smeared time never runs backwards across the interval and the leap: served time
   * t + offset(t) before the leap, and (t - 1) after it, where the clock repeated a second. */
  double prev = -1e300;
  bool monotonic = true;
  for (double t = (double)leap - iv - 10; t < (double)leap + 10; t += 0.25) {
    double served = t < (double)leap ? t + LSC_SmearOffset(leap, 1, iv, t) : t - 1.0;
    monotonic = monotonic && served >= prev;
    prev = served;
  }
  TEST_CHECK(monotonic);
}

static void
test_lsc_format(void)
{
  char buf[13];
  LSC_FormatStamp(0, buf);
  TEST_EQ_STR(buf, "197001010000");
  LSC_FormatStamp(1814400000LL + 3600 + 120, buf);
  TEST_EQ_STR(buf, "202707010102");
}

/* Who decides: a list in force alone; the upstreams' vote without one or once it expired. */
static void
test_lsc_decide(void)
{
  int64_t leap = 1814400000LL; /* 2027-07-01 */
  char text[160];
  snprintf(text, sizeof(text), "#@ %lld\n2272060800 10\n%lld 11\n",
           (long long)(leap + 100 * DAY + NTP_UNIX), (long long)(leap + NTP_UNIX));
  LSC_List l;
  TEST_CHECK(LSC_Parse(&l, "d.list", text, strlen(text), NULL));
  LSC_Decision d;
  LSC_Decide(&l, 0, leap - 3600, 0, &d);
  TEST_CHECK(d.from_list && d.li == 1 && d.arm == 1 && d.leap == leap && d.dir == 1);
  LSC_Decide(&l, 0, leap - DAY - 1, 0, &d); /* a day and a second before: not yet */
  TEST_CHECK(d.li == 0 && d.arm == 0 && d.leap == 0);
  LSC_Decide(&l, 2, leap - 2 * DAY, 0, &d); /* the list in force overrides a wrong vote */
  TEST_CHECK(d.from_list && d.li == 0 && d.arm == 0);
  LSC_Decide(&l, 0, leap + 1, 0, &d); /* after the leap: cleared */
  TEST_CHECK(d.li == 0 && d.arm == 0);
  LSC_Decide(&l, 0, leap - 3600, 86400.0, &d); /* smeared: not announced, still armed */
  TEST_CHECK(d.li == 0 && d.arm == 1 && d.smear == 86400.0 && d.leap == leap);
  /* Expired list: the upstreams' vote decides, the leap at the next midnight. */
  LSC_Decide(&l, 1, leap + 100 * DAY + 3600, 0, &d);
  TEST_CHECK(!d.from_list && d.li == 1 && d.arm == 1 && d.leap == leap + 101 * DAY);
  LSC_Decide(NULL, 2, leap - 10, 0, &d);
  TEST_CHECK(!d.from_list && d.li == 2 && d.arm == -1 && d.leap == leap);
  LSC_Decide(NULL, 3, leap - 10, 0, &d); /* 3 (unsynchronized) is no vote for a leap */
  TEST_CHECK(d.li == 0 && d.arm == 0);
}

TEST_MAIN(TEST_CASE(test_lsc_real_list), TEST_CASE(test_lsc_tampered),
          TEST_CASE(test_lsc_unhashed_list_warns), TEST_CASE(test_lsc_errors_with_lines),
          TEST_CASE(test_lsc_expiry), TEST_CASE(test_lsc_announce_window),
          TEST_CASE(test_lsc_smear), TEST_CASE(test_lsc_format), TEST_CASE(test_lsc_decide))

/* runtime: the runtime lines (ntpq :config) and the generation check at commit. */
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"
#include "runtime.h"

static char conf[64];

static bool
write_file(const char *path, const char *text)
{
  FILE *f = fopen(path, "w");
  if (!f)
    return false;
  fputs(text, f);
  return fclose(f) == 0;
}

static const NTT_Now now = {.real = {1700000000, 0}, .mono_ns = 1000000000LL};

static RUN_State *
start(void)
{
  snprintf(conf, sizeof(conf), "/tmp/ntpg-unit-runtime-%d.conf", (int)getpid());
  TEST_CHECK(write_file(conf, "server 127.127.1.0\nfudge 127.127.1.0 stratum 7\n"
                              "restrict default limited kod\n"));
  RUN_Errors errs = {0};
  RUN_State *r = RUN_Create(conf, 0, -20, &now, &errs);
  RUN_FreeErrors(&errs);
  TEST_CHECK(r != NULL);
  return r;
}

static void
stop(RUN_State *r)
{
  RUN_Destroy(r);
  unlink(conf);
}

static uint32_t
flags_of(const RUN_State *r, const char *addr)
{
  NetAddr a;
  ADR_Parse(addr, &a);
  return RST_Match(RUN_Context(r)->rst, &a);
}

static bool
configure(RUN_State *r, const char *text, char *reply, size_t cap)
{
  return RUN_Configure(r, conf, text, &now, reply, cap);
}

/* A reload prepared before a :config is stale at commit: refused, and the :config stays;
 * prepared again, it keeps the :config too. */
static void
test_runtime_generation(void)
{
  RUN_State *r = start();
  if (!r)
    return;
  char reply[256];
  RUN_Errors errs = {0};
  RUN_Pending *p = RUN_Prepare(r, conf, &errs);
  TEST_CHECK(p != NULL);
  TEST_CHECK(p && RUN_IsCurrent(r, p));
  TEST_CHECK(configure(r, "restrict 10.1.2.3 noserve", reply, sizeof(reply)));
  TEST_CHECK(flags_of(r, "10.1.2.3") & RST_NOSERVE);
  TEST_CHECK(p && !RUN_IsCurrent(r, p));
  if (p)
    TEST_CHECK(!RUN_Commit(r, p, &now, &errs)); /* refused: it would undo the :config */
  TEST_CHECK(errs.count > 0 && strstr(errs.items[errs.count - 1].msg.text, "prepare again"));
  RUN_FreeErrors(&errs);
  TEST_CHECK(flags_of(r, "10.1.2.3") & RST_NOSERVE);
  TEST_CHECK(RUN_Reload(r, conf, &now, &errs)); /* prepared now: carries the line */
  RUN_FreeErrors(&errs);
  TEST_CHECK(flags_of(r, "10.1.2.3") & RST_NOSERVE);
  /* a prepared :config is stale once a reload committed, too */
  RUN_Pending *c =
      RUN_PrepareConfigure(r, conf, "restrict 10.1.2.4 noserve", reply, sizeof(reply));
  TEST_CHECK(c != NULL);
  TEST_CHECK(RUN_Reload(r, conf, &now, &errs));
  RUN_FreeErrors(&errs);
  TEST_CHECK(c && !RUN_IsCurrent(r, c));
  if (c)
    TEST_CHECK(!RUN_Commit(r, c, &now, &errs));
  RUN_FreeErrors(&errs);
  TEST_CHECK(!(flags_of(r, "10.1.2.4") & RST_NOSERVE));
  stop(r);
}

/* The same line again adds nothing; it moves to the end, which keeps the result. */
static void
test_runtime_dedup(void)
{
  RUN_State *r = start();
  if (!r)
    return;
  char reply[256];
  size_t octets, lines;
  for (int i = 0; i < 600; i++)
    TEST_CHECK(configure(r,
                         i % 2 ? "restrict  10.1.2.3\tnomodify "
                               : "restrict 10.1.2.3 "
                                 "nomodify",
                         reply, sizeof(reply)));
  lines = RUN_RuntimeSize(r, &octets);
  TEST_EQ_INT(lines, 1);
  TEST_EQ_INT(octets, strlen("restrict 10.1.2.3 nomodify\n"));
  TEST_CHECK(configure(r, "unrestrict 10.1.2.3 nomodify", reply, sizeof(reply)));
  TEST_CHECK(!(flags_of(r, "10.1.2.3") & RST_NOMODIFY));
  TEST_CHECK(configure(r, "restrict 10.1.2.3 nomodify", reply, sizeof(reply)));
  TEST_CHECK(flags_of(r, "10.1.2.3") & RST_NOMODIFY); /* as if applied twice */
  lines = RUN_RuntimeSize(r, &octets);
  TEST_EQ_INT(lines, 2);
  /* several lines in one text, repeats among them, comments and blank lines */
  TEST_CHECK(configure(r, "# note\n\nrestrict 10.9.9.9 noserve\nrestrict 10.9.9.9 noserve\n",
                       reply, sizeof(reply)));
  lines = RUN_RuntimeSize(r, &octets);
  TEST_EQ_INT(lines, 3);
  TEST_CHECK(flags_of(r, "10.9.9.9") & RST_NOSERVE);
  stop(r);
}

/* The runtime lines are capped: the text that would exceed the cap is refused whole. */
static void
test_runtime_cap(void)
{
  RUN_State *r = start();
  if (!r)
    return;
  char reply[256], text[2048];
  int applied = 0;
  bool refused = false;
  for (int i = 0; i < 64 && !refused; i++) {
    size_t k = 0;
    for (int j = 0; j < 16; j++)
      k += (size_t)snprintf(text + k, sizeof(text) - k, "restrict 10.%d.%d.0/24 noserve\n", i,
                            j);
    if (configure(r, text, reply, sizeof(reply)))
      applied++;
    else
      refused = true;
  }
  TEST_CHECK(refused);
  TEST_EQ_INT(applied, RUN_RUNTIME_MAX_LINES / 16);
  TEST_CHECK(strstr(reply, "runtime configuration full") != NULL);
  size_t octets, lines = RUN_RuntimeSize(r, &octets);
  TEST_EQ_INT(lines, RUN_RUNTIME_MAX_LINES);
  TEST_CHECK(octets <= RUN_RUNTIME_MAX_OCTETS);
  TEST_CHECK(flags_of(r, "10.0.0.1") & RST_NOSERVE); /* the first lines stay */
  TEST_CHECK(!(flags_of(r, "10.16.0.1") & RST_NOSERVE));
  /* a line already in force is no growth: accepted at the cap */
  TEST_CHECK(configure(r, "restrict 10.0.0.0/24 noserve", reply, sizeof(reply)));
  stop(r);
}

TEST_MAIN(TEST_CASE(test_runtime_generation), TEST_CASE(test_runtime_dedup),
          TEST_CASE(test_runtime_cap))

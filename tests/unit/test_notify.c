/* notify: NOTIFY_SOCKET values become the right socket addresses (sd_notify(3): an absolute
 * path, or "@name" for Linux's abstract namespace), and bad values are refused. */
#include "notify.h"

#include <stddef.h>

#include "harness.h"

static void
test_ntf_path(void)
{
  struct sockaddr_un sa;
  socklen_t len = 0;
  char err[128];
  TEST_CHECK(NTF_ParseAddress("/run/systemd/notify", &sa, &len, err, sizeof(err)));
  TEST_EQ_INT(sa.sun_family, AF_UNIX);
  TEST_EQ_STR(sa.sun_path, "/run/systemd/notify");
  TEST_EQ_INT(len, offsetof(struct sockaddr_un, sun_path) + strlen("/run/systemd/notify") + 1);
}

static void
test_ntf_abstract(void)
{
  struct sockaddr_un sa;
  socklen_t len = 0;
  char err[128];
  TEST_CHECK(NTF_ParseAddress("@ntpgate/test", &sa, &len, err, sizeof(err)));
  TEST_EQ_INT(sa.sun_path[0], 0);
  TEST_CHECK(memcmp(sa.sun_path + 1, "ntpgate/test", 12) == 0);
  TEST_EQ_INT(len, offsetof(struct sockaddr_un, sun_path) + 13); /* no terminator */
}

static void
test_ntf_refused(void)
{
  struct sockaddr_un sa;
  socklen_t len = 0;
  char err[128], longname[200];
  TEST_CHECK(!NTF_ParseAddress("", &sa, &len, err, sizeof(err)));
  TEST_CHECK(!NTF_ParseAddress(NULL, &sa, &len, err, sizeof(err)));
  TEST_CHECK(!NTF_ParseAddress("relative/path", &sa, &len, err, sizeof(err)));
  TEST_CHECK(strstr(err, "absolute") != NULL);
  memset(longname, 'x', sizeof(longname) - 1);
  longname[0] = '/';
  longname[sizeof(longname) - 1] = '\0';
  TEST_CHECK(!NTF_ParseAddress(longname, &sa, &len, err, sizeof(err)));
  /* The longest path that still fits with its terminator, and the longest abstract name. */
  longname[sizeof(sa.sun_path) - 1] = '\0';
  TEST_CHECK(NTF_ParseAddress(longname, &sa, &len, err, sizeof(err)));
  longname[0] = '@';
  longname[sizeof(sa.sun_path) - 1] = 'x';
  longname[sizeof(sa.sun_path)] = '\0';
  TEST_CHECK(NTF_ParseAddress(longname, &sa, &len, err, sizeof(err)));
  TEST_EQ_INT(len, sizeof(struct sockaddr_un));
  longname[sizeof(sa.sun_path)] = 'x';
  longname[sizeof(sa.sun_path) + 1] = '\0';
  TEST_CHECK(!NTF_ParseAddress(longname, &sa, &len, err, sizeof(err)));
}

static void
test_ntf_inactive_is_silent(void)
{
  /* Without NOTIFY_SOCKET nothing is opened and every message is a no-op. */
  char err[128];
  unsetenv("NOTIFY_SOCKET");
  TEST_CHECK(NTF_Open(err, sizeof(err)));
  TEST_CHECK(!NTF_Active());
  NTF_Ready();
  NTF_Status("x");
  NTF_Stopping();
  NTF_Close();
  setenv("NOTIFY_SOCKET", "not-absolute", 1);
  TEST_CHECK(!NTF_Open(err, sizeof(err)));
  TEST_CHECK(getenv("NOTIFY_SOCKET") == NULL); /* never handed on, even when unusable */
}

TEST_MAIN(TEST_CASE(test_ntf_path), TEST_CASE(test_ntf_abstract), TEST_CASE(test_ntf_refused),
          TEST_CASE(test_ntf_inactive_is_silent))

/* daemon: process life -- detaching from the terminal and the pid file (privileges:
 * sandbox.h). Errors come back in a caller's buffer; main decides what is fatal. */
#ifndef NTPG_DAEMON_H
#define NTPG_DAEMON_H

#include <stdbool.h>
#include <stddef.h>

/* Fork into the background, new session, stdio to /dev/null. Returns in the child only. */
bool DMN_Detach(char *err, size_t errlen);
/* Write our pid to path (created 0644, replaced if it exists). */
bool DMN_WritePidFile(const char *path, char *err, size_t errlen);
void DMN_RemovePidFile(const char *path);

#endif

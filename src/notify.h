/* notify: tell a service manager how the daemon is doing, by the readiness protocol of
 * sd_notify(3): one datagram of "KEY=VALUE" lines to the AF_UNIX socket named by the
 * environment variable NOTIFY_SOCKET (a path, or "@name" for the abstract namespace).
 * No libsystemd: the protocol is this one datagram.
 *
 * Without NOTIFY_SOCKET every call is a no-op that succeeds. The socket is opened and
 * connected by NTF_Open while the file system is still the real one (before a chroot), so
 * later messages need nothing but send(2), which the seccomp list allows. Messages are best
 * effort: a service manager that has gone away never stops the daemon. */
#ifndef NTPG_NOTIFY_H
#define NTPG_NOTIFY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/un.h>

/* Pure: the socket address for a NOTIFY_SOCKET value. False (err set) for an empty name, a
 * name too long for sun_path, or one that is neither absolute nor abstract ("@..."). */
bool NTF_ParseAddress(const char *name, struct sockaddr_un *sa, socklen_t *len, char *err,
                      size_t errlen);

/* Read and unset NOTIFY_SOCKET (so no child inherits it), open and connect the socket.
 * True without NOTIFY_SOCKET; false (err set) if it is set but unusable. */
bool NTF_Open(char *err, size_t errlen);
/* Whether NTF_Open found a service manager to talk to. */
bool NTF_Active(void);

/* The daemon serves: sockets bound, configuration in force, privileges dropped. */
void NTF_Ready(void);
/* A SIGHUP reload starts (mono_us: CLOCK_MONOTONIC in microseconds); NTF_Ready ends it. */
void NTF_Reloading(uint64_t mono_us);
/* The daemon is shutting down. */
void NTF_Stopping(void);
/* A one-line status for `systemctl status` (control characters are replaced). */
void NTF_Status(const char *text);
void NTF_Close(void);

#endif

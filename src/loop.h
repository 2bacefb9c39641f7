/* loop: the event loop as a value (epoll). File descriptors with callbacks, and periodic
 * timers on the monotonic clock. Single-threaded: each serving thread may own its own loop. */
#ifndef NTPG_LOOP_H
#define NTPG_LOOP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct EVL_Loop EVL_Loop;
typedef void (*EVL_FdHandler)(void *arg, int fd, uint32_t events);
typedef void (*EVL_TimerHandler)(void *arg);

EVL_Loop *EVL_Create(char *err, size_t errlen);
void EVL_Destroy(EVL_Loop *l);
/* Watch fd for input (EPOLLIN). */
bool EVL_AddFd(EVL_Loop *l, int fd, EVL_FdHandler fn, void *arg);
void EVL_RemoveFd(EVL_Loop *l, int fd);
/* Call fn every interval_s seconds (monotonic), first after one interval. Returns an id. */
int EVL_AddTimer(EVL_Loop *l, double interval_s, EVL_TimerHandler fn, void *arg);
/* Run until EVL_Stop; returns false on an epoll failure. */
bool EVL_Run(EVL_Loop *l);
void EVL_Stop(EVL_Loop *l);

#endif

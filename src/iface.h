/* iface: the host's own addresses (getifaddrs), for choosing sockets from `interface` lines
 * and for the restrict list's self-block entries. */
#ifndef NTPG_IFACE_H
#define NTPG_IFACE_H

#include <stdbool.h>
#include <stddef.h>

#include "netaddr.h"

#define IFC_NAMELEN 32

typedef struct {
  NetAddr addr;
  char name[IFC_NAMELEN];
} IFC_Address;

/* Fill up to max local addresses (IPv4 and IPv6, link-local v6 skipped); returns the count
 * found, which may exceed max. -1 if the kernel would not say. */
int IFC_List(IFC_Address *out, size_t max);

#endif

#include "iface.h"

#include <ifaddrs.h>
#include <stdio.h>
#include <string.h>

int
IFC_List(IFC_Address *out, size_t max)
{
  struct ifaddrs *list;
  if (getifaddrs(&list) < 0)
    return -1;
  size_t n = 0;
  for (struct ifaddrs *i = list; i; i = i->ifa_next) {
    NetAddr a;
    if (!i->ifa_addr || !ADR_FromSockaddr(i->ifa_addr, &a))
      continue;
    if (a.family == ADR_INET6 && a.bytes[0] == 0xfe && (a.bytes[1] & 0xc0) == 0x80)
      continue; /* link-local: needs a scope we do not track */
    if (n < max) {
      a.port = 0;
      out[n].addr = a;
      snprintf(out[n].name, sizeof(out[n].name), "%s", i->ifa_name);
    }
    n++;
  }
  freeifaddrs(list);
  return (int)n;
}

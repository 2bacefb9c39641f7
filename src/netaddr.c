#include "netaddr.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

bool
ADR_Parse(const char *text, NetAddr *out)
{
  memset(out, 0, sizeof(*out));
  if (inet_pton(AF_INET, text, out->bytes) == 1) {
    out->family = ADR_INET4;
    return true;
  }
  if (inet_pton(AF_INET6, text, out->bytes) == 1) {
    out->family = ADR_INET6;
    return true;
  }
  memset(out, 0, sizeof(*out));
  return false;
}

bool
ADR_ParsePrefix(const char *text, NetAddr *addr, int *prefix)
{
  char buf[ADR_STRLEN];
  const char *slash = strchr(text, '/');
  if (!slash || (size_t)(slash - text) >= sizeof(buf))
    return false;
  memcpy(buf, text, (size_t)(slash - text));
  buf[slash - text] = '\0';
  if (!ADR_Parse(buf, addr))
    return false;
  char *end;
  long p = strtol(slash + 1, &end, 10);
  if (slash[1] == '\0' || *end != '\0' || p < 0 || p > ADR_Bits(addr))
    return false;
  *prefix = (int)p;
  return true;
}

const char *
ADR_Format(const NetAddr *a, char *buf, size_t size)
{
  int af = a->family == ADR_INET6 ? AF_INET6 : AF_INET;
  if (a->family == ADR_NONE || !inet_ntop(af, a->bytes, buf, (socklen_t)size))
    snprintf(buf, size, "?");
  return buf;
}

const char *
ADR_FormatPort(const NetAddr *a, char *buf, size_t size)
{
  char tmp[ADR_STRLEN];
  ADR_Format(a, tmp, sizeof(tmp));
  if (a->family == ADR_INET6)
    snprintf(buf, size, "[%s]:%u", tmp, a->port);
  else
    snprintf(buf, size, "%s:%u", tmp, a->port);
  return buf;
}

int
ADR_Bits(const NetAddr *a)
{
  return a->family == ADR_INET4 ? 32 : a->family == ADR_INET6 ? 128 : 0;
}

void
ADR_MaskFromPrefix(int family, int prefix, NetAddr *mask)
{
  memset(mask, 0, sizeof(*mask));
  mask->family = (uint8_t)family;
  int bits = ADR_Bits(mask);
  if (prefix > bits)
    prefix = bits;
  for (int i = 0; i < prefix / 8; i++)
    mask->bytes[i] = 0xff;
  if (prefix % 8)
    mask->bytes[prefix / 8] = (uint8_t)(0xff << (8 - prefix % 8));
}

int
ADR_PrefixFromMask(const NetAddr *mask)
{
  int bits = ADR_Bits(mask), n = 0;
  while (n < bits && (mask->bytes[n / 8] & (0x80 >> (n % 8))))
    n++;
  for (int i = n; i < bits; i++)
    if (mask->bytes[i / 8] & (0x80 >> (i % 8)))
      return -1;
  return n;
}

void
ADR_ApplyMask(const NetAddr *a, const NetAddr *mask, NetAddr *out)
{
  NetAddr r = *a;
  for (int i = 0; i < 16; i++)
    r.bytes[i] = a->bytes[i] & mask->bytes[i];
  *out = r;
}

bool
ADR_Equal(const NetAddr *a, const NetAddr *b)
{
  return a->family == b->family && memcmp(a->bytes, b->bytes, 16) == 0;
}

void
ADR_Unmap(NetAddr *a)
{
  static const uint8_t prefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  if (a->family != ADR_INET6 || memcmp(a->bytes, prefix, 12) != 0)
    return;
  memmove(a->bytes, a->bytes + 12, 4);
  memset(a->bytes + 4, 0, 12);
  a->family = ADR_INET4;
}

bool
ADR_IsLoopback(const NetAddr *a)
{
  static const uint8_t v6lo[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
  if (a->family == ADR_INET4)
    return a->bytes[0] == 127;
  return a->family == ADR_INET6 && memcmp(a->bytes, v6lo, 16) == 0;
}

bool
ADR_IsMulticast(const NetAddr *a)
{
  if (a->family == ADR_INET4)
    return (a->bytes[0] & 0xf0) == 0xe0;
  return a->family == ADR_INET6 && a->bytes[0] == 0xff;
}

bool
ADR_FromSockaddr(const struct sockaddr *sa, NetAddr *out)
{
  memset(out, 0, sizeof(*out));
  if (sa->sa_family == AF_INET) {
    const struct sockaddr_in *in = (const struct sockaddr_in *)(const void *)sa;
    out->family = ADR_INET4;
    out->port = ntohs(in->sin_port);
    memcpy(out->bytes, &in->sin_addr, 4);
    return true;
  }
  if (sa->sa_family == AF_INET6) {
    const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)(const void *)sa;
    out->family = ADR_INET6;
    out->port = ntohs(in6->sin6_port);
    memcpy(out->bytes, &in6->sin6_addr, 16);
    return true;
  }
  return false;
}

socklen_t
ADR_ToSockaddr(const NetAddr *a, struct sockaddr_storage *ss)
{
  memset(ss, 0, sizeof(*ss));
  if (a->family == ADR_INET4) {
    struct sockaddr_in *in = (struct sockaddr_in *)ss;
    in->sin_family = AF_INET;
    in->sin_port = htons(a->port);
    memcpy(&in->sin_addr, a->bytes, 4);
    return sizeof(*in);
  }
  struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;
  in6->sin6_family = AF_INET6;
  in6->sin6_port = htons(a->port);
  memcpy(&in6->sin6_addr, a->bytes, 16);
  return sizeof(*in6);
}

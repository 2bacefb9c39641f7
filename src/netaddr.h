/* netaddr: the one representation of an IPv4/IPv6 address (+port) used by every module.
 * Pure: no DNS, no sockets. Conversions to and from sockaddr live here too. */
#ifndef NTPG_NETADDR_H
#define NTPG_NETADDR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

typedef enum { ADR_NONE = 0, ADR_INET4 = 4, ADR_INET6 = 6 } ADR_Family;

typedef struct {
  uint8_t family;    /* ADR_Family */
  uint16_t port;     /* host byte order; 0 = unspecified */
  uint8_t bytes[16]; /* network order; IPv4 uses bytes[0..3], the rest is zero */
} NetAddr;

/* Longest text form of an address ("[v6]:port" included), with terminator. */
#define ADR_STRLEN 56

/* Parse a numeric IPv4 or IPv6 address (no port, no brackets). False if it is not one. */
bool ADR_Parse(const char *text, NetAddr *out);
/* Parse "ADDR/PREFIX"; prefix must fit the family. */
bool ADR_ParsePrefix(const char *text, NetAddr *addr, int *prefix);
/* Numeric form of the address only, into buf (size >= ADR_STRLEN). Returns buf. */
const char *ADR_Format(const NetAddr *a, char *buf, size_t size);
/* "addr:port" or "[addr]:port". Returns buf. */
const char *ADR_FormatPort(const NetAddr *a, char *buf, size_t size);

/* Address bits per family: 32 or 128 (0 for ADR_NONE). */
int ADR_Bits(const NetAddr *a);
/* Mask of `prefix` leading one bits in family `fam`. */
void ADR_MaskFromPrefix(int family, int prefix, NetAddr *mask);
/* Length of a contiguous mask, or -1 if the mask has holes. */
int ADR_PrefixFromMask(const NetAddr *mask);
/* a & mask into out (out may alias a). */
void ADR_ApplyMask(const NetAddr *a, const NetAddr *mask, NetAddr *out);
/* Same family and same address bytes (ports ignored). */
bool ADR_Equal(const NetAddr *a, const NetAddr *b);
/* IPv4-mapped IPv6 (::ffff:a.b.c.d) becomes plain IPv4; other addresses are unchanged. */
void ADR_Unmap(NetAddr *a);
bool ADR_IsLoopback(const NetAddr *a);
bool ADR_IsMulticast(const NetAddr *a);

/* sockaddr conversions. ADR_FromSockaddr returns false for a family other than v4/v6. */
bool ADR_FromSockaddr(const struct sockaddr *sa, NetAddr *out);
socklen_t ADR_ToSockaddr(const NetAddr *a, struct sockaddr_storage *ss);

#endif

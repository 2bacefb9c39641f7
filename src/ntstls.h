/* ntstls: the TLS side of NTS-KE (RFC 8915 section 4) through OpenSSL's libssl -- the
 * server's SSL_CTX built from the `nts` configuration: TLS 1.3 only, the certificate chain
 * and its private key (checked to match), the ciphersuite and group lists, and ALPN
 * `ntske/1` required of every client; and the client's SSL_CTX: TLS 1.3 only, ALPN
 * `ntske/1` offered, the servers' certificates verified against a CA file or directory or
 * the system's store (the host name is set per connection, ntskecli.h). An edge: it reads
 * the certificate, key and CA files. Building a context is how `ntpgated -t`, start and
 * reload check the `nts` lines and the `ca` of NTS sources. */
#ifndef NTPG_NTSTLS_H
#define NTPG_NTSTLS_H

#include <stdbool.h>
#include <stddef.h>

#include "config.h"

typedef struct ssl_ctx_st NTL_Ctx; /* OpenSSL's SSL_CTX */

/* The ALPN protocol id of NTS-KE (RFC 8915 section 4). */
#define NTL_ALPN "ntske/1"

/* A server context for n, or NULL with the reason in why (never the key's contents). */
NTL_Ctx *NTL_CreateServer(const CNF_Nts *n, char *why, size_t whylen);
void NTL_Destroy(NTL_Ctx *c);

/* A client context: certificates verified against ca (a PEM file of one or more CA
 * certificates, or a directory hashed by `openssl rehash`: the certificates in its files
 * are read now, later ones when looked up), or the system's default store when ca is NULL
 * (its bundle file read now); noval: not verified at all (NTPsec's `noval`; tests only). NULL
 * with the reason in why (a file that does not load or holds no certificate). */
NTL_Ctx *NTL_CreateClient(const char *ca, bool noval, char *why, size_t whylen);

/* Choose ntske/1 from a client's ALPN list (wire format: length-prefixed names); false if
 * the list does not offer it. Pure: the ALPN callback's decision. */
bool NTL_SelectAlpn(const unsigned char *in, unsigned inlen, const unsigned char **out,
                    unsigned char *outlen);

#endif

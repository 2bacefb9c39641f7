#include "ntstls.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

bool
NTL_SelectAlpn(const unsigned char *in, unsigned inlen, const unsigned char **out,
               unsigned char *outlen)
{
  const size_t want = sizeof(NTL_ALPN) - 1;
  unsigned i = 0;
  while (i < inlen) {
    unsigned len = in[i];
    if (len == 0 || len > inlen - i - 1)
      return false; /* malformed list */
    if (len == want && memcmp(in + i + 1, NTL_ALPN, want) == 0) {
      *out = in + i + 1;
      *outlen = (unsigned char)len;
      return true;
    }
    i += 1 + len;
  }
  return false;
}

static int
alpn_cb(SSL *ssl, const unsigned char **out, unsigned char *outlen, const unsigned char *in,
        unsigned inlen, void *arg)
{
  (void)ssl;
  (void)arg;
  /* a client without ntske/1 is refused with the no_application_protocol alert */
  return NTL_SelectAlpn(in, inlen, out, outlen) ? SSL_TLSEXT_ERR_OK
                                                : SSL_TLSEXT_ERR_ALERT_FATAL;
}

/* OpenSSL's last error as text, after `what`; the queue is cleared. */
static bool
fail(char *why, size_t whylen, const char *what, const char *file)
{
  unsigned long e = ERR_peek_last_error();
  char buf[256] = "";
  if (e)
    ERR_error_string_n(e, buf, sizeof(buf));
  ERR_clear_error();
  snprintf(why, whylen, "%s%s%s%s%s", what, file ? " " : "", file ? file : "",
           buf[0] ? ": " : "", buf);
  return false;
}

static bool
load_identity(SSL_CTX *c, const CNF_Nts *n, char *why, size_t whylen)
{
  if (!n->cert || !n->key) {
    snprintf(why, whylen, "nts enable needs both 'nts cert FILE' and 'nts key FILE'");
    return false;
  }
  if (SSL_CTX_use_certificate_chain_file(c, n->cert) != 1)
    return fail(why, whylen, "cannot load the certificate chain", n->cert);
  if (SSL_CTX_use_PrivateKey_file(c, n->key, SSL_FILETYPE_PEM) != 1) {
    bool mismatch = ERR_GET_REASON(ERR_peek_last_error()) == X509_R_KEY_VALUES_MISMATCH;
    return fail(why, whylen,
                mismatch ? "the private key does not match the certificate"
                         : "cannot load the private key",
                n->key);
  }
  if (SSL_CTX_check_private_key(c) != 1)
    return fail(why, whylen, "the private key does not match the certificate", n->key);
  return true;
}

static bool
set_lists(SSL_CTX *c, const CNF_Nts *n, char *why, size_t whylen)
{
  if (n->ciphersuites && SSL_CTX_set_ciphersuites(c, n->ciphersuites) != 1)
    return fail(why, whylen, "tlsciphersuites: OpenSSL refuses the list", NULL);
  if (n->ecdhcurves && SSL_CTX_set1_groups_list(c, n->ecdhcurves) != 1)
    return fail(why, whylen, "tlsecdhcurves: OpenSSL refuses the list", NULL);
  return true;
}

NTL_Ctx *
NTL_CreateServer(const CNF_Nts *n, char *why, size_t whylen)
{
  SSL_CTX *c = SSL_CTX_new(TLS_server_method());
  if (!c) {
    fail(why, whylen, "cannot create a TLS context", NULL);
    return NULL;
  }
  /* RFC 8915 section 3: TLS 1.3 or later only; no session tickets (nothing to resume) */
  bool ok = SSL_CTX_set_min_proto_version(c, TLS1_3_VERSION) == 1 &&
            SSL_CTX_set_max_proto_version(c, 0) == 1;
  SSL_CTX_set_options(c, SSL_OP_NO_TICKET | SSL_OP_NO_RENEGOTIATION);
  SSL_CTX_set_num_tickets(c, 0);
  SSL_CTX_set_session_cache_mode(c, SSL_SESS_CACHE_OFF);
  if (!ok)
    fail(why, whylen, "cannot restrict TLS to version 1.3", NULL);
  if (!ok || !load_identity(c, n, why, whylen) || !set_lists(c, n, why, whylen)) {
    SSL_CTX_free(c);
    return NULL;
  }
  SSL_CTX_set_alpn_select_cb(c, alpn_cb, NULL);
  return c;
}

void
NTL_Destroy(NTL_Ctx *c)
{
  SSL_CTX_free(c);
}

/* Every certificate in the files of dir into store; files that hold none are passed over. */
static void
load_ca_dir(X509_STORE *store, const char *dir)
{
  DIR *d = opendir(dir);
  if (!d)
    return;
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    char path[PATH_MAX];
    struct stat st;
    if (e->d_name[0] == '.' ||
        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name) >= (int)sizeof(path) ||
        stat(path, &st) != 0 || !S_ISREG(st.st_mode))
      continue;
    if (X509_STORE_load_file(store, path) != 1)
      ERR_clear_error();
  }
  closedir(d);
}

static bool
load_ca(SSL_CTX *c, const char *ca, char *why, size_t whylen)
{
  struct stat st;
  if (stat(ca, &st) != 0) {
    snprintf(why, whylen, "cannot read the CA %s: %s", ca, strerror(errno));
    return false;
  }
  if (S_ISDIR(st.st_mode)) {
    /* hashed names, looked up when a certificate is verified; and what is there now, read
     * at once (a chroot may hide the directory by then) */
    if (SSL_CTX_load_verify_dir(c, ca) != 1)
      return fail(why, whylen, "cannot use the CA directory", ca);
    load_ca_dir(SSL_CTX_get_cert_store(c), ca);
    return true;
  }
  if (SSL_CTX_load_verify_file(c, ca) != 1)
    return fail(why, whylen, "cannot load the CA file", ca);
  if (sk_X509_OBJECT_num(X509_STORE_get0_objects(SSL_CTX_get_cert_store(c))) == 0) {
    snprintf(why, whylen, "the CA file %s holds no certificate", ca);
    return false;
  }
  return true;
}

NTL_Ctx *
NTL_CreateClient(const char *ca, bool noval, char *why, size_t whylen)
{
  static const unsigned char alpn[] = "\x07" NTL_ALPN;
  SSL_CTX *c = SSL_CTX_new(TLS_client_method());
  if (!c) {
    fail(why, whylen, "cannot create a TLS context", NULL);
    return NULL;
  }
  bool ok = SSL_CTX_set_min_proto_version(c, TLS1_3_VERSION) == 1 &&
            SSL_CTX_set_max_proto_version(c, 0) == 1;
  if (!ok)
    fail(why, whylen, "cannot restrict TLS to version 1.3", NULL);
  ok = ok && (SSL_CTX_set_alpn_protos(c, alpn, sizeof(alpn) - 1) == 0 ||
              fail(why, whylen, "cannot offer ALPN ntske/1", NULL));
  SSL_CTX_set_options(c, SSL_OP_NO_TICKET | SSL_OP_NO_RENEGOTIATION);
  SSL_CTX_set_session_cache_mode(c, SSL_SESS_CACHE_OFF);
  SSL_CTX_set_verify(c, noval ? SSL_VERIFY_NONE : SSL_VERIFY_PEER, NULL);
  if (ok && !noval) {
    if (ca)
      ok = load_ca(c, ca, why, whylen);
    else
      ok = SSL_CTX_set_default_verify_paths(c) == 1 ||
           fail(why, whylen, "cannot load the system's CA store", NULL);
  }
  if (!ok) {
    SSL_CTX_free(c);
    return NULL;
  }
  return c;
}

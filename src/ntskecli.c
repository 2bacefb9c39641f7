#include "ntskecli.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "config.h"

const char *
NKC_StatusName(NKC_Status s)
{
  static const char *const names[] = {
#define NKC_NAME(id, name) name,
      NKC_STATUSES(NKC_NAME)
#undef NKC_NAME
  };
  return (unsigned)s < NKC_STATUS_COUNT ? names[s] : "unknown";
}

static int64_t
mono_ms(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

typedef struct {
  int fd, abort_fd;
  int64_t deadline_ms;
  NKC_Result *out;
} Conn;

__attribute__((format(printf, 3, 4))) static NKC_Status
failure(Conn *c, NKC_Status st, const char *fmt, ...)
{
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(c->out->why, sizeof(c->out->why), fmt, ap);
  va_end(ap);
  return st;
}

/* Wait until fd is ready for `events`: 1 ready, 0 timed out, -1 aborted or failed. */
static int
wait_fd(Conn *c, short events)
{
  for (;;) {
    int64_t left = c->deadline_ms - mono_ms();
    if (left <= 0)
      return 0;
    struct pollfd p[2] = {{c->fd, events, 0}, {c->abort_fd, POLLIN, 0}};
    int n = poll(p, c->abort_fd >= 0 ? 2 : 1, (int)left);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0 || (c->abort_fd >= 0 && (p[1].revents & POLLIN)))
      return -1;
    if (n > 0)
      return 1;
  }
}

static NKC_Status
tcp_connect(Conn *c, const NetAddr *ke)
{
  struct sockaddr_storage ss;
  socklen_t sl = ADR_ToSockaddr(ke, &ss);
  c->fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (c->fd < 0)
    return failure(c, NKC_CONNECT, "socket: %s", strerror(errno));
  /* the request follows our Finished at once: with Nagle's algorithm it waited for the
   * server's delayed ACK of the Finished, 40 ms on Linux, in every handshake */
  int one = 1;
  setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  if (connect(c->fd, (struct sockaddr *)&ss, sl) == 0)
    return NKC_OK;
  if (errno != EINPROGRESS)
    return failure(c, NKC_CONNECT, "connect: %s", strerror(errno));
  int w = wait_fd(c, POLLOUT);
  if (w <= 0)
    return w == 0 ? failure(c, NKC_TIMEOUT, "timed out connecting")
                  : failure(c, NKC_CONNECT, "aborted");
  int err = 0;
  socklen_t el = sizeof(err);
  if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &el) != 0 || err != 0)
    return failure(c, NKC_CONNECT, "connect: %s", strerror(err ? err : errno));
  return NKC_OK;
}

/* Drive one SSL call that may want to read or write: 1 done, else a failure status. */
static NKC_Status
ssl_wait(Conn *c, SSL *ssl, int rc, bool *again)
{
  int e = SSL_get_error(ssl, rc);
  *again = false;
  if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE)
    return NKC_TLS;
  int w = wait_fd(c, e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT);
  if (w == 0)
    return failure(c, NKC_TIMEOUT, "timed out");
  if (w < 0)
    return failure(c, NKC_TLS, "aborted");
  *again = true;
  return NKC_OK;
}

static NKC_Status
tls_error(Conn *c, SSL *ssl, const char *what)
{
  long v = SSL_get_verify_result(ssl);
  if (v != X509_V_OK)
    return failure(c, NKC_VERIFY, "certificate: %s", X509_verify_cert_error_string(v));
  unsigned long e = ERR_peek_last_error();
  char buf[200] = "";
  if (e)
    ERR_error_string_n(e, buf, sizeof(buf));
  snprintf(c->out->why, sizeof(c->out->why), "%s%s%s", what, buf[0] ? ": " : "", buf);
  return NKC_TLS;
}

static NKC_Status
handshake(Conn *c, SSL *ssl)
{
  for (;;) {
    ERR_clear_error();
    int rc = SSL_connect(ssl);
    if (rc == 1)
      break;
    bool again;
    NKC_Status st = ssl_wait(c, ssl, rc, &again);
    if (st == NKC_TLS && !again)
      return tls_error(c, ssl, "TLS handshake");
    if (!again)
      return st;
  }
  const unsigned char *proto = NULL;
  unsigned plen = 0;
  SSL_get0_alpn_selected(ssl, &proto, &plen);
  if (plen != sizeof(NTL_ALPN) - 1 || memcmp(proto, NTL_ALPN, plen) != 0)
    return failure(c, NKC_TLS, "the server did not select ALPN ntske/1");
  if (SSL_version(ssl) < TLS1_3_VERSION)
    return failure(c, NKC_TLS, "not TLS 1.3");
  return NKC_OK;
}

static NKC_Status
exchange(Conn *c, SSL *ssl, uint8_t *buf, size_t cap, NKE_Response *r, size_t *got)
{
  uint8_t req[64];
  size_t rlen = NKE_BuildClientRequest(req, sizeof(req)), sent = 0;
  while (sent < rlen) {
    ERR_clear_error();
    int rc = SSL_write(ssl, req + sent, (int)(rlen - sent));
    if (rc > 0) {
      sent += (size_t)rc;
      continue;
    }
    bool again;
    NKC_Status st = ssl_wait(c, ssl, rc, &again);
    if (!again)
      return st == NKC_TLS ? tls_error(c, ssl, "sending the request") : st;
  }
  *got = 0;
  for (;;) {
    NKE_RespStatus rs = NKE_ParseResponse(buf, *got, r);
    if (rs == NKE_RESP_OK)
      return NKC_OK;
    if (rs != NKE_RESP_INCOMPLETE) {
      if (rs == NKE_RESP_ERROR || rs == NKE_RESP_WARNING)
        snprintf(c->out->why, sizeof(c->out->why), "the server sent %s %u", r->why, r->code);
      else
        snprintf(c->out->why, sizeof(c->out->why), "response: %s", r->why);
      return NKC_PROTOCOL;
    }
    if (*got == cap)
      return failure(c, NKC_PROTOCOL, "response too long");
    ERR_clear_error();
    int rc = SSL_read(ssl, buf + *got, (int)(cap - *got));
    if (rc > 0) {
      *got += (size_t)rc;
      continue;
    }
    if (SSL_get_error(ssl, rc) == SSL_ERROR_ZERO_RETURN)
      return failure(c, NKC_PROTOCOL, "the server closed before End of Message");
    bool again;
    NKC_Status st = ssl_wait(c, ssl, rc, &again);
    if (!again)
      return st == NKC_TLS ? tls_error(c, ssl, "reading the response") : st;
  }
}

static bool
export_keys(SSL *ssl, NKC_Result *out)
{
  uint8_t ctx[5];
  NKE_ExporterContext(NKE_AEAD_AES_SIV_CMAC_256, false, ctx);
  if (SSL_export_keying_material(ssl, out->c2s, SIV_KEY_LEN, NKE_EXPORTER_LABEL,
                                 NKE_EXPORTER_LABEL_LEN, ctx, sizeof(ctx), 1) != 1)
    return false;
  NKE_ExporterContext(NKE_AEAD_AES_SIV_CMAC_256, true, ctx);
  return SSL_export_keying_material(ssl, out->s2c, SIV_KEY_LEN, NKE_EXPORTER_LABEL,
                                    NKE_EXPORTER_LABEL_LEN, ctx, sizeof(ctx), 1) == 1;
}

/* The NTP server the response names (or the NTS-KE server's address), with its port. */
static NKC_Status
ntp_server(Conn *c, const NKE_Response *r, const NetAddr *ke, int family)
{
  NetAddr *a = &c->out->ntp;
  *a = *ke;
  if (r->has_server && !ADR_Parse(r->server, a)) {
    struct addrinfo hints = {.ai_socktype = SOCK_DGRAM, .ai_family = family}, *res = NULL;
    if (getaddrinfo(r->server, NULL, &hints, &res) != 0 || !res)
      return failure(c, NKC_PROTOCOL, "the NTP server %.100s named by NTS-KE does not resolve",
                     r->server);
    bool ok = ADR_FromSockaddr(res->ai_addr, a);
    freeaddrinfo(res);
    if (!ok)
      return failure(c, NKC_PROTOCOL, "the NTP server %.100s has no usable address",
                     r->server);
  }
  ADR_Unmap(a);
  a->port = r->has_port ? r->port : CNF_NTP_PORT;
  return NKC_OK;
}

static NKC_Status
run(Conn *c, NTL_Ctx *ctx, const char *host, const NetAddr *ke, SSL **sslp)
{
  NKC_Status st = tcp_connect(c, ke);
  if (st != NKC_OK)
    return st;
  SSL *ssl = *sslp = SSL_new(ctx);
  if (!ssl || SSL_set_fd(ssl, c->fd) != 1)
    return failure(c, NKC_TLS, "cannot set up TLS");
  NetAddr lit;
  char sni[256]; /* a writable copy: OpenSSL's macro casts away const */
  snprintf(sni, sizeof(sni), "%s", host);
  if (ADR_Parse(host, &lit)) { /* an address: checked against the IP SANs, no SNI */
    if (X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), host) != 1)
      return failure(c, NKC_TLS, "cannot check the certificate for %.100s", host);
  } else if (SSL_set_tlsext_host_name(ssl, sni) != 1 || SSL_set1_host(ssl, host) != 1) {
    return failure(c, NKC_TLS, "cannot check the certificate for %.100s", host);
  }
  st = handshake(c, ssl);
  if (st != NKC_OK)
    return st;
  uint8_t buf[NKE_MAX_RESPONSE];
  NKE_Response r;
  size_t got;
  st = exchange(c, ssl, buf, sizeof(buf), &r, &got);
  if (st != NKC_OK)
    return st;
  if (!export_keys(ssl, c->out))
    return failure(c, NKC_TLS, "key export failed");
  for (size_t i = 0; i < r.n_cookies; i++) {
    memcpy(c->out->cookies[i], buf + r.cookie_off[i], r.cookie_len[i]);
    c->out->cookie_len[i] = r.cookie_len[i];
  }
  c->out->n_cookies = r.n_cookies;
  return ntp_server(c, &r, ke, ke->family == ADR_INET6 ? AF_INET6 : AF_INET);
}

NKC_Status
NKC_Handshake(NTL_Ctx *ctx, const char *host, const NetAddr *ke, int abort_fd, NKC_Result *out)
{
  memset(out, 0, sizeof(*out));
  Conn c = {
      .fd = -1, .abort_fd = abort_fd, .deadline_ms = mono_ms() + NKC_TIMEOUT_MS, .out = out};
  SSL *ssl = NULL;
  NKC_Status st = run(&c, ctx, host, ke, &ssl);
  if (ssl) {
    if (st == NKC_OK)
      SSL_shutdown(ssl); /* close_notify, not waited for */
    SSL_free(ssl);
  }
  ERR_clear_error();
  if (c.fd >= 0)
    close(c.fd);
  if (st != NKC_OK) {
    OPENSSL_cleanse(out->c2s, sizeof(out->c2s));
    OPENSSL_cleanse(out->s2c, sizeof(out->s2c));
  }
  return st;
}

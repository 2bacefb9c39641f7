#include "http.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

/* Where the head ends (just past the blank line), or 0 if it does not within len. Bare LF
 * line ends are accepted as RFC 9112 section 2.2 allows. */
static size_t
head_end(const char *buf, size_t len)
{
  for (size_t i = 0; i + 1 < len; i++) {
    if (buf[i] != '\n')
      continue;
    if (buf[i + 1] == '\n')
      return i + 2;
    if (buf[i + 1] == '\r' && i + 2 < len && buf[i + 2] == '\n')
      return i + 3;
  }
  return 0;
}

/* One line [p, end) without its CR LF; *next past it. False if there is no LF before end. */
static bool
next_line(const char *p, const char *end, const char **eol, const char **next)
{
  const char *lf = memchr(p, '\n', (size_t)(end - p));
  if (!lf)
    return false;
  *next = lf + 1;
  *eol = lf > p && lf[-1] == '\r' ? lf - 1 : lf;
  return true;
}

/* RFC 9110 tchar */
static bool
is_tchar(char c)
{
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
         (c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

static bool
span_is(const char *p, size_t n, const char *word)
{
  return n == strlen(word) && memcmp(p, word, n) == 0;
}

/* "METHOD SP TARGET SP HTTP/1.x" */
static HTP_Status
request_line(const char *p, const char *eol, HTP_Request *out)
{
  const char *sp1 = memchr(p, ' ', (size_t)(eol - p));
  if (!sp1 || sp1 == p)
    return HTP_BAD;
  for (const char *q = p; q < sp1; q++)
    if (!is_tchar(*q))
      return HTP_BAD;
  const char *target = sp1 + 1;
  const char *sp2 = memchr(target, ' ', (size_t)(eol - target));
  if (!sp2 || sp2 == target)
    return HTP_BAD;
  for (const char *q = target; q < sp2; q++)
    if ((unsigned char)*q <= ' ' || *q == 0x7f)
      return HTP_BAD;
  const char *ver = sp2 + 1;
  size_t vlen = (size_t)(eol - ver);
  if (vlen != 8 || memcmp(ver, "HTTP/", 5) != 0 || ver[6] != '.' || ver[5] < '0' ||
      ver[5] > '9' || ver[7] < '0' || ver[7] > '9')
    return HTP_BAD;
  if (ver[5] != '1')
    return HTP_VERSION;
  bool get = span_is(p, (size_t)(sp1 - p), "GET");
  out->head = span_is(p, (size_t)(sp1 - p), "HEAD");
  if (!get && !out->head)
    return HTP_METHOD;
  const char *query = memchr(target, '?', (size_t)(sp2 - target));
  const char *path_end = query ? query : sp2;
  if (!span_is(target, (size_t)(path_end - target), "/metrics"))
    return HTP_NOT_FOUND;
  return HTP_OK;
}

/* "NAME: value": NAME is a token, the value has no control characters but HT. A request
 * that announces a body is refused: we never read one. */
static bool
header_line(const char *p, const char *eol)
{
  const char *colon = memchr(p, ':', (size_t)(eol - p));
  if (!colon || colon == p)
    return false;
  for (const char *q = p; q < colon; q++)
    if (!is_tchar(*q))
      return false;
  const char *v = colon + 1;
  for (const char *q = v; q < eol; q++)
    if (((unsigned char)*q < ' ' && *q != '\t') || *q == 0x7f)
      return false;
  while (v < eol && (*v == ' ' || *v == '\t'))
    v++;
  size_t nlen = (size_t)(colon - p);
  if (nlen == 17 && strncasecmp(p, "transfer-encoding", nlen) == 0)
    return false;
  if (nlen == 14 && strncasecmp(p, "content-length", nlen) == 0) {
    const char *e = eol;
    while (e > v && (e[-1] == ' ' || e[-1] == '\t'))
      e--;
    return e - v == 1 && *v == '0';
  }
  return true;
}

HTP_Status
HTP_Parse(const char *buf, size_t len, HTP_Request *out)
{
  out->head = false;
  out->length = 0;
  size_t n = head_end(buf, len > HTP_MAX_REQUEST ? HTP_MAX_REQUEST : len);
  if (n == 0)
    return len >= HTP_MAX_REQUEST ? HTP_TOO_LARGE : HTP_INCOMPLETE;
  const char *p = buf, *end = buf + n, *eol, *next;
  if (!next_line(p, end, &eol, &next))
    return HTP_BAD;
  for (const char *q = p; q < eol; q++)
    if (*q == '\0' || *q == '\r')
      return HTP_BAD;
  HTP_Status st = request_line(p, eol, out);
  /* headers are checked whatever the request line said: a malformed request is a 400 */
  for (p = next; p < end && next_line(p, end, &eol, &next); p = next) {
    if (eol == p)
      break; /* the blank line */
    if (!header_line(p, eol))
      return HTP_BAD;
  }
  if (st == HTP_OK)
    out->length = n;
  return st;
}

int
HTP_Code(HTP_Status s)
{
  switch (s) {
    case HTP_OK:
      return 200;
    case HTP_BAD:
      return 400;
    case HTP_NOT_FOUND:
      return 404;
    case HTP_METHOD:
      return 405;
    case HTP_TOO_LARGE:
      return 431;
    case HTP_VERSION:
      return 505;
    default:
      return 0;
  }
}

static const char *
reason_phrase(int code)
{
  switch (code) {
    case 200:
      return "OK";
    case 400:
      return "Bad Request";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 431:
      return "Request Header Fields Too Large";
    case 505:
      return "HTTP Version Not Supported";
    default:
      return "Error";
  }
}

size_t
HTP_ResponseHead(int code, const char *ctype, size_t body_len, char *out, size_t cap)
{
  int n = snprintf(out, cap,
                   "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
                   "%sConnection: close\r\n\r\n",
                   code, reason_phrase(code), ctype, body_len,
                   code == 405 ? "Allow: GET, HEAD\r\n" : "");
  return n > 0 && (size_t)n < cap ? (size_t)n : 0;
}

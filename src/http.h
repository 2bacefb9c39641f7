/* http: the little HTTP/1.x the metrics endpoint needs, as pure functions: is a request
 * complete, is it well formed, does it ask for GET/HEAD /metrics; and the status line and
 * headers of the answer. No I/O, no allocation, no state: fuzzed whole (fuzz/fuzz_http.c).
 * Requests carry no body: one that announces a body (Content-Length other than 0,
 * Transfer-Encoding) is refused. Every answer closes the connection. */
#ifndef NTPG_HTTP_H
#define NTPG_HTTP_H

#include <stdbool.h>
#include <stddef.h>

/* The largest request head we read; a longer one is refused with 431. */
#define HTP_MAX_REQUEST 4096

typedef enum {
  HTP_INCOMPLETE = 0, /* no blank line yet: read more (if under HTP_MAX_REQUEST) */
  HTP_OK,             /* GET or HEAD of /metrics (query string ignored) */
  HTP_BAD,            /* malformed: 400 */
  HTP_NOT_FOUND,      /* another path: 404 */
  HTP_METHOD,         /* another method: 405 */
  HTP_VERSION,        /* not HTTP/1.0 or HTTP/1.1: 505 */
  HTP_TOO_LARGE,      /* no end of head within HTP_MAX_REQUEST octets: 431 */
} HTP_Status;

typedef struct {
  bool head;     /* HEAD: the answer has headers only */
  size_t length; /* octets of the request head, blank line included (HTP_OK) */
} HTP_Request;

/* Look at the first len octets received. Any other outcome than HTP_INCOMPLETE is final. */
HTP_Status HTP_Parse(const char *buf, size_t len, HTP_Request *out);
/* The HTTP status code of an outcome (200, 400, 404, 405, 431, 505; 0 for HTP_INCOMPLETE). */
int HTP_Code(HTP_Status s);
/* The head of an answer with status `code`, `Content-Type: ctype`, `Content-Length: body_len`
 * and `Connection: close`, into out[cap]. Returns its length, 0 if cap is too small. */
size_t HTP_ResponseHead(int code, const char *ctype, size_t body_len, char *out, size_t cap);

#endif

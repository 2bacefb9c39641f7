#include "expose.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

typedef struct {
  char *out;
  size_t cap, len;
  bool full;
} Buf;

static void put(Buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void
put(Buf *b, const char *fmt, ...)
{
  if (b->full)
    return;
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(b->out + b->len, b->cap - b->len, fmt, ap);
  va_end(ap);
  if (n < 0 || (size_t)n >= b->cap - b->len)
    b->full = true;
  else
    b->len += (size_t)n;
}

static void
family(Buf *b, const char *name, const char *type, const char *help)
{
  put(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* A float sample: the text format spells the non-finite ones NaN, +Inf, -Inf. */
static void
sample_f(Buf *b, const char *name, const char *labels, double v)
{
  if (isnan(v))
    put(b, "%s%s NaN\n", name, labels);
  else if (isinf(v))
    put(b, "%s%s %sInf\n", name, labels, v > 0 ? "+" : "-");
  else
    put(b, "%s%s %.15g\n", name, labels, v);
}

static void
sample_u(Buf *b, const char *name, const char *labels, uint64_t v)
{
  put(b, "%s%s %llu\n", name, labels, (unsigned long long)v);
}

static void
one_u(Buf *b, const char *name, const char *type, const char *help, uint64_t v)
{
  family(b, name, type, help);
  sample_u(b, name, "", v);
}

static void
one_f(Buf *b, const char *name, const char *help, double v)
{
  family(b, name, "gauge", help);
  sample_f(b, name, "", v);
}

/* A label value as the text format wants it: backslash, quote and newline escaped. */
static void
escape(const char *in, char *out, size_t cap)
{
  size_t o = 0;
  for (; *in && o + 3 < cap; in++) {
    if (*in == '\\' || *in == '"' || *in == '\n') {
      out[o++] = '\\';
      out[o++] = *in == '\n' ? 'n' : *in;
    } else {
      out[o++] = *in;
    }
  }
  out[o] = '\0';
}

static void
traffic(Buf *b, const EXP_Snapshot *s)
{
  char esc[64], labels[96];
  escape(s->version ? s->version : "unknown", esc, sizeof(esc));
  snprintf(labels, sizeof(labels), "{version=\"%s\"}", esc);
  family(b, "ntpgate_build_info", "gauge", "Always 1; the version in a label.");
  sample_u(b, "ntpgate_build_info", labels, 1);
  one_f(b, "ntpgate_start_time_seconds", "When the daemon started, POSIX seconds.",
        s->start_time);
  one_u(b, "ntpgate_requests_received_total", "counter",
        "Datagrams the serving threads received.", s->received);
  one_u(b, "ntpgate_received_bytes_total", "counter", "Octets the serving threads received.",
        s->received_bytes);
  one_u(b, "ntpgate_responses_sent_total", "counter",
        "Replies the kernel accepted (time replies, KoDs, crypto-NAKs, control answers).",
        s->sent);
  one_u(b, "ntpgate_sent_bytes_total", "counter", "Octets of the replies sent.",
        s->sent_bytes);
  one_u(b, "ntpgate_send_errors_total", "counter", "Replies the kernel refused.",
        s->send_errors);
  one_u(b, "ntpgate_receive_errors_total", "counter", "Failed receive calls.", s->recv_errors);
  one_u(b, "ntpgate_kernel_drops_total", "counter",
        "Datagrams the kernel dropped on our sockets (full buffers, the shed filter).",
        s->kernel_drops);
}

/* Every reason whose name starts with "dropped_" is a drop reason, labelled without it. */
static void
drops(Buf *b, const EXP_Snapshot *s)
{
  static const char name[] = "ntpgate_requests_dropped_total";
  char labels[96];
  family(b, name, "counter", "Requests dropped without an answer, by reason.");
  for (int r = 0; r < SRV_R_COUNT; r++) {
    const char *rn = SRV_ReasonName((SRV_Reason)r);
    if (strncmp(rn, "dropped_", 8) != 0)
      continue;
    snprintf(labels, sizeof(labels), "{reason=\"%s\"}", rn + 8);
    sample_u(b, name, labels, s->reasons[r]);
  }
  sample_u(b, name, "{reason=\"oversize\"}", s->oversize);
}

static void
answers(Buf *b, const EXP_Snapshot *s)
{
  static const char kod[] = "ntpgate_kod_sent_total";
  family(b, kod, "counter",
         "Kiss-o'-Death replies sent, by kiss code (NTSN: an NTS cookie or "
         "authenticator that failed).");
  sample_u(b, kod, "{code=\"RATE\"}", s->reasons[SRV_R_KOD_RATE]);
  sample_u(b, kod, "{code=\"DENY\"}", s->reasons[SRV_R_KOD_DENY]);
  sample_u(b, kod, "{code=\"RSTR\"}", s->reasons[SRV_R_KOD_RSTR]);
  sample_u(b, kod, "{code=\"CRYP\"}", s->reasons[SRV_R_KOD_CRYP]);
  sample_u(b, kod, "{code=\"NTSN\"}",
           s->reasons[SRV_R_KOD_NTSN_COOKIE] + s->reasons[SRV_R_KOD_NTSN_AUTH]);
  static const char srv[] = "ntpgate_time_replies_total";
  family(b, srv, "counter", "Time replies decided, by kind.");
  sample_u(b, srv, "{kind=\"plain\"}", s->reasons[SRV_R_SERVED]);
  sample_u(b, srv, "{kind=\"authenticated\"}", s->reasons[SRV_R_SERVED_AUTH]);
  sample_u(b, srv, "{kind=\"nts\"}", s->reasons[SRV_R_SERVED_NTS]);
  sample_u(b, srv, "{kind=\"leak\"}", s->reasons[SRV_R_SERVED_LEAK]);
  sample_u(b, srv, "{kind=\"crypto_nak\"}", s->reasons[SRV_R_CRYPTO_NAK]);
  one_u(b, "ntpgate_control_requests_total", "counter",
        "Mode 6 (ntpq) requests handed to the control path.", s->reasons[SRV_R_CONTROL]);
}

static void
tables(Buf *b, const EXP_Snapshot *s)
{
  one_u(b, "ntpgate_monitor_entries", "gauge", "Sources in the monitor (MRU) table.",
        s->mon_entries);
  one_u(b, "ntpgate_monitor_capacity", "gauge", "Sources the monitor table can hold.",
        s->mon_capacity);
  one_u(b, "ntpgate_monitor_evictions_total", "counter",
        "Monitor records evicted to make room for new sources.", s->mon_evictions);
  one_u(b, "ntpgate_monitor_not_tracked_total", "counter",
        "Requests whose source found no monitor record to take.", s->mon_not_tracked);
  one_u(b, "ntpgate_shed_sources", "gauge", "Sources whose packets the kernel drops for us.",
        s->shed_now);
  one_u(b, "ntpgate_shed_total", "counter", "Sources shed since start.", s->shed_total);
}

static void
system_vars(Buf *b, const EXP_Snapshot *s)
{
  one_u(b, "ntpgate_system_stratum", "gauge", "The stratum we serve (16: unsynchronized).",
        (uint64_t)s->stratum);
  one_u(b, "ntpgate_system_leap", "gauge",
        "The leap indicator we serve (0 none, 1 insert, 2 delete, 3 unsynchronized).",
        (uint64_t)s->leap);
  one_f(b, "ntpgate_system_root_delay_seconds", "The root delay we serve.", s->root_delay);
  one_f(b, "ntpgate_system_root_dispersion_seconds", "The root dispersion we serve.",
        s->root_dispersion);
  double nan = NAN;
  one_f(b, "ntpgate_leap_list_expiry_timestamp_seconds",
        "When the leap-second list (leapfile) expires, POSIX seconds (NaN: no list).",
        s->leap_expiry > 0 ? s->leap_expiry : nan);
  one_f(b, "ntpgate_system_offset_seconds", "The clock offset last measured (NaN: no client).",
        s->have_client ? s->offset : nan);
  one_f(b, "ntpgate_system_frequency_ppm", "The frequency correction (NaN: no client).",
        s->have_client ? s->frequency_ppm : nan);
  one_f(b, "ntpgate_system_jitter_seconds", "The clock jitter (NaN: no client).",
        s->have_client ? s->jitter : nan);
}

typedef enum { PF_OFFSET, PF_DELAY, PF_JITTER, PF_POLL, PF_REACH, PF_STRATUM } PeerField;

static double
peer_value(const EXP_Peer *p, PeerField f)
{
  switch (f) {
    case PF_OFFSET:
      return p->have_sample ? p->offset : NAN;
    case PF_DELAY:
      return p->have_sample ? p->delay : NAN;
    case PF_JITTER:
      return p->have_sample ? p->jitter : NAN;
    case PF_POLL:
      return (double)((int64_t)1 << (p->poll < 0 ? 0 : p->poll > 17 ? 17 : p->poll));
    case PF_REACH:
      return p->reach;
    default:
      return p->stratum;
  }
}

static void
peers(Buf *b, const EXP_Snapshot *s)
{
  static const struct {
    const char *name, *help;
    PeerField f;
  } fields[] = {
      {"ntpgate_peer_offset_seconds", "Offset of the association's clock (NaN: no sample).",
       PF_OFFSET},
      {"ntpgate_peer_delay_seconds", "Round-trip delay to the association.", PF_DELAY},
      {"ntpgate_peer_jitter_seconds", "Jitter of the association's samples.", PF_JITTER},
      {"ntpgate_peer_poll_seconds", "Poll interval of the association.", PF_POLL},
      {"ntpgate_peer_reach", "Reachability register (377 octal = 255: all of the last 8).",
       PF_REACH},
      {"ntpgate_peer_stratum", "Stratum the association announces.", PF_STRATUM},
  };
  char addr[ADR_STRLEN], labels[ADR_STRLEN + 32];
  for (size_t f = 0; f < sizeof(fields) / sizeof(fields[0]); f++) {
    family(b, fields[f].name, "gauge", fields[f].help);
    for (size_t i = 0; i < s->n_peers; i++) {
      snprintf(labels, sizeof(labels), "{peer=\"%s\"}",
               ADR_Format(&s->peers[i].addr, addr, sizeof(addr)));
      sample_f(b, fields[f].name, labels, peer_value(&s->peers[i], fields[f].f));
    }
  }
  static const char kod[] = "ntpgate_peer_kod_received_total";
  family(b, kod, "counter", "KoDs received from the association, by kiss code.");
  for (size_t i = 0; i < s->n_peers; i++) {
    const EXP_Peer *p = &s->peers[i];
    const struct {
      const char *code;
      uint64_t v;
    } codes[] = {{"RATE", p->kod_rate},
                 {"DENY", p->kod_deny},
                 {"RSTR", p->kod_rstr},
                 {"other", p->kod_other}};
    ADR_Format(&p->addr, addr, sizeof(addr));
    for (size_t c = 0; c < sizeof(codes) / sizeof(codes[0]); c++) {
      snprintf(labels, sizeof(labels), "{peer=\"%s\",code=\"%s\"}", addr, codes[c].code);
      sample_u(b, kod, labels, codes[c].v);
    }
  }
}

static void
endpoint(Buf *b, const EXP_Snapshot *s)
{
  static const char name[] = "ntpgate_metrics_http_requests_total";
  family(b, name, "counter", "Connections to the metrics endpoint, by outcome.");
  sample_u(b, name, "{result=\"served\"}", s->http_served);
  sample_u(b, name, "{result=\"refused\"}", s->http_refused);
  sample_u(b, name, "{result=\"error\"}", s->http_errors);
}

size_t
EXP_Format(const EXP_Snapshot *s, char *out, size_t cap)
{
  Buf b = {out, cap, 0, cap == 0};
  traffic(&b, s);
  drops(&b, s);
  answers(&b, s);
  tables(&b, s);
  system_vars(&b, s);
  peers(&b, s);
  endpoint(&b, s);
  return b.full ? 0 : b.len;
}

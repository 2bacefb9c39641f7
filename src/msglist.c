#include "msglist.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void
MSG_Init(MSG_Errors *e)
{
  memset(e, 0, sizeof(*e));
}

static void
clear_list(MSG_List *l)
{
  for (size_t i = 0; i < l->count; i++) {
    free(l->items[i].file);
    free(l->items[i].text);
  }
  free(l->items);
  memset(l, 0, sizeof(*l));
}

void
MSG_Clear(MSG_Errors *e)
{
  clear_list(&e->errors);
  clear_list(&e->warnings);
}

static void
sanitize(char *s)
{
  for (; *s; s++)
    if ((unsigned char)*s < 0x20 || *s == 0x7f)
      *s = '?';
}

void
MSG_VAdd(MSG_List *l, const char *file, int line, const char *fmt, va_list ap)
{
  if (l->count == l->capacity) {
    size_t cap = l->capacity ? 2 * l->capacity : 8;
    MSG_Message *items = realloc(l->items, cap * sizeof(*items));
    if (!items) {
      l->lost++;
      return;
    }
    l->items = items;
    l->capacity = cap;
  }
  char *text = NULL, *f = strdup(file ? file : "");
  if (!f || vasprintf(&text, fmt, ap) < 0) {
    free(f);
    l->lost++;
    return;
  }
  sanitize(f);
  sanitize(text);
  l->items[l->count++] = (MSG_Message){.file = f, .line = line, .text = text};
}

void
MSG_Add(MSG_List *l, const char *file, int line, const char *fmt, ...)
{
  va_list ap;
  va_start(ap, fmt);
  MSG_VAdd(l, file, line, fmt, ap);
  va_end(ap);
}

size_t
MSG_Format(const MSG_Message *m, char *buf, size_t size)
{
  int n;
  if (m->line > 0)
    n = snprintf(buf, size, "%s:%d: %s", m->file, m->line, m->text);
  else
    n = snprintf(buf, size, "%s: %s", m->file, m->text);
  return n < 0 ? 0 : (size_t)n;
}

void
MSG_SetError(char *err, size_t errlen, const char *fmt, ...)
{
  va_list ap;
  if (!err || errlen == 0)
    return;
  va_start(ap, fmt);
  vsnprintf(err, errlen, fmt, ap);
  va_end(ap);
}

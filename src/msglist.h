/* msglist: errors and warnings as data -- {file, line, text} -- for the parsers (config,
 * keys) and the error strings of the table builders. Nothing here logs: the caller decides
 * where messages go. File names and texts are stored with control characters replaced, so a
 * message can never break a log line. */
#ifndef NTPG_MSGLIST_H
#define NTPG_MSGLIST_H

#include <stdarg.h>
#include <stddef.h>

typedef struct {
  char *file; /* the file name as given (top level) or as opened (includes) */
  int line;   /* 1-based line number; 0 when the message is about a whole file */
  char *text; /* the reason, without the "FILE:LINE: " prefix and without a newline */
} MSG_Message;

typedef struct {
  MSG_Message *items;
  size_t count;
  size_t capacity; /* internal */
  size_t lost;     /* messages that could not be stored for lack of memory */
} MSG_List;

/* Zero-initialise (MSG_Init or `= {0}`), let any number of calls add messages, then
 * MSG_Clear. */
typedef struct {
  MSG_List errors;
  MSG_List warnings;
} MSG_Errors;

void MSG_Init(MSG_Errors *e);
/* Free every message and return the lists to empty. */
void MSG_Clear(MSG_Errors *e);
/* Add a message (counted in l->lost if memory runs out). */
void MSG_Add(MSG_List *l, const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
void MSG_VAdd(MSG_List *l, const char *file, int line, const char *fmt, va_list ap)
    __attribute__((format(printf, 4, 0)));
/* Write "FILE:LINE: text" ("FILE: text" when line is 0) into buf, always terminated when
 * size > 0. Returns the length the full text needs, as snprintf does. */
size_t MSG_Format(const MSG_Message *m, char *buf, size_t size);
/* snprintf into a caller's error buffer; nothing when err is NULL or errlen is 0. */
void MSG_SetError(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif

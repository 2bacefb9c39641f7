/* For the fuzz targets that parse text: the input as a NUL-terminated string (at most 64 KiB;
 * NULL for a longer input or when memory runs out). The caller frees it. */
#ifndef NTPG_FUZZ_TEXT_H
#define NTPG_FUZZ_TEXT_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static inline char *
fuzz_text(const uint8_t *data, size_t size)
{
  char *text = size <= 65536 ? malloc(size + 1) : NULL;
  if (text) {
    memcpy(text, data, size);
    text[size] = '\0';
  }
  return text;
}

#endif

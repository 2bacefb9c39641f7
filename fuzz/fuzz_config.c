/* libFuzzer target: the ntp.conf parser on arbitrary text. No crash, no leak, and every
 * message it reports formats. Inputs that name another file are skipped, so the fuzzer
 * cannot make the parser read devices or files outside the corpus. */
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "fuzz_text.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  char *text = fuzz_text(data, size);
  if (!text)
    return 0;
  if (strstr(text, "include")) {
    free(text);
    return 0;
  }
  CNF_Config *cfg = CNF_Create();
  CNF_Errors errs;
  CNF_InitErrors(&errs);
  bool ok = CNF_ParseText(cfg, "fuzz.conf", text, &errs);
  if (ok != (errs.errors.count == 0 && errs.errors.lost == 0))
    abort();
  char buf[256];
  for (size_t i = 0; i < errs.errors.count; i++)
    CNF_FormatMessage(&errs.errors.items[i], buf, sizeof(buf));
  for (size_t i = 0; i < errs.warnings.count; i++)
    CNF_FormatMessage(&errs.warnings.items[i], buf, sizeof(buf));
  CNF_ClearErrors(&errs);
  CNF_Destroy(cfg);
  /* the same text as ntpq :config would send it: only access-control directives */
  cfg = CNF_Create();
  CNF_InitErrors(&errs);
  ok = CNF_ParseRuntimeText(cfg, "runtime-config", text, &errs);
  if (ok != (errs.errors.count == 0 && errs.errors.lost == 0))
    abort();
  if (ok && (cfg->keysfile || cfg->n_trusted_keys || cfg->control_key || cfg->n_assocs))
    abort(); /* runtime text changed something it may not */
  CNF_ClearErrors(&errs);
  CNF_Destroy(cfg);
  free(text);
  return 0;
}

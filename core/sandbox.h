/*
** sandbox.h — Options.Sandbox: take away what lets a script reach outside
** its Runtime.
**
** Layer 3 (objects). Called by the Go seam before the loop starts.
*/
#ifndef MB_SANDBOX_H
#define MB_SANDBOX_H

#include <stddef.h>

#include "state.h"

int mb_sandbox_apply(mb_rt *rt, const char *dirs, size_t len);

#endif

/*
** run.h — runs: a chunk, a Call or a SetGlobal asked for by Go, from the
** request to the result, and the tasks that belong to it.
**
** Layer 5 (life cycle). new (Go) -> submit -> start (the loop) -> done
** (its result is decided: Go takes it with mb_run_take_done) -> release
** (Go took it) -> freed here once its last task ended. The record is in
** state.h.
*/
#ifndef MB_RUN_H
#define MB_RUN_H

#include <stddef.h>
#include <stdint.h>

#include "state.h"

/* Go's side: any thread, except where it says the driver. */
mb_run *mb_run_new(int64_t id, int kind, const char *name, size_t namelen,
                   const char *data, size_t len, int cancellable);
void mb_run_set_limits(mb_run *r, int64_t instructions, int64_t deadline_ns);
void mb_run_set_env(mb_run *r, int64_t script, int keep, int internal);
void mb_run_free(mb_run *r);
int mb_run_submit(mb_rt *rt, mb_run *r);
void mb_run_submit_driver(mb_rt *rt, mb_run *r);
int mb_run_cancel(mb_rt *rt, mb_run_cancel_msg *c, int deadline);
void mb_run_cancel_free(mb_run_cancel_msg *c);
mb_run *mb_run_take_done(mb_rt *rt); /* the driver, after a step */
void mb_run_release(mb_rt *rt, mb_run *r); /* the driver */

/* The loop's side. */
void mb_run_start(mb_rt *rt, mb_run *r);
void mb_run_drain_cancel(mb_rt *rt, mb_run_cancel_msg *c);
void mb_run_task_end(mb_rt *rt, mb_run *r, mb_task *t);
void mb_run_exit(mb_rt *rt, mb_run *r);
void mb_run_close_all(mb_rt *rt);
void mb_run_end_over_limit(mb_rt *rt);
int mb_run_has_live_tasks(mb_rt *rt);
void mb_run_deadlock(mb_rt *rt);
void mb_run_free_all(mb_rt *rt);

#endif

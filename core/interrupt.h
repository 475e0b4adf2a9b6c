/*
** interrupt.h — stopping a running task at once from another thread:
** Go's cancellation of a run signals the thread inside the runtime's step,
** whose handler makes the running Lua thread yield at its next
** instruction (as lua.c's SIGINT handler sets a hook), so even a tight
** loop under no time slice gives up its turn and its run ends. Nothing is
** paid until then.
**
** Layer 5 (life cycle): rt.c marks the step, Go's loop kicks.
*/
#ifndef MB_INTERRUPT_H
#define MB_INTERRUPT_H

#include "state.h"

int mb_interrupt_install(void); /* once per process; 0, or errno */
void mb_interrupt_enter(mb_rt *rt); /* the step starts on this thread */
void mb_interrupt_leave(mb_rt *rt);
int mb_interrupt_in_step(mb_rt *rt); /* the calling thread is in rt's step */
/* Any thread: preempt the running task, for run (Go's id; 0: for Close). */
void mb_interrupt_kick(mb_rt *rt, int64_t run);

#endif

/*
** interrupt.c — preempting the running task from another thread with a
** signal (see interrupt.h). A count hook cannot be set on a lua_State
** another thread is running (lua_sethook walks the CallInfo list the VM
** is using), so it is set by a signal handler on the VM's own thread.
**
** The signal is a real-time one Go does not use (MB_INTERRUPT_SIG). Its
** handler is installed with SA_ONSTACK (the thread may be running Go
** code on a goroutine's small stack when it arrives: Go gives every
** thread an alternate signal stack), SA_SIGINFO and SA_RESTART, and
** chains to the handler it replaced when the signal is not for a step.
*/
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>

#include "interrupt.h"
#include "task.h"

#define MB_INTERRUPT_SIG (SIGRTMIN + 7)

/* The runtime whose step this thread is in, or NULL: the handler's only
** way to know whether the signal concerns it. */
static _Thread_local mb_rt *mb_interrupt_here;

static struct sigaction mb_interrupt_old;
static pthread_once_t mb_interrupt_once = PTHREAD_ONCE_INIT;
static int mb_interrupt_err;

_Static_assert(sizeof(pthread_t) <= sizeof(unsigned long), "pthread_t fits an unsigned long");

/* Inside a step: preempt its running task; otherwise pass the signal on
** to whoever had it before (Go's handler, which ignores it). */
static void mb_interrupt_handler(int sig, siginfo_t *info, void *uctx) {
  mb_rt *rt = mb_interrupt_here;
  int saved = errno;
  if (rt != NULL) {
    mb_task_interrupt(rt);
  } else if (mb_interrupt_old.sa_flags & SA_SIGINFO) {
    if (mb_interrupt_old.sa_sigaction != NULL) mb_interrupt_old.sa_sigaction(sig, info, uctx);
  } else if (mb_interrupt_old.sa_handler != SIG_DFL && mb_interrupt_old.sa_handler != SIG_IGN) {
    mb_interrupt_old.sa_handler(sig);
  }
  errno = saved;
}

static void mb_interrupt_do_install(void) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_sigaction = mb_interrupt_handler;
  sa.sa_flags = SA_ONSTACK | SA_SIGINFO | SA_RESTART;
  sigemptyset(&sa.sa_mask);
  if (sigaction(MB_INTERRUPT_SIG, &sa, &mb_interrupt_old) != 0) mb_interrupt_err = errno;
}

int mb_interrupt_install(void) {
  pthread_once(&mb_interrupt_once, mb_interrupt_do_install);
  return mb_interrupt_err;
}

void mb_interrupt_enter(mb_rt *rt) {
  mb_interrupt_here = rt;
  atomic_store(&rt->step_thread, (unsigned long)pthread_self());
  atomic_store(&rt->in_step, 1);
}

void mb_interrupt_leave(mb_rt *rt) {
  atomic_store(&rt->in_step, 0);
  mb_interrupt_here = NULL;
}

/* Is the calling thread inside rt's step? A Go function the loop calls
** inline runs there, on the loop's own thread. */
int mb_interrupt_in_step(mb_rt *rt) {
  return atomic_load(&rt->in_step) &&
         pthread_equal((pthread_t)atomic_load(&rt->step_thread), pthread_self());
}

/* A thread that left the step meanwhile ignores the signal (or is in
** another runtime's step, whose task then merely gives up one turn). */
void mb_interrupt_kick(mb_rt *rt, int64_t run) {
  if (run != 0) atomic_store(&rt->interrupt_run, run);
  if (!atomic_load(&rt->in_step)) return;
  pthread_kill((pthread_t)atomic_load(&rt->step_thread), MB_INTERRUPT_SIG);
}

package core

/*
#include "interrupt.h"
*/
import "C"

import (
	"context"
	"errors"
	"time"
)

// interruptEvery is how often a cancelled run's running task is
// preempted again while the run has not ended: a signal that arrives
// between two turns finds no task to stop, and the next turn may be a
// tight loop's.
const interruptEvery = 10 * time.Millisecond

// interruptRun makes the task running in run id's runtime give up its turn
// at its next instruction, so the scheduler reads the cancellation Go just
// sent and ends the run, even in a tight loop with no time slice (see
// interrupt.c); and again every interruptEvery until the run has ended.
// It runs on the run's AfterFunc goroutine, only once the run's context
// has ended: until then nothing is paid. A deadline is left to the run's
// own count hook (limit.c), which raises the limit error inside the task,
// where its message handlers and cleanup see it.
func (l *Loop) interruptRun(ctx context.Context, id int64) {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return
	}
	if C.mb_interrupt_install() != 0 {
		return // no signal to use: the scheduler's own checks remain
	}
	l.kick(id, func() bool {
		_, live := l.runs.Load(id)
		return l.closed || !live
	}, nil)
}

// interruptClose preempts the running task until the loop has stopped, so
// that a task in a tight loop, under no limit and no time slice, cannot
// keep Close waiting: each kick makes it give up its turn, and the
// scheduler then reads the close message and ends every run. The runtime
// is freed only after stopped is set under the write lock, so a kick
// (under the read lock) never reaches a freed runtime.
func (l *Loop) interruptClose() {
	if C.mb_interrupt_install() != 0 {
		return // no signal to use: Close waits for the task's turn to end
	}
	l.kick(0, l.stopped.Load, l.stop)
}

// kick preempts the running task for run (0: for Close) now and every
// interruptEvery after, until over (asked under l.mu, which keeps l.c
// alive) says to stop or quit is closed.
func (l *Loop) kick(run int64, over func() bool, quit <-chan struct{}) {
	tick := time.NewTicker(interruptEvery)
	defer tick.Stop()
	for {
		l.mu.RLock()
		if over() {
			l.mu.RUnlock()
			return
		}
		C.mb_interrupt_kick(l.c, C.int64_t(run))
		l.mu.RUnlock()
		select {
		case <-quit:
			return
		case <-tick.C:
		}
	}
}

// onLoopThread reports whether the caller runs inside the loop's step (a
// Go function called inline). Call it with l.mu held and l not stopped.
func (l *Loop) onLoopThread() bool { return C.mb_interrupt_in_step(l.c) != 0 }

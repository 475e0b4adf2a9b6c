package core

/*
#include "buf.h"
#include "call.h"
*/
import "C"

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// callCtx is the context of one bridge call. context.WithCancel would
// register every call with its run's context (a lock and a map insert on
// the parent per call, and again on cancel) and allocate its channel
// up front. The driver cancels calls itself — when their task is killed,
// their run aborted, or the runtime closed — so a call's context needs no
// link to its parent's cancellation: it takes values and the deadline
// from the run's context, and makes its Done channel only when asked.
type callCtx struct {
	parent context.Context
	run    *runCalls    // the run's count of cancelled calls, or nil
	state  atomic.Int32 // callRunning, callCancelled (counted in run), callReturned
	how    int32        // how runCall runs the call: runPooled, runOwn, runReclaim
	mu     sync.Mutex
	done   chan struct{}
	err    error

	// The call running in this context, for runCall's deferred handOff
	// (kept here, not on the goroutine's stack: see runCall).
	c     *C.mb_call
	began time.Duration // runOwn: when it began, on clock's scale
	vals  []any         // what the function returned
	ret   error         // and its error; errRunning until it returns
}

// clock is the origin of callCtx.began: a monotonic reading as one word.
var clock = time.Now()

const (
	callRunning   = 0
	callCancelled = 1
	callReturned  = 2
)

// runCalls counts a run's bridge calls that were cancelled and whose
// function has not returned yet: the run's end waits for them
// (Loop.awaitCancelled). waiting is set, after idle is made, once the run
// waits; the call that brings n to 0 then closes idle.
type runCalls struct {
	n       atomic.Int64
	waiting atomic.Bool
	idle    chan struct{}
}

func (r *runCalls) done() {
	if r.n.Add(-1) == 0 && r.waiting.CompareAndSwap(true, false) {
		close(r.idle)
	}
}

// returned says the call's function has returned (or will never run): if
// it was cancelled, its run stops waiting for it.
func (c *callCtx) returned() {
	if c.state.Swap(callReturned) == callCancelled {
		c.run.done()
	}
}

// closedChan is Done for a context cancelled before anyone asked.
var closedChan = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

func (c *callCtx) Deadline() (time.Time, bool) { return c.parent.Deadline() }
func (c *callCtx) Value(key any) any           { return c.parent.Value(key) }

func (c *callCtx) Done() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.done == nil {
		if c.err != nil {
			c.done = closedChan
		} else {
			c.done = make(chan struct{})
		}
	}
	return c.done
}

func (c *callCtx) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// cancel ends the call's context with the run's error if the run ended
// through its context (deadline or cancellation), else context.Canceled.
func (c *callCtx) cancel() {
	err := c.parent.Err()
	if err == nil {
		err = context.Canceled
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return
	}
	c.err = err
	if c.run != nil { // counted first, so the count never dips below what runs
		c.run.n.Add(1)
		if !c.state.CompareAndSwap(callRunning, callCancelled) {
			c.run.done() // it had returned already
		}
	}
	if c.done != nil && c.done != closedChan {
		close(c.done)
	}
}

func (c *callCtx) String() string { return "moonbridge call context" }

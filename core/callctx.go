package core

import (
	"context"
	"sync"
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
	mu     sync.Mutex
	done   chan struct{}
	err    error
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
	if c.done != nil && c.done != closedChan {
		close(c.done)
	}
}

func (c *callCtx) String() string { return "moonbridge call context" }

package core

/*
#include "call.h"
*/
import "C"

import (
	"encoding/binary"
	"errors"
	"strings"
	"sync"
)

// OpError lets a bridge function say what Lua error it raises: Kind (the
// Lua error's kind; empty means "bridge") and Op (its op; empty means the
// function's Lua name). The message stays the function's name followed by
// Err's text. Err stays reachable from Go through the run's error
// (errors.Is and errors.As see it). package bridge exports it as
// bridge.OpError.
type OpError struct {
	Op   string
	Kind string
	Err  error
}

func (e *OpError) Error() string {
	if e.Err == nil {
		return "error"
	}
	return e.Err.Error()
}

// Unwrap returns Err.
func (e *OpError) Unwrap() error { return e.Err }

// maxGoErrorsPerRun bounds the Go errors one run keeps: a long run that
// catches errors for ever keeps its newest ones. The error that ends a run
// is nearly always among them.
const maxGoErrorsPerRun = 1024

// goErrors is a Loop's table of the Go errors bridge functions returned,
// per run: the Lua error a bridge call raises carries the error's id, and
// when a run ends with such a Lua error, the run's error wraps the Go
// value. A run's errors are released when its result is taken; they are
// kept only while the run is one Go waits for (Loop.runs), so a Call's
// tasks that outlive it keep none.
type goErrors struct {
	mu   sync.Mutex
	next int64
	runs map[int64]*runGoErrors
}

type runGoErrors struct {
	ids  []int64 // oldest first
	errs map[int64]error
}

// keep stores err for run and returns its id, or 0 when the run is not one
// Go waits for any more.
func (l *Loop) keepGoError(run int64, err error) int64 {
	g := &l.goErrs
	g.mu.Lock()
	defer g.mu.Unlock()
	if _, live := l.runs.Load(run); !live {
		return 0
	}
	if g.runs == nil {
		g.runs = map[int64]*runGoErrors{}
	}
	r := g.runs[run]
	if r == nil {
		r = &runGoErrors{errs: map[int64]error{}}
		g.runs[run] = r
	}
	if len(r.ids) == maxGoErrorsPerRun {
		delete(r.errs, r.ids[0])
		r.ids = append(r.ids[:0], r.ids[1:]...)
	}
	g.next++
	r.ids = append(r.ids, g.next)
	r.errs[g.next] = err
	return g.next
}

// releaseGoErrors drops run's errors and returns the one with id (nil for
// 0 or one not kept). Called once the run is no longer in l.runs.
func (l *Loop) releaseGoErrors(run, id int64) error {
	g := &l.goErrs
	g.mu.Lock()
	defer g.mu.Unlock()
	r := g.runs[run]
	if r == nil {
		return nil
	}
	delete(g.runs, run)
	return r.errs[id]
}

// appendGoError encodes err, returned by a bridge function of run, for
// the C side (call.h's MB_ERR_GO): the id Go keeps it under, the kind and
// op an *OpError asks for, then its text. It returns the bytes and the
// status to send.
func (l *Loop) appendGoError(b []byte, run int64, err error) ([]byte, C.int) {
	var kind, op string
	var oe *OpError
	if errors.As(err, &oe) { // each ends at a zero byte on the wire
		kind, op = strings.ReplaceAll(oe.Kind, "\x00", ""), strings.ReplaceAll(oe.Op, "\x00", "")
	}
	id := l.keepGoError(run, err)
	msg := err.Error()
	if msg == "" {
		msg = "error"
	}
	b = binary.LittleEndian.AppendUint64(b, uint64(id))
	b = append(append(b, kind...), 0)
	b = append(append(b, op...), 0)
	return append(b, msg...), C.MB_ERR_GO
}

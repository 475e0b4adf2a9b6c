package core

// The two places C calls into Go, both off the completion path: inline
// bridge functions (which never block) and print/io.write to the Go
// writers. Neither lets a Lua error or a Go panic cross the seam: each
// returns a status and the C side raises after the Go frame has returned.

/*
#include <stdint.h>
#include "bridge.h"
#include "codec.h"
*/
import "C"

import (
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"unsafe"
)

// loops holds every live Loop at the index its C runtime carries
// (rt->go_handle), so a callback finds its Loop with two loads: no
// cgo.Handle, whose lookup is a sync.Map's (a tenth of an inline call).
// The slice is replaced, never changed in place, when it grows; slots are
// reused once their Loop is freed.
var loops struct {
	mu   sync.Mutex
	tab  atomic.Pointer[[]atomic.Pointer[Loop]]
	free []uintptr
}

// addLoop gives l a slot and returns its index, never 0.
func addLoop(l *Loop) uintptr {
	loops.mu.Lock()
	defer loops.mu.Unlock()
	if n := len(loops.free); n > 0 {
		i := loops.free[n-1]
		loops.free = loops.free[:n-1]
		(*loops.tab.Load())[i].Store(l)
		return i
	}
	// Slot 0 is never a Loop's: a runtime whose go_handle is 0 has no Go
	// side (output.c drops its warnings), so the first Loop takes slot 1.
	old := make([]atomic.Pointer[Loop], 1)
	if p := loops.tab.Load(); p != nil {
		old = *p
	}
	tab := make([]atomic.Pointer[Loop], len(old)+1, 2*len(old)+1)
	for i := range old {
		tab[i].Store(old[i].Load())
	}
	tab[len(old)].Store(l)
	loops.tab.Store(&tab)
	return uintptr(len(old))
}

// dropLoop frees slot i: its runtime is freed, no callback can come.
func dropLoop(i uintptr) {
	loops.mu.Lock()
	defer loops.mu.Unlock()
	(*loops.tab.Load())[i].Store(nil)
	loops.free = append(loops.free, i)
}

func loopOf(h C.uintptr_t) *Loop { return (*loops.tab.Load())[h].Load() }

//export mbGoInline
func mbGoInline(c *C.mb_inline) (status C.int) {
	l := loopOf(c.rt)
	// Inline calls nest only through the C side (a finalizer run while
	// results are decoded), never inside this function: one argument
	// slice per Loop serves them all.
	var a []Value
	refs := true // some argument holds memory: drop it after the call
	if n := int(c.nargs); n >= 0 {
		a, refs = inlineArgs(l.args[:n], &c.vals)
	} else {
		var err error
		if a, err = AppendValues(l.args[:0], cslice(c.msg, c.msglen)); err != nil {
			return putOut(&c.out, []byte(err.Error()), statusErr)
		}
	}
	// One recover for the whole call (invoke's, inlined): a panic in the
	// function, or in encoding what it returned, is the call's error.
	// The closure holds c alone: each word it captures is paid per call.
	defer func() {
		if p := recover(); p != nil {
			status = inlinePanic(c, p)
		}
	}()
	vals, err := (*l.funcs.Load())[c.fn].fn(l.baseCtx, a)
	if refs {
		dropArgs(a)
	}
	l.args = a[:0]
	if err == nil {
		if inlineResults(&c.vals, vals) {
			c.nres = C.int(len(vals))
			return statusOK
		}
		// Encode straight into the caller's buffer when it is big enough.
		out := &c.out
		enc, eerr := AppendMessage(unsafe.Slice((*byte)(unsafe.Pointer(out.data)), int(out.cap))[:0], vals...)
		if eerr == nil {
			return putOut(out, enc, statusOK)
		}
		err = errBadResult(eerr)
	}
	var run int64 // the calling task's run, if any (a finalizer may call outside one)
	if t := l.c.current; t != nil {
		run = int64(t.run.id)
	}
	b, st := l.appendGoError(nil, run, err)
	return putOut(&c.out, b, st)
}

// inlinePanic makes panic p the error of inline call c. The arguments
// are dropped: those in the Loop's slice cleared, a bigger slice left to
// the collector.
func inlinePanic(c *C.mb_inline, p any) C.int {
	l := loopOf(c.rt)
	clear(l.args[:cap(l.args)])
	l.args = l.args[:0]
	c.nres = -1
	return putOut(&c.out, []byte(fmt.Sprintf("%v", p)), statusPanic)
}

// dropArgs keeps no argument of an inline call alive past it.
func dropArgs(a []Value) {
	for i := range a {
		if a[i].kind >= valueString {
			a[i] = Value{}
		}
	}
}

// inlineArgs decodes the arguments C left in vals into a (as many as it
// is long): scalars as they are, strings copied out of Lua's memory. It
// reports whether there was a string (which dropArgs then drops).
func inlineArgs(a []Value, vals *[C.MB_INLINE_VALS]C.mb_inline_val) ([]Value, bool) {
	strs := false
	for i := range a {
		v := &vals[i]
		switch v.tag {
		case C.MB_CODEC_INT:
			a[i] = Value{kind: valueInt, num: uint64(v.num)}
		case C.MB_CODEC_FLOAT:
			a[i] = Value{kind: valueFloat, num: uint64(v.num)}
		case C.MB_CODEC_TRUE:
			a[i] = Value{kind: valueBool, num: 1}
		case C.MB_CODEC_FALSE:
			a[i] = Value{kind: valueBool}
		case C.MB_CODEC_STRING:
			a[i] = Value{kind: valueString, str: string(cslice(v.str, C.size_t(v.num)))}
			strs = true
		default:
			a[i] = Value{}
		}
	}
	return a, strs
}

// inlineResults writes vals into out for C to push, when they are few
// scalars (what most inline functions return), and reports whether it
// did; anything else is encoded as a message.
func inlineResults(out *[C.MB_INLINE_VALS]C.mb_inline_val, vals []any) bool {
	if len(vals) > len(out) {
		return false
	}
	for i, v := range vals {
		r := &out[i]
		switch x := v.(type) {
		case int64:
			r.tag, r.num = C.MB_CODEC_INT, C.uint64_t(x)
		case int:
			r.tag, r.num = C.MB_CODEC_INT, C.uint64_t(x)
		case float64:
			r.tag, r.num = C.MB_CODEC_FLOAT, C.uint64_t(math.Float64bits(x))
		case bool:
			r.tag = C.MB_CODEC_FALSE
			if x {
				r.tag = C.MB_CODEC_TRUE
			}
		case nil:
			r.tag = C.MB_CODEC_NIL
		default:
			return false
		}
	}
	return true
}

// putOut leaves b in out, the inline call's result buffer, unless it was
// written there in place: moved to the heap when it does not fit.
func putOut(out *C.mb_buf, b []byte, status C.int) C.int {
	if len(b) > 0 && unsafe.Pointer(&b[0]) != unsafe.Pointer(out.data) {
		if len(b) > int(out.cap) && !moveOut(out, len(b)) {
			out.len = 0
			return statusErr // an empty message: out of memory
		}
		copy(unsafe.Slice((*byte)(unsafe.Pointer(out.data)), len(b)), b)
	}
	out.len = C.size_t(len(b))
	return status
}

//export mbGoWrite
func mbGoWrite(h C.uintptr_t, fd C.int, p *C.char, n C.size_t) C.int {
	l := loopOf(h)
	w := l.stdout
	if fd == 2 {
		w = l.stderr
	}
	if _, err := w.Write(cslice(p, n)); err != nil {
		return 1
	}
	return 0
}

package core

// The two places C calls into Go, both off the completion path: inline
// bridge functions (which never block) and print/io.write to the Go
// writers. Neither lets a Lua error or a Go panic cross the seam: each
// returns a status and the C side raises after the Go frame has returned.

/*
#include <stdint.h>
#include "buf.h"
*/
import "C"

import (
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

// addLoop gives l a slot and returns its index.
func addLoop(l *Loop) uintptr {
	loops.mu.Lock()
	defer loops.mu.Unlock()
	if n := len(loops.free); n > 0 {
		i := loops.free[n-1]
		loops.free = loops.free[:n-1]
		(*loops.tab.Load())[i].Store(l)
		return i
	}
	var old []atomic.Pointer[Loop]
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
func mbGoInline(h C.uintptr_t, fn C.int, args *C.char, n C.size_t, out *C.mb_buf) C.int {
	l := loopOf(h)
	// Inline calls nest only through the C side (a finalizer run while
	// results are decoded), never inside this function: one argument
	// slice per Loop serves them all.
	a, err := AppendValues(l.args[:0], cslice(args, n))
	if err != nil {
		return putOut(out, []byte(err.Error()), statusErr)
	}
	vals, status, err := invoke((*l.funcs.Load())[fn], l.baseCtx, a)
	for i := range a { // keep no argument alive past the call
		if a[i].kind >= valueString {
			a[i] = Value{}
		}
	}
	l.args = a[:0]
	if status == statusOK {
		// Encode straight into the caller's buffer when it is big enough.
		enc, eerr := AppendMessage(unsafe.Slice((*byte)(unsafe.Pointer(out.data)), int(out.cap))[:0], vals...)
		if eerr == nil {
			return putOut(out, enc, status)
		}
		status, err = statusErr, errBadResult(eerr)
	}
	if status == statusErr {
		var run int64 // the calling task's run, if any (a finalizer may call outside one)
		if t := l.c.current; t != nil {
			run = int64(t.run.id)
		}
		b, st := l.appendGoError(nil, run, err)
		return putOut(out, b, st)
	}
	return putOut(out, []byte(err.Error()), status)
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

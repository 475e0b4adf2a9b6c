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
	"fmt"
	"runtime/cgo"
	"unsafe"
)

//export mbGoInline
func mbGoInline(h C.uintptr_t, fn C.int, args *C.char, n C.size_t, out *C.mb_buf) C.int {
	l := cgo.Handle(h).Value().(*Loop)
	f := (*l.funcs.Load())[fn]
	vals, status, err := call(f, l.baseCtx, cslice(args, n), l.args)
	clear(l.args[:cap(l.args)]) // keep no argument alive past the call
	if status == statusOK {
		// Encode straight into the C buffer when it is big enough; it is
		// sized at creation so that it nearly always is.
		dst := unsafe.Slice((*byte)(unsafe.Pointer(out.data)), int(out.cap))[:0]
		enc, eerr := AppendMessage(dst, vals...)
		if eerr == nil {
			return putC(out, enc, status)
		}
		status, err = statusErr, fmt.Errorf("bad result: %w", eerr)
	}
	if status == statusErr {
		var run int64 // the calling task's run, if any (a finalizer may call outside one)
		if t := l.c.current; t != nil {
			run = int64(t.run.id)
		}
		b, st := l.appendGoError(nil, run, err)
		return putC(out, b, st)
	}
	return putC(out, []byte(err.Error()), status)
}

// putC leaves b in the C buffer out, unless it was written there in place.
func putC(out *C.mb_buf, b []byte, status C.int) C.int {
	if len(b) > 0 && unsafe.Pointer(&b[0]) != unsafe.Pointer(out.data) {
		if C.mb_buf_reserve(out, C.size_t(len(b))) != 0 {
			return statusErr // an empty message: out of memory
		}
		copy(unsafe.Slice((*byte)(unsafe.Pointer(out.data)), len(b)), b)
	}
	out.len = C.size_t(len(b))
	return status
}

//export mbGoWrite
func mbGoWrite(h C.uintptr_t, fd C.int, p *C.char, n C.size_t) C.int {
	l := cgo.Handle(h).Value().(*Loop)
	w := l.stdout
	if fd == 2 {
		w = l.stderr
	}
	if _, err := w.Write(cslice(p, n)); err != nil {
		return 1
	}
	return 0
}

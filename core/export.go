package core

// The two places C calls into Go, both off the completion path: inline
// bridge functions (which never block) and print/io.write to the Go
// writers. Neither lets a Lua error or a Go panic cross the seam: each
// returns a status and the C side raises after the Go frame has returned.

/*
#include "mb.h"
*/
import "C"

import (
	"runtime/cgo"
	"unsafe"
)

//export mbGoInline
func mbGoInline(h C.uintptr_t, fn C.int, args *C.char, n C.size_t, out *C.mb_buf) C.int {
	l := cgo.Handle(h).Value().(*Loop)
	f := (*l.funcs.Load())[fn]
	vals, status, err := invoke(func() ([]any, error) {
		a, err := DecodeMessage(cslice(args, n))
		if err != nil {
			return nil, err
		}
		return f.fn(l.baseCtx, a)
	})
	bp := bufPool.Get().(*[]byte)
	status = outcome(bp, vals, status, err)
	if len(*bp) > 0 {
		if C.mb_buf_reserve(out, C.size_t(len(*bp))) != 0 {
			bufPool.Put(bp)
			return C.MB_ERR // an empty message: out of memory
		}
		copy(unsafe.Slice((*byte)(unsafe.Pointer(out.data)), len(*bp)), *bp)
		out.len = C.size_t(len(*bp))
	}
	bufPool.Put(bp)
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

// Package oom counts the out-of-memory errors that scripts caught
// themselves (pcall, xpcall, errors.rawpcall, coroutine.resume) under a
// MemoryLimit. Caught, such an error lets a script go on along another
// path, so tests that run scripts under tight limits use the count to tell
// those runs from runs that must print their usual output. core records
// each Runtime's count when its C side is freed (at Close); tests read it.
package oom

import "sync/atomic"

var caught atomic.Int64

// Record adds the errors one freed Runtime's scripts caught.
func Record(n int64) {
	if n != 0 {
		caught.Add(n)
	}
}

// Caught reports the total so far, over every freed Runtime.
func Caught() int64 { return caught.Load() }

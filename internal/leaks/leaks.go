// Package leaks counts what Runtimes leave behind, for the tests that look
// for leaks: how many Runtimes' C sides are allocated and not yet freed,
// and what freed ones left: bytes that Lua's allocator still counted after
// lua_close, and event loops that still had libuv handles open when
// closed. The last two stay zero unless the C core has a bug; the first
// goes back to where it was once every Runtime is closed and its last
// bridge function has returned. core records into it; tests read it.
package leaks

import (
	"context"
	"sync"
	"sync/atomic"
)

var luaBytes, loops atomic.Int64

var (
	mu      sync.Mutex
	live    int64
	changed = make(chan struct{}) // closed and replaced when live changes
)

// Allocated counts a Runtime's C side, allocated.
func Allocated() { addLive(1) }

// Freed counts a Runtime's C side, freed, and adds what it left behind.
func Freed(lua, openLoops int64) {
	if lua != 0 {
		luaBytes.Add(lua)
	}
	if openLoops != 0 {
		loops.Add(openLoops)
	}
	addLive(-1)
}

func addLive(n int64) {
	mu.Lock()
	defer mu.Unlock()
	live += n
	close(changed)
	changed = make(chan struct{})
}

// Counts reports the totals so far: Lua bytes, and loops with handles open.
func Counts() (lua, openLoops int64) {
	return luaBytes.Load(), loops.Load()
}

// Live reports how many Runtimes' C sides are allocated and not yet freed,
// in the whole process.
func Live() int64 {
	mu.Lock()
	defer mu.Unlock()
	return live
}

// WaitLive waits until exactly n Runtimes' C sides are live, or ctx ends.
func WaitLive(ctx context.Context, n int64) error {
	for {
		mu.Lock()
		now, ch := live, changed
		mu.Unlock()
		if now == n {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

package core

import (
	"sync/atomic"
	"testing"
)

// The first Loop of a process, and every Loop after it, gets a nonzero
// slot: a C runtime whose go_handle is 0 is one without a Go side, whose
// warnings output.c drops. Before, the first Runtime of a process (the
// only one `moonbridge run` makes) took slot 0, and warn() said nothing.
func TestLoopSlotsStartAtOne(t *testing.T) {
	loops.mu.Lock()
	saved, savedFree := loops.tab.Load(), loops.free
	loops.tab.Store(nil)
	loops.free = nil
	loops.mu.Unlock()
	defer func() {
		loops.mu.Lock()
		loops.tab.Store(saved)
		loops.free = savedFree
		loops.mu.Unlock()
	}()
	var ls [3]Loop
	for i := range ls {
		if id := addLoop(&ls[i]); id == 0 {
			t.Fatalf("loop %d got slot 0", i)
		}
	}
	dropLoop(1)
	if id := addLoop(&ls[0]); id != 1 {
		t.Errorf("a freed slot is reused: got %d, want 1", id)
	}
	var none atomic.Pointer[Loop]
	if (*loops.tab.Load())[0].Load() != none.Load() {
		t.Error("slot 0 holds a Loop")
	}
}

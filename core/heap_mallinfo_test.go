//go:build !asan

// The C heap around the small-block heap, read with glibc's mallinfo2:
// under -asan malloc is AddressSanitizer's (mallinfo2 reads 0), the heap is
// off, and LeakSanitizer checks what Close frees instead.

package core

import (
	"context"
	"testing"

	"github.com/moonbridge/moonbridge/internal/cheap"
)

// The heap gives pages back: after a script drops 200,000 small objects
// and collects, the C heap is back near where it was before they were
// made, not at the peak (pages that keep no block go back to malloc).
func TestHeapGivesPagesBack(t *testing.T) {
	if !cheap.Exact(t) {
		return
	}
	l, _ := newTestLoop(t, Options{})
	luaKiB := func() int64 {
		v, err := l.GetGlobal(context.Background(), "kib")
		if err != nil {
			t.Fatal(err)
		}
		f, ok := v.(float64)
		if !ok {
			t.Fatalf("kib is %T %v", v, v)
		}
		return int64(f)
	}
	runOK(t, l, `collectgarbage() kib = collectgarbage("count")`)
	before, luaBefore := cheap.Bytes(), luaKiB()
	runOK(t, l, `
		keep = {}
		for i = 1, 200000 do keep[i] = {i} ; keep[-i] = "s" .. i end
		collectgarbage()`)
	peak := cheap.Bytes()
	runOK(t, l, `keep = nil collectgarbage() collectgarbage() kib = collectgarbage("count")`)
	after, luaAfter := cheap.Bytes(), luaKiB()
	t.Logf("C heap: %d KiB before, %d KiB with the objects, %d KiB after; Lua: %d KiB before, %d KiB after",
		before>>10, peak>>10, after>>10, luaBefore, luaAfter)
	if peak-before < 8<<20 {
		t.Fatalf("the objects took %d KiB: the test made too few to tell", (peak-before)>>10)
	}
	// What Lua itself still holds (its string table keeps some of the size
	// it grew to) stays; beyond it, the spare page and pages of blocks
	// kept by the run itself: far under a percent of the peak.
	if grew := after - before - (luaAfter-luaBefore)<<10; grew > 256<<10 {
		t.Errorf("C heap %d KiB above Lua's own growth after the objects were freed (peak %d KiB above)",
			grew>>10, (peak-before)>>10)
	}
}

// A Runtime made, used and closed again and again leaves the C heap
// where it was: Close frees every page, the spare and the class tables.
func TestHeapNewCloseFlat(t *testing.T) {
	if !cheap.Exact(t) {
		return
	}
	cycle := func() {
		l, err := NewLoop(Options{})
		if err != nil {
			t.Fatal(err)
		}
		runOK(t, l, `local t = {} for i = 1, 5000 do t[i] = {tostring(i)} end`)
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
	}
	cycle() // the first warms malloc's arenas and the process's one-time state
	before := cheap.Bytes()
	const n = 40
	for range n {
		cycle()
	}
	left := cheap.Bytes() - before
	t.Logf("C heap after %d Runtimes: %+d bytes", n, left)
	// A page (4 KiB) left per Runtime would be 160 KiB.
	if left > 16<<10 {
		t.Errorf("C heap: %d bytes more after %d Runtimes made and closed", left, n)
	}
}

// The C heap is flat around a Runtime whose runs end while their tasks'
// Go results are delivered but not yet taken (killedWakeRounds): the
// killed tasks free their call records (1 KiB each here).
func TestKilledWokenTasksLeaveNoCHeap(t *testing.T) {
	if !cheap.Exact(t) {
		return
	}
	cycle := func(rounds int) {
		l, err := NewLoop(Options{})
		if err != nil {
			t.Fatal(err)
		}
		killedWakeRounds(t, l, rounds)
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
	}
	cycle(1) // warms malloc's arenas
	before := cheap.Bytes()
	cycle(200)
	left := cheap.Bytes() - before
	t.Logf("C heap after 200 rounds: %+d bytes", left)
	if left > 16<<10 { // a lost record is more than 1 KiB
		t.Errorf("C heap: %d bytes more after 200 rounds whose runs ended under woken tasks", left)
	}
}

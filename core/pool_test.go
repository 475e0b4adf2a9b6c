package core

import (
	"context"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

// A burst of calls that each wait for all the others must all be running at
// once — more than a pool's worth of workers — and the function, seen
// blocking, is marked so its later calls get goroutines of their own; once
// its calls turn quick the mark goes and they are back in the pool.
func TestBlockingCallsAllRunAtOnceAndQuickOnesReturnToThePool(t *testing.T) {
	const n = 2000 // beyond poolMaxIdle and GOMAXPROCS: only new workers or goroutines let them all in
	l, _ := newTestLoop(t, Options{})
	var quick atomic.Bool
	r := newRendezvous(n)
	if err := l.RegisterFunc("meet", false, func(ctx context.Context, args []Value) ([]any, error) {
		if quick.Load() {
			return []any{int64(0)}, nil
		}
		if err := r.wait(ctx); err != nil {
			return nil, err
		}
		return []any{int64(1)}, nil
	}); err != nil {
		t.Fatal(err)
	}
	src := fmt.Sprintf(`
local task = require("task")
local ts = {}
for i = 1, %d do ts[i] = task.spawn(meet) end
local sum = 0
for i = 1, #ts do sum = sum + ts[i]:wait() end
assert(sum == %d, sum)`, n, n)
	if err := l.RunChunk(context.Background(), "=burst", []byte(src), nil); err != nil {
		t.Fatal(err)
	}
	f := funcNamed(l, "meet")
	if !f.blocks.Load() {
		t.Fatal("a function whose calls waited for each other is not marked as blocking")
	}
	if err := l.RegisterFunc("still_blocking", true, func(context.Context, []Value) ([]any, error) {
		return []any{f.blocks.Load()}, nil
	}); err != nil {
		t.Fatal(err)
	}
	quick.Store(true)
	// Quick calls, eight at a time (a lone call runs on the loop's own
	// goroutine, pool or not), until the mark goes: poolQuick in a row
	// under the stall interval (a descheduled one starts the count again).
	err := l.RunChunk(context.Background(), "=quick", []byte(`
local task = require("task")
for round = 1, 10000 do
  local ts = {}
  for i = 1, 8 do ts[i] = task.spawn(meet) end
  for i = 1, 8 do assert(ts[i]:wait() == 0) end
  if not still_blocking() then return end
end
error("still marked as blocking after 80000 quick calls")`), nil)
	if err != nil {
		t.Fatal(err)
	}
}

// funcNamed is the registered function called name.
func funcNamed(l *Loop, name string) *function {
	for _, f := range *l.funcs.Load() {
		if f != nil && f.name == name {
			return f
		}
	}
	panic("no function " + name)
}

// A Go function that calls runtime.Goexit neither returns nor panics; its
// call still ends, as an error naming what happened, and the Runtime goes on
// serving. (Shown on goroutines of its own, which every call of a blocking
// function gets; a call the loop runs alone runs on the goroutine waiting
// for the run, the host's, and Goexit ends that goroutine, as it says.)
func TestGoexitInAGoFunctionEndsItsCallAsAnError(t *testing.T) {
	l, _ := newTestLoop(t, Options{})
	if err := l.RegisterFunc("leave", false, func(context.Context, []Value) ([]any, error) {
		runtime.Goexit()
		return nil, nil
	}); err != nil {
		t.Fatal(err)
	}
	funcNamed(l, "leave").blocks.Store(true)
	e := runError(t, l, `local task = require("task")
		local ts = {} for i = 1, 8 do ts[i] = task.spawn(leave) end
		local ok, e = pcall(ts[8].wait, ts[8]) error(e, 0)`)
	if !strings.Contains(e.Message, "runtime.Goexit") {
		t.Errorf("error %q does not name runtime.Goexit", e.Message)
	}
	if err := l.RunChunk(context.Background(), "=after", []byte(`assert(1 + 1 == 2)`), nil); err != nil {
		t.Fatalf("the Runtime does not serve after Goexit: %v", err)
	}
}

// rendezvous holds its callers until n of them have come (or their
// context ends); reset starts a new round.
type rendezvous struct {
	n   int
	mu  sync.Mutex
	in  int
	all chan struct{}
}

func newRendezvous(n int) *rendezvous {
	r := &rendezvous{n: n}
	r.reset()
	return r
}

func (r *rendezvous) reset() {
	r.mu.Lock()
	r.in, r.all = 0, make(chan struct{})
	r.mu.Unlock()
}

func (r *rendezvous) wait(ctx context.Context) error {
	r.mu.Lock()
	r.in++
	all := r.all
	if r.in == r.n {
		close(all)
	}
	r.mu.Unlock()
	select {
	case <-all:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

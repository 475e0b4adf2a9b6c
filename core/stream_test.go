package core

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

// runOK runs src and fails the test on an error. The deadline only keeps
// a broken wake-up from hanging the test: it fails instead.
func runOK(t *testing.T, l *Loop, src string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := l.RunChunk(ctx, "=test", []byte(src), nil); err != nil {
		t.Fatalf("run: %v", err)
	}
}

// emit may be called from several goroutines at once: every value arrives
// once, and the values of each goroutine in the order it emitted them.
func TestEmitFromManyGoroutines(t *testing.T) {
	const producers, each = 4, 5000
	l, out := newTestLoop(t, Options{})
	err := l.RegisterStream("many", func(ctx context.Context, args []Value, emit func(any) error) error {
		var wg sync.WaitGroup
		errs := make(chan error, producers)
		for g := range producers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range each {
					if err := emit([]any{int64(g + 1), int64(i)}); err != nil {
						errs <- err
						return
					}
				}
			}()
		}
		wg.Wait()
		close(errs)
		return <-errs
	})
	if err != nil {
		t.Fatal(err)
	}
	runOK(t, l, fmt.Sprintf(`
local next_of, n = {0, 0, 0, 0}, 0
for v in many() do
  local g, i = v[1], v[2]
  if i ~= next_of[g] then error(("goroutine %%d: got %%d, want %%d"):format(g, i, next_of[g])) end
  next_of[g] = i + 1
  n = n + 1
end
print(n, table.concat(next_of, " "))`))
	want := fmt.Sprintf("%d\t%d %d %d %d\n", producers*each, each, each, each, each)
	if got := out.String(); got != want {
		t.Errorf("output %q, want %q", got, want)
	}
}

// A producer that emits only after Lua took the last chunk finds Lua
// asleep every time: each chunk must ring the doorbell, and not one may be
// lost (the run would then wait forever).
func TestStreamRingsForASleepingReader(t *testing.T) {
	const n = 2000
	l, out := newTestLoop(t, Options{})
	took := make(chan struct{}, 1)
	err := l.RegisterFunc("took", true, func(ctx context.Context, args []Value) ([]any, error) {
		took <- struct{}{}
		return nil, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	err = l.RegisterStream("lockstep", func(ctx context.Context, args []Value, emit func(any) error) error {
		for i := range n {
			if err := emit(int64(i)); err != nil {
				return err
			}
			select {
			case <-took:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	runOK(t, l, `
local want = 0
for v in lockstep() do
  assert(v == want, v)
  want = want + 1
  took()
end
print(want)`)
	if got := out.String(); got != fmt.Sprintf("%d\n", n) {
		t.Errorf("output %q", got)
	}
}

// Both: Lua sometimes waits, sometimes finds a full window, with chunks of
// every size (recycled or not), read from a coroutine inside the task.
func TestStreamOrderThroughWaitsAndFullWindows(t *testing.T) {
	const n = 20000
	l, out := newTestLoop(t, Options{})
	err := l.RegisterStream("sizes", func(ctx context.Context, args []Value, emit func(any) error) error {
		for i := range n {
			if err := emit(strings.Repeat("x", i%600)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	runOK(t, l, `
local task = require("task")
local co = coroutine.wrap(function()
  local i = 0
  for v in sizes() do
    assert(#v == i % 600, i)
    i = i + 1
    if i % 997 == 0 then task.sleep(0.001) end -- let the window fill
  end
  return i
end)
print(co())`)
	if got := out.String(); got != fmt.Sprintf("%d\n", n) {
		t.Errorf("output %q", got)
	}
}

// A stream is read by one task: the first that calls its iterator. A
// second one gets a clear error instead of waiting beside it for good.
func TestStreamIsReadByOneTask(t *testing.T) {
	l, out := newTestLoop(t, Options{})
	err := l.RegisterStream("ticks", func(ctx context.Context, args []Value, emit func(any) error) error {
		for i := 0; ; i++ {
			if err := emit(int64(i)); err != nil {
				return err
			}
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	runOK(t, l, `
local task = require("task")
local f, s, c, closer = ticks()
local first = f()
local other = task.spawn(function() return pcall(f) end)
local ok, err = other:wait()
print(first, ok, tostring(err):match("read by another task") ~= nil)
print(f() == first + 1)
for _ in f, s, c, closer do break end -- closes it`)
	if got := out.String(); got != "0\tfalse\ttrue\ntrue\n" {
		t.Errorf("output %q", got)
	}
}

// A memory error while a chunk is decoded ends the run with the limit's
// error; the chunk is not lost to the C heap (make asan's leak check), and
// the producer is cancelled.
func TestStreamMemoryErrorWhileDecoding(t *testing.T) {
	l, _ := newTestLoop(t, Options{MemoryLimit: 8 << 20})
	done := make(chan error, 1)
	big := strings.Repeat("y", 1<<20)
	err := l.RegisterStream("big", func(ctx context.Context, args []Value, emit func(any) error) error {
		for {
			if err := emit(big); err != nil {
				done <- err
				return err
			}
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	e := runError(t, l, `local keep = {} for v in big() do keep[#keep + 1] = v end`)
	if e.Kind != "limit" || e.Op != "memory" {
		t.Errorf("kind %q op %q (%s), want the memory limit", e.Kind, e.Op, e.Message)
	}
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("emit returned %v, want the cancellation", err)
	}
}

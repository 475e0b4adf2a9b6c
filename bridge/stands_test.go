package bridge_test

// A completed wait stands: a task whose wait completed (a call returned, a
// timer fired, a promise settled, a channel operation went through) and
// that is cancelled before it runs again gets that outcome, and the
// cancellation only at its next suspension point; if it finishes without
// suspending again it ends done, with its results. Each case here makes
// the wait complete and cancels the task in between, deterministically: by
// completing and cancelling in one turn, or from a task that is ahead of
// the waiter in the run queue when the waiter is woken.

import (
	"context"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/moonbridge/moonbridge/bridge"
)

// standsScript runs one case. waiter(wait, again) spawns the task A that
// records what its wait gave it, carries on, and, with again, suspends
// once more (where the cancellation must be raised). The case's code
// makes A's wait complete and cancels A before A runs again.
const standsScript = `
local task, channel, promise = require("task"), require("channel"), require("promise")
local got, after
local function waiter(wait, again)
  return task.spawn(function()
    got = wait()
    after = "ran on"
    if again then task.yield(); after = "not reached" end
    return got
  end)
end
local again = ...
%s
local ok, r = pcall(A.wait, A)
print(tostring(got), after, A:status(), ok and r or r.kind)
`

var standsCases = []struct{ name, code, value string }{
	{"bridge call", `
-- H waits until Go is inside work, then holds the loop (nothing is drained
-- meanwhile) while work returns and its result is queued; H then yields,
-- so it is ahead of A in the run queue when the next step drains the
-- result and wakes A.
local A = waiter(function() return work() end, again)
local H = task.spawn(function()
  while not started() do task.yield() end
  hold()
  task.yield()
  A:cancel()
end)
H:wait()`, "42"},
	{"timer", `
-- A awaits the timer; H is in the queue every turn, so it sees the timer
-- done before A, woken by its end, runs.
local T = setTimeout(function() return "fired" end, 1)
local A = waiter(function() return await(T) end, again)
local H = task.spawn(function()
  while not T:done() do task.yield() end
  A:cancel()
end)
H:wait()`, "fired"},
	{"promise", `
local resolve
local p = promise.new(function(r) resolve = r end)
local A = waiter(function() return p:await() end, again)
task.yield()
resolve("kept")
A:cancel()`, "kept"},
	{"await of a promise", `
local resolve
local p = promise.new(function(r) resolve = r end)
local A = waiter(function() return await(p) end, again)
task.yield()
resolve("kept")
A:cancel()`, "kept"},
	{"channel receive", `
local ch = channel.new()
local A = waiter(function() return (ch:recv()) end, again)
task.yield()
assert(ch:send("handed") == true)
A:cancel()`, "handed"},
	{"channel send", `
local ch = channel.new()
local A = waiter(function() assert(ch:send("taken") == true); return "sent" end, again)
task.yield()
assert(ch:recv() == "taken")
A:cancel()`, "sent"},
	{"channel select", `
local ch = channel.new()
local A = waiter(function() local i, v = channel.select({{ch, "recv"}}); return v end, again)
task.yield()
assert(ch:send("selected") == true)
A:cancel()`, "selected"},
}

func TestACompletedWaitStands(t *testing.T) {
	for _, c := range standsCases {
		for _, again := range []bool{true, false} {
			name := c.name + ", then finishes"
			want := c.value + "\tran on\tdone\t" + c.value + "\n"
			if again {
				name = c.name + ", then suspends again"
				want = c.value + "\tran on\tcancelled\tcancelled\n"
			}
			t.Run(name, func(t *testing.T) {
				rt, out := newRuntime(t)
				w := registerHeldWork(t, rt)
				if err := rt.RunString(context.Background(), "stands", fmt.Sprintf(standsScript, c.code), again); err != nil {
					t.Fatal(err)
				}
				if got := out.String(); got != want {
					t.Errorf("got %q, want %q: a wait that completed must stand", got, want)
				}
				w.check(t, c.name == "bridge call")
			})
		}
	}
}

// heldWork is the Go side of the bridge call case: started says whether
// work was called; hold, an inline function (it runs on the loop's thread,
// so nothing is drained meanwhile), lets work return 42, and returns once
// the goroutine that ran work has queued its result.
type heldWork struct {
	calls    atomic.Int32
	entered  chan struct{}
	holding  chan struct{}
	returned chan struct{}
	mu       sync.Mutex
	gid      string
	ctx      context.Context
}

func registerHeldWork(t *testing.T, rt *bridge.Runtime) *heldWork {
	w := &heldWork{entered: make(chan struct{}), holding: make(chan struct{}), returned: make(chan struct{})}
	must := func(err error) {
		if err != nil {
			t.Fatal(err)
		}
	}
	must(rt.RegisterFunc("work", func(ctx context.Context, a bridge.Args) ([]any, error) {
		w.calls.Add(1)
		w.mu.Lock()
		w.gid, w.ctx = goroutineID(), ctx
		w.mu.Unlock()
		close(w.entered)
		<-w.holding // the result is queued while the loop is held
		defer close(w.returned)
		return []any{42}, nil
	}))
	must(rt.RegisterFunc("started", func(context.Context, bridge.Args) ([]any, error) {
		select {
		case <-w.entered:
			return []any{true}, nil
		default:
			return []any{false}, nil
		}
	}, bridge.Inline()))
	must(rt.RegisterFunc("hold", func(context.Context, bridge.Args) ([]any, error) {
		close(w.holding)
		<-w.returned
		w.mu.Lock()
		gid := w.gid
		w.mu.Unlock()
		// The goroutine queues the result after work returns, inside the
		// core's runCall; it has queued it once it is out of there.
		for goroutineIn(gid, "core.(*Loop).runCall") {
			runtime.Gosched()
		}
		return nil, nil
	}, bridge.Inline()))
	return w
}

// check, after the run: work ran once, and its context was never
// cancelled: the cancellation came after the result was delivered (if it
// had come before, the test's sequencing would be broken, not the core).
func (w *heldWork) check(t *testing.T, used bool) {
	t.Helper()
	if !used {
		return
	}
	if n := w.calls.Load(); n != 1 {
		t.Errorf("work ran %d times", n)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.ctx != nil && w.ctx.Err() != nil {
		t.Errorf("work's context was cancelled (%v): the cancellation did not come after the result was queued", w.ctx.Err())
	}
}

// goroutineID is the calling goroutine's number, as runtime.Stack shows it.
func goroutineID() string {
	buf := make([]byte, 64)
	buf = buf[:runtime.Stack(buf, false)]
	id, _, _ := strings.Cut(strings.TrimPrefix(string(buf), "goroutine "), " ")
	return id
}

// goroutineIn reports whether goroutine id is alive with fn on its stack.
func goroutineIn(id, fn string) bool {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.HasPrefix(g, "goroutine "+id+" [") {
			return strings.Contains(g, fn)
		}
	}
	return false
}

package core

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

var errNotFound = errors.New("not found")

type apiError struct{ code int }

func (e *apiError) Error() string { return fmt.Sprintf("api error %d", e.code) }

// goErrorLoop has kv.get (async: its error wraps errNotFound), kv.iget (the
// same, inline), kv.stream (a stream that fails with an *apiError),
// kv.op (an *OpError) and kept() (inline: the Go errors kept for the
// calling run now).
func goErrorLoop(t *testing.T) *Loop {
	l, _ := newTestLoop(t, Options{})
	get := func(ctx context.Context, args []Value) ([]any, error) {
		return nil, fmt.Errorf("get %v: %w", args[0].Any(), errNotFound)
	}
	must := func(err error) {
		if err != nil {
			t.Fatal(err)
		}
	}
	must(l.RegisterFunc("kv.get", false, get))
	must(l.RegisterFunc("kv.iget", true, get))
	must(l.RegisterStream("kv.stream", func(ctx context.Context, args []Value, emit func(any) error) error {
		emit(1)
		return &apiError{code: 429}
	}))
	must(l.RegisterFunc("kv.op", false, func(ctx context.Context, args []Value) ([]any, error) {
		return nil, &OpError{Op: "db", Kind: "timeout", Err: &apiError{code: 504}}
	}))
	must(l.RegisterFunc("kept", true, func(ctx context.Context, args []Value) ([]any, error) {
		run := int64(l.c.current.run.id)
		l.goErrs.mu.Lock()
		defer l.goErrs.mu.Unlock()
		if r := l.goErrs.runs[run]; r != nil {
			return []any{len(r.ids)}, nil
		}
		return []any{0}, nil
	}))
	return l
}

// keptRuns is how many runs have Go errors kept.
func keptRuns(l *Loop) int {
	l.goErrs.mu.Lock()
	defer l.goErrs.mu.Unlock()
	return len(l.goErrs.runs)
}

// A Go error returned by a bridge function, raised in Lua and not caught,
// is the run's error's cause: errors.Is and errors.As reach it, for
// async, inline and stream functions, also when the script raised the same
// error table again or a Lua module wrapped it as cause. A message alone
// (a string re-raised) carries no Go error. Every run's errors are
// released when it ends.
func TestGoErrorsReachTheRunsError(t *testing.T) {
	l := goErrorLoop(t)
	for _, c := range []struct {
		src      string
		notFound bool
		api      int
	}{
		{`kv.get("a")`, true, 0},
		{`kv.iget("a")`, true, 0},
		{`for v in kv.stream() do end`, false, 429},
		{`kv.op()`, false, 504},
		{`local ok, e = pcall(kv.get, "a"); error(e)`, true, 0},
		{`local t = require("task").spawn(kv.get, "a"); t:wait()`, true, 0},
		{`require("pipeline").new({{name = "lookup", fn = kv.get}}):collect({"a"})`, true, 0},
		{`local ok, e = pcall(kv.get, "a"); error(tostring(e))`, false, 0},
		{`error("no Go here")`, false, 0},
	} {
		err := l.RunChunk(context.Background(), "=test", []byte(c.src), nil)
		var e *Error
		if !errors.As(err, &e) {
			t.Fatalf("%s: %T %v", c.src, err, err)
		}
		if errors.Is(err, errNotFound) != c.notFound {
			t.Errorf("%s: errors.Is(err, errNotFound) = %v (%v)", c.src, !c.notFound, err)
		}
		var ae *apiError
		if got := errors.As(err, &ae); got != (c.api != 0) || (got && ae.code != c.api) {
			t.Errorf("%s: errors.As(err, *apiError) = %v %v", c.src, got, ae)
		}
		if n := keptRuns(l); n != 0 {
			t.Errorf("%s: %d runs' Go errors kept after the run", c.src, n)
		}
	}
}

// OpError sets the kind and op of the Lua error; the message is still the
// function's name and the error's text.
func TestOpErrorSetsKindAndOp(t *testing.T) {
	l := goErrorLoop(t)
	e := runError(t, l, `local ok, e = pcall(kv.op)
		assert(not ok and e.kind == "timeout" and e.op == "db" and e.message == "kv.op: api error 504", tostring(e))
		local ok, e = pcall(kv.get, "x")
		assert(e.kind == "bridge" and e.op == "kv.get" and e.message == "kv.get: get x: not found", tostring(e))
		kv.op()`)
	if e.Kind != "timeout" || e.Op != "db" || e.Message != "kv.op: api error 504" {
		t.Errorf("run's error: %+v", e)
	}
}

// A run keeps its newest 1,024 Go errors, whatever it catches; a Call's
// tasks that outlive it keep none.
func TestGoErrorsAreBounded(t *testing.T) {
	l := goErrorLoop(t)
	e := runError(t, l, `for i = 1, 3000 do pcall(kv.get, i) end
		local n = kept()
		local ok, e = pcall(kv.get, "last")
		error(string.format("%d kept", n))`)
	if e.Message != "test:4: 1024 kept" {
		t.Errorf("got %q", e.Message)
	}
	if n := keptRuns(l); n != 0 {
		t.Errorf("%d runs' Go errors kept", n)
	}
	// A Call returns while a task it spawned goes on failing Go calls.
	if err := l.RunChunk(context.Background(), "=setup", []byte(`
		local task = require("task")
		gate = require("channel").new()
		function spawner()
			task.spawn(function()
				gate:recv()
				for i = 1, 10 do pcall(kv.get, i) end
				gate:send("done")
			end)
			return "returned"
		end
		function finish() gate:send("go"); return gate:recv() end`), nil); err != nil {
		t.Fatal(err)
	}
	if out, err := l.CallGlobal(context.Background(), "spawner", nil); err != nil || out[0] != "returned" {
		t.Fatalf("spawner: %v %v", out, err)
	}
	if out, err := l.CallGlobal(context.Background(), "finish", nil); err != nil || out[0] != "done" {
		t.Fatalf("finish: %v %v", out, err)
	}
	if n := keptRuns(l); n != 0 {
		t.Errorf("%d runs' Go errors kept after the orphan task's calls", n)
	}
}

// A run ends only once the bridge calls it cancelled have returned: here
// the function returns only when the run's end starts waiting for it, so
// without that wait RunChunk would return while it still runs. The call is
// cancelled with its task, or by the run's end (main failed, the run's
// context was cancelled).
func TestRunWaitsForTheCallsItCancelled(t *testing.T) {
	for _, c := range []struct{ name, src, err string }{
		{"task cancelled", `local t = task.spawn(slow)
			task.yield()
			t:cancel()
			print(pcall(t.wait, t))`, ""},
		{"main failed", `task.spawn(slow)
			task.yield()
			error("main fails")`, "main fails"},
		{"context cancelled", `task.spawn(slow)
			task.yield()
			cancel_run()
			task.sleep(3600)`, "cancelled"},
	} {
		t.Run(c.name, func(t *testing.T) {
			l, _ := newTestLoop(t, Options{})
			release := make(chan struct{})
			var returned atomic.Bool
			testHookAwaitCancelled = func() { close(release) }
			t.Cleanup(func() { testHookAwaitCancelled = nil })
			if err := l.RegisterFunc("slow", false, func(ctx context.Context, args []Value) ([]any, error) {
				<-ctx.Done()
				<-release // the run's end waits for this
				returned.Store(true)
				return nil, ctx.Err()
			}); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			l.RegisterFunc("cancel_run", true, func(context.Context, []Value) ([]any, error) { cancel(); return nil, nil })
			err := l.RunChunk(ctx, "=test", []byte(`local task = require("task")
`+c.src), nil)
			if (err == nil) != (c.err == "") || err != nil && !strings.Contains(err.Error(), c.err) {
				t.Fatalf("got %v, want %q", err, c.err)
			}
			if !returned.Load() {
				close(release)
				t.Fatal("the run ended while the function of a call it cancelled was still running")
			}
		})
	}
}

// loopWithStuck is a Loop with CloseGrace grace and stuck(), a Go
// function that ignores its context until the test is over; the cleanup
// lets it return, waits for it, and closes the Loop (whose error may say
// the function had not returned after the grace).
func loopWithStuck(t *testing.T, grace time.Duration) *Loop {
	t.Helper()
	l, err := NewLoop(Options{CloseGrace: grace})
	if err != nil {
		t.Fatal(err)
	}
	release, gone := make(chan struct{}), make(chan struct{})
	if err := l.RegisterFunc("stuck", false, func(ctx context.Context, args []Value) ([]any, error) {
		<-release
		close(gone)
		return nil, nil
	}); err != nil {
		l.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		close(release)
		<-gone
		l.Close()
	})
	return l
}

// The wait is bounded by CloseGrace: a function that ignores its
// cancelled context holds the run's end no longer than it could hold Close.
func TestRunWaitForCancelledCallsIsBounded(t *testing.T) {
	l := loopWithStuck(t, 1)
	ctx, cancel := context.WithCancel(context.Background())
	l.RegisterFunc("cancel_run", true, func(context.Context, []Value) ([]any, error) { cancel(); return nil, nil })
	err := l.RunChunk(ctx, "=test", []byte(`local task = require("task")
		task.spawn(stuck)
		task.yield()
		cancel_run()
		task.sleep(3600)`), nil)
	if err == nil || !strings.Contains(err.Error(), "cancelled") {
		t.Fatalf("got %v", err)
	}
}

// TestRunEndsAtItsDeadlineWithALoneStubbornCall: the run's only call, of a
// function that ignores its context, does not hold the run past its
// deadline and the grace. A lone call may run on the goroutine that
// drives the loop for the run, which then cannot return before the
// function does; so it runs there only for a run no context can end.
func TestRunEndsAtItsDeadlineWithALoneStubbornCall(t *testing.T) {
	const grace = 100 * time.Millisecond
	l := loopWithStuck(t, grace)
	// A lone call runs on the caller's goroutine only while a standby
	// driver waits to take over: make sure one does, or the path this
	// test guards is not taken (under load the drivers may not be
	// waiting yet).
	for l.standby.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	done := make(chan error, 1)
	go func() { done <- l.RunChunk(ctx, "=test", []byte(`stuck()`), nil) }()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "deadline passed") {
			t.Errorf("got %v, want the deadline's error", err)
		}
		if waited := time.Since(start); waited > 100*time.Millisecond+grace+time.Second {
			t.Errorf("the run ended after %v", waited)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the run still waits for its stubborn call 10 s after its deadline")
	}
}

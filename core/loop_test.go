package core

import (
	"bytes"
	"context"
	"errors"
	"io"
	"sync"
	"testing"

	"github.com/moonbridge/moonbridge/internal/oom"
)

// syncBuf is an io.Writer safe for the loop's writes and the test's reads.
type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func newTestLoop(t *testing.T, opts Options) (*Loop, *syncBuf) {
	t.Helper()
	out := &syncBuf{}
	opts.Stdout, opts.Stderr = out, out
	l, err := NewLoop(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := l.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return l, out
}

// runError runs src and returns the *Error it ended with, or fails.
func runError(t *testing.T, l *Loop, src string) *Error {
	t.Helper()
	err := l.RunChunk(context.Background(), "=test", []byte(src), nil)
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("%s: want an *Error, got %T %v", src, err, err)
	}
	return e
}

// A memory error is told by its status (LUA_ERRMEM), never by its text:
// running out of the limit is a limit error, also after crossing a wrapped
// coroutine or an await, while a message that merely says so is not. (Lua
// 5.4's lua_error itself raises LUA_ERRMEM for exactly its preregistered
// "not enough memory", so a caught memory error raised again stays one.)
func TestMemoryErrorsAreToldByStatusNotText(t *testing.T) {
	l, out := newTestLoop(t, Options{MemoryLimit: 16 << 20})
	for _, c := range []struct{ src, kind, op string }{
		{`error("not enough memory")`, "runtime", ""}, // "test:1: not enough memory"
		{`error({message = "not enough memory"})`, "runtime", ""},
		{`error("not enough memory", 0)`, "limit", "memory"},
		{`local ok, e = pcall(function() local t = {} for i = 1, 1e8 do t[i] = {i} end end)
		  error(e, 0)`, "limit", "memory"},
		{`local t = {} for i = 1, 1e8 do t[i] = {i} end`, "limit", "memory"},
		{`local gen = coroutine.wrap(function() local t = {} for i = 1, 1e8 do t[i] = {i} end end)
		  gen()`, "limit", "memory"},
		{`require("task").spawn(function() local t = {} for i = 1, 1e8 do t[i] = {i} end end):wait()`, "limit", "memory"},
	} {
		e := runError(t, l, c.src)
		if e.Kind != c.kind || e.Op != c.op {
			t.Errorf("%s: kind %q op %q, want %q %q (%s)", c.src, e.Kind, e.Op, c.kind, c.op, e.Message)
		}
	}
	// Caught, as in stock Lua: the text, and the run goes on.
	if err := l.RunChunk(context.Background(), "=test", []byte(`
		print(pcall(function() local t = {} for i = 1, 1e8 do t[i] = {i} end end))`), nil); err != nil {
		t.Fatal(err)
	}
	if got := out.String(); got != "false\tnot enough memory\n" {
		t.Errorf("caught: %q", got)
	}
}

// Without a memory limit a memory error is a runtime error: no limit was
// gone over.
func TestMemoryErrorKindNeedsALimit(t *testing.T) {
	l, _ := newTestLoop(t, Options{})
	e := runError(t, l, `error("not enough memory", 0)`)
	if e.Kind != "runtime" || e.Message != "not enough memory" {
		t.Errorf("kind %q message %q", e.Kind, e.Message)
	}
}

// os.exit's code travels as the error's code field, also from where the
// task cannot suspend (a table.sort comparator).
func TestExitCarriesItsCode(t *testing.T) {
	l, _ := newTestLoop(t, Options{})
	for _, c := range []struct {
		src  string
		code int
	}{
		{`os.exit(3)`, 3},
		{`os.exit(true)`, 0},
		{`os.exit(false)`, 1},
		{`os.exit()`, 0},
		{`table.sort({3, 2, 1}, function(a, b) os.exit(5) end)`, 5},
		{`require("task").spawn(function() os.exit(7) end):wait()`, 7},
	} {
		e := runError(t, l, c.src)
		if e.Kind != "exit" || e.Code != c.code {
			t.Errorf("%s: kind %q code %d, want exit %d", c.src, e.Kind, e.Code, c.code)
		}
	}
	// Other errors carry no code.
	if e := runError(t, l, `error({code = 9})`); e.Code != 0 || e.Kind != "runtime" {
		t.Errorf("a table error: kind %q code %d", e.Kind, e.Code)
	}
}

// Runs whose context is cancelled each end cancelled: the cancellation
// request is made with the run, so sending it cannot fail for memory, and
// it is freed whether it was sent or not (make asan checks the latter).
func TestEveryCancelledRunEndsCancelled(t *testing.T) {
	l, _ := newTestLoop(t, Options{})
	block := make(chan struct{})
	if err := l.RegisterFunc("block", false, func(ctx context.Context, _ []Value) ([]any, error) {
		select {
		case <-ctx.Done():
		case <-block:
		}
		return nil, ctx.Err()
	}); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make([]error, 50)
	for i := range errs {
		ctx, cancel := context.WithCancel(context.Background())
		wg.Add(1)
		started := make(chan struct{})
		if err := l.RegisterFunc("started", true, func(context.Context, []Value) ([]any, error) {
			close(started)
			return nil, nil
		}); err != nil {
			t.Fatal(err)
		}
		go func() {
			defer wg.Done()
			errs[i] = l.RunChunk(ctx, "=run", []byte(`started() block()`), nil)
		}()
		<-started
		cancel()
	}
	wg.Wait()
	close(block)
	for i, err := range errs {
		var e *Error
		if !errors.As(err, &e) || e.Kind != "cancelled" {
			t.Errorf("run %d: %v", i, err)
		}
	}
	// Runs that end before their context is cancelled free the request.
	for range 50 {
		ctx, cancel := context.WithCancel(context.Background())
		if err := l.RunChunk(ctx, "=ok", []byte(`return 1`), nil); err != nil {
			t.Fatal(err)
		}
		cancel()
	}
}

// Out-of-memory errors a script catches are counted (internal/oom, read
// when the runtime is freed), so that tests running scripts under tight
// limits can tell a run that went another way after catching one: by
// pcall, xpcall, try (errors.rawpcall) and coroutine.resume, Lua's own or
// a task's passed on by a wait. An uncaught one, another error caught, or
// one caught without a limit (no limit was gone over) is not counted.
func TestCaughtMemoryErrorsAreCounted(t *testing.T) {
	const hog = `function() local t = {} for i = 1, 1e8 do t[i] = {i} end end`
	for _, c := range []struct {
		src   string
		limit int64
		want  int64
	}{
		{`assert(not pcall(` + hog + `))`, 16 << 20, 1},
		{`assert(not xpcall(` + hog + `, debug.traceback))`, 16 << 20, 1},
		{`try(` + hog + `, function() end)`, 16 << 20, 1},
		{`assert(not coroutine.resume(coroutine.create(` + hog + `)))`, 16 << 20, 1},
		{`local t = require("task").spawn(` + hog + `); t:detach()
		  assert(not pcall(t.wait, t))`, 16 << 20, 1},
		{`assert(not pcall(` + hog + `)); assert(not pcall(` + hog + `))`, 16 << 20, 2},
		{`(` + hog + `)()`, 16 << 20, 0},
		{`assert(not pcall(error, "not enough memory?"))`, 16 << 20, 0},
		{`assert(not pcall(function() local s = ("x"):rep(1 << 40) end))`, 0, 0},
	} {
		before := oom.Caught()
		l, err := NewLoop(Options{MemoryLimit: c.limit, Stdout: io.Discard, Stderr: io.Discard})
		if err != nil {
			t.Fatal(err)
		}
		l.RunChunk(context.Background(), "=test", []byte(c.src), nil)
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
		if got := oom.Caught() - before; got != c.want {
			t.Errorf("%s: %d counted, want %d", c.src, got, c.want)
		}
	}
}

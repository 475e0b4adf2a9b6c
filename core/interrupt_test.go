package core

import (
	"context"
	"errors"
	"testing"
	"time"
)

// Cancelling a run's context stops a task spinning in a tight loop at
// once, with no TimeSlice, instruction limit or deadline to put a hook in
// it: main itself, a spawned task main waits for, a loop inside a
// coroutine, a loop that catches every error. The Runtime serves on.
func TestCancelStopsATightLoopAtOnce(t *testing.T) {
	l, _ := newTestLoop(t, Options{})
	spinning := make(chan struct{}, 1)
	if err := l.RegisterFunc("spinning", true, func(context.Context, []Value) ([]any, error) {
		spinning <- struct{}{}
		return nil, nil
	}); err != nil {
		t.Fatal(err)
	}
	for _, src := range []string{
		`spinning(); while true do end`,
		`local t = require("task").spawn(function() spinning(); while true do end end); t:wait()`,
		`coroutine.wrap(function() spinning(); local x = 0; while true do x = x + 1 end end)()`,
		`spinning(); while true do pcall(function() while true do end end) end`,
	} {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- l.RunChunk(ctx, "=test", []byte(src), nil) }()
		<-spinning
		cancel()
		select {
		case err := <-done:
			var e *Error
			if !errors.As(err, &e) || e.Kind != "cancelled" {
				t.Errorf("%s: %v", src, err)
			}
		case <-time.After(30 * time.Second): // a hang guard, not a timing assertion
			t.Fatalf("%s: the cancelled run still runs", src)
		}
	}
	if err := l.RunChunk(context.Background(), "=after", []byte(`assert(1 + 1 == 2)`), nil); err != nil {
		t.Fatal(err)
	}
}

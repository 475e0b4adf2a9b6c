package core

import (
	"context"
	"strings"
	"testing"
)

// killedWakeRounds runs rounds in which nine tasks' Go calls return
// together and the main task, resumed among them, fails at once: the run
// ends and kills the tasks whose results were delivered but who had not
// run yet. Each call returns 1 KiB, so a call record lost that way is
// plain in the C heap. Every round must end with main's error.
func killedWakeRounds(t *testing.T, l *Loop, rounds int) {
	t.Helper()
	r := newRendezvous(9)
	big := strings.Repeat("x", 1024)
	if err := l.RegisterFunc("meet", false, func(ctx context.Context, _ []Value) ([]any, error) {
		if err := r.wait(ctx); err != nil {
			return nil, err
		}
		return []any{big}, nil
	}); err != nil {
		t.Fatal(err)
	}
	src := []byte(`local task = require("task")
for i = 1, 8 do task.spawn(meet) end
meet()
error("main is done", 0)`)
	for range rounds {
		r.reset()
		err := l.RunChunk(context.Background(), "=round", src, nil)
		if err == nil || !strings.Contains(err.Error(), "main is done") {
			t.Fatalf("a round ended with %v, want main's error", err)
		}
	}
}

// A task whose call's results were delivered (woken) but which is killed
// before it runs again — its run ended meanwhile — owns the call's record
// until then: killing it frees the record. (They leaked, about one round
// in three: TestKilledWokenTasksLeaveNoCHeap counts the C heap; under
// make asan, where it cannot, this runs the rounds for LeakSanitizer.)
func TestKilledWokenTasksFreeTheirCallRecords(t *testing.T) {
	l, _ := newTestLoop(t, Options{})
	killedWakeRounds(t, l, 100)
}

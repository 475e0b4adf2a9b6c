package leaks

import (
	"context"
	"testing"
	"time"
)

// WaitLive returns once the count reaches n, woken by the change itself,
// and gives up when its context ends.
func TestWaitLive(t *testing.T) {
	base := Live()
	Allocated()
	done := make(chan error, 1)
	go func() { done <- WaitLive(context.Background(), base) }()
	Freed(0, 0)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Millisecond)
	defer cancel()
	if err := WaitLive(ctx, base+1); err != context.DeadlineExceeded {
		t.Fatalf("waiting for a count never reached: %v", err)
	}
	if lua, loops := Counts(); lua != 0 || loops != 0 {
		t.Fatalf("counts %d %d", lua, loops)
	}
}

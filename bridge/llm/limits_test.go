package llm

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

// heldProvider holds every request until the test releases it, and
// records the order requests started in and the peak in flight.
type heldProvider struct {
	mu       sync.Mutex
	started  []string
	inflight int
	peak     int
	release  chan struct{}
	starts   chan string // each request's prompt as it starts, if not nil
	usage    Usage
}

func (h *heldProvider) Generate(ctx context.Context, req Request) (Response, error) {
	h.mu.Lock()
	h.started = append(h.started, req.Prompt)
	h.inflight++
	h.peak = max(h.peak, h.inflight)
	h.mu.Unlock()
	if h.starts != nil {
		h.starts <- req.Prompt
	}
	defer func() {
		h.mu.Lock()
		h.inflight--
		h.mu.Unlock()
	}()
	if h.release != nil {
		select {
		case <-h.release:
		case <-ctx.Done():
			return Response{}, ctx.Err()
		}
	}
	return Response{Text: req.Prompt, FinishReason: "stop", Usage: h.usage}, nil
}

func (h *heldProvider) Stream(ctx context.Context, req Request, fn func(Chunk) error) error {
	r, err := h.Generate(ctx, req)
	if err != nil {
		return err
	}
	return fn(Chunk{Content: r.Text, Done: true, FinishReason: "stop", Usage: &h.usage})
}

func (h *heldProvider) order() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.started...)
}

// queued waits until n requests wait in l's queue.
func (l *limited) queued(n int) {
	for {
		l.mu.Lock()
		q, ch := len(l.queue), l.changed
		l.mu.Unlock()
		if q >= n {
			return
		}
		<-ch
	}
}

// TestLimitsConcurrencyIsFairAndBounded: five requests queue in a known
// order behind a bound of 2; they start first come, first served, and no
// more than 2 are ever in flight.
func TestLimitsConcurrencyIsFairAndBounded(t *testing.T) {
	h := &heldProvider{release: make(chan struct{}), starts: make(chan string, 8)}
	p := WithLimits(h, Limits{Concurrency: 2}).(*limited)
	var wg sync.WaitGroup
	names := []string{"a", "b", "c", "d", "e"}
	for i, name := range names {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if r, err := p.Generate(context.Background(), Request{Prompt: name}); err != nil || r.Text != name {
				t.Errorf("%s: %+v, %v", name, r, err)
			}
		}()
		if i < 2 {
			<-h.starts // a and b run
		} else {
			p.queued(i - 1) // the rest wait, in the order they came
		}
	}
	// Each release lets exactly the next in line start.
	for i := range names {
		h.release <- struct{}{}
		if i+2 < len(names) {
			if got := <-h.starts; got != names[i+2] {
				t.Errorf("release %d started %s, want %s", i+1, got, names[i+2])
			}
		}
	}
	wg.Wait()
	if got := h.order(); !equalStrings(got, names) {
		t.Errorf("started in order %v, want %v", got, names)
	}
	if h.peak != 2 {
		t.Errorf("peak in flight %d, want 2", h.peak)
	}
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestLimitsRequestsPerMinute(t *testing.T) {
	clock := &testClock{}
	h := &heldProvider{}
	p := WithLimits(h, Limits{RequestsPerMinute: 2, Clock: clock})
	for range 3 {
		if _, err := p.Generate(context.Background(), Request{Prompt: "x"}); err != nil {
			t.Fatal(err)
		}
	}
	if w := clock.waits(); len(w) != 1 || w[0] != time.Minute {
		t.Errorf("waits %v, want [1m0s] before the third request", w)
	}
}

func TestLimitsTokensPerMinute(t *testing.T) {
	clock := &testClock{}
	h := &heldProvider{usage: Usage{PromptTokens: 50, CompletionTokens: 30}}
	p := WithLimits(h, Limits{TokensPerMinute: 100, Clock: clock})
	req := Request{Prompt: "x", MaxTokens: 60}
	for range 2 {
		if _, err := p.Generate(context.Background(), req); err != nil {
			t.Fatal(err)
		}
	}
	// The first used 80 (its guess of 60 replaced); 80 + 60 > 100: wait.
	if w := clock.waits(); len(w) != 1 || w[0] != time.Minute {
		t.Errorf("waits %v, want [1m0s]", w)
	}
	// Alone in its minute, a request passes whatever its guess.
	big := WithLimits(h, Limits{TokensPerMinute: 10, Clock: &testClock{}})
	if _, err := big.Generate(context.Background(), Request{MaxTokens: 1000}); err != nil {
		t.Fatal(err)
	}
}

func TestLimitsWaitIsCancellable(t *testing.T) {
	h := &heldProvider{release: make(chan struct{}), starts: make(chan string, 8)}
	p := WithLimits(h, Limits{Concurrency: 1}).(*limited)
	first := make(chan error, 1)
	go func() {
		_, err := p.Generate(context.Background(), Request{Prompt: "first"})
		first <- err
	}()
	<-h.starts
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		err := p.Stream(ctx, Request{Prompt: "second"}, func(Chunk) error { return nil })
		done <- err
	}()
	p.queued(1)
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("err = %v", err)
	}
	p.mu.Lock()
	q := len(p.queue)
	p.mu.Unlock()
	if q != 0 {
		t.Errorf("%d left in the queue", q)
	}
	close(h.release)
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	if r, err := p.Generate(context.Background(), Request{Prompt: "third"}); err != nil || r.Text != "third" {
		t.Errorf("after the cancelled one: %+v, %v", r, err)
	}
	if got := h.order(); !equalStrings(got, []string{"first", "third"}) {
		t.Errorf("started %v", got)
	}
}

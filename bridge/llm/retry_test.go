package llm

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// testClock is a Clock that never sleeps: Sleep records the wait and moves
// the clock on by it.
type testClock struct {
	mu     sync.Mutex
	now    time.Time
	sleeps []time.Duration
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.now.IsZero() {
		c.now = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	}
	return c.now
}

func (c *testClock) Sleep(ctx context.Context, d time.Duration) error {
	c.Now()
	c.mu.Lock()
	c.sleeps = append(c.sleeps, d)
	c.now = c.now.Add(d)
	c.mu.Unlock()
	return ctx.Err()
}

func (c *testClock) waits() []time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]time.Duration(nil), c.sleeps...)
}

// flakyServer answers the first len(fails) requests with those statuses
// (and headers), then with ok.
func flakyServer(t *testing.T, fails []int, header http.Header, ok string) (*httpTest, *atomic.Int32) {
	var n atomic.Int32
	ht := startHTTPTest(t, func(w http.ResponseWriter, r *http.Request) {
		i := int(n.Add(1)) - 1
		if i < len(fails) {
			for k, v := range header {
				w.Header()[k] = v
			}
			w.WriteHeader(fails[i])
			writeFlush(w, `{"error":{"message":"try later","type":"overloaded"}}`)
			return
		}
		w.Header().Set("Content-Type", sseType)
		writeFlush(w, ok)
	})
	return ht, &n
}

func TestRetryHonoursRetryAfterThenSucceeds(t *testing.T) {
	ht, n := flakyServer(t, []int{429}, http.Header{"Retry-After": {"2"}}, delta("fine")+sseFinish+sseDone)
	clock := &testClock{}
	p := NewOpenAI(OpenAIOptions{BaseURL: ht.srv.URL, HTTPClient: ht.client, Retry: RetryPolicy{Clock: clock}})
	cs, err := collect(p, Request{Prompt: "hi"})
	if err != nil {
		t.Fatal(err)
	}
	if text, _ := joinChunks(t, cs); text != "fine" {
		t.Errorf("text %q", text)
	}
	if got := clock.waits(); len(got) != 1 || got[0] != 2*time.Second {
		t.Errorf("waits %v, want [2s] (Retry-After)", got)
	}
	if n.Load() != 2 {
		t.Errorf("%d requests, want 2", n.Load())
	}
}

func TestRetryBacksOffAndGivesUp(t *testing.T) {
	ht, n := flakyServer(t, []int{503, 500, 502, 500}, nil, sseDone)
	clock := &testClock{}
	p := NewOpenAI(OpenAIOptions{BaseURL: ht.srv.URL, HTTPClient: ht.client,
		Retry: RetryPolicy{Clock: clock, BaseDelay: 100 * time.Millisecond}})
	_, err := p.Generate(context.Background(), Request{Prompt: "hi"})
	var ae *APIError
	if !errors.As(err, &ae) || ae.StatusCode != 502 {
		t.Fatalf("err = %v, want the third reply's 502", err)
	}
	if n.Load() != 3 {
		t.Errorf("%d requests, want 3 (the default: two retries)", n.Load())
	}
	w := clock.waits()
	// Full backoff 100 ms then 200 ms, each drawn from its upper half.
	if len(w) != 2 || w[0] < 50*time.Millisecond || w[0] > 100*time.Millisecond ||
		w[1] < 100*time.Millisecond || w[1] > 200*time.Millisecond {
		t.Errorf("waits %v", w)
	}
}

func TestRetryLeavesWhatCannotPass(t *testing.T) {
	for _, status := range []int{400, 401, 404, 422} {
		ht, n := flakyServer(t, []int{status}, nil, sseDone)
		clock := &testClock{}
		p := NewOpenAI(OpenAIOptions{BaseURL: ht.srv.URL, HTTPClient: ht.client, Retry: RetryPolicy{Clock: clock}})
		if _, err := p.Generate(context.Background(), Request{Prompt: "hi"}); err == nil {
			t.Errorf("%d: no error", status)
		}
		if n.Load() != 1 || len(clock.waits()) != 0 {
			t.Errorf("%d: %d requests, waits %v; want no retry", status, n.Load(), clock.waits())
		}
	}
	// Attempts: 1 turns retries off.
	ht, n := flakyServer(t, []int{503}, nil, sseDone)
	p := NewOpenAI(OpenAIOptions{BaseURL: ht.srv.URL, HTTPClient: ht.client, Retry: RetryPolicy{Attempts: 1}})
	if _, err := p.Generate(context.Background(), Request{Prompt: "hi"}); err == nil || n.Load() != 1 {
		t.Errorf("Attempts 1: err %v after %d requests", err, n.Load())
	}
}

// TestRetryStreamOnlyBeforeTheFirstChunk: a stream that fails before
// anything reached the reader is tried again; one that fails after is not.
func TestRetryStreamOnlyBeforeTheFirstChunk(t *testing.T) {
	var n atomic.Int32
	ht := startHTTPTest(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", sseType)
		switch n.Add(1) {
		case 1: // dropped before any event
			panic(http.ErrAbortHandler)
		case 2: // one event, then dropped
			writeFlush(w, delta("half"))
			panic(http.ErrAbortHandler)
		}
		writeFlush(w, delta("whole")+sseDone)
	})
	clock := &testClock{}
	p := NewOpenAI(OpenAIOptions{BaseURL: ht.srv.URL, HTTPClient: ht.client, Retry: RetryPolicy{Clock: clock}})
	cs, err := collect(p, Request{Prompt: "hi"})
	if !errors.Is(err, ErrTruncated) {
		t.Fatalf("err = %v, want ErrTruncated from the second try", err)
	}
	if len(cs) != 1 || cs[0].Content != "half" || n.Load() != 2 {
		t.Errorf("chunks %+v after %d requests", cs, n.Load())
	}
}

func TestRetryWaitIsCancellable(t *testing.T) {
	ht, n := flakyServer(t, []int{429, 429}, http.Header{"Retry-After": {"30"}}, sseDone)
	clock := &waitingClock{waiting: make(chan time.Duration, 1)}
	p := NewOpenAI(OpenAIOptions{BaseURL: ht.srv.URL, HTTPClient: ht.client, Retry: RetryPolicy{Clock: clock}})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := p.Generate(ctx, Request{Prompt: "hi"})
		done <- err
	}()
	if d := <-clock.waiting; d != 30*time.Second { // the client waits its 30 s now
		t.Errorf("waits %v", d)
	}
	cancel()
	err := <-done
	var ae *APIError
	if !errors.As(err, &ae) || ae.StatusCode != 429 || ae.RetryAfter != 30*time.Second {
		t.Errorf("err = %v, want the 429 with its Retry-After", err)
	}
	if n.Load() != 1 {
		t.Errorf("%d requests", n.Load())
	}
}

// waitingClock's Sleep says it began, then waits for ctx.
type waitingClock struct{ waiting chan time.Duration }

func (c *waitingClock) Now() time.Time { return time.Now() }

func (c *waitingClock) Sleep(ctx context.Context, d time.Duration) error {
	c.waiting <- d
	<-ctx.Done()
	return ctx.Err()
}

func TestRetryAfterHeaders(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		h    http.Header
		want time.Duration
	}{
		{http.Header{"Retry-After": {"3"}}, 3 * time.Second},
		{http.Header{"Retry-After": {"1.5"}}, 1500 * time.Millisecond},
		{http.Header{"Retry-After": {"Sun, 01 Mar 2026 12:00:07 GMT"}}, 7 * time.Second},
		{http.Header{"Retry-After": {"Sun, 01 Mar 2026 11:00:00 GMT"}}, 0},
		{http.Header{"Retry-After-Ms": {"250"}, "Retry-After": {"9"}}, 250 * time.Millisecond},
		{http.Header{"Retry-After": {"soon"}}, 0},
		{http.Header{"Retry-After": {"-4"}}, 0},
		{http.Header{}, 0},
	} {
		if got := retryAfter(c.h, now); got != c.want {
			t.Errorf("%v: %v, want %v", c.h, got, c.want)
		}
	}
}

// failingProvider fails its first n calls with err.
type failingProvider struct {
	n     atomic.Int32
	fails int32
	err   error
}

func (f *failingProvider) Generate(ctx context.Context, req Request) (Response, error) {
	if f.n.Add(1) <= f.fails {
		return Response{}, f.err
	}
	return Response{Text: "ok", FinishReason: "stop"}, nil
}

func (f *failingProvider) Stream(ctx context.Context, req Request, fn func(Chunk) error) error {
	if f.n.Add(1) <= f.fails {
		return f.err
	}
	return fn(Chunk{Done: true, FinishReason: "stop"})
}

func TestWithRetryWrapsAnyProvider(t *testing.T) {
	clock := &testClock{}
	f := &failingProvider{fails: 3, err: &APIError{Provider: "x", StatusCode: 500}}
	p := WithRetry(f, RetryPolicy{Attempts: 4, Clock: clock})
	if r, err := p.Generate(context.Background(), Request{}); err != nil || r.Text != "ok" {
		t.Fatalf("%+v, %v", r, err)
	}
	if len(clock.waits()) != 3 {
		t.Errorf("waits %v", clock.waits())
	}
	f = &failingProvider{fails: 1, err: errors.New("not a transient failure")}
	p = WithRetry(f, RetryPolicy{Clock: clock})
	if err := p.Stream(context.Background(), Request{}, func(Chunk) error { return nil }); err == nil ||
		!strings.Contains(err.Error(), "not a transient") || f.n.Load() != 1 {
		t.Errorf("err %v after %d calls", err, f.n.Load())
	}
}

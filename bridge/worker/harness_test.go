package worker

// Test scaffolding: an embedded server per test (loopback, a free port,
// storage in the test's temporary directory), connections, workers run in
// goroutines, and readers of the result and dead-letter streams.

import (
	"context"
	"encoding/json"
	"fmt"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/moonbridge/moonbridge/bridge/worker/embedded"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// patience bounds every wait of these tests: a safety net that turns a
// hang into a failure, never a measure of speed.
const patience = 2 * time.Minute

type harness struct {
	t      *testing.T
	dir    string
	srv    *embedded.Server
	client *Client
	nc     *nats.Conn // the client's
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	base := runtime.NumGoroutine()
	h := &harness{t: t, dir: t.TempDir()}
	h.start()
	t.Cleanup(func() {
		h.nc.Close()
		h.srv.Shutdown()
		checkGoroutines(t, base)
	})
	return h
}

// start starts the server on h.dir and connects the client.
func (h *harness) start() {
	h.t.Helper()
	srv, err := embedded.Start(embedded.Options{Dir: h.dir, Addr: "127.0.0.1:0"})
	if err != nil {
		h.t.Fatal(err)
	}
	h.srv = srv
	h.nc = h.connect()
	ctx, cancel := context.WithTimeout(context.Background(), patience)
	defer cancel()
	if h.client, err = NewClient(ctx, h.nc, QueueOptions{}); err != nil {
		h.t.Fatal(err)
	}
}

// restart stops the server and starts another on the same storage.
func (h *harness) restart() {
	h.t.Helper()
	h.nc.Close()
	h.srv.Shutdown()
	h.start()
}

func (h *harness) connect() *nats.Conn {
	h.t.Helper()
	nc, err := nats.Connect(h.srv.URL(), nats.NoReconnect())
	if err != nil {
		h.t.Fatal(err)
	}
	return nc
}

// running is a worker whose Run goes on in a goroutine.
type running struct {
	w    *Worker
	nc   *nats.Conn
	stop context.CancelFunc
	done chan struct{}
	err  error // Run's, once done is closed
	once sync.Once
}

// worker starts a worker with opts and hooks on a connection of its own.
func (h *harness) worker(opts Options, hk hooks) *running {
	h.t.Helper()
	nc := h.connect()
	ctx, cancel := context.WithTimeout(context.Background(), patience)
	defer cancel()
	w, err := New(ctx, nc, opts)
	if err != nil {
		nc.Close()
		h.t.Fatal(err)
	}
	w.hooks = hk
	rctx, stop := context.WithCancel(context.Background())
	r := &running{w: w, nc: nc, stop: stop, done: make(chan struct{})}
	go func() { r.err = w.Run(rctx); close(r.done) }()
	h.t.Cleanup(func() { r.shutdown() })
	return r
}

// wait waits for Run to return by itself and frees the worker.
func (r *running) wait() error {
	<-r.done
	r.once.Do(func() {
		r.w.Close()
		r.nc.Close()
		r.stop()
	})
	return r.err
}

// shutdown stops the worker through its context and waits for Run, then
// frees it. Idempotent.
func (r *running) shutdown() error {
	r.stop()
	return r.wait()
}

// kill closes the worker's connection without a word to the server, as a
// crash would: its jobs in flight can be neither stored nor settled.
func (r *running) kill() { r.nc.Close() }

func (h *harness) submit(job Job) string {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), patience)
	defer cancel()
	key, err := h.client.Submit(ctx, job)
	if err != nil {
		h.t.Fatal(err)
	}
	return key
}

func (h *harness) result(key string) *Result {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), patience)
	defer cancel()
	r, err := h.client.Result(ctx, key)
	if err != nil {
		h.t.Fatal(err)
	}
	return r
}

// stored is how many results the results stream ever accepted: its last
// sequence number (a result replacing another under the same key would
// count too).
func (h *harness) stored() uint64 {
	h.t.Helper()
	return h.streamState(h.client.Names().ResultsStream).LastSeq
}

func (h *harness) streamState(name string) jetstream.StreamState {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), patience)
	defer cancel()
	s, err := h.client.js.Stream(ctx, name)
	if err != nil {
		h.t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		h.t.Fatal(err)
	}
	return info.State
}

// deadLetters reads the first n dead letters, waiting for them.
func (h *harness) deadLetters(n int) []DeadLetter {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), patience)
	defer cancel()
	cons, err := h.client.js.OrderedConsumer(ctx, h.client.Names().DeadStream, jetstream.OrderedConsumerConfig{})
	if err != nil {
		h.t.Fatal(err)
	}
	it, err := cons.Messages()
	if err != nil {
		h.t.Fatal(err)
	}
	defer it.Stop()
	stop := context.AfterFunc(ctx, it.Stop)
	defer stop()
	var out []DeadLetter
	for len(out) < n {
		m, err := it.Next()
		if err != nil {
			h.t.Fatalf("waiting for dead letters: %v", err)
		}
		var d DeadLetter
		if err := json.Unmarshal(m.Data(), &d); err != nil {
			h.t.Fatal(err)
		}
		out = append(out, d)
	}
	return out
}

// values decodes a successful result's values.
func values(t *testing.T, r *Result) []any {
	t.Helper()
	if !r.OK {
		t.Fatalf("result of %s: %+v", r.Key, r.Error)
	}
	var vs []any
	if err := json.Unmarshal(r.Values, &vs); err != nil {
		t.Fatal(err)
	}
	return vs
}

// events collects hook calls, for tests to wait on.
type events struct {
	mu      sync.Mutex
	started map[string][]int // key -> attempts started
	changed chan struct{}
}

func newEvents() *events {
	return &events{started: map[string][]int{}, changed: make(chan struct{}, 1)}
}

func (e *events) start(key string, attempt int) {
	e.mu.Lock()
	e.started[key] = append(e.started[key], attempt)
	e.mu.Unlock()
	select {
	case e.changed <- struct{}{}:
	default:
	}
}

func (e *events) attempts(key string) []int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]int(nil), e.started[key]...)
}

func (e *events) count() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	n := 0
	for _, a := range e.started {
		n += len(a)
	}
	return n
}

// waitFor waits until cond holds, re-checking it at each event.
func (e *events) waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.After(patience)
	for !cond() {
		select {
		case <-e.changed:
		case <-deadline:
			t.Fatalf("waited too long for %s", what)
		}
	}
}

// checkGoroutines waits for the goroutine count to settle back to n.
func checkGoroutines(t *testing.T, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for runtime.NumGoroutine() > n {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Errorf("goroutines leaked: %d > %d\n%s", runtime.NumGoroutine(), n, buf[:runtime.Stack(buf, true)])
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func keyOf(i int) string { return fmt.Sprintf("job-%04d", i) }

// waitSkipped waits for the worker to acknowledge key without running it
// (the skipped hook), failing as soon as ev sees it started more than
// runs times.
func waitSkipped(t *testing.T, skipped chan string, ev *events, key string, runs int) {
	t.Helper()
	timeout := time.After(patience)
	for {
		select {
		case k := <-skipped:
			if k != key {
				t.Fatalf("skipped %q, want %q", k, key)
			}
			return
		case <-ev.changed:
			if a := ev.attempts(key); len(a) > runs {
				t.Fatalf("%s was run again: attempts %v", key, a)
			}
		case <-timeout:
			t.Fatalf("%s was not skipped; attempts %v", key, ev.attempts(key))
		}
	}
}

// waitQueueEmpty waits until the jobs stream holds no job: terminations
// and deletions reach the server after the results they follow.
func (h *harness) waitQueueEmpty() {
	h.t.Helper()
	deadline := time.Now().Add(patience)
	for h.streamState(h.client.Names().Stream).Msgs != 0 {
		if time.Now().After(deadline) {
			h.t.Fatalf("%d jobs left in the queue", h.streamState(h.client.Names().Stream).Msgs)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

package worker

// Delivery semantics: retries, dead letters, long jobs, shutdown, restart.

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/moonbridge/moonbridge/bridge"
	"github.com/moonbridge/moonbridge/bridge/llm"
)

// flaky registers flaky(): a temporary error ("503") for its first fails
// calls, then "ok". calls counts every call.
func flaky(fails int64, calls *atomic.Int64) func(*bridge.Runtime) error {
	return func(rt *bridge.Runtime) error {
		return rt.RegisterFunc("flaky", WatchFunc(func(ctx context.Context, a bridge.Args) ([]any, error) {
			if calls.Add(1) <= fails {
				return nil, Temporary(errors.New("upstream replied 503"))
			}
			return []any{"ok"}, nil
		}))
	}
}

func TestTemporaryFailuresAreRetriedWithBackoff(t *testing.T) {
	h := newHarness(t)
	var calls atomic.Int64
	h.worker(Options{MaxDeliver: 5, Backoff: []time.Duration{time.Millisecond}, Setup: flaky(2, &calls)}, hooks{})
	r := h.result(h.submit(Job{Script: "return flaky()"}))
	if vs := values(t, r); fmt.Sprint(vs) != "[ok]" || r.Attempt != 3 || calls.Load() != 3 {
		t.Errorf("values %v on attempt %d after %d calls, want ok on 3", vs, r.Attempt, calls.Load())
	}
	// An error that is not temporary fails the job at once.
	r = h.result(h.submit(Job{Script: "error('no')"}))
	if r.OK || r.Attempt != 1 || r.Error.Kind != "runtime" {
		t.Errorf("a script error: %+v on attempt %d", r.Error, r.Attempt)
	}
}

// A job that fails temporarily on every delivery: after MaxDeliver
// deliveries it gets a dead letter and a "dead" result, and leaves the
// queue.
func TestPoisonJobIsDeadLetteredAfterMaxDeliver(t *testing.T) {
	h := newHarness(t)
	var calls atomic.Int64
	h.worker(Options{MaxDeliver: 3, Backoff: []time.Duration{time.Millisecond}, Setup: flaky(1<<40, &calls)}, hooks{})
	key := h.submit(Job{Script: "return flaky()", Source: "poison.lua"})
	d := h.deadLetters(1)[0]
	if d.Key != key || d.Attempts != 3 || d.Error == nil || !strings.Contains(d.Error.Message, "503") ||
		!strings.Contains(string(d.Job), "poison.lua") {
		t.Errorf("dead letter %+v", d)
	}
	r := h.result(key)
	if r.OK || r.Error.Kind != "dead" || !strings.Contains(r.Error.Message, "all 3 deliveries") || calls.Load() != 3 {
		t.Errorf("result %+v after %d calls", r.Error, calls.Load())
	}
	h.waitQueueEmpty()
}

// A job whose worker dies on its only allowed delivery: the server's
// advisory reaches the other worker, which dead-letters it.
func TestJobWhoseWorkerDiesOnEveryDeliveryIsDeadLettered(t *testing.T) {
	h := newHarness(t)
	hung := make(chan struct{})
	a := h.worker(Options{ID: "A", MaxDeliver: 1, AckWait: time.Second, Grace: time.Millisecond,
		Setup: func(rt *bridge.Runtime) error {
			return rt.RegisterFunc("hang", func(ctx context.Context, _ bridge.Args) ([]any, error) {
				close(hung)
				<-ctx.Done()
				return nil, ctx.Err()
			})
		}}, hooks{})
	key := h.submit(Job{Script: "hang()"})
	<-hung
	ev := newEvents()
	h.worker(Options{ID: "B", MaxDeliver: 1, AckWait: time.Second}, hooks{started: ev.start})
	a.kill()
	d := h.deadLetters(1)[0]
	if d.Key != key || d.Attempts != 1 || !strings.Contains(d.Reason, "not settled after 1 deliveries") {
		t.Errorf("dead letter %+v", d)
	}
	if r := h.result(key); r.OK || r.Error.Kind != "dead" || r.Worker != "B" {
		t.Errorf("result %+v by %s", r.Error, r.Worker)
	}
	if ev.count() != 0 {
		t.Error("B ran the job")
	}
	h.waitQueueEmpty()
}

// A job that runs for several AckWaits is not delivered again: the
// worker's in-progress acknowledgements keep it.
func TestJobLongerThanAckWaitSurvivesThroughProgressAcks(t *testing.T) {
	h := newHarness(t)
	release := make(chan struct{})
	var once sync.Once
	free := func() { once.Do(func() { close(release) }) }
	defer free()
	progress := make(chan string, 1)
	ev := newEvents()
	h.worker(Options{AckWait: 600 * time.Millisecond, Concurrency: 4, Setup: func(rt *bridge.Runtime) error {
		return rt.RegisterFunc("hold", func(ctx context.Context, _ bridge.Args) ([]any, error) {
			select {
			case <-release:
				return []any{"held"}, nil
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		})
	}}, hooks{started: ev.start, progress: func(key string) {
		select {
		case progress <- key:
		default:
		}
	}})
	key := h.submit(Job{Script: "return hold()"})
	// Six progress acks, two each AckWait: the job has outlived AckWait
	// twice. A second start (a redelivery) fails the test at once.
	timeout := time.After(patience)
	for acks := 0; acks < 6; {
		select {
		case <-progress:
			acks++
		case <-ev.changed:
		case <-timeout:
			t.Fatal("waited too long for progress acks")
		}
		if a := ev.attempts(key); len(a) > 1 {
			t.Fatalf("the job was delivered again: attempts %v", a)
		}
	}
	free()
	r := h.result(key)
	if vs := values(t, r); fmt.Sprint(vs) != "[held]" || r.Attempt != 1 || len(ev.attempts(key)) != 1 {
		t.Errorf("values %v on attempt %d, started %v", vs, r.Attempt, ev.attempts(key))
	}
}

// holdSetup registers hold(), which waits for release (or its context).
func holdSetup(release chan struct{}) func(*bridge.Runtime) error {
	return func(rt *bridge.Runtime) error {
		return rt.RegisterFunc("hold", func(ctx context.Context, a bridge.Args) ([]any, error) {
			select {
			case <-release:
				return []any{a.Get(0)}, nil
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		})
	}
}

// Shutdown with jobs in flight: the running ones finish within the grace
// and are stored; jobs that arrive meanwhile wait for the next worker.
func TestShutdownLetsRunningJobsFinish(t *testing.T) {
	h := newHarness(t)
	release := make(chan struct{})
	ev := newEvents()
	a := h.worker(Options{ID: "A", Concurrency: 5, Grace: patience, Setup: holdSetup(release)}, hooks{started: ev.start})
	for i := range 5 {
		h.submit(Job{Key: keyOf(i), Script: "return hold(...)", Args: []any{int64(i)}})
	}
	ev.waitFor(t, "five running jobs", func() bool { return ev.count() == 5 })
	a.stop() // shutdown begins; the jobs still run
	for i := 5; i < 10; i++ {
		h.submit(Job{Key: keyOf(i), Script: "return hold(...)", Args: []any{int64(i)}})
	}
	close(release)
	if err := a.wait(); err != nil {
		t.Errorf("Run: %v", err)
	}
	if ev.count() != 5 {
		t.Errorf("A started %d jobs, want the 5 it had", ev.count())
	}
	h.worker(Options{ID: "B", Setup: holdSetup(release)}, hooks{})
	for i := range 10 {
		r := h.result(keyOf(i))
		want := "A"
		if i >= 5 {
			want = "B"
		}
		if vs := values(t, r); fmt.Sprint(vs) != fmt.Sprintf("[%d]", i) || r.Worker != want || r.Attempt != 1 {
			t.Errorf("job %d: %v by %s on attempt %d", i, vs, r.Worker, r.Attempt)
		}
	}
	if h.stored() != 10 {
		t.Errorf("%d results stored", h.stored())
	}
}

// Shutdown whose grace runs out: the jobs still running are cancelled and
// go back to the queue at once; the next worker runs them.
func TestShutdownPastTheGraceRequeuesRunningJobs(t *testing.T) {
	h := newHarness(t)
	ev := newEvents()
	a := h.worker(Options{ID: "A", Concurrency: 5, Grace: time.Millisecond, Setup: holdSetup(make(chan struct{}))}, hooks{started: ev.start})
	for i := range 5 {
		h.submit(Job{Key: keyOf(i), Script: "return hold(...)", Args: []any{int64(i)}})
	}
	ev.waitFor(t, "five running jobs", func() bool { return ev.count() == 5 })
	if err := a.shutdown(); err != nil {
		t.Errorf("Run: %v", err)
	}
	if h.stored() != 0 {
		t.Fatalf("%d results stored by cancelled runs", h.stored())
	}
	released := make(chan struct{})
	close(released)
	h.worker(Options{ID: "B", Setup: holdSetup(released)}, hooks{})
	for i := range 5 {
		r := h.result(keyOf(i))
		if vs := values(t, r); fmt.Sprint(vs) != fmt.Sprintf("[%d]", i) || r.Worker != "B" || r.Attempt != 2 {
			t.Errorf("job %d: %v by %s on attempt %d", i, vs, r.Worker, r.Attempt)
		}
	}
}

func TestServerRestartKeepsQueuedJobs(t *testing.T) {
	h := newHarness(t)
	for i := range 20 {
		h.submit(Job{Key: keyOf(i), Script: "return (...) + 1", Args: []any{int64(i)}})
	}
	h.restart()
	h.worker(Options{}, hooks{})
	for i := range 20 {
		if vs := values(t, h.result(keyOf(i))); fmt.Sprint(vs) != fmt.Sprintf("[%d]", i+1) {
			t.Errorf("job %d: %v", i, vs)
		}
	}
}

// The same key submitted again runs at most once: within the duplicates
// window the stream keeps one copy; a copy that gets in (here, published
// as is) is acknowledged without running.
func TestAKeyRunsAtMostOnce(t *testing.T) {
	h := newHarness(t)
	ev := newEvents()
	skipped := make(chan string, 1)
	h.worker(Options{}, hooks{started: ev.start, skipped: func(k string) { skipped <- k }})
	key := h.submit(Job{Key: "once", Script: "return 1"})
	h.submit(Job{Key: "once", Script: "return 2"}) // dropped by the stream
	if vs := values(t, h.result(key)); fmt.Sprint(vs) != "[1]" {
		t.Errorf("values %v", vs)
	}
	ctx, cancel := context.WithTimeout(context.Background(), patience)
	defer cancel()
	if _, err := h.client.js.Publish(ctx, h.client.Names().Jobs, []byte(`{"key":"once","script":"return 3"}`)); err != nil {
		t.Fatal(err)
	}
	waitSkipped(t, skipped, ev, "once", 1)
	if n := len(ev.attempts("once")); n != 1 || h.stored() != 1 {
		t.Errorf("ran %d times, %d results stored", n, h.stored())
	}
	if r, err := h.client.Lookup(ctx, "once"); err != nil || fmt.Sprint(values(t, r)) != "[1]" {
		t.Errorf("Lookup: %v, %v", r, err)
	}
	if r, err := h.client.Lookup(ctx, "never"); err != nil || r != nil {
		t.Errorf("Lookup of a key without result: %v, %v", r, err)
	}
}

func TestMalformedJobsAreDeadLettered(t *testing.T) {
	h := newHarness(t)
	h.worker(Options{}, hooks{})
	ctx, cancel := context.WithTimeout(context.Background(), patience)
	defer cancel()
	for _, data := range []string{`not json`, `{"key": 5}`, `{"script":"x","args":[1e999]}`} {
		if _, err := h.client.js.Publish(ctx, h.client.Names().Jobs, []byte(data)); err != nil {
			t.Fatal(err)
		}
	}
	ds := h.deadLetters(3)
	slices.SortFunc(ds, func(a, b DeadLetter) int { return cmp.Compare(a.Seq, b.Seq) }) // handled concurrently
	for i, want := range []string{"invalid character", "cannot unmarshal number", "args[0]"} {
		if !strings.Contains(ds[i].Reason, want) || ds[i].Attempts != 1 || len(ds[i].Job) == 0 {
			t.Errorf("dead letter %d: %+v, want a reason with %q", i, ds[i], want)
		}
	}
}

// flakyProvider fails its first Generate with a 503 reply.
type flakyProvider struct {
	llm.Provider
	calls atomic.Int64
}

func (p *flakyProvider) Generate(ctx context.Context, req llm.Request) (llm.Response, error) {
	if p.calls.Add(1) == 1 {
		return llm.Response{}, &llm.APIError{Provider: "test", StatusCode: 503, Message: "overloaded"}
	}
	return p.Provider.Generate(ctx, req)
}

func TestLLMJobsRetryAServerError(t *testing.T) {
	h := newHarness(t)
	p := &flakyProvider{Provider: llm.NewLocal(llm.LocalOptions{Seed: 1})}
	h.worker(Options{LLM: p, Backoff: []time.Duration{time.Millisecond}}, hooks{})
	r := h.result(h.submit(Job{Script: `local text, info = require("llm").generate("Tell me about tides", {max_tokens = 5})
return text, info.usage.completion_tokens`}))
	want, _ := llm.NewLocal(llm.LocalOptions{Seed: 1}).Generate(context.Background(), llm.Request{Prompt: "Tell me about tides", MaxTokens: 5})
	if vs := values(t, r); len(vs) != 2 || vs[0] != want.Text || vs[1] != float64(5) || r.Attempt != 2 {
		t.Errorf("values %v on attempt %d, want %q", vs, r.Attempt, want.Text)
	}
}

// A job's token budget bounds its LLM requests; its result reports what
// they used.
func TestTokenBudgetAndUsage(t *testing.T) {
	h := newHarness(t)
	h.worker(Options{LLM: llm.NewLocal(llm.LocalOptions{Seed: 1})}, hooks{})
	const twice = `local llm = require("llm")
local a = llm.generate("Tell me about tides", {max_tokens = 5})
local b = llm.generate("Tell me about bridges", {max_tokens = 5})
return a ~= "" and b ~= ""`
	r := h.result(h.submit(Job{Script: twice}))
	if vs := values(t, r); fmt.Sprint(vs) != "[true]" || r.Usage.Requests != 2 || r.Usage.CompletionTokens != 10 || r.Usage.PromptTokens <= 0 {
		t.Errorf("values %v, usage %+v", vs, r.Usage)
	}
	r = h.result(h.submit(Job{Script: `local llm = require("llm")
while true do llm.generate("Tell me about tides", {max_tokens = 5}) end`, Limits: Limits{Tokens: 30}}))
	if r.OK || r.Error.Kind != "limit" || r.Error.Op != "tokens" || !strings.Contains(r.Error.Message, "budget of 30") ||
		r.Usage.PromptTokens+r.Usage.CompletionTokens < 30 || r.Attempt != 1 {
		t.Errorf("error %+v, usage %+v", r.Error, r.Usage)
	}
}

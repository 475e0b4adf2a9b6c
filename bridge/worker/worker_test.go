package worker

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/fstest"
	"time"

	"github.com/moonbridge/moonbridge/bridge"
)

func TestJobsRunToTheirResults(t *testing.T) {
	h := newHarness(t)
	h.worker(Options{
		Runtime:         bridge.Options{MemoryLimit: 64 << 20},
		MaxInstructions: 1_000_000,
		MaxTokens:       1000,
		OutputLimit:     10,
		Scripts: fstest.MapFS{
			"double.lua":     {Data: []byte("#!/usr/bin/env moonbridge\nlocal x = ...\nreturn x * 2\n")},
			"lib/triple.lua": {Data: []byte("return (...) * 3")},
		},
		Setup: func(rt *bridge.Runtime) error {
			return rt.RegisterFunc("shout", WatchFunc(func(ctx context.Context, a bridge.Args) ([]any, error) {
				s, err := a.String(0)
				return []any{strings.ToUpper(s)}, err
			}))
		},
	}, hooks{})

	cases := []struct {
		job   Job
		check func(t *testing.T, r *Result)
	}{
		{Job{Script: `local a, b, t = ...
local task = require("task")
local x = task.spawn(shout, a):wait()
print("got", a, b, t.n)
return x, b + 1, math.type(b), t.list[2], {k = "v"}, nil`,
			Args: []any{"hi", int64(41), map[string]any{"n": 1.5, "list": []any{"x", "y"}}}},
			func(t *testing.T, r *Result) {
				vs := values(t, r)
				if fmt.Sprint(vs) != "[HI 42 integer y map[k:v] <nil>]" {
					t.Errorf("values %v", vs)
				}
				if r.Output != "got\thi\t41\t" || !r.OutputTruncated || r.Usage.OutputBytes != 10 {
					t.Errorf("output %q, truncated %v, %d bytes", r.Output, r.OutputTruncated, r.Usage.OutputBytes)
				}
				if r.Attempt != 1 || r.Usage.Duration <= 0 {
					t.Errorf("attempt %d, usage %+v", r.Attempt, r.Usage)
				}
			}},
		{Job{Script: "io.write(1, ' ', 2.5, ' ', 1.0); io.stdout:write('!'); return"}, func(t *testing.T, r *Result) {
			if vs := values(t, r); len(vs) != 0 || r.Output != "1 2.5 1!" || r.OutputTruncated {
				t.Errorf("values %v, output %q", vs, r.Output)
			}
		}},
		{Job{Name: "double", Args: []any{int64(21)}}, func(t *testing.T, r *Result) {
			if vs := values(t, r); fmt.Sprint(vs) != "[42]" {
				t.Errorf("values %v", vs)
			}
		}},
		{Job{Name: "lib/triple", Args: []any{int64(5)}}, func(t *testing.T, r *Result) {
			if vs := values(t, r); fmt.Sprint(vs) != "[15]" {
				t.Errorf("values %v", vs)
			}
		}},
		{Job{Script: "x_of_job = 1; return _G.x_of_job"}, func(t *testing.T, r *Result) {
			// A job's globals are its own: they do not reach _G.
			if vs := values(t, r); fmt.Sprint(vs) != "[<nil>]" {
				t.Errorf("values %v", vs)
			}
		}},
		{Job{Script: "local function f()\n  error('kaput')\nend\nf()", Source: "kaput.lua"}, func(t *testing.T, r *Result) {
			if r.OK || r.Error.Kind != "runtime" || r.Error.Message != "kaput.lua:2: kaput" ||
				!strings.Contains(r.Error.Traceback, "kaput.lua:4") {
				t.Errorf("error %+v", r.Error)
			}
		}},
		{Job{Script: "print('before'); os.exit(3)"}, func(t *testing.T, r *Result) {
			if r.OK || r.Error.Kind != "exit" || r.Error.Code != 3 || r.Output != "before\n" {
				t.Errorf("error %+v, output %q", r.Error, r.Output)
			}
		}},
		{Job{Script: "return (", Source: "bad.lua"}, func(t *testing.T, r *Result) {
			if r.OK || !strings.Contains(r.Error.Message, "bad.lua:1:") {
				t.Errorf("error %+v", r.Error)
			}
		}},
		{Job{Script: "while true do end", Limits: Limits{Instructions: 10_000}}, func(t *testing.T, r *Result) {
			if r.OK || r.Error.Kind != "limit" || r.Error.Op != "instructions" {
				t.Errorf("error %+v", r.Error)
			}
		}},
		{Job{Script: "while true do end", Limits: Limits{Timeout: 50 * time.Millisecond}}, func(t *testing.T, r *Result) {
			if r.OK || r.Error.Kind != "limit" || r.Error.Op != "deadline" {
				t.Errorf("error %+v", r.Error)
			}
		}},
		{Job{Script: "return function() end"}, func(t *testing.T, r *Result) {
			if r.OK || r.Error.Kind != "bridge" || !strings.Contains(r.Error.Message, "function") {
				t.Errorf("error %+v", r.Error)
			}
		}},
		{Job{Script: "return 0/0"}, func(t *testing.T, r *Result) {
			if r.OK || !strings.Contains(r.Error.Message, "cannot be JSON-encoded") {
				t.Errorf("error %+v", r.Error)
			}
		}},
	}
	refused := []struct {
		job  Job
		want string
	}{
		{Job{Script: "return 1", Limits: Limits{Memory: 128 << 20}}, "asks for 134217728 bytes of memory; this worker's Runtimes have 67108864"},
		{Job{Script: "return 1", Limits: Limits{Instructions: 2_000_000}}, "at most 1000000"},
		{Job{Script: "return 1", Limits: Limits{Timeout: 2 * time.Hour}}, "at most 1h0m0s"},
		{Job{Script: "return 1", Limits: Limits{Tokens: 5000}}, "a budget of 5000 tokens; this worker allows at most 1000"},
		{Job{Name: "nosuch"}, `script "nosuch"`},
		{Job{Name: "../double"}, "not a valid script name"},
	}
	keys := make([]string, len(cases))
	for i, c := range cases {
		keys[i] = h.submit(c.job)
	}
	rkeys := make([]string, len(refused))
	for i, c := range refused {
		rkeys[i] = h.submit(c.job)
	}
	for i, c := range cases {
		t.Run(fmt.Sprint(i), func(t *testing.T) { c.check(t, h.result(keys[i])) })
	}
	for i, c := range refused {
		r := h.result(rkeys[i])
		if r.OK || r.Error.Kind != "job" || !strings.Contains(r.Error.Message, c.want) {
			t.Errorf("refused job %d: %+v, want a job error with %q", i, r.Error, c.want)
		}
	}
	// A job that fits the limits runs with them.
	k := h.submit(Job{Script: "return 1", Limits: Limits{Memory: 1 << 20, Instructions: 1000, Timeout: time.Minute}})
	if vs := values(t, h.result(k)); fmt.Sprint(vs) != "[1]" {
		t.Errorf("values %v", vs)
	}
}

// 1,000 jobs over two workers; one is killed while it holds jobs in
// flight. Every key gets exactly one result, the killed worker's jobs
// were redelivered to the other, and the results stream accepted 1,000
// publications, no more.
func TestThousandJobsOverTwoWorkersOneKilled(t *testing.T) {
	h := newHarness(t)
	const n = 1000
	killNow := make(chan struct{})
	var aCalls atomic.Int64
	setup := func(stuck bool) func(*bridge.Runtime) error {
		return func(rt *bridge.Runtime) error {
			return rt.RegisterFunc("work", WatchFunc(func(ctx context.Context, a bridge.Args) ([]any, error) {
				x, err := a.Int(0)
				if stuck {
					if c := aCalls.Add(1); c >= 20 { // from its 20th job on, A hangs
						if c == 20 {
							close(killNow)
						}
						<-ctx.Done()
						return nil, ctx.Err()
					}
				}
				return []any{2 * x}, err
			}))
		}
	}
	opts := func(id string, stuck bool) Options {
		return Options{ID: id, AckWait: time.Second, Concurrency: 8, Runtimes: 2, Grace: time.Millisecond, Setup: setup(stuck)}
	}
	evA, evB := newEvents(), newEvents()
	a := h.worker(opts("A", true), hooks{started: evA.start})
	for i := range n {
		h.submit(Job{Key: keyOf(i), Script: "return work(...)", Args: []any{int64(i)}})
	}
	<-killNow
	b := h.worker(opts("B", false), hooks{started: evB.start})
	evA.waitFor(t, "A's jobs to hang", func() bool { return evA.count() >= 20 })
	a.kill()
	if err := a.wait(); err == nil {
		t.Error("a killed worker's Run returned nil")
	}
	redelivered := 0
	for i := range n {
		r := h.result(keyOf(i))
		if vs := values(t, r); len(vs) != 1 || vs[0] != float64(2*i) {
			t.Fatalf("job %d: values %v", i, vs)
		}
		if r.Worker == "B" && len(evA.attempts(keyOf(i))) > 0 {
			redelivered++
			if r.Attempt < 2 {
				t.Errorf("job %d, started on A, finished by B on attempt %d", i, r.Attempt)
			}
		}
	}
	if redelivered == 0 {
		t.Error("no job started on A was finished by B")
	}
	if got := h.stored(); got != n {
		t.Errorf("the results stream accepted %d publications, want %d", got, n)
	}
	b.shutdown()
	h.waitQueueEmpty()
}

// A worker dies after storing a job's result and before acknowledging it:
// the job comes back, and the other worker acknowledges it without running
// it again or storing a second result.
func TestAStoredResultIsNeitherRunNorStoredAgain(t *testing.T) {
	h := newHarness(t)
	stored, killed := make(chan struct{}), make(chan struct{})
	evB := newEvents()
	skipped := make(chan string, 1)
	a := h.worker(Options{ID: "A", AckWait: time.Second, Grace: time.Millisecond}, hooks{
		beforeAck: func(key string) { close(stored); <-killed }, // dies here
	})
	key := h.submit(Job{Script: "return 7"})
	<-stored
	a.kill()
	close(killed)
	h.worker(Options{ID: "B", AckWait: time.Second}, hooks{started: evB.start, skipped: func(key string) { skipped <- key }})
	waitSkipped(t, skipped, evB, key, 0)
	if r := h.result(key); r.Worker != "A" || fmt.Sprint(values(t, r)) != "[7]" {
		t.Errorf("result %+v", r)
	}
	if len(evB.attempts(key)) != 0 || h.stored() != 1 {
		t.Errorf("B ran it %d times; %d results stored", len(evB.attempts(key)), h.stored())
	}
}

// Ten workers store a result for the same key at once: the server accepts
// exactly one, and each worker learns the key is settled.
func TestResultsAreStoredOncePerKey(t *testing.T) {
	h := newHarness(t)
	w := h.worker(Options{}, hooks{}).w
	var wg sync.WaitGroup
	var ok atomic.Int64
	for i := range 10 {
		wg.Go(func() {
			res := &Result{Key: "contested", OK: true, Values: json.RawMessage(fmt.Sprintf("[%d]", i))}
			if w.store(context.Background(), res, w.log) {
				ok.Add(1)
			}
		})
	}
	wg.Wait()
	if ok.Load() != 10 || h.stored() != 1 {
		t.Errorf("%d stores reported done, %d results stored; want 10 and 1", ok.Load(), h.stored())
	}
}

// Under the sandbox each job's chunk is the runner itself (nothing of the
// runner is kept on the Runtime between jobs), with the same results.
func TestSandboxedWorkerRunsJobs(t *testing.T) {
	h := newHarness(t)
	h.worker(Options{Runtime: bridge.Options{Sandbox: true}}, hooks{})
	r := h.result(h.submit(Job{Script: "print('in the sandbox', io == nil, os.exit == nil); return moonbridge_worker.run == nil", Source: "s.lua"}))
	if vs := values(t, r); fmt.Sprint(vs) != "[true]" || r.Output != "in the sandbox\ttrue\ttrue\n" {
		t.Errorf("values %v, output %q", vs, r.Output)
	}
	r = h.result(h.submit(Job{Script: "error('x')", Source: "s.lua"}))
	if r.OK || r.Error.Message != "s.lua:1: x" {
		t.Errorf("error %+v", r.Error)
	}
}

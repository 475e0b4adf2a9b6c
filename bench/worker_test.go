package bench

// The job queue (bridge/worker on an embedded NATS server with JetStream,
// in this process) beside the same scripts run by Pool.RunString directly,
// in one invocation:
//
//	QueueJobs   trivial jobs (return (...) + 1): b.N jobs submitted by
//	            QueueSubmitters goroutines, timed until the last result is
//	            read back from the results stream; every result checked.
//	            direct: Pool.RunString of the same chunk by as many
//	            goroutines as a worker runs jobs at once;
//	            queue-1-worker, queue-2-workers: through the queue.
//	            ns/op per job, plus jobs/s
//	QueueLLMBatch  LLMBatchJobs jobs each calling llm.generate on the local
//	            generator with LLMTokenDelay per token (LLMBatchTokens
//	            tokens); direct vs queue-1-worker; b.N = batches;
//	            ns/op per job, plus jobs/s and s/batch

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/moonbridge/moonbridge/bridge"
	"github.com/moonbridge/moonbridge/bridge/llm"
	"github.com/moonbridge/moonbridge/bridge/worker"
	"github.com/moonbridge/moonbridge/bridge/worker/embedded"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

const (
	QueueSubmitters   = 16                   // goroutines submitting jobs
	QueueConcurrency  = 32                   // jobs a worker runs at once
	LLMBatchJobs      = 1000                 // jobs per LLM batch
	LLMBatchTokens    = 8                    // tokens each generates
	LLMTokenDelay     = 2 * time.Millisecond // the local generator's pause per token
	queueTrivialLua   = "return (...) + 1"
	queueLLMLua       = `local text, info = require("llm").generate("Tell me about the tides " .. ..., {max_tokens = ` + "8" + `}); return info.usage.completion_tokens`
	queueLLMWantValue = LLMBatchTokens
)

// queueRig is an embedded server, its workers and a client.
type queueRig struct {
	srv     *embedded.Server
	conns   []*nats.Conn
	workers []*worker.Worker
	stop    context.CancelFunc
	done    sync.WaitGroup
	client  *worker.Client
	js      jetstream.JetStream
	names   worker.Names
}

func newQueueRig(b *testing.B, workers int, p llm.Provider) *queueRig {
	b.Helper()
	srv, err := embedded.Start(embedded.Options{Dir: b.TempDir(), Addr: "127.0.0.1:0"})
	if err != nil {
		b.Fatal(err)
	}
	r := &queueRig{srv: srv}
	connect := func() *nats.Conn {
		nc, err := nats.Connect(srv.URL())
		if err != nil {
			b.Fatal(err)
		}
		r.conns = append(r.conns, nc)
		return nc
	}
	ctx := context.Background()
	nc := connect()
	if r.client, err = worker.NewClient(ctx, nc, worker.QueueOptions{}); err != nil {
		b.Fatal(err)
	}
	r.names = r.client.Names()
	if r.js, err = jetstream.New(nc); err != nil {
		b.Fatal(err)
	}
	rctx, stop := context.WithCancel(ctx)
	r.stop = stop
	for i := range workers {
		w, err := worker.New(ctx, connect(), worker.Options{ID: fmt.Sprint(i), Concurrency: QueueConcurrency, LLM: p})
		if err != nil {
			b.Fatal(err)
		}
		r.workers = append(r.workers, w)
		r.done.Go(func() { w.Run(rctx) })
	}
	return r
}

func (r *queueRig) close() {
	r.stop()
	r.done.Wait()
	for _, w := range r.workers {
		w.Close()
	}
	for _, nc := range r.conns {
		nc.Close()
	}
	r.srv.Shutdown()
}

// run submits n jobs of src with args i (keys prefix-i) and reads the n
// results back, checking each against want(i).
func (r *queueRig) run(b *testing.B, prefix, src string, n int, want func(i int) float64) {
	ctx := context.Background()
	cons, err := r.js.OrderedConsumer(ctx, r.names.ResultsStream, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{r.names.Results + ".>"}, DeliverPolicy: jetstream.DeliverNewPolicy,
	})
	if err != nil {
		b.Fatal(err)
	}
	// Messages, not Next: an ordered consumer's Next makes a new consumer
	// on the server each time.
	it, err := cons.Messages()
	if err != nil {
		b.Fatal(err)
	}
	defer it.Stop()
	var next atomic.Int64
	var subs sync.WaitGroup
	for range QueueSubmitters {
		subs.Go(func() {
			for i := int(next.Add(1)) - 1; i < n; i = int(next.Add(1)) - 1 {
				_, err := r.client.Submit(ctx, worker.Job{Key: fmt.Sprintf("%s-%d", prefix, i), Script: src, Args: []any{int64(i)}})
				if err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	seen := make(map[string]bool, n)
	for len(seen) < n {
		m, err := it.Next()
		if err != nil {
			b.Fatalf("after %d of %d results: %v", len(seen), n, err)
		}
		var res worker.Result
		var vals []float64
		if err := json.Unmarshal(m.Data(), &res); err != nil || !res.OK || json.Unmarshal(res.Values, &vals) != nil {
			b.Fatalf("result %s: %v %+v", m.Data(), err, res.Error)
		}
		var i int
		if _, err := fmt.Sscanf(res.Key, prefix+"-%d", &i); err != nil || seen[res.Key] || len(vals) != 1 || vals[0] != want(i) {
			b.Fatalf("result %s: key %q (seen %v), values %v, want %v", m.Data(), res.Key, seen[res.Key], vals, want(i))
		}
		seen[res.Key] = true
	}
	subs.Wait()
}

// direct runs n chunks of src with args i on a Pool, conc at a time.
func direct(b *testing.B, p *bridge.Pool, src string, n, conc int) {
	var next atomic.Int64
	var wg sync.WaitGroup
	for range conc {
		wg.Go(func() {
			for i := int(next.Add(1)) - 1; i < n; i = int(next.Add(1)) - 1 {
				if err := p.RunString(context.Background(), "job", src, int64(i)); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
}

func newDirectPool(b *testing.B, p llm.Provider) *bridge.Pool {
	pool, err := bridge.NewPool(0, bridge.Options{}, func(rt *bridge.Runtime) error {
		if p == nil {
			return nil
		}
		return rt.RegisterLLM("llm", p)
	})
	if err != nil {
		b.Fatal(err)
	}
	return pool
}

func BenchmarkQueueJobs(b *testing.B) {
	// direct: the chunk's result is checked in Lua (an error fails the run).
	checked := "local x = ...; assert(" + queueTrivialLua[len("return "):] + " == x + 1)"
	b.Run("direct", func(b *testing.B) {
		pool := newDirectPool(b, nil)
		defer pool.Close()
		b.ResetTimer()
		direct(b, pool, checked, b.N, QueueConcurrency)
		b.StopTimer()
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "jobs/s")
	})
	for _, workers := range []int{1, 2} {
		name := "queue-1-worker"
		if workers == 2 {
			name = "queue-2-workers"
		}
		b.Run(name, func(b *testing.B) {
			r := newQueueRig(b, workers, nil)
			defer r.close()
			b.ResetTimer()
			r.run(b, "trivial", queueTrivialLua, b.N, func(i int) float64 { return float64(i + 1) })
			b.StopTimer()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "jobs/s")
		})
	}
}

func BenchmarkQueueLLMBatch(b *testing.B) {
	gen := llm.NewLocal(llm.LocalOptions{Seed: 1, TokenDelay: LLMTokenDelay})
	report := func(b *testing.B) {
		jobs := float64(b.N * LLMBatchJobs)
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/jobs, "ns/op")
		b.ReportMetric(jobs/b.Elapsed().Seconds(), "jobs/s")
		b.ReportMetric(b.Elapsed().Seconds()/float64(b.N), "s/batch")
	}
	checked := queueLLMLua[:len(queueLLMLua)-len("return info.usage.completion_tokens")] +
		fmt.Sprintf("assert(info.usage.completion_tokens == %d)", queueLLMWantValue)
	b.Run("direct", func(b *testing.B) {
		pool := newDirectPool(b, gen)
		defer pool.Close()
		b.ResetTimer()
		for range b.N {
			direct(b, pool, checked, LLMBatchJobs, QueueConcurrency)
		}
		b.StopTimer()
		report(b)
	})
	b.Run("queue-1-worker", func(b *testing.B) {
		r := newQueueRig(b, 1, gen)
		defer r.close()
		b.ResetTimer()
		for i := range b.N {
			r.run(b, fmt.Sprint("llm", i), queueLLMLua, LLMBatchJobs, func(int) float64 { return queueLLMWantValue })
		}
		b.StopTimer()
		report(b)
	})
}

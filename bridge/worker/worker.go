// Package worker runs moonbridge script jobs from a NATS JetStream work
// queue, on a bridge.Pool: the Go side of `moonbridge worker` and
// `moonbridge submit`.
//
//	submit ──▶ jobs stream (work queue) ──▶ workers (each a Pool of Runtimes)
//	                                          │ result, once per key
//	                                          ▼
//	                              results stream ◀── Client.Result / submit --wait
//	                              dead stream    (jobs that failed on every delivery)
//
// A job (Job) carries a script or the name of one the worker resolves, its
// arguments, its limits and an idempotency key. A worker acknowledges a
// job only once its result is stored; while the script runs it tells the
// server the job is in progress, so a long job is not redelivered. A run
// that fails for a temporary reason (see IsTemporary; a run cut short by
// the worker's shutdown) is retried later with backoff; a script error or a
// limit ends the job with an error result. A job that fails on its last
// allowed delivery, or whose worker died on it each time, gets a dead
// letter and a "dead" error result.
//
// Results are stored at most once per key: each is published on the key's
// own subject in a stream that keeps one message per subject, with the
// expectation that the subject is empty (JetStream's optimistic
// concurrency check, as a key-value bucket's Create), so a second
// publication for a key — by a worker that ran a redelivered copy — is
// refused by the server, atomically. Read results through JetStream
// (Client.Result, Client.Lookup): a plain NATS subscriber on the results
// subjects would also see a refused publication.
package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math"
	"math/rand/v2"
	"os"
	"path"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/moonbridge/moonbridge/bridge"
	"github.com/moonbridge/moonbridge/bridge/llm"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Options configure a Worker. The zero value works: jobs from the
// MOONBRIDGE stream, 4 per core at a time, on one Runtime per core.
type Options struct {
	// Queue names the streams (created when missing).
	Queue QueueOptions
	// Consumer is the durable consumer the workers of a queue share;
	// "workers" when empty. When it exists, its AckWait and MaxDeliver
	// are used and the two fields below ignored.
	Consumer string
	// AckWait is how long the server waits for a job's acknowledgement
	// before delivering it again; the worker tells it a job is still in
	// progress three times per AckWait. 0 means 30 s.
	AckWait time.Duration
	// MaxDeliver is how many times a job is delivered at most; 0 means 5.
	MaxDeliver int
	// Backoff[i] is the delay before delivery i+2 after a temporary
	// failure of delivery i+1 (the last value repeats), with ±20% jitter.
	// Empty means 1s, 5s, 30s, 2m.
	Backoff []time.Duration

	// Concurrency is how many jobs run at once; 0 means 4 per Runtime.
	Concurrency int
	// Runtimes is the Pool's size; 0 means GOMAXPROCS.
	Runtimes int
	// Runtime configures each Runtime. Its MemoryLimit is also the most a
	// job may ask for (Limits.Memory), its InstructionLimit the default
	// for jobs that set none.
	Runtime bridge.Options
	// Setup runs on each Runtime after the worker's own registrations:
	// register the Go functions jobs may call here (wrapped with
	// WatchFunc, so temporary errors make jobs retry).
	Setup func(*bridge.Runtime) error
	// LLM, if set, is registered on each Runtime as require("llm"),
	// wrapped with WatchProvider.
	LLM llm.Provider
	// Scripts resolves Job.Name: the job runs the file NAME.lua in it.
	Scripts fs.FS

	// Timeout is a job's deadline when it sets none; 0 means 10 minutes.
	// MaxTimeout is the longest a job may ask for; 0 means 1 hour.
	Timeout    time.Duration
	MaxTimeout time.Duration
	// MaxInstructions, if positive, is the most VM instructions a job may
	// ask for (Limits.Instructions).
	MaxInstructions int64
	// MaxTokens, if positive, is the most LLM tokens a job may ask for
	// (Limits.Tokens), and the budget of a job that sets none.
	MaxTokens int64
	// OutputLimit is how many bytes of a job's output its result keeps;
	// 0 means 64 KiB.
	OutputLimit int
	// Grace is how long Run waits, once its context is done, for the jobs
	// in flight to finish; those still running then are cancelled and go
	// back to the queue for another worker. 0 means 30 s.
	Grace time.Duration

	// ID names the worker in results; hostname and process id by default.
	ID string
	// Logger receives the worker's log; none by default.
	Logger *slog.Logger
}

// Worker consumes jobs from a queue and runs them on a Pool.
type Worker struct {
	opts       Options
	names      Names
	nc         *nats.Conn
	js         jetstream.JetStream
	streams    streams
	cons       jetstream.Consumer
	ackWait    time.Duration
	maxDeliver int
	pool       *bridge.Pool
	runs       runs
	log        *slog.Logger

	hooks hooks // for tests
}

// hooks let tests see inside a worker; nil ones are skipped.
type hooks struct {
	started   func(key string, attempt int) // a job's run begins
	progress  func(key string)              // an in-progress ack went out
	beforeAck func(key string)              // the result is stored, the ack not yet sent
	skipped   func(key string)              // acknowledged without running: it has a result
}

// errShutdown cancels the runs still going when the grace is over.
var errShutdown = errors.New("worker: shutting down")

// New makes a worker for the queue on nc: it creates the queue's streams
// and its consumer if they are missing, and the Pool (calling Setup on
// each Runtime). Run starts consuming; Close frees the Pool.
func New(ctx context.Context, nc *nats.Conn, opts Options) (*Worker, error) {
	names, err := QueueNames(opts.Queue.Stream)
	if err != nil {
		return nil, err
	}
	if opts.Consumer == "" {
		opts.Consumer = "workers"
	}
	if opts.AckWait <= 0 {
		opts.AckWait = 30 * time.Second
	}
	if opts.MaxDeliver <= 0 {
		opts.MaxDeliver = 5
	}
	if len(opts.Backoff) == 0 {
		opts.Backoff = []time.Duration{time.Second, 5 * time.Second, 30 * time.Second, 2 * time.Minute}
	}
	if opts.Runtimes <= 0 {
		opts.Runtimes = runtime.GOMAXPROCS(0)
	}
	if opts.Concurrency <= 0 {
		opts.Concurrency = 4 * opts.Runtimes
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 10 * time.Minute
	}
	if opts.MaxTimeout <= 0 {
		opts.MaxTimeout = time.Hour
	}
	if opts.OutputLimit <= 0 {
		opts.OutputLimit = 64 << 10
	}
	if opts.Grace <= 0 {
		opts.Grace = 30 * time.Second
	}
	if opts.ID == "" {
		host, _ := os.Hostname()
		opts.ID = fmt.Sprintf("%s-%d", host, os.Getpid())
	}
	w := &Worker{opts: opts, names: names, nc: nc, log: opts.Logger}
	if w.log == nil {
		w.log = slog.New(slog.DiscardHandler)
	}
	if w.js, err = jetstream.New(nc); err != nil {
		return nil, err
	}
	if w.streams, err = ensureQueue(ctx, w.js, names, opts.Queue); err != nil {
		return nil, err
	}
	if err := w.consumer(ctx); err != nil {
		return nil, err
	}
	w.pool, err = bridge.NewPool(opts.Runtimes, opts.Runtime, func(rt *bridge.Runtime) error {
		if err := w.runs.register(rt, !opts.Runtime.Sandbox); err != nil {
			return err
		}
		if opts.LLM != nil {
			if err := llm.Register(rt, "llm", WatchProvider(opts.LLM)); err != nil {
				return err
			}
		}
		if opts.Setup != nil {
			return opts.Setup(rt)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("worker: %w", err)
	}
	return w, nil
}

// consumer finds or makes the workers' durable consumer.
func (w *Worker) consumer(ctx context.Context) error {
	c, err := w.streams.jobs.Consumer(ctx, w.opts.Consumer)
	if errors.Is(err, jetstream.ErrConsumerNotFound) {
		c, err = w.streams.jobs.CreateConsumer(ctx, jetstream.ConsumerConfig{
			Durable:       w.opts.Consumer,
			Description:   "moonbridge workers",
			AckPolicy:     jetstream.AckExplicitPolicy,
			AckWait:       w.opts.AckWait,
			MaxDeliver:    w.opts.MaxDeliver,
			FilterSubject: w.names.Jobs,
			MaxAckPending: -1,
		})
		if errors.Is(err, jetstream.ErrConsumerExists) {
			c, err = w.streams.jobs.Consumer(ctx, w.opts.Consumer)
		}
	}
	if err != nil {
		return fmt.Errorf("worker: consumer %s of %s: %w", w.opts.Consumer, w.names.Stream, err)
	}
	cfg := c.CachedInfo().Config
	w.cons, w.ackWait, w.maxDeliver = c, cfg.AckWait, cfg.MaxDeliver
	return nil
}

// Names returns the queue's stream and subject names.
func (w *Worker) Names() Names { return w.names }

// Close closes the worker's Pool. Call it after Run has returned.
func (w *Worker) Close() error { return w.pool.Close() }

// Run consumes jobs until ctx is done or the connection closes, then
// drains: it takes no new job, lets the running ones finish for up to
// Options.Grace, then cancels the rest, which go back to the queue (for
// another worker, or this one when it runs again). It returns nil after a
// shutdown through ctx, or the error that stopped it.
func (w *Worker) Run(ctx context.Context) error {
	base, stop := context.WithCancelCause(context.WithoutCancel(ctx))
	defer stop(nil)
	dead, err := w.nc.QueueSubscribe(
		fmt.Sprintf("$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.%s.%s", w.names.Stream, w.opts.Consumer),
		"moonbridge-dead-letters", func(m *nats.Msg) { w.exhausted(base, m) })
	if err != nil {
		return fmt.Errorf("worker: subscribing to delivery advisories: %w", err)
	}
	defer dead.Unsubscribe()
	slots := make(chan struct{}, w.opts.Concurrency)
	var jobs sync.WaitGroup
	err = w.consume(ctx, base, slots, &jobs)

	// Drain: the jobs in flight finish, or are cancelled after the grace.
	done := make(chan struct{})
	go func() { jobs.Wait(); close(done) }()
	grace := time.NewTimer(w.opts.Grace)
	defer grace.Stop()
	select {
	case <-done:
	case <-grace.C:
		w.log.Info("grace over: cancelling the jobs still running", "grace", w.opts.Grace)
		stop(errShutdown)
		<-done
	}
	return err
}

// consume fetches jobs while slots are free and starts each in a
// goroutine, until ctx is done or the connection closes.
func (w *Worker) consume(ctx, base context.Context, slots chan struct{}, jobs *sync.WaitGroup) error {
	// A closed connection ends consuming even while every slot is busy.
	closed := w.nc.StatusChanged(nats.CLOSED)
	defer w.nc.RemoveStatusListener(closed)
	pause := 10 * time.Millisecond
	for ctx.Err() == nil {
		if w.nc.IsClosed() {
			return fmt.Errorf("worker: %w", nats.ErrConnectionClosed)
		}
		select { // one free slot, then every other free one
		case slots <- struct{}{}:
		case <-ctx.Done():
			return nil
		case <-closed:
			return fmt.Errorf("worker: %w", nats.ErrConnectionClosed)
		}
		n := 1
		for n < cap(slots) && tryPut(slots) {
			n++
		}
		// What is waiting, at once; if nothing is, wait for one job. A
		// batch that waited to fill would keep slots idle meanwhile.
		got, err := w.dispatch(ctx, base, slots, jobs, func() (jetstream.MessageBatch, error) {
			return w.cons.FetchNoWait(n)
		})
		if got == 0 && err == nil {
			fctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			got, err = w.dispatch(ctx, base, slots, jobs, func() (jetstream.MessageBatch, error) {
				return w.cons.Fetch(1, jetstream.FetchContext(fctx))
			})
			cancel()
		}
		n -= got
		for ; n > 0; n-- {
			<-slots
		}
		switch {
		case err == nil || ctx.Err() != nil || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout):
			pause = 10 * time.Millisecond
		case errors.Is(err, nats.ErrConnectionClosed):
			return fmt.Errorf("worker: %w", err)
		default: // the server restarting, a leader election: try again, less often
			w.log.Warn("fetching jobs", "err", err)
			select {
			case <-time.After(pause):
			case <-ctx.Done():
			}
			pause = min(2*pause, 2*time.Second)
		}
	}
	return nil
}

// dispatch fetches a batch and starts a goroutine for each job of it,
// each holding one of the slots already taken; it returns how many it
// started. Jobs fetched while stopping go back to the queue at once.
func (w *Worker) dispatch(ctx, base context.Context, slots chan struct{}, jobs *sync.WaitGroup, fetch func() (jetstream.MessageBatch, error)) (int, error) {
	batch, err := fetch()
	if err != nil {
		return 0, err
	}
	got := 0
	for msg := range batch.Messages() {
		if ctx.Err() != nil { // fetched while stopping: back to the queue now
			msg.Nak()
			continue
		}
		got++
		jobs.Add(1)
		go func() {
			defer jobs.Done()
			defer func() { <-slots }()
			w.handle(base, msg)
		}()
	}
	return got, batch.Error()
}

func tryPut(c chan struct{}) bool {
	select {
	case c <- struct{}{}:
		return true
	default:
		return false
	}
}

// outcome is what becomes of a delivered job.
type outcome int

const (
	finished outcome = iota // a result (success or final failure): store it, ack
	retry                   // a temporary failure: nak with backoff, or dead letter
	requeue                 // cut short by shutdown: nak at once
)

// handle settles one delivered job.
func (w *Worker) handle(base context.Context, msg jetstream.Msg) {
	meta, err := msg.Metadata()
	if err != nil {
		w.log.Error("a job without JetStream metadata", "err", err)
		msg.Term()
		return
	}
	attempt, seq := int(meta.NumDelivered), meta.Sequence.Stream
	job, err := decodeJob(msg.Data())
	if err != nil {
		w.deadLetter(base, DeadLetter{Seq: seq, Attempts: attempt, Reason: err.Error(), Job: rawJob(msg.Data())})
		w.settle(msg.TermWithReason("malformed job"), "term", "")
		return
	}
	if job.Key == "" {
		job.Key = fmt.Sprintf("seq-%d", seq)
	}
	log := w.log.With("key", job.Key, "attempt", attempt)
	if r, err := lastResult(base, w.streams.results, w.names, job.Key); err == nil && r != nil {
		log.Info("already has a result: acknowledged without running")
		w.ack(base, msg, job.Key)
		if w.hooks.skipped != nil {
			w.hooks.skipped(job.Key)
		}
		return
	}
	stopProgress := w.progress(msg, job.Key)
	defer stopProgress()
	res, temporary, out := w.execute(base, job, attempt)
	switch out {
	case requeue:
		log.Info("cut short by shutdown: back to the queue")
		w.settle(msg.Nak(), "nak", job.Key)
		return
	case retry:
		if w.maxDeliver <= 0 || attempt < w.maxDeliver { // <= 0: a consumer without a bound
			d := max(w.backoff(attempt), retryAfter(temporary))
			log.Info("temporary failure: retry later", "err", res.Error.Message, "delay", d)
			w.settle(msg.NakWithDelay(d), "nak", job.Key)
			return
		}
		last := res.Error
		res.Error = &Error{Kind: "dead", Message: fmt.Sprintf("failed on all %d deliveries; the last: %s", attempt, last.Message)}
		if !w.store(base, res, log) {
			return
		}
		w.deadLetter(base, DeadLetter{Key: job.Key, Seq: seq, Attempts: attempt, Reason: "temporary failures on every delivery", Error: last, Job: rawJob(msg.Data())})
		w.settle(msg.TermWithReason("dead letter"), "term", job.Key)
		return
	}
	if !w.store(base, res, log) {
		return // not stored: the job comes back after AckWait
	}
	if w.hooks.beforeAck != nil {
		w.hooks.beforeAck(job.Key)
	}
	if !res.OK { // a script error, a limit, a refused job: terminated, its reason in the server's advisory
		w.settle(msg.TermWithReason(res.Error.Kind+" error"), "term", job.Key)
		return
	}
	w.ack(base, msg, job.Key)
}

// store publishes res as its key's result, unless the key has one: the
// server checks that the key's subject is empty. It reports false if the
// result could not be stored (the job must not be acknowledged then).
func (w *Worker) store(ctx context.Context, res *Result, log *slog.Logger) bool {
	res.Time = time.Now().UTC()
	data, err := json.Marshal(res)
	if err != nil {
		log.Error("encoding the result", "err", err)
		return false
	}
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	_, err = w.js.Publish(pctx, w.names.ResultSubject(res.Key), data,
		jetstream.WithExpectStream(w.names.ResultsStream), jetstream.WithExpectLastSequencePerSubject(0))
	var ae *jetstream.APIError
	if errors.As(err, &ae) && (ae.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
		ae.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant) {
		log.Info("a result for this key was stored meanwhile; this one is dropped")
		return true
	}
	if err != nil {
		log.Warn("storing the result", "err", err)
		return false
	}
	return true
}

func (w *Worker) ack(ctx context.Context, msg jetstream.Msg, key string) {
	actx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	w.settle(msg.DoubleAck(actx), "ack", key)
}

func (w *Worker) settle(err error, what, key string) {
	if err != nil {
		w.log.Warn("could not "+what+" a job", "key", key, "err", err)
	}
}

// deadLetter publishes d on the dead-letter subject (stored once per key
// within the duplicates window).
func (w *Worker) deadLetter(ctx context.Context, d DeadLetter) {
	d.Time = time.Now().UTC()
	data, err := json.Marshal(d)
	if err == nil {
		opts := []jetstream.PublishOpt{jetstream.WithExpectStream(w.names.DeadStream)}
		if d.Key != "" {
			opts = append(opts, jetstream.WithMsgID(d.Key))
		}
		pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		_, err = w.js.Publish(pctx, w.names.Dead, data, opts...)
	}
	if err != nil {
		w.log.Error("publishing a dead letter", "key", d.Key, "seq", d.Seq, "err", err)
		return
	}
	w.log.Warn("dead letter", "key", d.Key, "seq", d.Seq, "attempts", d.Attempts, "reason", d.Reason)
}

// rawJob keeps a job's bytes in a dead letter: as they are when they are
// JSON, else as a JSON string.
func rawJob(data []byte) json.RawMessage {
	if json.Valid(data) {
		return json.RawMessage(data)
	}
	s, _ := json.Marshal(string(data))
	return s
}

// exhausted handles the server's advisory that a job was delivered
// MaxDeliver times without being settled (its workers died on it, or it
// outran AckWait each time): a dead letter, a "dead" result, and the job
// leaves the queue. One worker of the queue gets each advisory.
func (w *Worker) exhausted(ctx context.Context, m *nats.Msg) {
	var adv struct {
		Seq        uint64 `json:"stream_seq"`
		Deliveries int    `json:"deliveries"`
	}
	if err := json.Unmarshal(m.Data, &adv); err != nil || adv.Seq == 0 {
		return
	}
	raw, err := w.streams.jobs.GetMsg(ctx, adv.Seq)
	if err != nil {
		return // settled meanwhile
	}
	reason := fmt.Sprintf("not settled after %d deliveries (its worker stopped, or it outran the acknowledgement wait, each time)", adv.Deliveries)
	d := DeadLetter{Seq: adv.Seq, Attempts: adv.Deliveries, Reason: reason, Job: rawJob(raw.Data)}
	if job, err := decodeJob(raw.Data); err == nil {
		d.Key = job.Key
		if d.Key == "" {
			d.Key = fmt.Sprintf("seq-%d", adv.Seq)
		}
		res := &Result{Key: d.Key, Attempt: adv.Deliveries, Worker: w.opts.ID, Error: &Error{Kind: "dead", Message: reason}}
		if !w.store(ctx, res, w.log.With("key", d.Key)) {
			return
		}
	}
	w.deadLetter(ctx, d)
	if err := w.streams.jobs.DeleteMsg(ctx, adv.Seq); err != nil {
		w.log.Warn("removing an exhausted job", "seq", adv.Seq, "err", err)
	}
}

// progress tells the server, three times per AckWait, that the job is
// still being worked on, until the returned function is called.
func (w *Worker) progress(msg jetstream.Msg, key string) (stop func()) {
	every := max(w.ackWait/3, time.Millisecond)
	quit := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				if err := msg.InProgress(); err == nil && w.hooks.progress != nil {
					w.hooks.progress(key)
				}
			case <-quit:
				return
			}
		}
	})
	return func() { close(quit); wg.Wait() }
}

// backoff is the delay after the temporary failure of delivery attempt.
func (w *Worker) backoff(attempt int) time.Duration {
	b := w.opts.Backoff
	d := b[min(attempt-1, len(b)-1)]
	return time.Duration(float64(d) * (0.8 + 0.4*rand.Float64()))
}

// execute runs job and makes its result; the outcome says what to do with
// the message.
func (w *Worker) execute(base context.Context, job *Job, attempt int) (res *Result, temporary error, out outcome) {
	res = &Result{Key: job.Key, Attempt: attempt, Worker: w.opts.ID}
	refuse := func(format string, args ...any) (*Result, error, outcome) {
		res.Error = &Error{Kind: "job", Message: fmt.Sprintf(format, args...)}
		return res, nil, finished
	}
	src, chunk, err := w.resolve(job)
	if err != nil {
		return refuse("%v", err)
	}
	l := job.Limits
	mem := w.opts.Runtime.MemoryLimit
	switch {
	case l.Timeout < 0 || l.Instructions < 0 || l.Memory < 0 || l.Tokens < 0:
		return refuse("negative limits: %+v", l)
	case l.Timeout > w.opts.MaxTimeout:
		return refuse("the job asks for a timeout of %v; this worker allows at most %v", l.Timeout, w.opts.MaxTimeout)
	case w.opts.MaxInstructions > 0 && l.Instructions > w.opts.MaxInstructions:
		return refuse("the job asks for %d instructions; this worker allows at most %d", l.Instructions, w.opts.MaxInstructions)
	case mem > 0 && l.Memory > mem:
		return refuse("the job asks for %d bytes of memory; this worker's Runtimes have %d", l.Memory, mem)
	case w.opts.MaxTokens > 0 && l.Tokens > w.opts.MaxTokens:
		return refuse("the job asks for a budget of %d tokens; this worker allows at most %d", l.Tokens, w.opts.MaxTokens)
	case l.Tokens > math.MaxInt32:
		return refuse("a budget of %d tokens is out of range", l.Tokens)
	}
	timeout := w.opts.Timeout
	if l.Timeout > 0 {
		timeout = l.Timeout
	}

	r := &run{}
	token := w.runs.add(r)
	defer w.runs.remove(token)
	ctx, cancel := context.WithTimeout(context.WithValue(base, runKey{}, r), timeout)
	defer cancel()
	if l.Instructions > 0 {
		ctx = bridge.WithInstructionLimit(ctx, l.Instructions)
	}
	tokens := w.opts.MaxTokens // the budget of a job that sets none
	if l.Tokens > 0 {
		tokens = l.Tokens
	}
	if tokens > 0 {
		ctx = llm.WithTokenBudget(ctx, int(tokens))
	}
	ctx, meter := llm.WithUsageMeter(ctx)
	args := append([]any{token, int64(w.opts.OutputLimit), src, chunk}, job.Args...)
	if w.hooks.started != nil {
		w.hooks.started(job.Key, attempt)
	}
	start := time.Now()
	runner := runnerCall
	if w.opts.Runtime.Sandbox {
		runner = runnerLua
	}
	err = w.pool.RunString(ctx, "moonbridge worker", runner, args...)
	res.Usage.Duration = time.Since(start)

	r.mu.Lock()
	defer r.mu.Unlock()
	res.Output, res.OutputTruncated, res.Usage.OutputBytes = r.output, r.truncated, len(r.output)
	u := meter.Usage()
	res.Usage.Requests, res.Usage.PromptTokens, res.Usage.CompletionTokens = int64(u.Requests), int64(u.PromptTokens), int64(u.CompletionTokens)
	if err == nil {
		vals := r.values
		if vals == nil {
			vals = []any{}
		}
		data, jerr := json.Marshal(vals)
		if jerr != nil {
			res.Error = &Error{Kind: "runtime", Message: "the job's return values cannot be JSON-encoded: " + jerr.Error()}
			return res, nil, finished
		}
		res.OK, res.Values = true, data
		return res, nil, finished
	}
	if base.Err() != nil || errors.Is(err, bridge.ErrClosed) {
		return res, nil, requeue
	}
	res.Error = jobError(err)
	if res.Error.Kind == "bridge" && r.temporary != nil {
		return res, r.temporary, retry
	}
	return res, nil, finished
}

// jobError turns a run's error into a result's.
func jobError(err error) *Error {
	var ee *bridge.ExitError
	if errors.As(err, &ee) {
		return &Error{Kind: "exit", Message: fmt.Sprintf("os.exit(%d)", ee.Code), Code: ee.Code}
	}
	var le *bridge.LuaError
	if errors.As(err, &le) {
		return &Error{Kind: le.Kind, Message: le.Message, Op: le.Op, Traceback: le.Traceback}
	}
	return &Error{Kind: "runtime", Message: err.Error()}
}

// resolve returns the job's source and chunk name.
func (w *Worker) resolve(job *Job) (src, chunk string, err error) {
	switch {
	case job.Script != "" && job.Name != "":
		return "", "", errors.New("the job sets both script and name")
	case job.Script != "":
		src = job.Script
	case job.Name != "":
		file := job.Name + ".lua"
		if w.opts.Scripts == nil {
			return "", "", fmt.Errorf("script %q: this worker resolves no script names", job.Name)
		}
		if !fs.ValidPath(file) || strings.Contains(job.Name, "\\") {
			return "", "", fmt.Errorf("script %q: not a valid script name", job.Name)
		}
		b, err := fs.ReadFile(w.opts.Scripts, file)
		if err != nil {
			return "", "", fmt.Errorf("script %q: %w", job.Name, err)
		}
		src = string(b)
	default:
		return "", "", errors.New("the job has neither script nor name")
	}
	if strings.HasPrefix(src, "#") { // a shebang line, as lua and RunFile skip it
		if i := strings.IndexByte(src, '\n'); i >= 0 {
			src = "--" + src[i:]
		} else {
			src = ""
		}
	}
	switch {
	case job.Source != "":
		chunk = "@" + job.Source
	case job.Name != "":
		chunk = "@" + path.Clean(job.Name) + ".lua"
	default:
		chunk = "=job"
	}
	return src, chunk, nil
}

package worker

// The queue's streams, made when missing, and the client side: submitting
// jobs and waiting for their results.

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// QueueOptions configure the streams of a queue, for the Worker and the
// Client that create them when they are missing. Streams that exist are
// used as they are: an operator may create them beforehand (replicated on
// a cluster, with other limits), keeping the subjects and retention.
type QueueOptions struct {
	// Stream names the jobs stream and, derived from it, the others (see
	// QueueNames); DefaultStream when empty.
	Stream string
	// Replicas of each stream created (a cluster may want 3); 0 means 1.
	Replicas int
	// ResultTTL is how long results are kept; 0 keeps them. A job whose key
	// has no result any more (expired) runs again if submitted again.
	ResultTTL time.Duration
	// Duplicates is the window in which a job submitted twice with the
	// same key is stored once (JetStream's message-id deduplication); 0
	// means 2 minutes. Later copies still run at most once to a result:
	// a worker acknowledges, without running it, a job whose key has one.
	Duplicates time.Duration
}

// streams are the three streams of a queue.
type streams struct {
	jobs, results, dead jetstream.Stream
}

// ensureQueue returns the queue's streams, creating those that are
// missing.
func ensureQueue(ctx context.Context, js jetstream.JetStream, n Names, o QueueOptions) (streams, error) {
	replicas := max(o.Replicas, 1)
	dup := o.Duplicates
	if dup <= 0 {
		dup = 2 * time.Minute
	}
	cfgs := []jetstream.StreamConfig{{
		Name:        n.Stream,
		Description: "moonbridge script jobs",
		Subjects:    []string{n.Jobs},
		Retention:   jetstream.WorkQueuePolicy,
		Storage:     jetstream.FileStorage,
		Replicas:    replicas,
		Duplicates:  dup,
	}, {
		Name:              n.ResultsStream,
		Description:       "moonbridge job results, one per key",
		Subjects:          []string{n.Results + ".>"},
		Retention:         jetstream.LimitsPolicy,
		Storage:           jetstream.FileStorage,
		Replicas:          replicas,
		MaxMsgsPerSubject: 1,
		MaxAge:            o.ResultTTL,
		AllowDirect:       true,
	}, {
		Name:        n.DeadStream,
		Description: "moonbridge jobs that failed on every delivery",
		Subjects:    []string{n.Dead},
		Retention:   jetstream.LimitsPolicy,
		Storage:     jetstream.FileStorage,
		Replicas:    replicas,
		Duplicates:  dup,
	}}
	var out [3]jetstream.Stream
	for i, cfg := range cfgs {
		s, err := js.Stream(ctx, cfg.Name)
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			s, err = js.CreateStream(ctx, cfg)
			if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) { // another made it meanwhile
				s, err = js.Stream(ctx, cfg.Name)
			}
		}
		if err != nil {
			return streams{}, fmt.Errorf("worker: stream %s: %w", cfg.Name, err)
		}
		out[i] = s
	}
	return streams{out[0], out[1], out[2]}, nil
}

// lastResult reads key's result, or returns nil if it has none.
func lastResult(ctx context.Context, s jetstream.Stream, n Names, key string) (*Result, error) {
	m, err := s.GetLastMsgForSubject(ctx, n.ResultSubject(key))
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var r Result
	if err := json.Unmarshal(m.Data, &r); err != nil {
		return nil, fmt.Errorf("worker: result of %q: %w", key, err)
	}
	return &r, nil
}

// Client submits jobs to a queue and waits for their results.
type Client struct {
	js      jetstream.JetStream
	names   Names
	streams streams
}

// NewClient returns a client of the queue o describes on nc, creating its
// streams if they are missing (so jobs submitted before any worker runs
// are kept).
func NewClient(ctx context.Context, nc *nats.Conn, o QueueOptions) (*Client, error) {
	names, err := QueueNames(o.Stream)
	if err != nil {
		return nil, err
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	ss, err := ensureQueue(ctx, js, names, o)
	if err != nil {
		return nil, err
	}
	return &Client{js: js, names: names, streams: ss}, nil
}

// Names returns the queue's stream and subject names.
func (c *Client) Names() Names { return c.names }

// Submit enqueues job and returns its key (a random one if job.Key is
// empty).
func (c *Client) Submit(ctx context.Context, job Job) (string, error) {
	if job.Key == "" {
		var b [16]byte
		rand.Read(b[:])
		job.Key = hex.EncodeToString(b[:])
	}
	if len(job.Key) > MaxKeyLen {
		return "", fmt.Errorf("worker: key of %d bytes (at most %d)", len(job.Key), MaxKeyLen)
	}
	if (job.Script == "") == (job.Name == "") {
		return "", errors.New("worker: a job needs either Script or Name")
	}
	data, err := json.Marshal(job)
	if err != nil {
		return "", fmt.Errorf("worker: encoding the job: %w", err)
	}
	_, err = c.js.Publish(ctx, c.names.Jobs, data, jetstream.WithMsgID(job.Key), jetstream.WithExpectStream(c.names.Stream))
	if err != nil {
		return "", fmt.Errorf("worker: submitting job %q: %w", job.Key, err)
	}
	return job.Key, nil
}

// Lookup returns key's result, or nil if there is none yet.
func (c *Client) Lookup(ctx context.Context, key string) (*Result, error) {
	return lastResult(ctx, c.streams.results, c.names, key)
}

// Result waits for key's result, until ctx ends.
func (c *Client) Result(ctx context.Context, key string) (*Result, error) {
	if r, err := c.Lookup(ctx, key); err != nil || r != nil {
		return r, err
	}
	// Not there yet: follow the key's subject from its start, so a result
	// stored since the lookup is not missed.
	cons, err := c.js.OrderedConsumer(ctx, c.names.ResultsStream, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{c.names.ResultSubject(key)},
	})
	if err != nil {
		return nil, fmt.Errorf("worker: waiting for %q: %w", key, err)
	}
	it, err := cons.Messages()
	if err != nil {
		return nil, fmt.Errorf("worker: waiting for %q: %w", key, err)
	}
	defer it.Stop()
	stop := context.AfterFunc(ctx, it.Stop)
	defer stop()
	m, err := it.Next()
	if err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("worker: waiting for %q: %w", key, context.Cause(ctx))
		}
		return nil, fmt.Errorf("worker: waiting for %q: %w", key, err)
	}
	var r Result
	if err := json.Unmarshal(m.Data(), &r); err != nil {
		return nil, fmt.Errorf("worker: result of %q: %w", key, err)
	}
	return &r, nil
}

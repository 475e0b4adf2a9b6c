// LLM providers: client-side limits on concurrency, requests per minute
// and tokens per minute, shared by everyone using the wrapped provider.

package llm

import (
	"context"
	"sync"
	"time"
)

// Limits bound the requests a provider is sent. Zero fields are no limit.
type Limits struct {
	// Concurrency bounds the requests in flight at once.
	Concurrency int
	// RequestsPerMinute bounds the requests started in any minute.
	RequestsPerMinute int
	// TokensPerMinute bounds the tokens (prompt and completion) of the
	// requests started in any minute. Before a request is sent its cost is
	// guessed (a token per 4 bytes of prompt, plus MaxTokens); when it ends
	// the guess is replaced by the usage the server reports. A request
	// alone in its minute is always let through, whatever its guess.
	TokensPerMinute int
	// Clock measures the minute and waits; nil is real time.
	Clock Clock
}

// WithLimits returns p with requests held back to l. Requests wait in
// arrival order (first come, first served, so none starves), and the wait
// ends when the request's context does (the calling Lua task is
// suspended meanwhile, and its cancellation ends the wait). Every run of
// every Runtime (or Pool) that uses the returned provider shares the
// limits: wrap once and register the same value everywhere. Wrapped
// around WithRetry (or a provider's own retries), a retried request keeps
// its place; wrapped inside, each try queues anew.
func WithLimits(p Provider, l Limits) Provider {
	return &limited{p: p, l: l, clock: clockOr(l.Clock), changed: make(chan struct{})}
}

type limited struct {
	p     Provider
	l     Limits
	clock Clock

	mu       sync.Mutex
	queue    []*limitWaiter
	inflight int
	starts   []time.Time   // of requests in the last minute
	tokens   []*tokenEntry // of requests in the last minute
	changed  chan struct{} // closed, and replaced, at each change
}

// limitWaiter is a place in the queue. It must not be of size zero: pointers
// to zero-size values may all be equal.
type limitWaiter struct{ _ byte }

type tokenEntry struct {
	at time.Time
	n  int
}

func (l *limited) Generate(ctx context.Context, req Request) (Response, error) {
	entry, err := l.acquire(ctx, req)
	if err != nil {
		return Response{}, err
	}
	r, err := l.p.Generate(ctx, req)
	l.release(entry, &r.Usage)
	return r, err
}

func (l *limited) Stream(ctx context.Context, req Request, fn func(Chunk) error) error {
	entry, err := l.acquire(ctx, req)
	if err != nil {
		return err
	}
	var used *Usage
	err = l.p.Stream(ctx, req, func(c Chunk) error {
		if c.Done {
			used = c.Usage
		}
		return fn(c)
	})
	l.release(entry, used)
	return err
}

// estimate guesses a request's tokens before it is sent.
func estimate(req Request) int {
	n := len(req.Prompt)
	for _, m := range req.Messages {
		n += len(m.Content) + len(m.Role)
		for _, c := range m.ToolCalls {
			n += len(c.Arguments) + len(c.Name)
		}
	}
	for _, t := range req.Tools {
		n += len(t.Name) + len(t.Description) + len(t.Parameters)
	}
	return n/4 + req.MaxTokens
}

// acquire waits for the request's turn and its room under the limits.
func (l *limited) acquire(ctx context.Context, req Request) (*tokenEntry, error) {
	w := &limitWaiter{}
	cost := estimate(req)
	l.mu.Lock()
	l.queue = append(l.queue, w)
	l.signal() // for whoever watches the queue
	for {
		var wait time.Duration
		blocked := true
		if l.queue[0] == w {
			now := l.clock.Now()
			wait, blocked = l.room(now, cost)
			if !blocked {
				l.queue = l.queue[1:]
				l.inflight++
				l.starts = append(l.starts, now)
				e := &tokenEntry{at: now, n: cost}
				l.tokens = append(l.tokens, e)
				l.signal()
				l.mu.Unlock()
				return e, nil
			}
		}
		changed := l.changed
		l.mu.Unlock()
		var err error
		if wait > 0 {
			err = l.clock.Sleep(ctx, wait)
		} else {
			select {
			case <-changed:
			case <-ctx.Done():
				err = ctx.Err()
			}
		}
		l.mu.Lock()
		if err != nil {
			l.leave(w)
			l.mu.Unlock()
			return nil, err
		}
	}
}

// room reports whether a request of cost tokens may start now; when not,
// wait is how long until a minute's window frees room (0: until a request
// in flight ends).
func (l *limited) room(now time.Time, cost int) (wait time.Duration, blocked bool) {
	l.prune(now)
	if c := l.l.Concurrency; c > 0 && l.inflight >= c {
		return 0, true
	}
	if r := l.l.RequestsPerMinute; r > 0 && len(l.starts) >= r {
		return l.starts[len(l.starts)-r].Add(time.Minute).Sub(now), true
	}
	if t := l.l.TokensPerMinute; t > 0 && len(l.tokens) > 0 {
		sum := cost
		for _, e := range l.tokens {
			sum += e.n
		}
		if sum > t {
			return l.tokens[0].at.Add(time.Minute).Sub(now), true
		}
	}
	return 0, false
}

// prune forgets requests started a minute or more ago.
func (l *limited) prune(now time.Time) {
	cut := now.Add(-time.Minute)
	i := 0
	for i < len(l.starts) && !l.starts[i].After(cut) {
		i++
	}
	l.starts = l.starts[i:]
	i = 0
	for i < len(l.tokens) && !l.tokens[i].at.After(cut) {
		i++
	}
	l.tokens = l.tokens[i:]
}

// release ends a request: its slot frees, its guess becomes its usage.
func (l *limited) release(e *tokenEntry, u *Usage) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.inflight--
	if u != nil && u.PromptTokens+u.CompletionTokens > 0 {
		e.n = u.PromptTokens + u.CompletionTokens
	}
	l.signal()
}

// leave takes a waiter that gave up out of the queue.
func (l *limited) leave(w *limitWaiter) {
	for i, x := range l.queue {
		if x == w {
			l.queue = append(l.queue[:i], l.queue[i+1:]...)
			break
		}
	}
	l.signal()
}

// signal wakes every waiter to look again; called with mu held.
func (l *limited) signal() {
	close(l.changed)
	l.changed = make(chan struct{})
}

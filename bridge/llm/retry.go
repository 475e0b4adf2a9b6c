// LLM providers: retrying a request that failed for a reason that may
// pass (a rate limit, an overloaded or restarting server, a dropped
// connection), with exponential backoff and jitter, honouring Retry-After.

package llm

import (
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"syscall"
	"time"
)

// Clock is the time a retry or a limit waits by. Tests inject one that
// records the waits instead of sleeping; nil means real time.
type Clock interface {
	Now() time.Time
	// Sleep waits d, or until ctx is done (then it returns ctx's error).
	Sleep(ctx context.Context, d time.Duration) error
}

type realClock struct{}

func (realClock) Now() time.Time { return time.Now() }

func (realClock) Sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func clockOr(c Clock) Clock {
	if c == nil {
		return realClock{}
	}
	return c
}

// RetryPolicy says when and how a failed request is tried again. The zero
// value is the default: 3 attempts (two retries, as openai-go does), a
// first backoff of 500 ms doubling up to 8 s, each with jitter (a random
// wait between half and all of it), Retry-After honoured up to 60 s.
//
// A request is retried after a connection error (refused, reset, closed
// before the reply) or an HTTP status of 408, 409, 429 or 500 and above;
// never after its context ended, a 4xx that says the request is wrong,
// or an error reported inside a stream. A stream is retried only until
// its first chunk was handed on: after that the reader has seen part of a
// reply, and the error is returned.
type RetryPolicy struct {
	// Attempts is the number of tries in all, the first included: 0 means
	// 3; 1 means no retry.
	Attempts int
	// BaseDelay is the wait before the first retry (0: 500 ms); it doubles
	// for each further retry, up to MaxDelay (0: 8 s).
	BaseDelay time.Duration
	MaxDelay  time.Duration
	// MaxRetryAfter bounds the server's Retry-After that is honoured
	// (0: 60 s); a longer one, or none, means the backoff above.
	MaxRetryAfter time.Duration
	// Clock waits between tries; nil is real time.
	Clock Clock
}

func (p RetryPolicy) attempts() int {
	if p.Attempts <= 0 {
		return 3
	}
	return p.Attempts
}

// delay is the wait before retry number n (1 for the first retry) after err.
func (p RetryPolicy) delay(n int, err error) time.Duration {
	maxRA := p.MaxRetryAfter
	if maxRA <= 0 {
		maxRA = 60 * time.Second
	}
	var ae *APIError
	if errors.As(err, &ae) && ae.RetryAfter > 0 && ae.RetryAfter <= maxRA {
		return ae.RetryAfter
	}
	base, top := p.BaseDelay, p.MaxDelay
	if base <= 0 {
		base = 500 * time.Millisecond
	}
	if top <= 0 {
		top = 8 * time.Second
	}
	d := base
	for i := 1; i < n && d < top; i++ {
		d *= 2
	}
	d = min(d, top)
	return d/2 + time.Duration(rand.Int64N(int64(d/2)+1))
}

// Retryable reports whether err is worth trying again: a connection error
// or an *APIError with status 408, 409, 429 or >= 500. Context errors are
// not.
func Retryable(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	var ae *APIError
	if errors.As(err, &ae) {
		switch s := ae.StatusCode; {
		case s == http.StatusRequestTimeout, s == http.StatusConflict, s == http.StatusTooManyRequests:
			return true
		case s >= 500:
			return true
		}
		return false
	}
	var oe *net.OpError
	return errors.As(err, &oe) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.ECONNREFUSED) ||
		errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) || errors.Is(err, ErrTruncated)
}

// do runs try until it succeeds, fails for good, or the attempts are
// spent. started reports whether the try handed anything on (a stream's
// first chunk): then its error is final.
func (p RetryPolicy) do(ctx context.Context, try func() (started bool, err error)) error {
	clock := clockOr(p.Clock)
	n := p.attempts()
	for i := 1; ; i++ {
		started, err := try()
		if err == nil || started || i >= n || ctx.Err() != nil || !Retryable(err) {
			return err
		}
		if serr := clock.Sleep(ctx, p.delay(i, err)); serr != nil {
			return err // cancelled while waiting: the failure is the news
		}
	}
}

// WithRetry returns p with failed requests retried by policy (see
// RetryPolicy). The HTTP providers already retry by their options'
// Retry policy; wrap other providers, or set Attempts: 1 there and wrap.
func WithRetry(p Provider, policy RetryPolicy) Provider {
	return &retrying{p: p, policy: policy}
}

type retrying struct {
	p      Provider
	policy RetryPolicy
}

func (r *retrying) Generate(ctx context.Context, req Request) (Response, error) {
	var resp Response
	err := r.policy.do(ctx, func() (bool, error) {
		var err error
		resp, err = r.p.Generate(ctx, req)
		return false, err
	})
	return resp, err
}

func (r *retrying) Stream(ctx context.Context, req Request, fn func(Chunk) error) error {
	return r.policy.do(ctx, func() (bool, error) {
		started := false
		err := r.p.Stream(ctx, req, func(c Chunk) error {
			started = true
			return fn(c)
		})
		return started, err
	})
}

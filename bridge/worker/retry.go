package worker

// Telling a temporary failure (try the job again later) from a final one.
// A Go error that a bridge function returns reaches the run's error only
// as text, so the worker learns of temporary ones where they happen: in
// the bridge functions, wrapped with WatchFunc or WatchStream, and in the
// LLM provider, wrapped with WatchProvider (Options.LLM is wrapped for
// you).

import (
	"context"
	"errors"
	"net"
	"net/http"
	"time"

	"github.com/moonbridge/moonbridge/bridge"
	"github.com/moonbridge/moonbridge/bridge/llm"
)

// temporaryError marks an error as temporary.
type temporaryError struct{ err error }

func (e temporaryError) Error() string   { return e.err.Error() }
func (e temporaryError) Unwrap() error   { return e.err }
func (e temporaryError) Temporary() bool { return true }

// Temporary marks err as a temporary failure: returned by a watched bridge
// function, it makes the job's failure retryable. Temporary(nil) is nil.
func Temporary(err error) error {
	if err == nil {
		return nil
	}
	return temporaryError{err}
}

// IsTemporary reports whether err is a temporary failure: marked with
// Temporary (or any error with a Temporary() bool method saying so), an
// LLM server's reply with status 408, 409, 429 or 5xx (*llm.APIError), or
// a network timeout.
func IsTemporary(err error) bool {
	var t interface{ Temporary() bool }
	if errors.As(err, &t) && t.Temporary() {
		return true
	}
	var ae *llm.APIError
	if errors.As(err, &ae) {
		s := ae.StatusCode
		return s == http.StatusRequestTimeout || s == http.StatusConflict ||
			s == http.StatusTooManyRequests || s >= 500
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// retryAfter is how long the server behind err asked to wait (an LLM
// server's Retry-After), or 0.
func retryAfter(err error) time.Duration {
	var ae *llm.APIError
	if errors.As(err, &ae) {
		return ae.RetryAfter
	}
	return 0
}

// note records a temporary error in the run ctx belongs to, if any.
func note(ctx context.Context, err error) {
	if err == nil || !IsTemporary(err) {
		return
	}
	if r := runOf(ctx); r != nil {
		r.mu.Lock()
		if r.temporary == nil {
			r.temporary = err
		}
		r.mu.Unlock()
	}
}

// WatchFunc wraps a bridge function so that a temporary error it returns
// (see IsTemporary) makes the job's failure retryable. Register the result
// in Options.Setup: rt.RegisterFunc("kv.get", worker.WatchFunc(get)).
// Outside a worker's run it changes nothing.
func WatchFunc(fn bridge.Func) bridge.Func {
	return func(ctx context.Context, args bridge.Args) ([]any, error) {
		vals, err := fn(ctx, args)
		note(ctx, err)
		return vals, err
	}
}

// WatchStream is WatchFunc for a streaming bridge function.
func WatchStream(fn bridge.StreamFunc) bridge.StreamFunc {
	return func(ctx context.Context, args bridge.Args, emit func(any) error) error {
		err := fn(ctx, args, emit)
		note(ctx, err)
		return err
	}
}

// WatchProvider wraps an LLM provider so that a temporary error of its
// (a 429 or 5xx reply, a timeout) makes the job's failure retryable.
func WatchProvider(p llm.Provider) llm.Provider { return watched{p} }

type watched struct{ p llm.Provider }

func (w watched) Generate(ctx context.Context, req llm.Request) (llm.Response, error) {
	r, err := w.p.Generate(ctx, req)
	note(ctx, err)
	return r, err
}

func (w watched) Stream(ctx context.Context, req llm.Request, fn func(llm.Chunk) error) error {
	err := w.p.Stream(ctx, req, fn)
	note(ctx, err)
	return err
}

package bridge

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sync/atomic"

	"github.com/moonbridge/moonbridge/core"
)

// Script is a chunk loaded once whose functions the host then calls many
// times — the load-once-then-Call pattern of a request handler. Load runs
// the chunk with globals of its own (over the Runtime's: under
// Options.Sandbox, over the read-only base every run reads) and keeps
// them; Script.Call finds its function there. Runs of other scripts do not
// see these globals, and the script does not see theirs: under the
// sandbox, this is how a host keeps a handler script while running
// tenants' scripts on the same Runtime. A Script from Pool.Load was loaded
// into every Runtime of the Pool, and each Call goes to the least loaded.
//
// A Script holds its globals until Close (or until it is garbage
// collected, or its Runtime closes). Its methods are safe from any
// goroutine.
type Script struct {
	name   string
	parts  []scriptPart // one per Runtime: one, or a Pool's
	pool   *Pool        // nil for a Runtime's
	closed atomic.Bool
}

type scriptPart struct {
	rt *Runtime
	id int64
}

// ErrScriptClosed is returned by the Call of a Script that was closed.
var ErrScriptClosed = fmt.Errorf("moonbridge: the script is closed: %w", ErrClosed)

// Load runs src as a run of its own, like RunString (name appears in
// errors and tracebacks, args are the chunk's "..."), and keeps the
// globals it defined as a Script whose functions Script.Call runs.
func (rt *Runtime) Load(ctx context.Context, name, src string, args ...any) (*Script, error) {
	part, err := rt.load(ctx, "string", name, "="+name, []byte(src), args)
	if err != nil {
		return nil, err
	}
	return newScript(name, []scriptPart{part}, nil), nil
}

// LoadFile is Load of the Lua file at path (read as RunFile reads it).
func (rt *Runtime) LoadFile(ctx context.Context, path string, args ...any) (*Script, error) {
	src, err := readChunkFile(path)
	if err != nil {
		return nil, err
	}
	part, err := rt.load(ctx, "file", path, "@"+filepath.Clean(path), src, args)
	if err != nil {
		return nil, err
	}
	return newScript(path, []scriptPart{part}, nil), nil
}

// load runs the chunk keeping its globals; on failure they are dropped.
func (rt *Runtime) load(ctx context.Context, what, name, chunk string, src []byte, args []any) (scriptPart, error) {
	ctx, err := rt.beginRun(ctx)
	if err != nil {
		return scriptPart{}, err
	}
	ctx, span := rt.startRun(ctx, what, name)
	id, err := rt.loop.RunChunkEnv(ctx, chunk, src, args, core.Env{Keep: true})
	err = rt.wrap(err, ctx)
	endRun(span, err)
	if err != nil {
		if id != 0 {
			rt.loop.DropScript(context.WithoutCancel(ctx), id) // may have been kept before the run failed
		}
		return scriptPart{}, err
	}
	return scriptPart{rt: rt, id: id}, nil
}

func newScript(name string, parts []scriptPart, pool *Pool) *Script {
	s := &Script{name: name, parts: parts, pool: pool}
	// A Script nobody holds lets its globals go: the Runtime would keep
	// them forever otherwise.
	runtime.AddCleanup(s, dropParts, parts)
	return s
}

func dropParts(parts []scriptPart) {
	for _, p := range parts {
		p.rt.loop.DropScript(context.Background(), p.id) // ErrClosed after Close: nothing to drop
	}
}

// Name is the name the script was loaded under.
func (s *Script) Name() string { return s.name }

// Call runs the script's function fn (a global the chunk defined, else a
// global of the Runtime) with args as a new task, as Runtime.Call does.
func (s *Script) Call(ctx context.Context, fn string, args ...any) ([]any, error) {
	if s.closed.Load() {
		return nil, ErrScriptClosed
	}
	part := s.parts[0]
	if s.pool != nil {
		i, err := s.pool.acquire()
		if err != nil {
			return nil, err
		}
		defer s.pool.release(i)
		part = s.parts[i]
	}
	rt := part.rt
	ctx, err := rt.beginRun(ctx)
	if err != nil {
		return nil, err
	}
	ctx, span := rt.startRun(ctx, "call", fn)
	vals, err := rt.loop.CallEnv(ctx, fn, args, core.Env{Script: part.id})
	err = rt.wrap(err, ctx)
	if errors.Is(err, ErrClosed) && s.closed.Load() {
		err = ErrScriptClosed
	}
	endRun(span, err)
	return vals, err
}

// Close lets the script's globals go; later Calls return ErrScriptClosed.
// Calls in progress finish. It is idempotent.
func (s *Script) Close() error {
	if s.closed.Swap(true) {
		return nil
	}
	var errs []error
	for _, p := range s.parts {
		if err := p.rt.loop.DropScript(context.Background(), p.id); err != nil && !errors.Is(err, ErrClosed) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Load loads src into every Runtime of the Pool (Runtime.Load); Calls of
// the Script go to the least loaded Runtime.
func (p *Pool) Load(ctx context.Context, name, src string, args ...any) (*Script, error) {
	if p.closed.Load() {
		return nil, ErrClosed
	}
	parts := make([]scriptPart, 0, len(p.rts))
	for i, rt := range p.rts {
		part, err := rt.load(ctx, "string", name, "="+name, []byte(src), args)
		if err != nil {
			dropParts(parts)
			return nil, fmt.Errorf("moonbridge: loading %s into Runtime %d of %d: %w", name, i, len(p.rts), err)
		}
		parts = append(parts, part)
	}
	return newScript(name, parts, p), nil
}

// readChunkFile reads a Lua file as lua does: a first line starting with
// '#' is skipped (kept as a comment, so line numbers stay right).
func readChunkFile(path string) ([]byte, error) {
	src, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("moonbridge: %w", err)
	}
	if len(src) > 0 && src[0] == '#' {
		for i, b := range src {
			if b == '\n' {
				if i+1 < len(src) && src[i+1] == 0x1b { // a precompiled chunk, as lua reads one
					return src[i+1:], nil
				}
				return append([]byte("--"), src[i:]...), nil
			}
		}
		return nil, nil
	}
	return src, nil
}

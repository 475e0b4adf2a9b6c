package bridge

// Run-scoped state: a store that lives as long as one run (RunString,
// RunFile or Call), reachable from the ctx of every bridge call the run
// makes; and preludes, Lua chunks that run once before the next run.

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/moonbridge/moonbridge/core"
	"github.com/moonbridge/moonbridge/internal/llmhook"
)

// RunStore is a key→value store scoped to one run: RunString, RunFile and
// Call each make a fresh one, and every bridge function the run calls
// finds it with RunValues(ctx). Keys are compared as map keys are; use an
// unexported type, as with context.WithValue, so packages cannot collide.
// It is safe for concurrent use: a run's bridge functions run in goroutines
// of their own. Package llm keeps a run's token usage and budget here.
type RunStore struct {
	mu sync.Mutex
	m  map[any]any
}

// Load returns the value stored under key.
func (s *RunStore) Load(key any) (value any, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	value, ok = s.m[key]
	return value, ok
}

// LoadOrStore returns the value stored under key when there is one
// (loaded true); otherwise it stores value and returns it.
func (s *RunStore) LoadOrStore(key, value any) (actual any, loaded bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if v, ok := s.m[key]; ok {
		return v, true
	}
	if s.m == nil {
		s.m = map[any]any{}
	}
	s.m[key] = value
	return value, false
}

// Store sets the value under key.
func (s *RunStore) Store(key, value any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m == nil {
		s.m = map[any]any{}
	}
	s.m[key] = value
}

// RunValues returns the store of the run that ctx belongs to: the ctx given
// to a bridge function (not an Inline one, whose ctx is the Runtime's), or
// one derived from it. It returns nil outside a run.
func RunValues(ctx context.Context) *RunStore {
	s, _ := ctx.Value(runStoreKey{}).(*RunStore)
	return s
}

type runStoreKey struct{}

// runCtx is a run's context: the caller's, plus the run's store, in one
// allocation (the store's map is made on first use).
type runCtx struct {
	context.Context
	store RunStore
}

func (c *runCtx) Value(key any) any {
	if key == (runStoreKey{}) {
		return &c.store
	}
	return c.Context.Value(key)
}

// beginRun gives a run its context, with a fresh RunStore, after running
// the preludes added since the last run.
func (rt *Runtime) beginRun(ctx context.Context) (context.Context, error) {
	if rt.preludes.pending.Load() != 0 {
		if err := rt.runPreludes(ctx); err != nil {
			return ctx, err
		}
	}
	return &runCtx{Context: ctx}, nil
}

// preludes are Lua chunks that run once, each as a run of its own, before
// the next RunString, RunFile or Call starts: package llm builds the Lua
// half of a module it registers this way, so registering runs no Lua (it
// would have to wait for the loop, with no context to bound the wait).
type preludes struct {
	pending atomic.Int32
	mu      sync.Mutex // held while preludes run: later runs wait for them
	list    []prelude
}

type prelude struct{ name, src string }

func (rt *Runtime) addPrelude(name, src string) {
	rt.preludes.mu.Lock()
	defer rt.preludes.mu.Unlock()
	rt.preludes.list = append(rt.preludes.list, prelude{name, src})
	rt.preludes.pending.Store(int32(len(rt.preludes.list)))
}

// runPreludes runs the pending preludes in the order they were added. One
// that fails stays pending, and its error is the run's.
func (rt *Runtime) runPreludes(ctx context.Context) error {
	p := &rt.preludes
	p.mu.Lock()
	defer p.mu.Unlock()
	for len(p.list) > 0 {
		first := p.list[0]
		_, err := rt.loop.RunChunkEnv(ctx, "="+first.name, []byte(first.src), nil, core.Env{Internal: true})
		if err := rt.wrap(err, ctx); err != nil {
			return fmt.Errorf("moonbridge: %s: %w", first.name, err)
		}
		p.list = p.list[1:]
		p.pending.Store(int32(len(p.list)))
	}
	return nil
}

func init() {
	llmhook.SetPrelude(func(rt any, name, src string) { rt.(*Runtime).addPrelude(name, src) })
}

// RegisterLLM makes p, an llm.Provider, available to Lua as the module
// name, with options from package llm (llm.Budget(n)); it is
// llm.Register(rt, name, p, opts...), which documents the Lua module.
//
// p and opts are typed any so that package bridge does not import
// bridge/llm: a program that never uses an LLM links neither its HTTP
// clients nor the local generator's corpus. The price is that the compiler
// cannot check the arguments: RegisterLLM returns an error when p is not
// an llm.Provider, or when package llm is not linked into the program
// (import it, as any program holding a provider does).
func (rt *Runtime) RegisterLLM(name string, p any, opts ...any) error {
	register := llmhook.Get()
	if register == nil {
		return fmt.Errorf("moonbridge: RegisterLLM %q: package github.com/moonbridge/moonbridge/bridge/llm is not linked into the program; import it", name)
	}
	return register(rt, name, p, opts)
}

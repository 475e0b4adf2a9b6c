// Per-run token accounting: llm.usage() in Lua, UsageMeter in Go, and the
// per-run token budget.

package llm

import (
	"context"
	"fmt"
	"sync"

	"github.com/moonbridge/moonbridge/bridge"
)

// Totals adds up the requests made and the tokens they used, as servers
// report them (a server that reports no usage adds a request and no
// tokens).
type Totals struct {
	Requests         int
	PromptTokens     int
	CompletionTokens int
}

// Tokens is PromptTokens + CompletionTokens.
func (t Totals) Tokens() int { return t.PromptTokens + t.CompletionTokens }

func (t *Totals) add(u Usage) {
	t.Requests++
	t.PromptTokens += u.PromptTokens
	t.CompletionTokens += u.CompletionTokens
}

// UsageMeter adds up what the LLM modules' requests under a context used.
// It is safe for concurrent use.
type UsageMeter struct {
	mu sync.Mutex
	t  Totals
}

// Usage returns the totals so far.
func (m *UsageMeter) Usage() Totals {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.t
}

func (m *UsageMeter) add(u Usage) {
	m.mu.Lock()
	m.t.add(u)
	m.mu.Unlock()
}

type meterKey struct{}

// WithUsageMeter returns a context carrying a new meter: give it to
// RunString, RunFile or Call, and the meter adds up every request that
// run's scripts make through a registered LLM module (the same figures as
// llm.usage() in the script). For a job queue, one meter per job:
//
//	ctx, meter := llm.WithUsageMeter(ctx)
//	err := rt.RunString(ctx, "job", src)
//	log.Printf("job used %d tokens", meter.Usage().Tokens())
func WithUsageMeter(ctx context.Context) (context.Context, *UsageMeter) {
	m := &UsageMeter{}
	return context.WithValue(ctx, meterKey{}, m), m
}

type budgetKey struct{}

// WithTokenBudget returns a context that gives the run it is passed to a
// budget of n tokens, replacing the module's Budget(n) for that run (0
// means none). See Budget.
func WithTokenBudget(ctx context.Context, n int) context.Context {
	return context.WithValue(ctx, budgetKey{}, n)
}

// runUsage is a run's accounting for one module, kept in the run's
// bridge.RunStore.
type runUsage struct {
	mu     sync.Mutex
	t      Totals
	budget int
}

type runUsageKey struct{ m *module }

// runState returns the run's accounting for m, or nil outside a run (an
// Inline call, or a call from Go).
func runState(ctx context.Context, m *module) *runUsage {
	s := bridge.RunValues(ctx)
	if s == nil {
		return nil
	}
	if v, ok := s.Load(runUsageKey{m}); ok {
		return v.(*runUsage)
	}
	budget := m.cfg.budget
	if n, ok := ctx.Value(budgetKey{}).(int); ok {
		budget = n
	}
	v, _ := s.LoadOrStore(runUsageKey{m}, &runUsage{budget: budget})
	return v.(*runUsage)
}

// check returns the Lua error a request raises when the run's budget is
// spent, or nil.
func (r *runUsage) check(module string) []any {
	if r == nil {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.budget <= 0 || r.t.Tokens() < r.budget {
		return nil
	}
	return []any{false, map[string]any{
		"kind": "limit", "op": "tokens",
		"message": fmt.Sprintf("%s: the run's token budget of %d is spent (%d used)", module, r.budget, r.t.Tokens()),
	}}
}

// add counts one request, in the run and in the context's meter.
func (r *runUsage) add(ctx context.Context, u Usage) {
	if m, ok := ctx.Value(meterKey{}).(*UsageMeter); ok {
		m.add(u)
	}
	if r == nil {
		return
	}
	r.mu.Lock()
	r.t.add(u)
	r.mu.Unlock()
}

func (r *runUsage) totals() Totals {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.t
}

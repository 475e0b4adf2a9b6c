package bridge

import (
	"context"
	"errors"
	"fmt"
	"math"
	"runtime"
	"sync"
	"sync/atomic"
)

// Pool is a fixed set of Runtimes set up the same way, for a program that
// wants more than one core's worth of Lua. Call, RunString and RunFile go
// to the Runtime with the fewest of the Pool's calls and runs in flight;
// among equally loaded ones, to each in turn. Every method is safe from any
// goroutine.
//
// The Runtimes share no Lua state: a global set by a run on one of them is
// not seen by the others, and two Calls may land on different Runtimes. A
// Pool suits handlers that keep their state in locals or pass it in
// arguments. State the Runtimes must share lives in Go: register, in
// setup, Go functions that close over the shared value (an atomic counter,
// a sync.Map, a database), so that every Runtime calls the same ones.
type Pool struct {
	rts  []*Runtime
	load []poolLoad
	next atomic.Uint64 // where the next search for the least loaded starts

	closed    atomic.Bool
	closeOnce sync.Once
	closeErr  error
}

// poolLoad is one Runtime's count of calls and runs in flight, on a cache
// line of its own: Runtimes busy on different cores would otherwise slow
// each other down through their counters.
type poolLoad struct {
	n atomic.Int64
	_ [56]byte
}

// NewPool creates n Runtimes with opts (n = 0: one per GOMAXPROCS) and
// calls setup on each in turn, if setup is not nil: the place to register
// Go functions and to run the script that defines the globals Call will
// use. If creating a Runtime or its setup fails, NewPool closes those
// already created and returns the error, naming the Runtime's index.
func NewPool(n int, opts Options, setup func(*Runtime) error) (*Pool, error) {
	if n < 0 {
		return nil, fmt.Errorf("moonbridge: NewPool: %d Runtimes (want 0, for GOMAXPROCS, or more)", n)
	}
	if n == 0 {
		n = runtime.GOMAXPROCS(0)
	}
	p := &Pool{rts: make([]*Runtime, 0, n), load: make([]poolLoad, n)}
	for i := range n {
		rt, err := New(opts)
		if err != nil {
			err = fmt.Errorf("moonbridge: NewPool: creating Runtime %d of %d: %w", i, n, err)
			return nil, errors.Join(err, p.closeAll())
		}
		p.rts = append(p.rts, rt)
		if setup == nil {
			continue
		}
		if err := setupRuntime(setup, rt); err != nil {
			err = fmt.Errorf("moonbridge: NewPool: setup of Runtime %d of %d: %w", i, n, err)
			return nil, errors.Join(err, p.closeAll())
		}
	}
	return p, nil
}

// setupRuntime runs setup, turning a panic into an error: the Runtimes
// created so far must still be closed.
func setupRuntime(setup func(*Runtime) error, rt *Runtime) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("panic: %v", r)
		}
	}()
	return setup(rt)
}

// Len returns the number of Runtimes in the Pool.
func (p *Pool) Len() int { return len(p.rts) }

// acquire picks the least loaded Runtime and counts one more in flight on
// it. The search starts one further each time, so that equally loaded
// Runtimes take turns; an idle one ends the search at once.
func (p *Pool) acquire() (int, error) {
	if p.closed.Load() {
		return 0, ErrClosed
	}
	n := uint64(len(p.rts))
	start := p.next.Add(1) - 1
	best, least := 0, int64(math.MaxInt64)
	for i := range n {
		j := int((start + i) % n)
		if l := p.load[j].n.Load(); l < least {
			best, least = j, l
			if l == 0 {
				break
			}
		}
	}
	p.load[best].n.Add(1)
	return best, nil
}

func (p *Pool) release(i int) { p.load[i].n.Add(-1) }

// Call runs the Lua global function fn with args as a task on the least
// loaded Runtime and returns its results, as Runtime.Call does.
func (p *Pool) Call(ctx context.Context, fn string, args ...any) ([]any, error) {
	i, err := p.acquire()
	if err != nil {
		return nil, err
	}
	defer p.release(i)
	return p.rts[i].Call(ctx, fn, args...)
}

// RunString runs src on the least loaded Runtime, as Runtime.RunString
// does. Globals it sets stay on that Runtime: define the ones every
// Runtime needs in NewPool's setup.
func (p *Pool) RunString(ctx context.Context, name, src string, args ...any) error {
	i, err := p.acquire()
	if err != nil {
		return err
	}
	defer p.release(i)
	return p.rts[i].RunString(ctx, name, src, args...)
}

// RunFile runs the Lua file at path on the least loaded Runtime, as
// Runtime.RunFile does.
func (p *Pool) RunFile(ctx context.Context, path string, args ...any) error {
	i, err := p.acquire()
	if err != nil {
		return err
	}
	defer p.release(i)
	return p.rts[i].RunFile(ctx, path, args...)
}

// Close closes every Runtime, at the same time, and returns their errors
// joined, each naming its Runtime's index. Calls and runs in flight end
// with ErrClosed, later ones fail with it. Close is idempotent: later
// calls return the first one's result.
func (p *Pool) Close() error {
	p.closeOnce.Do(func() {
		p.closed.Store(true)
		p.closeErr = p.closeAll()
	})
	return p.closeErr
}

// closeAll closes the Runtimes created so far, concurrently: each Close
// may wait up to its CloseGrace for bridge functions to return.
func (p *Pool) closeAll() error {
	errs := make([]error, len(p.rts))
	var wg sync.WaitGroup
	for i, rt := range p.rts {
		wg.Go(func() {
			if err := rt.Close(); err != nil {
				errs[i] = fmt.Errorf("Runtime %d: %w", i, err)
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

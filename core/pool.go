package core

/*
#include "buf.h"
#include "call.h"
*/
import "C"

import (
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// pool runs ordinary bridge calls on reusable goroutines. A goroutine per
// call costs its creation and a trip through the scheduler's queues each
// time — about a microsecond here, most of a round trip. Workers instead
// take calls from a FIFO until it is empty, and as many run at once as
// there are Ps. A call may block for as long as it likes: while calls
// wait, a monitor looks every stall interval for workers that have been
// inside one call longer than that, and adds as many workers as it finds,
// so there are always as many unblocked workers as Ps, and a call waiting
// for another queued call cannot deadlock. A function seen blocking so is
// marked: its calls waiting in the FIFO, and from then on all its calls,
// run on a goroutine of their own (function.blocks) — a goroutine's start
// is nothing beside a wait, and thousands of calls that wait on the
// network or a timer then all start at once instead of a pool's worth at a
// time.
type pool struct {
	loop *Loop

	mu      sync.Mutex
	jobs    []job // FIFO: jobs[head:] are waiting
	head    int
	idle    int       // parked workers not yet kicked
	waking  int       // workers kicked or started that have not yet looked for a call
	all     []*worker // every worker, parked or not
	watched bool      // the monitor is running

	// tick counts the monitor's intervals, from 1. A worker notes the tick
	// its call began in, which costs a load where a clock reading costs a
	// system call's worth on a virtual machine; a call that began two
	// ticks ago has run for at least an interval.
	tick atomic.Int64

	kick chan struct{} // one value wakes one parked worker
}

// worker is one pool goroutine; began is the tick its current call began
// in, 0 between calls.
type worker struct {
	began atomic.Int64
	f     *function // the function of its current call (p.mu)
	index int       // in pool.all
}

type job struct {
	f   *function
	c   *C.mb_call
	ctx *callCtx
}

const (
	poolStall   = 100 * time.Microsecond // a call running longer counts as blocked
	poolMaxIdle = 256                    // parked workers beyond this leave
	poolQuick   = 64                     // quick calls in a row that unmark a function
)

func newPool(l *Loop) *pool {
	p := &pool{loop: l, kick: make(chan struct{}, 2*poolMaxIdle)}
	p.tick.Store(1)
	return p
}

// submit queues calls and makes sure enough workers run them.
func (p *pool) submit(js []job) {
	p.mu.Lock()
	p.jobs = append(p.jobs, js...)
	want := min(len(p.jobs)-p.head, runtime.GOMAXPROCS(0))
	for active := len(p.all) - p.idle; active < want; active++ {
		p.wakeOne()
	}
	if !p.watched {
		p.watched = true
		go p.monitor()
	}
	p.mu.Unlock()
}

// wakeOne kicks a parked worker, or starts one. p.mu is held.
func (p *pool) wakeOne() {
	p.waking++
	if p.idle > 0 {
		p.idle--
		p.kick <- struct{}{}
		return
	}
	w := &worker{index: len(p.all)}
	p.all = append(p.all, w)
	go p.work(w)
}

// next takes the oldest waiting call; ok is false when there is none, and
// then the worker is counted idle (or, with enough idle already, leaves).
// woke says the worker comes from wakeOne (started, or kicked).
func (p *pool) next(w *worker, woke bool) (j job, ok, leave bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if woke {
		p.waking--
	}
	if p.head < len(p.jobs) {
		j = p.jobs[p.head]
		p.jobs[p.head] = job{}
		p.head++
		if p.head == len(p.jobs) {
			p.jobs, p.head = p.jobs[:0], 0
		}
		w.began.Store(p.tick.Load())
		w.f = j.f
		return j, true, false
	}
	w.began.Store(0)
	if p.idle >= poolMaxIdle {
		last := p.all[len(p.all)-1]
		p.all[w.index], last.index = last, w.index
		p.all = p.all[:len(p.all)-1]
		return j, false, true
	}
	p.idle++
	return j, false, false
}

func (p *pool) work(w *worker) {
	l := p.loop
	woke := true
	for {
		j, ok, leave := p.next(w, woke)
		woke = false
		if leave {
			return
		}
		if !ok {
			select {
			case <-p.kick:
				woke = true
				continue
			case <-l.stop:
				return
			}
		}
		l.runCall(j.f, j.c, j.ctx, runPooled)
	}
}

// monitor runs while calls wait: each stall interval it adds a worker for
// every worker that has been inside one call for longer than that.
func (p *pool) monitor() {
	t := time.NewTimer(poolStall)
	defer t.Stop()
	procs := runtime.GOMAXPROCS(0)
	for {
		select {
		case <-t.C:
		case <-p.loop.stop:
			return
		}
		p.mu.Lock()
		if p.head == len(p.jobs) {
			p.watched = false
			p.mu.Unlock()
			return
		}
		// Calls that workers on their way will take are not waiting.
		waiting := len(p.jobs) - p.head - p.waking
		blocked, now := 0, p.tick.Add(1)
		for _, w := range p.all {
			if b := w.began.Load(); b != 0 && b < now-1 {
				blocked++
				w.f.blocks.Store(true)
			}
		}
		if blocked > 0 {
			waiting -= p.spill()
		}
		// One more worker for each blocked one (so a burst of blocking
		// calls doubles the workers each interval), and at least enough
		// that as many as there are Ps are free to take calls.
		unblocked := len(p.all) - p.idle - blocked
		for need := min(waiting, max(blocked, procs-unblocked)); need > 0; need-- {
			p.wakeOne()
		}
		p.mu.Unlock()
		t.Reset(poolStall)
	}
}

// spill starts every waiting call of a function that blocks on a
// goroutine of its own, and returns how many it started. p.mu is held.
func (p *pool) spill() int {
	kept, n := p.jobs[:p.head], 0
	for _, j := range p.jobs[p.head:] {
		if j.f.blocks.Load() {
			go p.loop.runCall(j.f, j.c, j.ctx, runOwn)
			n++
			continue
		}
		kept = append(kept, j)
	}
	clear(p.jobs[len(kept):])
	p.jobs = kept
	return n
}

// timed notes how long a call of a function marked as blocking took, on
// a goroutine of its own. Once poolQuick calls in a row have taken less
// than the stall interval the mark goes: the worker that earned it was
// only descheduled, not waiting, and quick calls are cheaper in the pool.
func (f *function) timed(d time.Duration) {
	if d >= poolStall {
		f.quick.Store(0)
	} else if f.quick.Add(1) >= poolQuick {
		f.blocks.Store(false)
		f.quick.Store(0)
	}
}

// drain completes every call still waiting, with an error: the runtime is
// closing and no worker will take them.
func (p *pool) drain() {
	p.mu.Lock()
	js := p.jobs[p.head:]
	p.jobs, p.head = nil, 0
	p.mu.Unlock()
	for _, j := range js {
		msg := []byte("the runtime was closed")
		ptr, n := cbytes(msg)
		C.mb_call_complete(p.loop.c, j.c, C.MB_ERR, ptr, n)
		j.ctx.returned()
		p.loop.wg.Done()
	}
}

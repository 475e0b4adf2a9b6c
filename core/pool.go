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
// so there are always as many unblocked workers as Ps. Blocking calls thus
// double the workers each interval: thousands of calls that wait on the
// network all start within a millisecond or two, and a call waiting for
// another queued call cannot deadlock.
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
	index int // in pool.all
}

type job struct {
	f   *function
	c   *C.mb_call
	ctx *callCtx
}

const (
	poolStall   = 100 * time.Microsecond // a call running longer counts as blocked
	poolMaxIdle = 256                    // parked workers beyond this leave
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
		l.runCall(j.f, j.c, j.ctx, false)
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
			}
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

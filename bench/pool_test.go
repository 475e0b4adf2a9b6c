package bench

// bridge.Pool beside one Runtime, in the same invocation: the same work
// sent to one Runtime, and spread over a Pool of one Runtime per P
// (GOMAXPROCS). Issue 18's targets: each at least 1.8x one Runtime on 2
// cores.
//
//	PoolRoundTrips   ConcurrentTasks x ConcurrentCallsEach async calls, the
//	                 tasks split into GOMAXPROCS Calls of the same Lua
//	                 function made at once from Go: on one Runtime, or over
//	                 the Pool; ReportPerUnit(units = trips), plus trips/s
//	PoolHandlerCalls the examples/httpserver pattern without HTTP:
//	                 PoolClients goroutines each making Calls of a Lua
//	                 handler that takes a number from a Go counter, awaits
//	                 one async Go call and formats a reply; b.N = Calls;
//	                 ns/op per Call, plus calls/s

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/moonbridge/moonbridge/bridge"
)

// PoolClients is the number of concurrent callers in PoolHandlerCalls.
const PoolClients = 256

const poolLua = `
local task = require("task")
function body(...)
` + RoundTripConcurrentLua + `
end
function concurrent(tasks, calls)
  local ts = {}
  for i = 1, tasks do ts[i] = task.spawn(body, calls) end
  local sum = 0
  for i = 1, tasks do sum = sum + ts[i]:wait() end
  return sum
end
function handle(method, path, query)
  local n = next_request()
  local x = async_inc(n)
  return 200, string.format("%s %s: %s, request %d", method, path, query.q, x - 1)
end
`

// caller is what a Runtime and a Pool have in common here.
type caller interface {
	Call(ctx context.Context, fn string, args ...any) ([]any, error)
	Close() error
}

// poolTarget makes one Runtime (pool false) or a Pool of GOMAXPROCS
// Runtimes, each with async_inc, next_request and poolLua's functions.
func poolTarget(b *testing.B, pool bool) caller {
	var served atomic.Int64
	setup := func(rt *bridge.Runtime) error {
		if err := rt.RegisterFunc("async_inc", func(ctx context.Context, a bridge.Args) ([]any, error) {
			x, err := a.Int(0)
			return []any{x + 1}, err
		}); err != nil {
			return err
		}
		if err := rt.RegisterFunc("next_request", func(ctx context.Context, a bridge.Args) ([]any, error) {
			return []any{served.Add(1)}, nil
		}, bridge.Inline()); err != nil {
			return err
		}
		return rt.RunString(context.Background(), "setup", poolLua)
	}
	if pool {
		p, err := bridge.NewPool(0, bridge.Options{}, setup)
		if err != nil {
			b.Fatal(err)
		}
		return p
	}
	rt, err := bridge.New(bridge.Options{})
	if err != nil {
		b.Fatal(err)
	}
	must(b, setup(rt))
	return rt
}

var poolTargets = []struct {
	name string
	pool bool
}{{"one-runtime", false}, {"pool", true}}

func BenchmarkPoolRoundTrips(b *testing.B) {
	parts := runtime.GOMAXPROCS(0)
	each := ConcurrentTasks / parts
	for _, tg := range poolTargets {
		b.Run(tg.name, func(b *testing.B) {
			c := poolTarget(b, tg.pool)
			defer c.Close()
			trips := b.N * each * parts * ConcurrentCallsEach
			cpu0 := cpuTime()
			el := ReportPerUnit(b, trips, func() {
				for i := 0; i < b.N; i++ {
					var wg sync.WaitGroup
					for range parts {
						wg.Go(func() {
							out, err := c.Call(context.Background(), "concurrent", each, ConcurrentCallsEach)
							if err != nil || len(out) != 1 || out[0] != int64(each*ConcurrentCallsEach) {
								b.Errorf("concurrent: %v, %v", out, err)
							}
						})
					}
					wg.Wait()
				}
			})
			cores := (cpuTime() - cpu0).Seconds() / el.Seconds()
			b.ReportMetric(float64(trips)/el.Seconds(), "trips/s")
			b.ReportMetric(cores, "cores")
			b.ReportMetric(float64(trips)/el.Seconds()/cores, "trips/core-s")
		})
	}
}

func BenchmarkPoolHandlerCalls(b *testing.B) {
	for _, tg := range poolTargets {
		b.Run(tg.name, func(b *testing.B) {
			c := poolTarget(b, tg.pool)
			defer c.Close()
			var next atomic.Int64
			var seen sync.Map
			b.ReportAllocs()
			b.ResetTimer()
			cpu0 := cpuTime()
			var wg sync.WaitGroup
			for g := range PoolClients {
				wg.Go(func() {
					q := fmt.Sprint(g)
					query := map[string]any{"q": q}
					for next.Add(1) <= int64(b.N) {
						out, err := c.Call(context.Background(), "handle", "GET", "/ask", query)
						if err != nil || len(out) != 2 || out[0] != int64(200) {
							b.Errorf("handle: %v, %v", out, err)
							return
						}
						var k int64
						var method, path, gotQ string
						if _, err := fmt.Sscanf(out[1].(string), "%s %s %s request %d", &method, &path, &gotQ, &k); err != nil || gotQ != q+"," {
							b.Errorf("reply %q to client %s", out[1], q)
							return
						}
						if _, dup := seen.LoadOrStore(k, true); dup {
							b.Errorf("request number %d given twice", k)
							return
						}
					}
				})
			}
			wg.Wait()
			b.StopTimer()
			cores := (cpuTime() - cpu0).Seconds() / b.Elapsed().Seconds()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "calls/s")
			b.ReportMetric(cores, "cores")
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds()/cores, "calls/core-s")
		})
	}
}

// BenchmarkPoolCPUCeiling measures what the Pool rows can hope for at the
// moment they run: GOMAXPROCS goroutines spinning on arithmetic for the
// benchmark's time, and the cores they got (2.0 on an idle 2-core machine;
// less when other processes hold a core). b.N = spins of 1e6 additions
// per goroutine.
func BenchmarkPoolCPUCeiling(b *testing.B) {
	n := runtime.GOMAXPROCS(0)
	cpu0 := cpuTime()
	var sink atomic.Int64
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			x := 0
			for range b.N {
				for i := range 1_000_000 {
					x += i ^ (x >> 3)
				}
			}
			sink.Add(int64(x))
		})
	}
	wg.Wait()
	b.StopTimer()
	if sink.Load() == 0 {
		b.Fatal("the spin computed nothing")
	}
	b.ReportMetric((cpuTime()-cpu0).Seconds()/b.Elapsed().Seconds(), "cores")
}

// cpuTime is the CPU time the process has used, user and system: beside
// the elapsed time it tells how many cores a workload kept busy.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

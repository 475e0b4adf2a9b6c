package bench

// HTTPGet: HTTPGets GET requests against a local server, HTTPConcurrency
// in flight, every body checked. moonbridge's http module (one Runtime:
// HTTPConcurrency tasks calling http.get, or one http.get_all) beside
// gopher-lua with github.com/cjoudrey/gluahttp, whose http.get blocks the
// LState that calls it: one LState can only go one request at a time, so
// its users get concurrency from a pool of LStates, one per goroutine
// (measured with HTTPConcurrency of them, and with one alone).
// gluahttp's request_batch is left out: it runs every request of a batch
// in goroutines that build their responses on the calling LState, a data
// race gopher-lua does not survive reliably.
//
// HTTPGetLatency is the same against a server that takes HTTPLatency to
// answer, as a remote one would: there waiting, not CPU, is the cost, and
// what counts is how many requests one script keeps in flight.
//
//	go test -run '^$' -bench 'HTTPGet$' -benchtime 3x -count 3 -benchmem
//	go test -run '^$' -bench 'HTTPGetLatency' -benchtime 1x -count 3 -benchmem
//
// b.N = runs of HTTPGets requests; ns/op, B/op and allocs/op are per
// request (ReportPerUnit), plus requests/s and conns/run (connections the
// server accepted per timed run: 0 when all are reused).

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cjoudrey/gluahttp"
	lua "github.com/yuin/gopher-lua"

	"github.com/moonbridge/moonbridge/bridge"
)

const (
	HTTPGets        = 10000
	HTTPConcurrency = 256
	HTTPLatency     = 2 * time.Millisecond
)

// httpTarget answers /?i=N with "item N", after latency.
type httpTarget struct {
	*httptest.Server
	conns atomic.Int64
}

func newHTTPTarget(latency time.Duration) *httpTarget {
	s := &httpTarget{}
	s.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if latency > 0 {
			time.Sleep(latency) // the far end's own time, not synchronisation
		}
		io.WriteString(w, "item "+r.URL.Query().Get("i"))
	}))
	s.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			s.conns.Add(1)
		}
	}
	s.Start()
	return s
}

// benchTransport keeps as many idle connections per host as moonbridge's
// own http client does, so both sides reuse their connections.
func benchTransport() *http.Transport {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConns = 2 * HTTPConcurrency
	tr.MaxIdleConnsPerHost = HTTPConcurrency
	return tr
}

// reportHTTP times b.N runs of HTTPGets requests after an untimed warm-up
// run of HTTPConcurrency that opens the connections; run(n) makes n
// requests and returns how many responses it checked.
func reportHTTP(b *testing.B, srv *httpTarget, run func(n int) int) {
	b.Helper()
	if got := run(HTTPConcurrency); got != HTTPConcurrency {
		b.Fatalf("warm-up: %d good responses, want %d", got, HTTPConcurrency)
	}
	c0 := srv.conns.Load()
	requests := b.N * HTTPGets
	el := ReportPerUnit(b, requests, func() {
		for range b.N {
			if got := run(HTTPGets); got != HTTPGets {
				b.Fatalf("%d good responses, want %d", got, HTTPGets)
			}
		}
	})
	b.ReportMetric(float64(requests)/el.Seconds(), "requests/s")
	b.ReportMetric(float64(srv.conns.Load()-c0)/float64(b.N), "conns/run")
}

const mbHTTPLua = `
local task = require("task")

-- tasks: C tasks, each taking the next index until N are done.
function fetch_tasks(url, n, c)
	local next_i, good = 0, 0
	local g <close> = task.group()
	for _ = 1, c do
		g:spawn(function()
			while next_i < n do
				next_i = next_i + 1
				local i = next_i
				local r = http.get(url .. "/?i=" .. i)
				if r.status ~= 200 or r.body ~= "item " .. i then error("bad response " .. i .. ": " .. r.body) end
				good = good + 1
			end
		end)
	end
	g:wait()
	return good
end

-- get_all: one call, concurrency c.
function fetch_all(url, n, c)
	local urls = {}
	for i = 1, n do urls[i] = url .. "/?i=" .. i end
	local good = 0
	for i, r in ipairs(http.get_all(urls, {concurrency = c})) do
		if r.status ~= 200 or r.body ~= "item " .. i then error("bad response " .. i .. ": " .. r.body) end
		good = good + 1
	end
	return good
end
`

func mbHTTP(b *testing.B, fn string, latency time.Duration) {
	srv := newHTTPTarget(latency)
	defer srv.Close()
	rt, err := bridge.New(bridge.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer rt.Close()
	if err := bridge.RegisterHTTP(rt, bridge.HTTPOptions{}); err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	if err := rt.RunString(ctx, "bench", mbHTTPLua); err != nil {
		b.Fatal(err)
	}
	reportHTTP(b, srv, func(n int) int {
		out, err := rt.Call(ctx, fn, srv.URL, n, HTTPConcurrency)
		if err != nil {
			b.Fatal(err)
		}
		good, _ := out[0].(int64)
		return int(good)
	})
}

const glHTTPLua = `
local http = require("http")
-- fetch_range fetches from, from + step, ... up to n, one at a time.
function fetch_range(url, from, n, step)
	local good = 0
	for i = from, n, step do
		local r, err = http.get(url .. "/?i=" .. i)
		if not r then error(err) end
		if r.status_code ~= 200 or r.body ~= "item " .. i then error("bad response " .. i .. ": " .. r.body) end
		good = good + 1
	end
	return good
end
`

// glHTTPState is an LState with gluahttp as require("http") and
// fetch_range defined.
func glHTTPState(b *testing.B, client *http.Client) *lua.LState {
	L := lua.NewState()
	L.PreloadModule("http", gluahttp.NewHttpModule(client).Loader)
	if err := L.DoString(glHTTPLua); err != nil {
		b.Fatal(err)
	}
	return L
}

func glFetchRange(L *lua.LState, url string, from, n, step int) (int, error) {
	err := L.CallByParam(lua.P{Fn: L.GetGlobal("fetch_range"), NRet: 1, Protect: true},
		lua.LString(url), lua.LNumber(from), lua.LNumber(n), lua.LNumber(step))
	if err != nil {
		return 0, err
	}
	good := int(lua.LVAsNumber(L.Get(-1)))
	L.Pop(1)
	return good, nil
}

// glHTTPPool runs the requests on states LStates, each in its own
// goroutine, each fetching every states-th index.
func glHTTPPool(b *testing.B, states int, latency time.Duration) {
	srv := newHTTPTarget(latency)
	defer srv.Close()
	tr := benchTransport()
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}
	pool := make([]*lua.LState, states)
	for i := range pool {
		pool[i] = glHTTPState(b, client)
		defer pool[i].Close()
	}
	reportHTTP(b, srv, func(n int) int {
		var (
			wg    sync.WaitGroup
			good  atomic.Int64
			fails atomic.Value
		)
		for w, L := range pool {
			wg.Go(func() {
				got, err := glFetchRange(L, srv.URL, w+1, n, states)
				if err != nil {
					fails.Store(err)
				}
				good.Add(int64(got))
			})
		}
		wg.Wait()
		if err := fails.Load(); err != nil {
			b.Fatal(err)
		}
		return int(good.Load())
	})
}

func benchHTTP(b *testing.B, latency time.Duration) {
	b.Run("moonbridge-tasks", func(b *testing.B) { mbHTTP(b, "fetch_tasks", latency) })
	b.Run("moonbridge-get_all", func(b *testing.B) { mbHTTP(b, "fetch_all", latency) })
	b.Run(fmt.Sprintf("gopherlua-gluahttp-%dstates", HTTPConcurrency), func(b *testing.B) { glHTTPPool(b, HTTPConcurrency, latency) })
	b.Run("gopherlua-gluahttp-1state", func(b *testing.B) { glHTTPPool(b, 1, latency) })
}

func BenchmarkHTTPGet(b *testing.B)        { benchHTTP(b, 0) }
func BenchmarkHTTPGetLatency(b *testing.B) { benchHTTP(b, HTTPLatency) }

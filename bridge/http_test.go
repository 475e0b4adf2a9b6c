package bridge_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moonbridge/moonbridge/bridge"
)

// newHTTPRuntime is a Runtime with the http module and the given URLs as
// globals (name = URL).
func newHTTPRuntime(t *testing.T, opts bridge.Options, hopts bridge.HTTPOptions, globals map[string]string) *bridge.Runtime {
	t.Helper()
	out := &syncBuffer{}
	opts.Stdout, opts.Stderr = out, out
	rt, err := bridge.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rt.Close() })
	if err := bridge.RegisterHTTP(rt, hopts); err != nil {
		t.Fatal(err)
	}
	for k, v := range globals {
		if err := rt.SetGlobal(context.Background(), k, v); err != nil {
			t.Fatal(err)
		}
	}
	return rt
}

// hostPort is the host:port of a test server.
func hostPort(srv *httptest.Server) string {
	u, _ := url.Parse(srv.URL)
	return u.Host
}

// connCounter counts a server's open connections and says when none is
// left.
type connCounter struct {
	mu   sync.Mutex
	open int
	zero chan struct{} // closed (and remade) whenever open drops to 0
}

func countConns(srv *httptest.Server) *connCounter {
	c := &connCounter{zero: make(chan struct{})}
	srv.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		c.mu.Lock()
		defer c.mu.Unlock()
		switch st {
		case http.StateNew:
			c.open++
		case http.StateClosed, http.StateHijacked:
			c.open--
			if c.open == 0 {
				close(c.zero)
				c.zero = make(chan struct{})
			}
		}
	}
	return c
}

// waitNone waits until the server has no open connection.
func (c *connCounter) waitNone(t *testing.T) {
	t.Helper()
	for {
		c.mu.Lock()
		n, ch := c.open, c.zero
		c.mu.Unlock()
		if n == 0 {
			return
		}
		select {
		case <-ch:
		case <-time.After(10 * time.Second):
			t.Fatalf("%d connections still open", n)
		}
	}
}

func TestHTTPRequestGetAndPost(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		w.Header().Add("X-Multi", "one")
		w.Header().Add("X-Multi", "two")
		w.Header().Add("Set-Cookie", "a=1; Expires=Wed, 21 Oct 2026 07:28:00 GMT")
		w.Header().Add("Set-Cookie", "b=2")
		if r.URL.Path == "/missing" {
			w.WriteHeader(http.StatusNotFound)
			io.WriteString(w, "no such thing")
			return
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{
			"method": r.Method, "path": r.URL.RequestURI(), "body": string(body),
			"ctype": r.Header.Get("Content-Type"), "accept": r.Header.Values("Accept"),
			"token": r.Header.Get("X-Token"), "host": r.Host,
		})
	}))
	defer srv.Close()
	rt := newHTTPRuntime(t, bridge.Options{}, bridge.HTTPOptions{}, map[string]string{"URL": srv.URL})
	mustRun(t, rt, `
		local function decode(s)  -- the server's flat JSON, enough for this test
			local t = {}
			for k, v in s:gmatch('"([%w]+)":("[^"]*")') do t[k] = v:sub(2, -2) end
			t.accept = s:match('"accept":(%b[])')
			return t
		end
		local r = http.get(URL .. "/a?x=1", {headers = {["X-Token"] = 42, Accept = {"text/plain", "application/json"}}})
		assert(r.status == 200 and math.type(r.status) == "integer", r.status)
		local j = decode(r.body)
		assert(j.method == "GET" and j.path == "/a?x=1", r.body)
		assert(j.token == "42", r.body)
		assert(j.accept == '["text/plain","application/json"]', j.accept)
		assert(r.headers["x-multi"] == "one, two", r.headers["x-multi"])
		assert(r.headers["set-cookie"] == "a=1; Expires=Wed, 21 Oct 2026 07:28:00 GMT\nb=2", r.headers["set-cookie"])
		assert(r.headers["content-type"] == "application/json", r.headers["content-type"])
		assert(r.url == URL .. "/a?x=1")

		r = http.post(URL .. "/p", {name = "moon", n = 3, list = {1, 2}})
		j = decode(r.body)
		assert(j.method == "POST" and j.ctype == "application/json", r.body)
		assert(r.body:find([[{\"list\":[1,2],\"n\":3,\"name\":\"moon\"}]], 1, true), r.body)

		r = http.post(URL .. "/p", "raw text", {headers = {["content-type"] = "text/plain"}})
		j = decode(r.body)
		assert(j.body == "raw text" and j.ctype == "text/plain", r.body)

		r = http.request{method = "put", url = URL .. "/r", body = "x", headers = {Host = "example.test"}}
		j = decode(r.body)
		assert(j.method == "PUT" and j.body == "x" and j.host == "example.test", r.body)

		r = http.get(URL .. "/missing")            -- a 4xx is a response
		assert(r.status == 404 and r.body == "no such thing", r.status)
	`)
}

func TestHTTPTransportFailureIsABridgeErrorNamingTheURL(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := "http://" + ln.Addr().String() + "/x"
	ln.Close() // nothing listens there now
	rt := newHTTPRuntime(t, bridge.Options{}, bridge.HTTPOptions{}, map[string]string{"DEAD": dead})
	err = run(t, rt, `http.get(DEAD)`)
	var le *bridge.LuaError
	if !errors.As(err, &le) {
		t.Fatalf("got %v", err)
	}
	want := "http.get: GET " + dead + ": dial tcp " + ln.Addr().String() + ": connect: connection refused"
	if le.Kind != "bridge" || le.Op != "http" || le.Message != want {
		t.Errorf("kind %q op %q message %q\nwant message %q", le.Kind, le.Op, le.Message, want)
	}
	// The Go error stays reachable: a *net.OpError under the message.
	var ne *net.OpError
	if !errors.As(err, &ne) || ne.Op != "dial" {
		t.Errorf("errors.As(err, *net.OpError): %v", ne)
	}
	// Scripts see the same kind and op, from every function of the module.
	mustRun(t, rt, `
		for _, f in ipairs({function() return http.get(DEAD) end,
		                    function() return http.request{url = DEAD} end,
		                    function() return http.get_all({DEAD}) end,
		                    function() for _ in http.stream{url = DEAD} do end end}) do
			local ok, e = pcall(f)
			assert(not ok and e.kind == "bridge" and e.op == "http", e.op)
		end
		local ok, e = pcall(http.get, "ftp://x/")   -- a bad argument is the function's own
		assert(e.op == "http.get", e.op)`)
}

// Redirects are followed inside AllowHosts; one that leaves the list is
// refused before anything is sent to the other host.
func TestHTTPRedirectsInsideAndLeavingAllowHosts(t *testing.T) {
	var outsideHits sync.Map
	outside := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		outsideHits.Store(r.URL.Path, true)
		io.WriteString(w, "outside")
	}))
	defer outside.Close()
	var inside *httptest.Server
	inside = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/hop":
			http.Redirect(w, r, "/final", http.StatusFound)
		case "/final":
			io.WriteString(w, "inside")
		case "/out":
			http.Redirect(w, r, outside.URL+"/stolen", http.StatusFound)
		case "/byname": // the same server, through a name the list does not hold
			http.Redirect(w, r, fmt.Sprintf("http://localhost:%d/final", inside.Listener.Addr().(*net.TCPAddr).Port), http.StatusFound)
		}
	}))
	defer inside.Close()
	for _, sandbox := range []bool{true, false} {
		t.Run(fmt.Sprintf("sandbox=%v", sandbox), func(t *testing.T) {
			rt := newHTTPRuntime(t, bridge.Options{Sandbox: sandbox},
				bridge.HTTPOptions{AllowHosts: []string{hostPort(inside)}},
				map[string]string{"IN": inside.URL, "OUT": outside.URL})
			mustRun(t, rt, `
				local r = http.get(IN .. "/hop")
				assert(r.status == 200 and r.body == "inside" and r.url == IN .. "/final", r.body)
				local ok, err = pcall(http.get, IN .. "/out")
				assert(not ok and err.kind == "bridge", tostring(err))
				assert(err.message:find("GET " .. IN .. "/out: redirect to " .. OUT .. "/stolen refused: host \"" ..
					OUT:match("//(.*)") .. "\" is not in AllowHosts", 1, true), err.message)
				ok, err = pcall(http.get, IN .. "/byname")
				assert(not ok and err.message:find("refused: host \"localhost:", 1, true), err.message)
				ok, err = pcall(http.get, OUT .. "/direct")
				assert(not ok and err.message:find("is not in AllowHosts", 1, true), err.message)
			`)
		})
	}
	if _, hit := outsideHits.Load("/stolen"); hit {
		t.Error("the redirect reached the host outside the list")
	}
	if _, hit := outsideHits.Load("/direct"); hit {
		t.Error("a request reached the host outside the list")
	}
}

// A connection the transport would open to anywhere else — here through a
// proxy — is refused at dial time, even when the URL's host is allowed.
func TestHTTPAllowHostsIsCheckedAtDialTime(t *testing.T) {
	var proxied sync.Map
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		proxied.Store(r.URL.String(), true)
		io.WriteString(w, "via proxy")
	}))
	defer proxy.Close()
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "direct")
	}))
	defer target.Close()
	proxyURL, _ := url.Parse(proxy.URL)
	client := &http.Client{Transport: &http.Transport{Proxy: http.ProxyURL(proxyURL)}}
	rt := newHTTPRuntime(t, bridge.Options{Sandbox: true},
		bridge.HTTPOptions{Client: client, AllowHosts: []string{hostPort(target)}},
		map[string]string{"T": target.URL, "P": hostPort(proxy)})
	mustRun(t, rt, `
		local ok, err = pcall(http.get, T .. "/x")
		assert(not ok, "the request went through the proxy")
		assert(err.message:find("dial " .. P .. " refused: host \"" .. P .. "\" is not in AllowHosts", 1, true), err.message)
	`)
	n := 0
	proxied.Range(func(any, any) bool { n++; return true })
	if n != 0 {
		t.Errorf("the proxy served %d requests", n)
	}
}

func TestHTTPSandboxWithoutAllowHostsReachesNothing(t *testing.T) {
	hits := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hits++ }))
	defer srv.Close()
	rt := newHTTPRuntime(t, bridge.Options{Sandbox: true}, bridge.HTTPOptions{}, map[string]string{"URL": srv.URL})
	err := run(t, rt, `http.get(URL)`)
	var le *bridge.LuaError
	if !errors.As(err, &le) || !strings.Contains(le.Message, "is not allowed (the sandbox allows no hosts: HTTPOptions.AllowHosts is empty)") {
		t.Errorf("got %v", err)
	}
	if hits != 0 {
		t.Errorf("%d requests reached the server", hits)
	}
}

func TestHTTPAllowHostsEntries(t *testing.T) {
	for _, bad := range []string{"", "http://x", "a b", "x:99999", "*.", "@host"} {
		rt, _ := newRuntime(t)
		if err := bridge.RegisterHTTP(rt, bridge.HTTPOptions{AllowHosts: []string{bad}}); err == nil {
			t.Errorf("entry %q accepted", bad)
		}
	}
	// Which URLs each list lets through (the check only: nothing listens).
	srvRT := func(allow ...string) *bridge.Runtime {
		rt, _ := newRuntime(t)
		if err := bridge.RegisterHTTP(rt, bridge.HTTPOptions{AllowHosts: allow, Timeout: time.Millisecond}); err != nil {
			t.Fatal(err)
		}
		return rt
	}
	cases := []struct {
		allow   []string
		url     string
		allowed bool
	}{
		{[]string{"api.example.com"}, "http://API.Example.com./x", true},
		{[]string{"api.example.com"}, "http://api.example.com.evil.test/", false},
		{[]string{"api.example.com"}, "http://evil.test/?api.example.com", false},
		{[]string{"api.example.com"}, "http://api.example.com@evil.test/", false},
		{[]string{"*.example.com"}, "https://a.b.example.com/", true},
		{[]string{"*.example.com"}, "https://example.com/", false},
		{[]string{"*.example.com"}, "https://evilexample.com/", false},
		{[]string{"example.com:8080"}, "http://example.com:8080/", true},
		{[]string{"example.com:8080"}, "http://example.com/", false},
		{[]string{"example.com:443"}, "https://example.com/", true},
		{[]string{"10.0.0.0/8"}, "http://10.1.2.3:9/", true},
		{[]string{"10.0.0.0/8"}, "http://11.1.2.3/", false},
		{[]string{"10.0.0.0/8"}, "http://[::ffff:10.1.2.3]/", true},
		{[]string{"127.0.0.1"}, "http://2130706433/", false},
		{[]string{"127.0.0.1"}, "http://localhost/", false},
		{[]string{"[::1]:8080"}, "http://[::1]:8080/", true},
		{[]string{"[::1]:8080"}, "http://[::1]:8081/", false},
	}
	for _, c := range cases {
		rt := srvRT(c.allow...)
		err := rt.SetGlobal(context.Background(), "U", c.url)
		if err == nil {
			err = run(t, rt, `http.get(U)`)
		}
		refused := err != nil && strings.Contains(err.Error(), "AllowHosts")
		if refused == c.allowed {
			t.Errorf("allow %v, %s: %v", c.allow, c.url, err)
		}
	}
}

// slowServer writes part of a body, says so on started, then waits for
// the client to go away and says so on gone.
func slowServer(t *testing.T) (srv *httptest.Server, started, gone chan struct{}) {
	started, gone = make(chan struct{}, 16), make(chan struct{}, 16)
	srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "partial")
		w.(http.Flusher).Flush()
		started <- struct{}{}
		<-r.Context().Done()
		gone <- struct{}{}
	}))
	t.Cleanup(srv.Close)
	return srv, started, gone
}

func waitFor(t *testing.T, ch chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(10 * time.Second):
		t.Fatalf("never happened: %s", what)
	}
}

func TestHTTPSlowBodyCutByCancellation(t *testing.T) {
	srv, started, gone := slowServer(t)
	rt := newHTTPRuntime(t, bridge.Options{}, bridge.HTTPOptions{}, map[string]string{"URL": srv.URL})
	rt.RegisterFunc("test.started", func(ctx context.Context, args bridge.Args) ([]any, error) {
		select {
		case <-started:
			return nil, nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	})
	// A task cancelled while its request reads the body.
	mustRun(t, rt, `
		local task = require("task")
		local t = task.spawn(http.get, URL)
		test.started()
		t:cancel()
		local ok, err = pcall(t.wait, t)
		assert(not ok and err.kind == "cancelled", tostring(err))
	`)
	waitFor(t, gone, "the server saw the request go away (task cancelled)")

	// The run's context cancelled while the main chunk reads.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { <-started; cancel() }()
	err := rt.RunString(ctx, "main", `http.get(URL)`)
	if !errors.Is(err, bridge.ErrCancelled) || !errors.Is(err, context.Canceled) {
		t.Errorf("run: %v", err)
	}
	waitFor(t, gone, "the server saw the request go away (run cancelled)")
}

func TestHTTPSlowBodyCutByTimeout(t *testing.T) {
	srv, _, gone := slowServer(t)
	rt := newHTTPRuntime(t, bridge.Options{}, bridge.HTTPOptions{Timeout: time.Hour}, map[string]string{"URL": srv.URL})
	mustRun(t, rt, `
		local ok, err = pcall(http.get, URL, {timeout = 0.05})
		assert(not ok and err.kind == "bridge", tostring(err))
		assert(err.message == "http.get: GET " .. URL .. ": reading the body: timed out after 50ms (timeout)" or
		       err.message == "http.get: GET " .. URL .. ": timed out after 50ms (timeout)", err.message)
	`)
	waitFor(t, gone, "the server saw the request go away")

	// HTTPOptions.Timeout is the default; under Sandbox a script cannot
	// lengthen it.
	rt = newHTTPRuntime(t, bridge.Options{Sandbox: true},
		bridge.HTTPOptions{Timeout: 50 * time.Millisecond, AllowHosts: []string{hostPort(srv)}}, map[string]string{"URL": srv.URL})
	mustRun(t, rt, `
		local ok, err = pcall(http.get, URL, {timeout = 3600})
		assert(not ok and err.message:find("timed out after 50ms", 1, true), tostring(err))
	`)
	waitFor(t, gone, "the server saw the request go away")
}

func TestHTTPOversizeBodies(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := strconv.Atoi(r.URL.Query().Get("n"))
		if r.URL.Query().Get("chunked") == "" {
			w.Header().Set("Content-Length", strconv.Itoa(n))
		}
		for i := 0; i < n; i += 100 {
			io.WriteString(w, strings.Repeat("x", min(100, n-i)))
			w.(http.Flusher).Flush()
		}
	}))
	defer srv.Close()
	rt := newHTTPRuntime(t, bridge.Options{}, bridge.HTTPOptions{MaxBodyBytes: 1000}, map[string]string{"URL": srv.URL})
	mustRun(t, rt, `
		assert(#http.get(URL .. "/?n=1000").body == 1000)
		assert(#http.get(URL .. "/?n=1000&chunked=1").body == 1000)
		local limit = "response body over the 1000-byte limit (HTTPOptions.MaxBodyBytes)"
		for _, q in ipairs({"/?n=1001", "/?n=50000&chunked=1"}) do
			local ok, err = pcall(http.get, URL .. q)
			assert(not ok and err.message == "http.get: GET " .. URL .. q .. ": " .. limit, tostring(err))
		end
		-- a stream counts every byte it hands over
		local got = 0
		local ok, err = pcall(function()
			for chunk in http.stream{url = URL .. "/?n=5000&chunked=1"} do got = got + #chunk end
		end)
		assert(not ok and err.message:find(limit, 1, true) and got <= 1000, tostring(err))
		-- get_all's bodies together
		ok, err = pcall(http.get_all, {URL .. "/?n=600", URL .. "/?n=600"}, {concurrency = 1})
		assert(not ok and err.message:find("item 2: GET", 1, true) and err.message:find(limit, 1, true), tostring(err))
	`)
}

func TestHTTPSWithATestCertificate(t *testing.T) {
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "tls %v", r.TLS != nil)
	}))
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshake below
	srv.StartTLS()
	defer srv.Close()
	for _, allow := range [][]string{nil, {hostPort(srv)}} {
		rt := newHTTPRuntime(t, bridge.Options{}, bridge.HTTPOptions{Client: srv.Client(), AllowHosts: allow},
			map[string]string{"URL": srv.URL})
		mustRun(t, rt, `local r = http.get(URL); assert(r.status == 200 and r.body == "tls true", r.body)`)
	}
	// Without the test CA the certificate is refused, and the error says so.
	rt := newHTTPRuntime(t, bridge.Options{}, bridge.HTTPOptions{}, map[string]string{"URL": srv.URL})
	mustRun(t, rt, `
		local ok, err = pcall(http.get, URL)
		assert(not ok and err.message:find("tls: failed to verify certificate", 1, true), tostring(err))
	`)
}

// streamServer writes the text, then waits for the client to leave.
func streamServer(t *testing.T, text string) (*httptest.Server, chan struct{}) {
	gone := make(chan struct{}, 4)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/fail" {
			w.WriteHeader(http.StatusServiceUnavailable)
			io.WriteString(w, "overloaded")
			return
		}
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, text)
		w.(http.Flusher).Flush()
		if r.URL.Path == "/end" {
			return
		}
		<-r.Context().Done()
		gone <- struct{}{}
	}))
	t.Cleanup(srv.Close)
	return srv, gone
}

func TestHTTPStreamSSEAndBreak(t *testing.T) {
	srv, gone := streamServer(t, ": ping\n\nevent: start\ndata: one\n\ndata: two\ndata: lines\nid: 7\n\n"+
		"retry: 10\r\ndata:three\r\n\r\nevent: late\ndata: four\r\rdata: five\n\n")
	rt := newHTTPRuntime(t, bridge.Options{}, bridge.HTTPOptions{}, map[string]string{"URL": srv.URL})
	mustRun(t, rt, `
		local got = {}
		for ev in http.stream{url = URL, sse = true} do
			got[#got + 1] = string.format("%s|%s|%s", ev.event, ev.data, tostring(ev.id))
			if #got == 5 then break end      -- the server keeps the stream open
		end
		local want = {"start|one|nil", "message|two\nlines|7", "message|three|7", "late|four|7", "message|five|7"}
		for i = 1, #want do assert(got[i] == want[i], i .. ": " .. tostring(got[i])) end
	`)
	waitFor(t, gone, "the server saw the stream cancelled by break")
}

func TestHTTPStreamLinesChunksAndErrors(t *testing.T) {
	srv, gone := streamServer(t, "alpha\r\nbeta\n\ngamma\n")
	rt := newHTTPRuntime(t, bridge.Options{}, bridge.HTTPOptions{}, map[string]string{"URL": srv.URL})
	mustRun(t, rt, `
		local lines = {}
		for line in http.stream{url = URL, lines = true} do
			lines[#lines + 1] = line
			if line == "gamma" then break end
		end
		assert(table.concat(lines, ",") == "alpha,beta,,gamma", table.concat(lines, ","))

		local all = {}
		for chunk in http.stream{url = URL .. "/end"} do all[#all + 1] = chunk end
		assert(table.concat(all) == "alpha\r\nbeta\n\ngamma\n")
		for line in http.stream{url = URL .. "/end", lines = true} do lines[#lines + 1] = line end
		assert(#lines == 8)

		local ok, err = pcall(function() for _ in http.stream{url = URL .. "/fail"} do end end)
		assert(not ok and err.message == "http.stream: GET " .. URL .. "/fail: status 503 Service Unavailable: overloaded",
			tostring(err))
	`)
	waitFor(t, gone, "the server saw the line stream cancelled by break")
}

// countingTransport counts the requests in flight on the client side:
// from the start of RoundTrip until it returns.
type countingTransport struct {
	mu       sync.Mutex
	n, maxed int
}

func (c *countingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	c.mu.Lock()
	c.n++
	c.maxed = max(c.maxed, c.n)
	c.mu.Unlock()
	defer func() { c.mu.Lock(); c.n--; c.mu.Unlock() }()
	return http.DefaultTransport.RoundTrip(req)
}

// get_all keeps input order, and never has more than concurrency requests
// in flight: the server holds each request until the test releases it,
// newest first, and only once the bound is reached; meanwhile requests
// that a broken bound would start show at once on the client side.
func TestHTTPGetAllOrderAndConcurrencyBound(t *testing.T) {
	const total, bound = 12, 3
	var (
		mu       sync.Mutex
		inflight []chan struct{}
		maxSeen  int
		arrived  = make(chan struct{}, total)
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		release := make(chan struct{})
		mu.Lock()
		inflight = append(inflight, release)
		maxSeen = max(maxSeen, len(inflight))
		mu.Unlock()
		arrived <- struct{}{}
		<-release
		io.WriteString(w, r.URL.Query().Get("i"))
	}))
	defer srv.Close()
	go func() {
		for done := 0; done < total; done++ {
			want := min(bound, total-done)
			for {
				mu.Lock()
				n := len(inflight)
				mu.Unlock()
				if n >= want {
					break
				}
				<-arrived
			}
			mu.Lock()
			last := inflight[len(inflight)-1]
			inflight = inflight[:len(inflight)-1]
			mu.Unlock()
			close(last)
		}
	}()
	counter := &countingTransport{}
	rt := newHTTPRuntime(t, bridge.Options{}, bridge.HTTPOptions{Client: &http.Client{Transport: counter}},
		map[string]string{"URL": srv.URL})
	mustRun(t, rt, fmt.Sprintf(`
		local urls = {}
		for i = 1, %d do urls[i] = URL .. "/?i=" .. i end
		urls[5] = {url = URL .. "/?i=5", headers = {["x-item"] = "5"}}   -- a request table works too
		local rs = http.get_all(urls, {concurrency = %d})
		assert(#rs == #urls)
		for i, r in ipairs(rs) do assert(r.status == 200 and r.body == tostring(i), i .. ": " .. r.body) end
	`, total, bound))
	if maxSeen != bound || counter.maxed != bound {
		t.Errorf("up to %d requests at once on the server, %d on the client; want %d", maxSeen, counter.maxed, bound)
	}
}

func TestHTTPGetAllFirstFailureCancelsTheRest(t *testing.T) {
	srv, started, gone := slowServer(t)
	// The breaker waits until both slow requests are in, then drops its
	// connection: a transport failure.
	breaker := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-started
		<-started
		conn, _, _ := w.(http.Hijacker).Hijack()
		conn.Close()
	}))
	defer breaker.Close()
	rt := newHTTPRuntime(t, bridge.Options{}, bridge.HTTPOptions{}, map[string]string{"SLOW": srv.URL, "BREAK": breaker.URL})
	mustRun(t, rt, `
		local ok, err = pcall(http.get_all, {SLOW, SLOW .. "/2", {url = BREAK}}, {concurrency = 3})
		assert(not ok and err.kind == "bridge", tostring(err))
		assert(err.message == "http.get_all: item 3: GET " .. BREAK .. ": EOF", err.message)
	`)
	for range 2 {
		waitFor(t, gone, "a slow request cancelled by the failure")
	}
}

func TestHTTPRefusesHostileInput(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	defer srv.Close()
	rt := newHTTPRuntime(t, bridge.Options{Sandbox: true}, bridge.HTTPOptions{AllowHosts: []string{hostPort(srv)}},
		map[string]string{"URL": srv.URL})
	mustRun(t, rt, `
		local function refused(want, f, ...)
			local ok, err = pcall(f, ...)
			assert(not ok, "accepted: " .. want)
			assert(err.kind == "bridge", tostring(err))
			assert(err.message:find(want, 1, true), "\nwant " .. want .. "\n got " .. err.message)
		end
		refused('bad URL "::nope": missing protocol scheme', http.get, "::nope")
		refused('bad URL "ftp://x/": scheme "ftp" is not allowed (only http and https)', http.get, "ftp://x/")
		refused('bad URL "file:///etc/passwd": scheme "file" is not allowed', http.get, "file:///etc/passwd")
		refused('bad URL "javascript:alert(1)": scheme "javascript"', http.get, "javascript:alert(1)")
		refused('bad URL "http://": no host', http.get, "http://")
		refused('bad URL "/relative": no scheme', http.get, "/relative")
		refused("bad argument #1 (URL string expected, got no value)", http.get)
		refused("bad argument #1 (URL string expected, got table)", http.get, {})
		refused("URL too long", http.get, URL .. "/" .. string.rep("a", 70000))
		refused("field 'url' is missing", http.request, {})
		refused("field 'url' must be a string, got boolean", http.request, {url = true})
		refused('unknown field "hedaers" (fields are body, headers, method, timeout, url)', http.request, {url = URL, hedaers = {}})
		refused("field 'method': \"GET /x\" is not a method name", http.request, {url = URL, method = "GET /x"})
		refused("header \"x\" must be a string or a list of strings, got boolean", http.get, URL, {headers = {x = true}})
		refused("header \"x\": a list of values must hold strings, got table", http.get, URL, {headers = {x = {{}}}})
		refused("header \"x\": value holds a line break or a NUL", http.get, URL, {headers = {x = "a\r\nInjected: 1"}})
		refused('header name "bad name" is not valid', http.get, URL, {headers = {["bad name"] = "v"}})
		local many = {}
		for i = 1, 10000 do many["h" .. i] = "v" end
		refused("too many headers (10000, at most 256)", http.get, URL, {headers = many})
		refused("headers too large", http.get, URL, {headers = {a = string.rep("v", 70000)}})
		refused("field 'timeout' must be a positive number of seconds, got -1", http.get, URL, {timeout = -1})
		refused("field 'timeout' must be a positive number of seconds", http.get, URL, {timeout = 0/0})
		refused("field 'body' must be a string or a table (sent as JSON), got boolean", http.request, {url = URL, body = true})
		refused("body cannot be sent as JSON: NaN", http.post, URL, {x = 0/0})
		local cyc = {}; cyc.self = cyc
		refused("cyclic", http.post, URL, cyc)
		refused("fields 'lines' and 'sse' exclude each other", function()
			for _ in http.stream{url = URL, lines = true, sse = true} do end end)
		refused("option 'concurrency' must be an integer from 1 to 1024, got 0", http.get_all, {URL}, {concurrency = 0})
		refused("item 2 must be a URL string or a request table, got boolean", http.get_all, {URL, true})
		refused("item 1: field 'url' is missing", http.get_all, {{}})
		-- A metatable does not lend the request fields it does not hold.
		local req = setmetatable({}, {__index = {url = URL}, __pairs = function() error("no") end})
		refused("field 'url' is missing", http.request, req)
		-- After all of that the module still works.
		assert(http.get(URL).body == "ok")
		assert(#http.get_all({}) == 0)
	`)
}

// Nothing is left once the Runtime is closed: no goroutine, and no
// connection open on the server (the module's idle connections are
// closed with the Runtime).
func TestHTTPLeavesNoGoroutineOrConnection(t *testing.T) {
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/stream" {
			io.WriteString(w, "data: x\n\n")
			w.(http.Flusher).Flush()
			<-r.Context().Done()
			return
		}
		io.WriteString(w, "ok")
	}))
	conns := countConns(srv)
	srv.Start()
	defer srv.Close()
	before := runtime.NumGoroutine()
	out := &syncBuffer{}
	rt, err := bridge.New(bridge.Options{Stdout: out, Stderr: out})
	if err != nil {
		t.Fatal(err)
	}
	if err := bridge.RegisterHTTP(rt, bridge.HTTPOptions{}); err != nil {
		t.Fatal(err)
	}
	rt.SetGlobal(context.Background(), "URL", srv.URL)
	mustRun(t, rt, `
		local task = require("task")
		local ts = {}
		for i = 1, 20 do ts[i] = task.spawn(http.get, URL .. "/" .. i) end
		for _, t in ipairs(ts) do assert(t:wait().body == "ok") end
		assert(#http.get_all({URL, URL, URL, URL}, {concurrency = 4}) == 4)
		for ev in http.stream{url = URL .. "/stream", sse = true} do break end
	`)
	if err := rt.Close(); err != nil {
		t.Fatal(err)
	}
	conns.waitNone(t)
	checkGoroutines(t, before)
}

// A stream's timeout bounds the wait for the headers, then each wait for
// data: a long stream lives as long as it keeps talking.
func TestHTTPStreamTimeoutIsPerWait(t *testing.T) {
	gone := make(chan struct{}, 4)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/silent" { // no headers at all
			<-r.Context().Done()
			gone <- struct{}{}
			return
		}
		io.WriteString(w, "first\n")
		w.(http.Flusher).Flush()
		<-r.Context().Done() // then nothing
		gone <- struct{}{}
	}))
	defer srv.Close()
	rt := newHTTPRuntime(t, bridge.Options{}, bridge.HTTPOptions{}, map[string]string{"URL": srv.URL})
	mustRun(t, rt, `
		local ok, err = pcall(function() for _ in http.stream{url = URL .. "/silent", timeout = 0.05} do end end)
		assert(not ok and err.message == "http.stream: GET " .. URL .. "/silent: timed out after 50ms (timeout)", tostring(err))
		local lines = {}
		ok, err = pcall(function()
			for line in http.stream{url = URL .. "/stalls", lines = true, timeout = 0.05} do lines[#lines + 1] = line end
		end)
		assert(not ok and err.message == "http.stream: GET " .. URL .. "/stalls: timed out: no data for 50ms (timeout)", tostring(err))
		assert(#lines == 1 and lines[1] == "first")
	`)
	waitFor(t, gone, "the silent request went away")
	waitFor(t, gone, "the stalled stream went away")
}

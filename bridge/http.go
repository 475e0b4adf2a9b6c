package bridge

// The http module: Go's net/http behind hidden-async Lua functions. Every
// function is Go; no Lua runs at registration and no helper is left where
// a script could reach it.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// HTTPOptions configure RegisterHTTP. The zero value is ready to use.
type HTTPOptions struct {
	// Client sends the requests. Nil means a client of the module's own,
	// with http.DefaultTransport's settings and more idle connections per
	// host (Close closes them); it uses the proxies the environment names
	// (HTTP_PROXY, ...) only when no AllowHosts apply, since every dial,
	// a proxy's too, must then be to an allowed host.
	// A given Client is used as it is, except when AllowHosts apply: then
	// the module uses a copy whose redirects are checked, and, when its
	// Transport is an *http.Transport (or nil), a clone of that transport
	// whose every dial is checked too (its idle connections are closed
	// by Close). Any other RoundTripper is checked on each request, every
	// redirect hop included, but not at dial time.
	Client *http.Client

	// AllowHosts, when not empty, are the only hosts a script may reach;
	// under Options.Sandbox they always are (an empty list: none). An
	// entry is a host name ("api.example.com"; "*.example.com" for any
	// name under example.com, not example.com itself), an IP address or
	// a CIDR prefix ("10.0.0.0/8"), each optionally with a port
	// ("localhost:8080", "[::1]:8080"; without one, any port). Names
	// compare case-insensitively, without a trailing dot. The URL's host
	// is checked before each request and at every redirect hop, and the
	// address of every connection at dial time, so neither a redirect nor
	// a proxy leaves the list. A name entry allows whatever that name
	// resolves to; an IP entry is reached only through a URL naming that
	// IP (a host name that resolves to it is not in the list).
	AllowHosts []string

	// MaxBodyBytes bounds the body bytes one call hands to Lua: one
	// response's body, the whole of a stream, or the bodies of a get_all
	// together. Past it the call fails with an error naming the limit.
	// 0 means 16 MiB; a negative value, no limit.
	MaxBodyBytes int64

	// Timeout bounds each request: until its body has been read (for
	// request, get, post and each get_all item), or, for stream, until
	// the response headers arrive and then each wait for the next chunk.
	// A script's timeout= replaces it for a request, but under
	// Options.Sandbox may only shorten it. 0 means 30 s.
	Timeout time.Duration
}

// Defaults of HTTPOptions.
const (
	DefaultHTTPMaxBodyBytes = 16 << 20
	DefaultHTTPTimeout      = 30 * time.Second
)

// Bounds on what a script may send.
const (
	httpMaxURL         = 64 << 10 // bytes of a URL
	httpMaxHeaders     = 256      // header fields of a request
	httpMaxHeaderBytes = 64 << 10 // names and values together
	httpMaxConcurrency = 1024     // get_all's concurrency
	httpChunkSize      = 32 << 10 // stream: bytes read at a time
)

// RegisterHTTP gives rt's scripts the module http (require("http"), also
// the global http), on Go's net/http:
//
//	local resp = http.request{method = "PUT", url = u, headers = {["x-id"] = "7"}, body = "...", timeout = 5}
//	local resp = http.get(url[, {headers =, timeout =}])
//	local resp = http.post(url, body[, {headers =, timeout =}])
//	for chunk in http.stream{url = u} do ... end        -- the body in chunks
//	for line in http.stream{url = u, lines = true} do ... end
//	for ev in http.stream{url = u, sse = true} do print(ev.event, ev.data, ev.id) end
//	local resps = http.get_all({u1, u2, u3}, {concurrency = 8})
//
// A response is a table {status=, headers=, body=, url=}: status the
// integer code, url the final URL after redirects, body a string.
// Response header names are lower case; a header sent several times has
// its values joined by ", " (as RFC 9110 allows), set-cookie's by "\n".
// Request headers are a table of name = string (or number), or name =
// list of strings for a header sent several times. A table body is sent
// as JSON (Content-Type application/json unless headers set one), a
// string body as it is. method defaults to GET (POST for post).
//
// A 4xx or 5xx status is a response, not an error. Failures to get one
// (a bad URL, a scheme other than http and https, a host outside
// AllowHosts, a refused connection, a TLS failure, a timeout, a body
// over MaxBodyBytes) raise a "bridge" error whose op is the function
// ("http.get") and whose message names the method, the URL and the cause.
// Cancelling the calling task, or the run's context, cancels the request.
//
// stream raises such an error for a status other than 2xx too (with the
// start of the body); it yields the body in chunks as they arrive, or its
// lines (without "\n" or "\r\n") with lines = true, or its server-sent
// events {event=, data=, id=} (event defaults to "message"; id is nil
// until the server sets one) with sse = true. Leaving the loop (break)
// cancels the request. get_all(list[, {concurrency =, headers =,
// timeout =}]) fetches a list of URLs (or request tables) with at most
// concurrency (default 8) requests in flight and returns the responses
// in input order; the first failure cancels the others and is raised,
// naming the item.
func RegisterHTTP(rt *Runtime, opts HTTPOptions) error {
	m, err := newHTTPModule(rt.sandbox, opts)
	if err != nil {
		return err
	}
	if m.owned != nil {
		rt.atClose(m.owned.CloseIdleConnections)
	}
	for _, err := range []error{
		rt.RegisterFunc("http.request", m.request),
		rt.RegisterFunc("http.get", m.get),
		rt.RegisterFunc("http.post", m.post),
		rt.RegisterStream("http.stream", m.stream),
		rt.RegisterFunc("http.get_all", m.getAll),
	} {
		if err != nil {
			return err
		}
	}
	return nil
}

type httpModule struct {
	client  *http.Client
	owned   *http.Transport // closed with the Runtime, if ours
	allow   *hostList       // nil: every host
	maxBody int64           // < 0: none
	timeout time.Duration
	sandbox bool
}

func newHTTPModule(sandbox bool, opts HTTPOptions) (*httpModule, error) {
	m := &httpModule{maxBody: opts.MaxBodyBytes, timeout: opts.Timeout, sandbox: sandbox}
	if m.maxBody == 0 {
		m.maxBody = DefaultHTTPMaxBodyBytes
	}
	if m.timeout <= 0 {
		m.timeout = DefaultHTTPTimeout
	}
	if sandbox || len(opts.AllowHosts) > 0 {
		hl, err := parseHostList(opts.AllowHosts)
		if err != nil {
			return nil, fmt.Errorf("moonbridge: RegisterHTTP: %w", err)
		}
		m.allow = hl
	}
	switch c := opts.Client; {
	case c == nil:
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.MaxIdleConns = 512
		tr.MaxIdleConnsPerHost = 256
		if m.allow != nil {
			tr.Proxy = nil
		}
		m.owned = tr
		m.client = &http.Client{Transport: tr}
	case m.allow == nil:
		m.client = c
	default:
		cc := *c
		switch tr := c.Transport.(type) {
		case nil:
			m.owned = http.DefaultTransport.(*http.Transport).Clone()
			cc.Transport = m.owned
		case *http.Transport:
			m.owned = tr.Clone()
			cc.Transport = m.owned
		default:
			cc.Transport = checkedRoundTripper{tr, m.allow}
		}
		m.client = &cc
	}
	if m.allow != nil {
		if m.owned != nil {
			m.allow.guardDials(m.owned)
		}
		next := m.client.CheckRedirect
		allow := m.allow
		m.client.CheckRedirect = func(req *http.Request, via []*http.Request) error {
			if err := allow.checkURL(req.URL); err != nil {
				return fmt.Errorf("redirect to %s refused: %w", shortURL(req.URL), err)
			}
			if next != nil {
				return next(req, via)
			}
			if len(via) >= 10 {
				return errors.New("stopped after 10 redirects")
			}
			return nil
		}
	}
	return m, nil
}

// ---------------------------------------------------------------------
// AllowHosts.

type hostRule struct {
	name     string       // a host name, lower case; "" for an IP rule
	wildcard bool         // name is a suffix: "*.example.com" -> ".example.com"
	prefix   netip.Prefix // IP rules: a single address is a /32 or /128
	port     string       // "" for any
}

type hostList struct{ rules []hostRule }

func parseHostList(entries []string) (*hostList, error) {
	hl := &hostList{}
	for _, e := range entries {
		r, err := parseHostRule(e)
		if err != nil {
			return nil, fmt.Errorf("AllowHosts entry %q: %w", e, err)
		}
		hl.rules = append(hl.rules, r)
	}
	return hl, nil
}

func parseHostRule(e string) (hostRule, error) {
	var r hostRule
	s := strings.TrimSpace(e)
	if p, err := netip.ParsePrefix(s); err == nil {
		r.prefix = p.Masked()
		return r, nil
	}
	host := s
	if h, port, err := net.SplitHostPort(s); err == nil {
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return r, fmt.Errorf("bad port %q", port)
		}
		host, r.port = h, port
	} else if strings.HasPrefix(s, "[") && strings.HasSuffix(s, "]") {
		host = s[1 : len(s)-1]
	}
	if a, err := netip.ParseAddr(host); err == nil {
		r.prefix = netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen())
		return r, nil
	}
	host = normalHost(host)
	if rest, ok := strings.CutPrefix(host, "*."); ok {
		host, r.wildcard = rest, true
	}
	if host == "" || strings.ContainsAny(host, "*/@ ") {
		return r, errors.New("want a host name, *.domain, an IP address or a CIDR prefix, with an optional :port")
	}
	r.name = host
	return r, nil
}

// normalHost lower-cases a host name and drops one trailing dot.
func normalHost(h string) string {
	return strings.TrimSuffix(strings.ToLower(h), ".")
}

// allows reports whether host (a name or an IP, without brackets) on port
// is in the list.
func (hl *hostList) allows(host, port string) bool {
	a, ipErr := netip.ParseAddr(host)
	name := normalHost(host)
	for _, r := range hl.rules {
		if r.port != "" && r.port != port {
			continue
		}
		switch {
		case r.name == "":
			if ipErr == nil && a.Zone() == "" && r.prefix.Contains(a.Unmap()) {
				return true
			}
		case r.wildcard:
			if ipErr != nil && strings.HasSuffix(name, "."+r.name) {
				return true
			}
		default:
			if ipErr != nil && name == r.name {
				return true
			}
		}
	}
	return false
}

func (hl *hostList) check(host, port string) error {
	if hl.allows(host, port) {
		return nil
	}
	if len(hl.rules) == 0 {
		return fmt.Errorf("host %q is not allowed (the sandbox allows no hosts: HTTPOptions.AllowHosts is empty)", host)
	}
	return fmt.Errorf("host %q is not in AllowHosts", net.JoinHostPort(host, port))
}

func (hl *hostList) checkURL(u *url.URL) error {
	return hl.check(u.Hostname(), urlPort(u))
}

func urlPort(u *url.URL) string {
	if p := u.Port(); p != "" {
		return p
	}
	if strings.EqualFold(u.Scheme, "https") {
		return "443"
	}
	return "80"
}

// guardDials makes tr check the address of every connection it opens: a
// proxy, or anything else the transport would dial, must be in the list.
func (hl *hostList) guardDials(tr *http.Transport) {
	guard := func(dial func(ctx context.Context, network, addr string) (net.Conn, error)) func(ctx context.Context, network, addr string) (net.Conn, error) {
		return func(ctx context.Context, network, addr string) (net.Conn, error) {
			host, port, err := net.SplitHostPort(addr)
			if err != nil {
				return nil, err
			}
			if err := hl.check(host, port); err != nil {
				return nil, fmt.Errorf("dial %s refused: %w", addr, err)
			}
			return dial(ctx, network, addr)
		}
	}
	if tr.DialTLSContext != nil {
		tr.DialTLSContext = guard(tr.DialTLSContext)
	}
	dial := tr.DialContext
	if dial == nil {
		dial = (&net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}).DialContext
	}
	tr.DialContext = guard(dial)
	// The deprecated hooks would bypass the guard: DialContext and
	// DialTLSContext take their place.
	tr.Dial = nil
	tr.DialTLS = nil
}

// checkedRoundTripper checks every request a RoundTripper we cannot
// clone is given (redirect hops arrive as requests of their own).
type checkedRoundTripper struct {
	rt    http.RoundTripper
	allow *hostList
}

func (c checkedRoundTripper) RoundTrip(req *http.Request) (*http.Response, error) {
	if err := c.allow.checkURL(req.URL); err != nil {
		if req.Body != nil {
			req.Body.Close()
		}
		return nil, err
	}
	return c.rt.RoundTrip(req)
}

// ---------------------------------------------------------------------
// Requests as Lua gives them.

// httpReq is a request read from Lua, checked.
type httpReq struct {
	method  string
	url     *url.URL
	header  http.Header
	host    string // a Host header given by the script
	body    []byte
	hasBody bool
	timeout time.Duration
	lines   bool
	sse     bool
}

// httpFields are the fields of a request table, per function.
var (
	httpRequestFields = []string{"body", "headers", "method", "timeout", "url"}
	httpStreamFields  = []string{"body", "headers", "lines", "method", "sse", "timeout", "url"}
	httpOptionFields  = []string{"headers", "timeout"}
	httpGetAllFields  = []string{"concurrency", "headers", "timeout"}
)

// table returns argument i as a table with string keys, or an error.
func httpTable(args Args, i int, what string) (map[string]any, error) {
	switch v := args.Get(i).(type) {
	case map[string]any:
		return v, nil
	case []any:
		if len(v) == 0 {
			return map[string]any{}, nil
		}
		return nil, args.bad(i, what)
	}
	return nil, args.bad(i, what)
}

// checkFields refuses a field the function does not know: a misspelt
// "hedaers" is an error, not a silently missing header.
func checkFields(t map[string]any, known []string) error {
	for k := range t {
		if !slices.Contains(known, k) {
			return fmt.Errorf("unknown field %q (fields are %s)", clip(k, 40), strings.Join(known, ", "))
		}
	}
	return nil
}

// parseReq reads a request table (fields as known lists).
func (m *httpModule) parseReq(t map[string]any, known []string) (*httpReq, error) {
	if err := checkFields(t, known); err != nil {
		return nil, err
	}
	r := &httpReq{method: http.MethodGet, timeout: m.timeout}
	s, ok := t["url"].(string)
	if !ok {
		if t["url"] == nil {
			return nil, errors.New("field 'url' is missing")
		}
		return nil, fmt.Errorf("field 'url' must be a string, got %s", luaType(t["url"]))
	}
	u, err := m.parseURL(s)
	if err != nil {
		return nil, err
	}
	r.url = u
	if v, ok := t["method"]; ok {
		if r.method, err = httpMethod(v); err != nil {
			return nil, err
		}
	}
	if err := m.options(r, t); err != nil {
		return nil, err
	}
	if v, ok := t["body"]; ok {
		if err := r.setBody(v); err != nil {
			return nil, err
		}
	}
	for _, f := range []struct {
		name string
		dst  *bool
	}{{"lines", &r.lines}, {"sse", &r.sse}} {
		if v, ok := t[f.name]; ok {
			b, isBool := v.(bool)
			if !isBool {
				return nil, fmt.Errorf("field '%s' must be a boolean, got %s", f.name, luaType(v))
			}
			*f.dst = b
		}
	}
	if r.lines && r.sse {
		return nil, errors.New("fields 'lines' and 'sse' exclude each other")
	}
	return r, nil
}

// options applies the headers and timeout fields of t to r.
func (m *httpModule) options(r *httpReq, t map[string]any) error {
	if v, ok := t["headers"]; ok {
		if err := r.setHeaders(v); err != nil {
			return err
		}
	}
	if v, ok := t["timeout"]; ok {
		d, err := m.httpTimeout(v)
		if err != nil {
			return err
		}
		r.timeout = d
	}
	return nil
}

func (m *httpModule) parseURL(s string) (*url.URL, error) {
	if len(s) > httpMaxURL {
		return nil, fmt.Errorf("URL too long (%d bytes, at most %d)", len(s), httpMaxURL)
	}
	u, err := url.Parse(s)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, fmt.Errorf("bad URL %q: %v", clip(s, 200), err)
	}
	switch strings.ToLower(u.Scheme) {
	case "http", "https":
	case "":
		return nil, fmt.Errorf("bad URL %q: no scheme (want http:// or https://)", clip(s, 200))
	default:
		return nil, fmt.Errorf("bad URL %q: scheme %q is not allowed (only http and https)", clip(s, 200), clip(u.Scheme, 40))
	}
	if u.Hostname() == "" {
		return nil, fmt.Errorf("bad URL %q: no host", clip(s, 200))
	}
	return u, nil
}

func httpMethod(v any) (string, error) {
	s, ok := v.(string)
	if !ok {
		return "", fmt.Errorf("field 'method' must be a string, got %s", luaType(v))
	}
	if s == "" || len(s) > 32 || !isToken(s) {
		return "", fmt.Errorf("field 'method': %q is not a method name", clip(s, 40))
	}
	return strings.ToUpper(s), nil
}

// isToken reports whether s is an HTTP token (RFC 9110 §5.6.2).
func isToken(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' {
			continue
		}
		if !strings.ContainsRune("!#$%&'*+-.^_`|~", rune(c)) {
			return false
		}
	}
	return true
}

func (m *httpModule) httpTimeout(v any) (time.Duration, error) {
	var secs float64
	switch n := v.(type) {
	case int64:
		secs = float64(n)
	case float64:
		secs = n
	default:
		return 0, fmt.Errorf("field 'timeout' must be a number of seconds, got %s", luaType(v))
	}
	if !(secs > 0) || math.IsInf(secs, 0) || secs > 1e9 {
		return 0, fmt.Errorf("field 'timeout' must be a positive number of seconds, got %v", v)
	}
	d := time.Duration(secs * float64(time.Second))
	if m.sandbox && d > m.timeout {
		d = m.timeout
	}
	return max(d, 1), nil
}

func (r *httpReq) setHeaders(v any) error {
	t, ok := v.(map[string]any)
	if !ok {
		if l, isList := v.([]any); isList && len(l) == 0 {
			return nil
		}
		return fmt.Errorf("field 'headers' must be a table of name = value, got %s", luaType(v))
	}
	if len(t) > httpMaxHeaders {
		return fmt.Errorf("too many headers (%d, at most %d)", len(t), httpMaxHeaders)
	}
	r.header = make(http.Header, len(t))
	size := 0
	for name, val := range t {
		if name == "" || !isToken(name) {
			return fmt.Errorf("header name %q is not valid", clip(name, 40))
		}
		var vals []string
		switch x := val.(type) {
		case string:
			vals = []string{x}
		case int64, float64:
			vals = []string{fmt.Sprint(x)}
		case []any:
			for _, e := range x {
				s, ok := e.(string)
				if !ok {
					return fmt.Errorf("header %q: a list of values must hold strings, got %s", clip(name, 40), luaType(e))
				}
				vals = append(vals, s)
			}
		default:
			return fmt.Errorf("header %q must be a string or a list of strings, got %s", clip(name, 40), luaType(val))
		}
		for _, s := range vals {
			if strings.ContainsAny(s, "\r\n\x00") {
				return fmt.Errorf("header %q: value holds a line break or a NUL", clip(name, 40))
			}
			size += len(name) + len(s)
		}
		if size > httpMaxHeaderBytes {
			return fmt.Errorf("headers too large (over %d bytes)", httpMaxHeaderBytes)
		}
		if strings.EqualFold(name, "host") {
			if len(vals) != 1 {
				return errors.New("header \"host\" takes one value")
			}
			r.host = vals[0]
			continue
		}
		key := http.CanonicalHeaderKey(name)
		r.header[key] = append(r.header[key], vals...)
	}
	return nil
}

// setBody takes a string as it is and encodes a table as JSON.
func (r *httpReq) setBody(v any) error {
	switch x := v.(type) {
	case nil:
		return nil
	case string:
		r.body, r.hasBody = []byte(x), true
		return nil
	case []any, map[string]any:
		b, err := json.Marshal(x)
		if err != nil {
			var ue *json.UnsupportedValueError
			if errors.As(err, &ue) {
				return fmt.Errorf("body cannot be sent as JSON: %s", ue.Str)
			}
			return fmt.Errorf("body cannot be sent as JSON: %v", err)
		}
		r.body, r.hasBody = b, true
		if r.header == nil {
			r.header = http.Header{}
		}
		if r.header.Get("Content-Type") == "" {
			r.header.Set("Content-Type", "application/json")
		}
		return nil
	}
	return fmt.Errorf("field 'body' must be a string or a table (sent as JSON), got %s", luaType(v))
}

// ---------------------------------------------------------------------
// Sending.

var errHTTPTimeout = errors.New("timeout")

// httpError is a failure to get a response: "GET url: cause", raised in
// Lua as kind "bridge", op "http" (SPEC §6), whichever function failed.
func httpError(r *httpReq, err error) error {
	return &OpError{Op: "http", Kind: "bridge", Err: fmt.Errorf("%s %s: %w", r.method, shortURL(r.url), err)}
}

// do sends r and returns the response, with the request's context (the
// caller reads the body under it, then calls cancel). With idle (a
// stream's), ctx is the request's own and r.timeout bounds only the wait
// for the headers: idle cancels ctx with errHTTPTimeout past it.
func (m *httpModule) do(ctx context.Context, r *httpReq, idle context.CancelCauseFunc) (*http.Response, context.Context, context.CancelFunc, error) {
	if m.allow != nil {
		if err := m.allow.checkURL(r.url); err != nil {
			return nil, nil, nil, httpError(r, err)
		}
	}
	rctx, cancel := ctx, context.CancelFunc(func() {})
	if idle == nil {
		rctx, cancel = context.WithTimeoutCause(ctx, r.timeout, errHTTPTimeout)
	}
	var body io.Reader
	if r.hasBody {
		body = bytes.NewReader(r.body)
	}
	req, err := http.NewRequestWithContext(rctx, r.method, r.url.String(), body)
	if err != nil {
		cancel()
		return nil, nil, nil, httpError(r, err)
	}
	for k, v := range r.header {
		req.Header[k] = v
	}
	if r.host != "" {
		req.Host = r.host
	}
	var resp *http.Response
	if idle != nil {
		t := time.AfterFunc(r.timeout, func() { idle(errHTTPTimeout) })
		resp, err = m.client.Do(req)
		t.Stop()
	} else {
		resp, err = m.client.Do(req)
	}
	if err != nil {
		cause := m.cause(rctx, r, err)
		cancel()
		return nil, nil, nil, httpError(r, cause)
	}
	return resp, rctx, cancel, nil
}

// cause turns a client error into what a script needs to read: the
// timeout, or the underlying failure without net/http's repetition of
// the method and URL.
func (m *httpModule) cause(rctx context.Context, r *httpReq, err error) error {
	if errors.Is(context.Cause(rctx), errHTTPTimeout) {
		return fmt.Errorf("timed out after %v (timeout)", r.timeout)
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// readBody reads a response's body within the budget left (nil: none).
// The bytes go to Lua as a string: the codec encodes a []byte as one.
func (m *httpModule) readBody(rctx context.Context, r *httpReq, resp *http.Response, budget *atomic.Int64) ([]byte, error) {
	var src io.Reader = resp.Body
	if budget != nil {
		left := budget.Load()
		if resp.ContentLength > left {
			return nil, httpError(r, m.overLimit())
		}
		src = io.LimitReader(resp.Body, left+1)
	}
	var buf bytes.Buffer
	if resp.ContentLength > 0 && resp.ContentLength < 1<<20 {
		buf.Grow(int(resp.ContentLength) + bytes.MinRead)
	}
	n, err := buf.ReadFrom(src)
	if err != nil {
		return nil, httpError(r, m.cause(rctx, r, fmt.Errorf("reading the body: %w", err)))
	}
	if budget != nil && budget.Add(-n) < 0 {
		return nil, httpError(r, m.overLimit())
	}
	return buf.Bytes(), nil
}

func (m *httpModule) overLimit() error {
	return fmt.Errorf("response body over the %d-byte limit (HTTPOptions.MaxBodyBytes)", m.maxBody)
}

func (m *httpModule) budget() *atomic.Int64 {
	if m.maxBody < 0 {
		return nil
	}
	b := new(atomic.Int64)
	b.Store(m.maxBody)
	return b
}

// fetch sends r and reads the whole response into a Lua table.
func (m *httpModule) fetch(ctx context.Context, r *httpReq, budget *atomic.Int64) (map[string]any, error) {
	resp, rctx, cancel, err := m.do(ctx, r, nil)
	if err != nil {
		return nil, err
	}
	defer cancel()
	defer resp.Body.Close()
	body, err := m.readBody(rctx, r, resp, budget)
	if err != nil {
		return nil, err
	}
	return map[string]any{
		"status":  int64(resp.StatusCode),
		"headers": luaHeaders(resp.Header),
		"body":    body,
		"url":     resp.Request.URL.String(),
	}, nil
}

// luaHeaders is the response header table: lower-case names; several
// values joined by ", ", set-cookie's by "\n".
func luaHeaders(h http.Header) map[string]any {
	t := make(map[string]any, len(h))
	for k, v := range h {
		name := strings.ToLower(k)
		sep := ", "
		if name == "set-cookie" {
			sep = "\n"
		}
		t[name] = strings.Join(v, sep)
	}
	return t
}

// ---------------------------------------------------------------------
// The module's functions.

func (m *httpModule) request(ctx context.Context, args Args) ([]any, error) {
	t, err := httpTable(args, 0, "request table")
	if err != nil {
		return nil, err
	}
	r, err := m.parseReq(t, httpRequestFields)
	if err != nil {
		return nil, err
	}
	resp, err := m.fetch(ctx, r, m.budget())
	if err != nil {
		return nil, err
	}
	return []any{resp}, nil
}

// simple reads the arguments of get and post: the URL, then (post) the
// body, then the options.
func (m *httpModule) simple(args Args, method string, hasBody bool) (*httpReq, error) {
	u, ok := args.Get(0).(string)
	if !ok {
		return nil, args.bad(0, "URL string")
	}
	t := map[string]any{"url": u, "method": method}
	next := 1
	if hasBody {
		if args.Get(1) != nil {
			t["body"] = args.Get(1)
		}
		next = 2
	}
	if args.Get(next) != nil {
		o, err := httpTable(args, next, "options table")
		if err != nil {
			return nil, err
		}
		if err := checkFields(o, httpOptionFields); err != nil {
			return nil, fmt.Errorf("bad argument #%d (%w)", next+1, err)
		}
		for k, v := range o {
			t[k] = v
		}
	}
	return m.parseReq(t, httpRequestFields)
}

func (m *httpModule) get(ctx context.Context, args Args) ([]any, error) {
	r, err := m.simple(args, http.MethodGet, false)
	if err != nil {
		return nil, err
	}
	resp, err := m.fetch(ctx, r, m.budget())
	if err != nil {
		return nil, err
	}
	return []any{resp}, nil
}

func (m *httpModule) post(ctx context.Context, args Args) ([]any, error) {
	r, err := m.simple(args, http.MethodPost, true)
	if err != nil {
		return nil, err
	}
	resp, err := m.fetch(ctx, r, m.budget())
	if err != nil {
		return nil, err
	}
	return []any{resp}, nil
}

// getAll fetches a list with a bounded number of workers; the first
// failure cancels the rest. Every worker has returned when it returns.
func (m *httpModule) getAll(ctx context.Context, args Args) ([]any, error) {
	list, err := args.Slice(0)
	if err != nil {
		return nil, args.bad(0, "list of URLs")
	}
	concurrency := 8
	common := map[string]any{}
	if args.Get(1) != nil {
		o, err := httpTable(args, 1, "options table")
		if err != nil {
			return nil, err
		}
		if err := checkFields(o, httpGetAllFields); err != nil {
			return nil, fmt.Errorf("bad argument #2 (%w)", err)
		}
		if v, ok := o["concurrency"]; ok {
			n, err := NewArgs("", v).Int(0)
			if err != nil || n < 1 || n > httpMaxConcurrency {
				return nil, fmt.Errorf("option 'concurrency' must be an integer from 1 to %d, got %v", httpMaxConcurrency, v)
			}
			concurrency = int(n)
		}
		for k, v := range o {
			if k != "concurrency" {
				common[k] = v
			}
		}
	}
	reqs := make([]*httpReq, len(list))
	for i, item := range list {
		var t map[string]any
		switch x := item.(type) {
		case string:
			t = map[string]any{"url": x}
		case map[string]any:
			t = x
			if _, ok := t["url"]; !ok {
				return nil, fmt.Errorf("item %d: field 'url' is missing", i+1)
			}
		default:
			return nil, fmt.Errorf("item %d must be a URL string or a request table, got %s", i+1, luaType(item))
		}
		merged := t
		if len(common) > 0 {
			merged = make(map[string]any, len(t)+len(common))
			for k, v := range common {
				merged[k] = v
			}
			for k, v := range t {
				merged[k] = v
			}
		}
		if reqs[i], err = m.parseReq(merged, httpRequestFields); err != nil {
			return nil, fmt.Errorf("item %d: %w", i+1, err)
		}
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	budget := m.budget()
	results := make([]any, len(reqs))
	var (
		next     atomic.Int64
		failOnce sync.Once
		failure  error
		wg       sync.WaitGroup
	)
	for range min(concurrency, len(reqs)) {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= len(reqs) || ctx.Err() != nil {
					return
				}
				resp, err := m.fetch(ctx, reqs[i], budget)
				if err != nil {
					failOnce.Do(func() {
						failure = fmt.Errorf("item %d: %w", i+1, err)
						cancel()
					})
					return
				}
				results[i] = resp
			}
		})
	}
	wg.Wait()
	if failure != nil {
		return nil, failure
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return []any{results}, nil
}

func (m *httpModule) stream(ctx context.Context, args Args, emit func(any) error) error {
	t, err := httpTable(args, 0, "request table")
	if err != nil {
		return err
	}
	r, err := m.parseReq(t, httpStreamFields)
	if err != nil {
		return err
	}
	ctx, stop := context.WithCancelCause(ctx)
	defer stop(nil)
	resp, rctx, cancel, err := m.do(ctx, r, stop)
	if err != nil {
		return err
	}
	defer cancel()
	defer resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		start, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		msg := fmt.Sprintf("status %d %s", resp.StatusCode, http.StatusText(resp.StatusCode))
		if len(start) > 0 {
			msg += ": " + strings.ToValidUTF8(string(start), "?")
		}
		return httpError(r, errors.New(msg))
	}
	body := &idleReader{r: resp.Body, timeout: r.timeout, cancel: stop}
	var budget int64 = -1
	if m.maxBody >= 0 {
		budget = m.maxBody
	}
	fail := func(err error) error {
		if errors.Is(err, errOverBudget) {
			return httpError(r, m.overLimit())
		}
		if errors.Is(context.Cause(ctx), errHTTPTimeout) {
			return httpError(r, fmt.Errorf("timed out: no data for %v (timeout)", r.timeout))
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return httpError(r, m.cause(rctx, r, fmt.Errorf("reading the body: %w", err)))
	}
	switch {
	case r.lines:
		lr := &lineReader{br: bufio.NewReaderSize(body, httpChunkSize), budget: budget}
		for {
			line, err := lr.next(false)
			if err == io.EOF {
				return nil
			}
			if err != nil {
				return fail(err)
			}
			if err := emit(line); err != nil {
				return err
			}
		}
	case r.sse:
		lr := &lineReader{br: bufio.NewReaderSize(body, httpChunkSize), budget: budget}
		return readSSE(lr, emit, fail)
	}
	chunk := make([]byte, httpChunkSize)
	for {
		n, err := body.Read(chunk)
		if n > 0 {
			if budget >= 0 {
				if budget -= int64(n); budget < 0 {
					return fail(errOverBudget)
				}
			}
			if err := emit(chunk[:n]); err != nil {
				return err
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fail(err)
		}
	}
}

// idleReader cancels the request when a read waits longer than timeout.
type idleReader struct {
	r       io.Reader
	timeout time.Duration
	cancel  context.CancelCauseFunc
}

func (ir *idleReader) Read(p []byte) (int, error) {
	t := time.AfterFunc(ir.timeout, func() { ir.cancel(errHTTPTimeout) })
	n, err := ir.r.Read(p)
	t.Stop()
	return n, err
}

var errOverBudget = errors.New("over budget")

// lineReader splits a body into lines: at "\n" (a "\r" before it
// dropped), or with sse also at a lone "\r", as the SSE format says.
// Every byte read counts against budget (< 0: none).
type lineReader struct {
	br     *bufio.Reader
	budget int64
	line   []byte
	skipLF bool // sse: the last line ended in "\r"; a "\n" now belongs to it
}

// next returns the next line, valid until the next call. The last line
// is returned even without an end; then io.EOF.
func (lr *lineReader) next(sse bool) ([]byte, error) {
	lr.line = lr.line[:0]
	for {
		b, err := lr.br.ReadByte()
		if err != nil {
			if err == io.EOF && len(lr.line) > 0 {
				return lr.line, nil
			}
			return nil, err
		}
		if lr.budget >= 0 {
			if lr.budget--; lr.budget < 0 {
				return nil, errOverBudget
			}
		}
		if lr.skipLF {
			lr.skipLF = false
			if b == '\n' {
				continue
			}
		}
		switch {
		case b == '\n':
			if !sse && len(lr.line) > 0 && lr.line[len(lr.line)-1] == '\r' {
				lr.line = lr.line[:len(lr.line)-1]
			}
			return lr.line, nil
		case b == '\r' && sse:
			lr.skipLF = true
			return lr.line, nil
		}
		lr.line = append(lr.line, b)
	}
}

// readSSE emits the events of a server-sent event stream: "data" lines
// joined by "\n", "event" (default "message") and "id" (kept for the
// events that follow, as the format says); comments and "retry" are
// skipped; an event no blank line ended is dropped at the end.
func readSSE(lr *lineReader, emit func(any) error, fail func(error) error) error {
	var data []byte
	event, id := "", ""
	hasData := false
	for {
		line, err := lr.next(true)
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fail(err)
		}
		if len(line) == 0 {
			if hasData {
				ev := map[string]any{"event": "message", "data": string(data)}
				if event != "" {
					ev["event"] = event
				}
				if id != "" {
					ev["id"] = id
				}
				if err := emit(ev); err != nil {
					return err
				}
			}
			data, event, hasData = data[:0], "", false
			continue
		}
		if line[0] == ':' {
			continue
		}
		name, value, _ := bytes.Cut(line, []byte(":"))
		if len(value) > 0 && value[0] == ' ' {
			value = value[1:]
		}
		switch string(name) {
		case "data":
			if hasData {
				data = append(data, '\n')
			}
			data = append(data, value...)
			hasData = true
		case "event":
			event = string(value)
		case "id":
			if bytes.IndexByte(value, 0) < 0 {
				id = string(value)
			}
		}
	}
}

// shortURL is a URL for a message: its password hidden, and cut short.
func shortURL(u *url.URL) string {
	return clip(u.Redacted(), 200)
}

func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// Test helpers for the HTTP providers: a goroutine leak check, a test
// server with its own client, and the stream behaviours both providers
// share (cancelling, an error from fn).

package llm

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
)

// checkNoLeaks records the number of goroutines and, when the test ends,
// waits up to 2 s for it to come back down, failing with a dump if not.
// Call it first, so that its cleanup runs after every later one.
func checkNoLeaks(t *testing.T) {
	t.Helper()
	before := runtime.NumGoroutine()
	t.Cleanup(func() {
		deadline := time.Now().Add(2 * time.Second)
		for runtime.NumGoroutine() > before {
			if time.Now().After(deadline) {
				buf := make([]byte, 1<<20)
				buf = buf[:runtime.Stack(buf, true)]
				t.Errorf("goroutines leaked: %d at start, %d now\n%s", before, runtime.NumGoroutine(), buf)
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
	})
}

// gotRequest is what a test server received.
type gotRequest struct {
	Method, Path string
	Header       http.Header
	Body         []byte
}

// httpTest is a test server and a client with its own transport, both
// shut when the test ends, with a leak check after.
type httpTest struct {
	srv    *httptest.Server
	client *http.Client
	reqs   chan gotRequest // every request the server received
}

// startHTTPTest serves handle; the request body has been read into
// gotRequest (and sent on reqs) before handle runs.
func startHTTPTest(t *testing.T, handle func(w http.ResponseWriter, r *http.Request)) *httpTest {
	t.Helper()
	checkNoLeaks(t)
	ht := &httpTest{reqs: make(chan gotRequest, 16)}
	ht.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body) // read all: the server then notices a closed connection
		ht.reqs <- gotRequest{r.Method, r.URL.Path, r.Header.Clone(), body}
		handle(w, r)
	}))
	tr := &http.Transport{}
	ht.client = &http.Client{Transport: tr}
	t.Cleanup(func() {
		ht.srv.Close()
		tr.CloseIdleConnections()
	})
	return ht
}

// request returns the one request the server received.
func (ht *httpTest) request(t *testing.T) gotRequest {
	t.Helper()
	select {
	case r := <-ht.reqs:
		return r
	default:
		t.Fatal("the server received no request")
		return gotRequest{}
	}
}

// assertJSON checks that got is the JSON value want, ignoring key order
// and spacing.
func assertJSON(t *testing.T, got []byte, want string) {
	t.Helper()
	var g, w any
	if err := json.Unmarshal(got, &g); err != nil {
		t.Fatalf("request body %q: %v", got, err)
	}
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		t.Fatalf("bad want %q: %v", want, err)
	}
	gb, _ := json.Marshal(g)
	wb, _ := json.Marshal(w)
	if !bytes.Equal(gb, wb) {
		t.Errorf("request body\n got %s\nwant %s", gb, wb)
	}
}

// writeFlush writes s and flushes it to the client.
func writeFlush(w http.ResponseWriter, s string) {
	io.WriteString(w, s)
	w.(http.Flusher).Flush()
}

// writeBytewise writes s one byte at a time, flushing after each.
func writeBytewise(w http.ResponseWriter, s string) {
	for i := 0; i < len(s); i++ {
		writeFlush(w, s[i:i+1])
	}
}

// collect streams req and returns the chunks.
func collect(p Provider, req Request) ([]Chunk, error) {
	var cs []Chunk
	err := p.Stream(context.Background(), req, func(c Chunk) error {
		cs = append(cs, c)
		return nil
	})
	return cs, err
}

// joinChunks is the text of cs, and the last chunk.
func joinChunks(t *testing.T, cs []Chunk) (string, Chunk) {
	t.Helper()
	if len(cs) == 0 {
		t.Fatal("no chunks")
	}
	var b strings.Builder
	for i, c := range cs {
		if c.Done != (i == len(cs)-1) {
			t.Fatalf("chunk %d of %d: Done = %v", i, len(cs), c.Done)
		}
		b.WriteString(c.Content)
	}
	return b.String(), cs[len(cs)-1]
}

// blockingServer writes first, then blocks until the request's context
// is done (reported on closed) or the test ends.
func blockingServer(t *testing.T, contentType, first string) (ht *httpTest, closed chan struct{}) {
	release := make(chan struct{})
	closed = make(chan struct{})
	ht = startHTTPTest(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", contentType)
		writeFlush(w, first)
		select {
		case <-r.Context().Done():
			close(closed)
		case <-release:
		}
	})
	t.Cleanup(func() { close(release) }) // runs before the server's Close
	return ht, closed
}

// waitClosed waits until the server saw the connection close (if it never
// does, the test's own timeout reports it, with every goroutine's stack).
func waitClosed(t *testing.T, closed chan struct{}) {
	t.Helper()
	<-closed
}

// testStreamCancel checks that cancelling ctx while the server is silent
// stops Stream with context.Canceled and closes the connection. The server
// sends nothing more until the test ends, so only the cancellation can
// end Stream: no clock is needed to tell.
func testStreamCancel(t *testing.T, newP func(url string, c *http.Client) Provider, contentType, first, firstText string) {
	ht, closed := blockingServer(t, contentType, first)
	p := newP(ht.srv.URL, ht.client)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	gotFirst := make(chan struct{})
	go func() {
		<-gotFirst
		cancel()
	}()
	var texts []string
	err := p.Stream(ctx, Request{Prompt: "hi"}, func(c Chunk) error {
		texts = append(texts, c.Content)
		if len(texts) == 1 {
			close(gotFirst)
		}
		return nil
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	if len(texts) != 1 || texts[0] != firstText {
		t.Errorf("chunks = %q, want [%q]", texts, firstText)
	}
	waitClosed(t, closed)
}

// testStreamFnError checks that an error from fn stops the stream, is
// returned, and closes the connection.
func testStreamFnError(t *testing.T, newP func(url string, c *http.Client) Provider, contentType, first string) {
	ht, closed := blockingServer(t, contentType, first)
	p := newP(ht.srv.URL, ht.client)
	errStop := errors.New("stop here")
	calls := 0
	err := p.Stream(context.Background(), Request{Prompt: "hi"}, func(c Chunk) error {
		calls++
		return errStop
	})
	if !errors.Is(err, errStop) {
		t.Fatalf("err = %v, want %v", err, errStop)
	}
	if calls != 1 {
		t.Errorf("fn called %d times, want 1", calls)
	}
	waitClosed(t, closed)
}

// testCancelledBeforeStart checks a ctx cancelled before the request.
func testCancelledBeforeStart(t *testing.T, p Provider) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := p.Stream(ctx, Request{Prompt: "hi"}, func(Chunk) error {
		t.Error("fn called")
		return nil
	})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Stream: err = %v, want context.Canceled", err)
	}
	if _, err := p.Generate(ctx, Request{Prompt: "hi"}); !errors.Is(err, context.Canceled) {
		t.Errorf("Generate: err = %v, want context.Canceled", err)
	}
}

// assertAPIError checks that err is an *APIError with these fields and
// that its text holds the status and the message.
func assertAPIError(t *testing.T, err error, provider string, status int, msg, typ string) {
	t.Helper()
	var ae *APIError
	if !errors.As(err, &ae) {
		t.Fatalf("err = %v (%T), want *APIError", err, err)
	}
	if ae.Provider != provider || ae.StatusCode != status || ae.Message != msg || ae.Type != typ {
		t.Errorf("APIError = %+v, want {%s %d %q %q}", *ae, provider, status, msg, typ)
	}
	s := err.Error()
	if !strings.Contains(s, msg) || !strings.Contains(s, strconv.Itoa(status)) {
		t.Errorf("err.Error() = %q, want the status and %q", s, msg)
	}
}

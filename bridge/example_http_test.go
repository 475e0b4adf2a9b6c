package bridge_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/moonbridge/moonbridge/bridge"
)

// Scripts fetch URLs with the http module; here the only host they may
// reach is a local test server.
func ExampleRegisterHTTP() {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/events" {
			io.WriteString(w, "data: one\n\nevent: done\ndata: two\n\n")
			return
		}
		fmt.Fprintf(w, "%s %s", r.Method, r.URL.Path)
	}))
	defer srv.Close()

	rt, err := bridge.New(bridge.Options{Stdout: os.Stdout, Sandbox: true})
	if err != nil {
		panic(err)
	}
	defer rt.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	if err := bridge.RegisterHTTP(rt, bridge.HTTPOptions{AllowHosts: []string{host}}); err != nil {
		panic(err)
	}
	rt.SetGlobal(context.Background(), "BASE", srv.URL)
	err = rt.RunString(context.Background(), "main", `
		local r = http.get(BASE .. "/hello")
		print(r.status, r.body)
		for _, r in ipairs(http.get_all({BASE .. "/a", BASE .. "/b"})) do print(r.body) end
		for ev in http.stream{url = BASE .. "/events", sse = true} do print(ev.event, ev.data) end
		local ok, err = pcall(http.get, "http://example.com/")
		print(err.kind, err.message:match("is not in AllowHosts") ~= nil)
	`)
	if err != nil {
		fmt.Println(err)
	}
	// Output:
	// 200	GET /hello
	// GET /a
	// GET /b
	// message	one
	// done	two
	// bridge	true
}

// Get reads a global a script left behind.
func ExampleRuntime_Get() {
	rt, err := bridge.New(bridge.Options{})
	if err != nil {
		panic(err)
	}
	defer rt.Close()
	ctx := context.Background()
	rt.RunString(ctx, "main", `stats = {runs = 3, last = "ok"}`)
	v, err := rt.Get(ctx, "stats")
	fmt.Println(v, err)
	// Output: map[last:ok runs:3] <nil>
}

// With a TracerProvider each run and each bridge call is a span; the call's
// ctx carries its span, so the host's own spans nest under it.
func ExampleOptions_tracerProvider() {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	rt, err := bridge.New(bridge.Options{TracerProvider: tp})
	if err != nil {
		panic(err)
	}
	defer rt.Close()
	rt.RegisterFunc("db.query", func(ctx context.Context, args bridge.Args) ([]any, error) {
		_, span := tp.Tracer("host").Start(ctx, "sql")
		defer span.End()
		return []any{"row"}, nil
	})
	rt.RunString(context.Background(), "main", `db.query("select 1")`)
	for _, s := range rec.Ended() {
		fmt.Println(s.Name(), "child of", s.Parent().SpanID() != [8]byte{})
	}
	// Output:
	// sql child of true
	// db.query child of true
	// main child of false
}

package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// syncBuffer is a bytes.Buffer safe for the worker's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestWorkerAndSubmit runs `moonbridge worker` with its embedded server
// and submits jobs to it with `moonbridge submit`.
func TestWorkerAndSubmit(t *testing.T) {
	dir := t.TempDir()
	scripts := filepath.Join(dir, "scripts")
	os.Mkdir(scripts, 0o755)
	os.WriteFile(filepath.Join(scripts, "hello.lua"), []byte("local who = ...\nreturn 'hello, ' .. who"), 0o644)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var werr syncBuffer
	urls := make(chan string, 1)
	done := make(chan int, 1)
	go func() {
		done <- runWorker(ctx, []string{"--embedded", filepath.Join(dir, "js"), "--listen", "127.0.0.1:0",
			"--scripts", scripts, "--concurrency", "4"}, &werr, &werr, func(url string) { urls <- url })
	}()
	var url string
	select {
	case url = <-urls:
	case code := <-done:
		t.Fatalf("worker exited %d: %s", code, werr.String())
	}
	if !strings.Contains(werr.String(), "embedded NATS server listening on nats://127.0.0.1:") {
		t.Errorf("the worker does not say where it listens: %s", werr.String())
	}

	submit := func(args ...string) (int, string, string) {
		var out, errb bytes.Buffer
		code := runSubmit(context.Background(), append([]string{"--nats", url}, args...), &out, &errb)
		return code, out.String(), errb.String()
	}
	path := writeScript(t, `local a, b = ...
print("args", a, b)
return #a + #b, {x = a}, require("llm").generate("the moon", {max_tokens = 3}) ~= ""`)
	code, out, errs := submit(path, "one", "--wait", "three")
	if code != 0 || out != "args\tone\tthree\n8\t{\"x\":\"one\"}\ttrue\n" {
		t.Errorf("submit --wait: exit %d, stdout %q, stderr %q", code, out, errs)
	}
	code, out, _ = submit("--key", "k1", path, "a", "b")
	if code != 0 || out != "k1\n" {
		t.Errorf("submit: exit %d, stdout %q", code, out)
	}
	code, out, _ = submit("--wait", "--json", "--key", "k1", path, "a", "b")
	if code != 0 || !strings.Contains(out, `"key": "k1"`) || !strings.Contains(out, `"values": [`) {
		t.Errorf("submit --json: exit %d, stdout %q", code, out)
	}
	code, out, _ = submit("--wait", "--name", "hello", "--", "--world")
	if code != 0 || out != "hello, --world\n" {
		t.Errorf("submit --name: exit %d, stdout %q", code, out)
	}
	fail := writeScript(t, "local function f()\n  error('kaput')\nend\nf()\n")
	code, _, errs = submit("--wait", fail)
	if code != 1 || !strings.Contains(errs, "s.lua:2: kaput") || !strings.Contains(errs, "stack traceback:") {
		t.Errorf("a failing job: exit %d, stderr %q", code, errs)
	}
	code, _, errs = submit("--wait", "--timeout", "20ms", writeScript(t, "while true do end"))
	if code != 1 || !strings.Contains(errs, "deadline") {
		t.Errorf("a job past its deadline: exit %d, stderr %q", code, errs)
	}
	code, _, _ = submit("--wait", writeScript(t, "os.exit(7)"))
	if code != 7 {
		t.Errorf("os.exit(7): exit %d", code)
	}
	if code, _, errs = submit("/no/such.lua"); code != 1 || !strings.Contains(errs, "no such file") {
		t.Errorf("a missing file: exit %d, %q", code, errs)
	}
	if code, _, errs = submit(); code != 2 || !strings.Contains(errs, "Usage: moonbridge submit") {
		t.Errorf("no script: exit %d, %q", code, errs)
	}

	cancel()
	if code := <-done; code != 0 || !strings.Contains(werr.String(), "moonbridge worker: stopped") {
		t.Errorf("worker exited %d: %s", code, werr.String())
	}
}

func TestWorkerFlags(t *testing.T) {
	var errb bytes.Buffer
	ctx := context.Background()
	if code := runWorker(ctx, []string{"--nats", "nats://127.0.0.1:1", "--embedded", "/tmp/x"}, &errb, &errb, nil); code != 2 ||
		!strings.Contains(errb.String(), "not with --nats") {
		t.Errorf("--nats with --embedded: exit %d, %q", code, errb.String())
	}
	errb.Reset()
	if code := runWorker(ctx, []string{"extra"}, &errb, &errb, nil); code != 2 || !strings.Contains(errb.String(), `unexpected argument "extra"`) {
		t.Errorf("an argument: exit %d, %q", code, errb.String())
	}
	errb.Reset()
	if code := runWorker(ctx, []string{"--help"}, &errb, &errb, nil); code != 0 || !strings.Contains(errb.String(), "Usage: moonbridge worker") {
		t.Errorf("--help: exit %d, %q", code, errb.String())
	}
}

// Package examples runs every example so that none can rot.
package examples

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/moonbridge/moonbridge/bridge"
	"github.com/moonbridge/moonbridge/bridge/llm"
	"github.com/moonbridge/moonbridge/internal/scripttest"
)

// TestLuaExamples runs lua/NAME.lua and compares its output with NAME.out,
// with require("llm") as `moonbridge run` gives it: the embedded
// generator, seed 1. Regenerate the outputs with go test -update.
func TestLuaExamples(t *testing.T) {
	scripttest.RunGolden(t, "lua/*.lua", func(t testing.TB, rt *bridge.Runtime) {
		if err := rt.RegisterLLM("llm", llm.NewLocal(llm.LocalOptions{Seed: 1})); err != nil {
			t.Fatal(err)
		}
	})
}

// TestGoExamples runs each Go example program that ends by itself.
func TestGoExamples(t *testing.T) {
	for _, c := range []struct {
		dir   string
		check func(out string) bool
	}{
		{"embed", func(out string) bool {
			return out == "ALPHA\nBETA\nGAMMA\nhello, ADA\nhello, GRACE\nhello, BARBARA\n"
		}},
		{"llm", func(out string) bool {
			lines := strings.Split(strings.TrimSpace(out), "\n")
			return len(lines) == 4 && strings.HasPrefix(lines[0], "stream: ") &&
				strings.HasSuffix(lines[0], "]") && strings.HasPrefix(lines[3], "3\t")
		}},
		{"worker", func(out string) bool {
			return out == `summary-tides: summarising tides -> ["tides",56,"An arch carries its load by pressing outward"]
summary-bridges: summarising bridges -> ["bridges",59,"Nets are stacked on the quay, gulls"]
summary-harbour: summarising harbour -> ["harbour",45,"Small boats rest on the shore."]
summary-moon: bridge error: docs.get: no document "moon"
`
		}},
	} {
		t.Run(c.dir, func(t *testing.T) {
			out, err := exec.Command("go", "run", "./"+c.dir).CombinedOutput()
			if err != nil {
				t.Fatalf("go run ./%s: %v\n%s", c.dir, err, out)
			}
			if !c.check(string(out)) {
				t.Errorf("unexpected output:\n%s", out)
			}
		})
	}
}

// TestHTTPServerExample builds the server, serves 60 concurrent requests
// through its Lua handler on a Pool, checks that each answer is its own
// request's (the generator's reply to that prompt) and that the request
// numbers are 1 to 60, each once, and stops it with Ctrl-C (SIGINT).
func TestHTTPServerExample(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "httpserver")
	if out, err := exec.Command("go", "build", "-o", bin, "./httpserver").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	cmd := exec.Command(bin, "-addr", "127.0.0.1:0", "-token-delay", "1ms")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	r := bufio.NewReader(stdout)
	line, err := r.ReadString('\n')
	base, ok := strings.CutPrefix(strings.TrimSpace(line), "listening on ")
	if err != nil || !ok {
		t.Fatalf("first line %q, %v", line, err)
	}

	const n = 60
	gen := llm.NewLocal(llm.LocalOptions{Seed: 1})
	client := &http.Client{Timeout: 30 * time.Second}
	var wg sync.WaitGroup
	numbers := make(chan int, n)
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			prompt := fmt.Sprintf("Tell me about bridges %d", i)
			want, err := gen.Generate(context.Background(), llm.Request{Prompt: prompt, MaxTokens: 8})
			if err != nil {
				errs <- err
				return
			}
			body, err := fetch(client, fmt.Sprintf("%s/ask?q=%s&max=8", base, url.QueryEscape(prompt)), 200)
			if err != nil {
				errs <- err
				return
			}
			var k int
			head := fmt.Sprintf("%s\n(%d tokens, request ", want.Text, want.Usage.CompletionTokens)
			rest, ok := strings.CutPrefix(body, head)
			if _, err := fmt.Sscanf(rest, "%d)\n", &k); !ok || err != nil {
				errs <- fmt.Errorf("prompt %q: answer %q, want it to start %q", prompt, body, head)
				return
			}
			numbers <- k
		})
	}
	wg.Wait()
	close(errs)
	close(numbers)
	for err := range errs {
		t.Error(err)
	}
	seen := map[int]bool{}
	for k := range numbers {
		if k < 1 || k > n || seen[k] {
			t.Errorf("request number %d: out of 1..%d or given twice", k, n)
		}
		seen[k] = true
	}
	if err := get(client, base+"/nowhere", 404, "no route for GET /nowhere"); err != nil {
		t.Error(err)
	}

	cmd.Process.Signal(syscall.SIGINT)
	rest, _ := io.ReadAll(r)
	if err := cmd.Wait(); err != nil || strings.TrimSpace(string(rest)) != "shut down" {
		t.Errorf("after SIGINT: %v, output %q", err, rest)
	}
}

// fetch GETs url and returns the body of a reply with this status.
func fetch(client *http.Client, url string, status int) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
	resp, err := client.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err == nil && resp.StatusCode != status {
		err = fmt.Errorf("GET %s: %d %q", url, resp.StatusCode, body)
	}
	return string(body), err
}

func get(client *http.Client, url string, status int, want string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != status || !strings.Contains(string(body), want) {
		return fmt.Errorf("GET %s: %d %q", url, resp.StatusCode, body)
	}
	return nil
}

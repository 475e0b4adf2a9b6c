// Package examples runs every example so that none can rot.
package examples

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
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

// TestHTTPServerExample builds the server, serves concurrent requests
// through its Lua handler, and stops it with Ctrl-C (SIGINT).
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

	client := &http.Client{Timeout: 30 * time.Second}
	var wg sync.WaitGroup
	errs := make(chan error, 20)
	for i := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- get(client, fmt.Sprintf("%s/ask?q=Tell+me+about+bridges+%d&max=8", base, i), 200, " tokens, request ")
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
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

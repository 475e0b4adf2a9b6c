package main

import (
	"bufio"
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

func runCmd(t *testing.T, stdin string, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(args, strings.NewReader(stdin), &out, &errb)
	return code, out.String(), errb.String()
}

func writeScript(t *testing.T, src string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "s.lua")
	if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestRunScriptWithArgs(t *testing.T) {
	path := writeScript(t, `print(#arg, arg[0]:match("s.lua$"), arg[1], arg[2])
print(select("#", ...), ...)
local task = require("task")
local t = task.spawn(function(x) return x * 2 end, 21)
io.write("answer ", t:wait(), "\n")`)
	code, out, errs := runCmd(t, "", "run", path, "one", "two")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	if out != "2\ts.lua\tone\ttwo\n2\tone\ttwo\nanswer 42\n" {
		t.Errorf("stdout %q", out)
	}
}

func TestRunUncaughtErrorExitsOne(t *testing.T) {
	path := writeScript(t, "local function f()\n  error('kaput')\nend\nf()\n")
	code, _, errs := runCmd(t, "", "run", path)
	if code != 1 {
		t.Fatalf("exit %d", code)
	}
	for _, want := range []string{"s.lua:2: kaput", "stack traceback:", "in local 'f'"} {
		if !strings.Contains(errs, want) {
			t.Errorf("stderr lacks %q:\n%s", want, errs)
		}
	}
}

func TestRunStdinAndUsage(t *testing.T) {
	code, out, _ := runCmd(t, "print('from stdin', ...)", "run", "-", "x")
	if code != 0 || out != "from stdin\tx\n" {
		t.Errorf("exit %d, stdout %q", code, out)
	}
	if code, _, errs := runCmd(t, "", "run"); code != 2 || !strings.Contains(errs, "Usage: moonbridge run") {
		t.Errorf("no script: exit %d, %q", code, errs)
	}
	if code, _, errs := runCmd(t, "", "run", "--help"); code != 0 || !strings.Contains(errs, "Usage: moonbridge run") {
		t.Errorf("--help: exit %d, %q", code, errs)
	}
	if code, _, errs := runCmd(t, "", "run", "/no/such/file.lua"); code != 1 || !strings.Contains(errs, "no such file") {
		t.Errorf("missing file: exit %d, %q", code, errs)
	}
	if code, _, errs := runCmd(t, "", "frobnicate"); code != 2 || !strings.Contains(errs, "unknown command") {
		t.Errorf("unknown: exit %d, %q", code, errs)
	}
	if code, out, _ := runCmd(t, "", "--help"); code != 0 || !strings.Contains(out, "moonbridge run") {
		t.Errorf("help: exit %d, %q", code, out)
	}
	if code, out, _ := runCmd(t, "", "version"); code != 0 || !strings.HasPrefix(out, "moonbridge ") {
		t.Errorf("version: exit %d, %q", code, out)
	}
}

func TestDemo(t *testing.T) {
	code, out, errs := runCmd(t, "", "demo", "--token-delay", "1ms")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	for _, want := range []string{"1. Fan-out", "6/6 answered", "Explain an event loop ",
		"2. One answer, streamed", " tokens)", "3. A pipeline", "bridges ", "tides ", "queues ",
		"4. A race", "gave up (after ", "timeout, and its request was cancelled", "#2 won", "the loser is cancelled"} {
		if !strings.Contains(out, want) {
			t.Errorf("demo output lacks %q:\n%s", want, out)
		}
	}
	if errs != "" {
		t.Errorf("stderr: %s", errs)
	}
	if code, _, errs := runCmd(t, "", "demo", "--help"); code != 0 || !strings.Contains(errs, "Usage: moonbridge demo") {
		t.Errorf("demo --help: exit %d %q", code, errs)
	}
}

func TestRunOsExit(t *testing.T) {
	path := writeScript(t, `local task = require("task")
local closed = false
task.spawn(function()
  local x <close> = setmetatable({}, {__close = function() io.write("closed\n") end})
  task.sleep(10)
end)
task.sleep(0.01)
print("before")
os.exit(3)
print("never")`)
	code, out, errs := runCmd(t, "", "run", path)
	if code != 3 || out != "before\nclosed\n" || errs != "" {
		t.Errorf("exit %d, stdout %q, stderr %q", code, out, errs)
	}
	code, out, _ = runCmd(t, "print(1); os.exit(true); print(2)", "run", "-")
	if code != 0 || out != "1\n" {
		t.Errorf("os.exit(true): exit %d, stdout %q", code, out)
	}
}

func TestRunMissingFileOrDirectoryHasOnePrefix(t *testing.T) {
	code, _, errs := runCmd(t, "", "run", "/no/such/file.lua")
	if code != 1 || errs != "moonbridge: /no/such/file.lua: no such file or directory\n" {
		t.Errorf("missing file: exit %d, %q", code, errs)
	}
	dir := t.TempDir()
	code, _, errs = runCmd(t, "", "run", dir)
	if code != 1 || errs != "moonbridge: "+dir+" is a directory, not a script\n" {
		t.Errorf("directory: exit %d, %q", code, errs)
	}
}

func TestExtraArgumentsAreErrors(t *testing.T) {
	if code, _, errs := runCmd(t, "", "version", "now"); code != 2 || errs != "moonbridge: version takes no arguments, got \"now\"\n" {
		t.Errorf("version: exit %d, %q", code, errs)
	}
	if code, out, errs := runCmd(t, "", "demo", "extra"); code != 2 || out != "" || errs != "moonbridge: demo takes no arguments, got \"extra\"\n" {
		t.Errorf("demo: exit %d, %q, %q", code, out, errs)
	}
}

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int64{
		"1048576": 1 << 20, "64MiB": 64 << 20, "64M": 64 << 20, "64mb": 64e6, "1G": 1 << 30,
		"1.5KiB": 1536, "2GB": 2e9, "512 k": 512 << 10, "10B": 10, "1TiB": 1 << 40,
	} {
		if got, err := parseSize(in); err != nil || got != want {
			t.Errorf("parseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "M", "12Q", "-5", "1e3", "9999999999T"} {
		if got, err := parseSize(bad); err == nil {
			t.Errorf("parseSize(%q) = %d, no error", bad, got)
		}
	}
}

func TestRunLimitFlags(t *testing.T) {
	cases := []struct {
		flags []string
		src   string
		code  int
		want  string
	}{
		{[]string{"--memory-limit", "2MiB"}, `local t = {} for i = 1, 1e7 do t[i] = "item" .. i end`, 1, "not enough memory"},
		{[]string{"--instruction-limit", "10000"}, `while true do end`, 1, "instruction limit"},
		{[]string{"--timeout", "20ms"}, `while true do end`, 1, "moonbridge: the run's deadline passed\n"},
		// A greedy task cannot starve the others with a time slice: the
		// loop below ends only if the second task gets to run.
		{[]string{"--time-slice", "1000"}, `local task = require("task")
			local done = false
			task.spawn(function() while not done do end print("greedy task let go") end)
			task.spawn(function() done = true end)`, 0, ""},
		{[]string{"--sandbox"}, `print(io, os.execute, debug, os.time ~= nil)`, 0, ""},
		{[]string{"--output-limit", "10"}, `print("12345"); print("67890")`, 1, "moonbridge: the run wrote more than its output limit (10 bytes)\n"},
		{[]string{"--time-slice", "-1"}, `print(1)`, 2, "--time-slice must not be negative"},
		{[]string{"--allow-dir", "."}, `print(1)`, 2, "--allow-dir is for --sandbox"},
		{[]string{"--allow-host", "a b"}, `print(1)`, 2, `moonbridge: RegisterHTTP: AllowHosts entry "a b"`},
	}
	for _, c := range cases {
		args := append(append([]string{"run"}, c.flags...), "-")
		code, out, errs := runCmd(t, c.src, args...)
		if code != c.code || !strings.Contains(errs, c.want) {
			t.Errorf("%v: exit %d (want %d), stderr %q (want %q)", c.flags, code, c.code, errs, c.want)
		}
		switch c.flags[0] {
		case "--time-slice":
			if c.code == 0 && out != "greedy task let go\n" {
				t.Errorf("time slice: stdout %q", out)
			}
		case "--sandbox":
			if out != "nil\tnil\tnil\ttrue\n" {
				t.Errorf("sandbox: stdout %q", out)
			}
		case "--output-limit":
			if out != "12345\n6789" {
				t.Errorf("output limit: stdout %q", out)
			}
		}
	}
}

// run loads a chunk precompiled by luac5.4 as lua5.4 does, also after a
// '#' line; --sandbox refuses it, and errors name the file.
func TestRunLoadsPrecompiledChunks(t *testing.T) {
	luac, err := exec.LookPath("luac5.4")
	if err != nil {
		t.Fatal("luac5.4 (Debian's lua5.4) is needed: run 'make deps'")
	}
	dir := t.TempDir()
	src := filepath.Join(dir, "s.lua")
	os.WriteFile(src, []byte(`local task = require("task")
print("precompiled", task.spawn(function(...) return ... end, ...):wait())`), 0o644)
	bin := filepath.Join(dir, "s.luac")
	if out, err := exec.Command(luac, "-o", bin, src).CombinedOutput(); err != nil {
		t.Fatalf("luac5.4: %v %s", err, out)
	}
	code, out, errs := runCmd(t, "", "run", bin, "a", "b")
	if code != 0 || out != "precompiled\ta\tb\n" {
		t.Errorf("binary chunk: exit %d, stdout %q, stderr %q", code, out, errs)
	}
	chunk, _ := os.ReadFile(bin)
	shebang := filepath.Join(dir, "shebang.luac")
	os.WriteFile(shebang, append([]byte("#!/usr/bin/env moonbridge run\n"), chunk...), 0o755)
	if code, out, errs := runCmd(t, "", "run", shebang, "c"); code != 0 || out != "precompiled\tc\n" {
		t.Errorf("after a # line: exit %d, stdout %q, stderr %q", code, out, errs)
	}
	if code, _, errs := runCmd(t, "", "run", "--sandbox", bin); code != 1 ||
		errs != "moonbridge: "+bin+": attempt to load a binary chunk (the sandbox loads text chunks only)\n" {
		t.Errorf("--sandbox: exit %d, stderr %q", code, errs)
	}
	truncated := filepath.Join(dir, "cut.luac")
	os.WriteFile(truncated, chunk[:len(chunk)/2], 0o644)
	if code, _, errs := runCmd(t, "", "run", truncated); code != 1 ||
		errs != "moonbridge: "+truncated+": bad binary format (truncated chunk)\n" {
		t.Errorf("truncated: exit %d, stderr %q", code, errs)
	}
}

func TestRunSandboxAllowDir(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "helper.lua"), []byte("return {answer = 42}"), 0o644)
	script := filepath.Join(dir, "main.lua")
	os.WriteFile(script, []byte(`package.path = "`+dir+`/?.lua"; print(require("helper").answer); print(pcall(dofile, "/etc/passwd"))`), 0o644)
	code, out, errs := runCmd(t, "", "run", "--sandbox", "--allow-dir", dir, script)
	if code != 0 || !strings.HasPrefix(out, "42\nfalse\t") {
		t.Errorf("exit %d, stdout %q, stderr %q", code, out, errs)
	}
}

func TestRunHasHTTPAndAllowHost(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "hello from "+r.URL.Path)
	}))
	defer srv.Close()
	src := `local r = http.get(arg[1] .. "/x"); print(r.status, r.body)`
	if code, out, errs := runCmd(t, src, "run", "-", srv.URL); code != 0 || out != "200\thello from /x\n" {
		t.Errorf("default: exit %d, %q, %q", code, out, errs)
	}
	host := strings.TrimPrefix(srv.URL, "http://")
	if code, out, errs := runCmd(t, src, "run", "--sandbox", "--allow-host", host, "-", srv.URL); code != 0 || out != "200\thello from /x\n" {
		t.Errorf("--sandbox --allow-host: exit %d, %q, %q", code, out, errs)
	}
	if code, _, errs := runCmd(t, src, "run", "--sandbox", "-", srv.URL); code != 1 || !strings.Contains(errs, "the sandbox allows no hosts") {
		t.Errorf("--sandbox alone: exit %d, %q", code, errs)
	}
	if code, _, errs := runCmd(t, src, "run", "--allow-host", "example.com", "-", srv.URL); code != 1 || !strings.Contains(errs, "is not in AllowHosts") {
		t.Errorf("--allow-host elsewhere: exit %d, %q", code, errs)
	}
}

func TestRunTracePrintsTheSpanTree(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	defer srv.Close()
	src := `local task = require("task")
		local ts = {}
		for i = 1, 12 do ts[i] = task.spawn(http.get, arg[1]) end
		for _, t in ipairs(ts) do t:wait() end
		http.get(arg[1])
		pcall(http.get, "ftp://nowhere/")
		print("done")`
	code, out, errs := runCmd(t, src, "run", "--trace", "-", srv.URL)
	if code != 0 || out != "done\n" {
		t.Fatalf("exit %d, %q, %q", code, out, errs)
	}
	lines := strings.Split(strings.TrimSuffix(errs, "\n"), "\n")
	// The run, and under it the 14 calls summed up in one line (the
	// program's own setup runs are left out).
	if len(lines) != 3 || lines[0] != "trace:" || !strings.HasPrefix(lines[1], "  stdin  ") ||
		!strings.HasPrefix(lines[2], "    http.get ×14  total ") || !strings.HasSuffix(lines[2], ", 1 failed") {
		t.Errorf("stderr:\n%s", errs)
	}
}

func TestRunTraceShowsNesting(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	defer srv.Close()
	code, _, errs := runCmd(t, `http.get(arg[1]); pcall(http.get, "ftp://x/")`, "run", "--trace", "-", srv.URL)
	lines := strings.Split(strings.TrimSuffix(errs, "\n"), "\n")
	if code != 0 || len(lines) != 4 || !strings.HasPrefix(lines[2], "    http.get  ") ||
		!strings.HasPrefix(lines[3], "    http.get  ") ||
		!strings.HasSuffix(lines[3], `  error: bad URL "ftp://x/": scheme "ftp" is not allowed (only http and https)`) {
		t.Errorf("exit %d, stderr:\n%s", code, errs)
	}
}

// startChild runs the program as a child process (see TestMain) on a
// script, and returns once the script has printed "ready".
func startChild(t *testing.T, src string) (*exec.Cmd, *bufio.Reader, *strings.Builder) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "run", writeScript(t, src))
	cmd.Env = append(os.Environ(), "MOONBRIDGE_TEST_MAIN=1")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr := &strings.Builder{}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill() })
	r := bufio.NewReader(stdout)
	if line, err := r.ReadString('\n'); err != nil || line != "ready\n" {
		t.Fatalf("first line %q, %v (stderr %s)", line, err, stderr)
	}
	return cmd, r, stderr
}

// waitExit reads the rest of the child's stdout (Wait closes the pipe),
// waits for it to end and returns its exit code and that output.
func waitExit(t *testing.T, cmd *exec.Cmd, out io.Reader) (int, string) {
	t.Helper()
	done := make(chan string, 1)
	go func() {
		rest, _ := io.ReadAll(out)
		cmd.Wait()
		done <- string(rest)
	}()
	select {
	case rest := <-done:
		return cmd.ProcessState.ExitCode(), rest
	case <-time.After(30 * time.Second):
		t.Fatal("the program did not exit")
	}
	return -1, ""
}

// The first Ctrl-C cancels the run: tasks unwind (their cleanup runs),
// and the program exits 130 once the run has ended.
func TestRunCtrlCCancelsTheRunAndExits130(t *testing.T) {
	cmd, out, stderr := startChild(t, `local task = require("task")
		local x <close> = setmetatable({}, {__close = function() print("cleaned up") end})
		print("ready")
		task.sleep(60)
		print("never")`)
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	code, rest := waitExit(t, cmd, out)
	if code != 130 {
		t.Errorf("exit %d, want 130 (stderr %s)", code, stderr)
	}
	if rest != "cleaned up\n" || stderr.String() != "moonbridge: interrupted\n" {
		t.Errorf("stdout %q, stderr %q", rest, stderr)
	}
}

// A second Ctrl-C exits at once, here while the first one's cleanup
// never finishes.
func TestRunSecondCtrlCExitsAtOnce(t *testing.T) {
	cmd, out, stderr := startChild(t, `local task = require("task")
		local x <close> = setmetatable({}, {__close = function() print("cleaning up"); while true do end end})
		print("ready")
		task.sleep(60)`)
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	if line, err := out.ReadString('\n'); err != nil || line != "cleaning up\n" {
		t.Fatalf("after the first Ctrl-C: %q, %v", line, err)
	}
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	if code, _ := waitExit(t, cmd, out); code != 130 {
		t.Errorf("exit %d, want 130 (stderr %s)", code, stderr)
	}
}

// SIGQUIT prints the task table on stderr, like Go's goroutine dump, and
// the run goes on: here twice, then Ctrl-C ends it as usual.
func TestRunSIGQUITDumpsTheTasks(t *testing.T) {
	cmd := exec.Command(os.Args[0], "run", writeScript(t, `local task, channel = require("task"), require("channel")
local ch = channel.new()
local reader = task.spawn({name = "reader"}, function() return ch:recv() end)
local x <close> = setmetatable({}, {__close = function() print("cleaned up") end})
task.yield() -- the reader waits on its receive
print("ready")
task.sleep(3600)`))
	cmd.Env = append(os.Environ(), "MOONBRIDGE_TEST_MAIN=1")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stderrPipe, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill() })
	out, errs := bufio.NewReader(stdout), bufio.NewReader(stderrPipe)
	if line, err := out.ReadString('\n'); err != nil || line != "ready\n" {
		t.Fatalf("first line %q, %v", line, err)
	}
	for i := 0; i < 2; i++ {
		if err := cmd.Process.Signal(syscall.SIGQUIT); err != nil {
			t.Fatal(err)
		}
		// The header, then two tasks, each a blank line, its line and
		// where; then a blank line.
		var dump []string
		for len(dump) < 8 {
			line, err := errs.ReadString('\n')
			if err != nil {
				t.Fatalf("dump %d: %q, %v", i, dump, err)
			}
			dump = append(dump, line)
		}
		text := strings.Join(dump, "")
		// main (task #0, named by its file) waits in task.sleep at line 7; the reader at line 3.
		for _, re := range []string{
			`^moonbridge: 2 tasks\n\n`,
			`\ntask #0 "[^"]+\.lua" \[suspended on a timer, [0-9.]+m?s, cpu [0-9.]+[µm]?s, 2 resumes\]:\n\t[^\n]+\.lua:7\n`,
			`\ntask #1 "reader" \[suspended on a channel receive, [0-9.]+m?s, cpu [0-9.]+[µm]?s, 1 resume\]:\n\t[^\n]+\.lua:3\n\n$`,
		} {
			if !regexp.MustCompile(re).MatchString(text) {
				t.Errorf("dump %d does not match %s:\n%s", i, re, text)
			}
		}
	}
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	rest, _ := io.ReadAll(out)
	tail, _ := io.ReadAll(errs)
	cmd.Wait()
	if code := cmd.ProcessState.ExitCode(); code != 130 || string(rest) != "cleaned up\n" || string(tail) != "moonbridge: interrupted\n" {
		t.Errorf("exit %d, stdout %q, stderr %q", code, rest, tail)
	}
}

// The first Ctrl-C stops a tight loop at once, as lua5.4 does, with no
// --time-slice or limit: the program exits 130.
func TestRunCtrlCStopsATightLoop(t *testing.T) {
	cmd, out, stderr := startChild(t, `print("ready"); while true do end`)
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	if code, rest := waitExit(t, cmd, out); code != 130 || rest != "" || stderr.String() != "moonbridge: interrupted\n" {
		t.Errorf("exit %d, stdout %q, stderr %q", code, rest, stderr)
	}
}

// Lua's warnings reach stderr as stock lua5.4 writes them, in a process
// whose one Runtime is its first (before, that Runtime's C side took the
// Go handle 0, which means "no Go side", and every warning was dropped).
func TestRunShowsWarnings(t *testing.T) {
	cmd, out, stderr := startChild(t, `print("ready")
		warn("@on")
		warn("hello ", "there")
		setmetatable({}, {__gc = function() error("boom") end})
		collectgarbage()
		print("done")`)
	code, rest := waitExit(t, cmd, out)
	if code != 0 || rest != "done\n" {
		t.Fatalf("exit %d, stdout %q, stderr %s", code, rest, stderr)
	}
	if !strings.HasPrefix(stderr.String(), "Lua warning: hello there\nLua warning: error in __gc (") {
		t.Errorf("stderr %q", stderr)
	}
}

package bridge_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/moonbridge/moonbridge/bridge"
	"github.com/moonbridge/moonbridge/internal/leaks"
	"github.com/moonbridge/moonbridge/internal/oom"
)

// goldenScript is a testdata script with what it prints when nothing
// stops it.
type goldenScript struct {
	name, src, out string
}

func goldenScripts(t *testing.T) []goldenScript {
	t.Helper()
	files, err := filepath.Glob("../testdata/*.lua")
	if err != nil || len(files) == 0 {
		t.Fatal("no scripts", err)
	}
	var list []goldenScript
	for _, file := range files {
		src, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		out, err := os.ReadFile(strings.TrimSuffix(file, ".lua") + ".out")
		if err != nil {
			t.Fatal(err)
		}
		list = append(list, goldenScript{strings.TrimSuffix(filepath.Base(file), ".lua"), string(src), string(out)})
	}
	return list
}

// limitedRun is one golden script run on a Runtime of its own, with what
// it printed (stdout and stderr, in order, as the golden files hold them)
// and what it wrote to stderr alone.
type limitedRun struct {
	err         error
	out, stderr string
}

func runLimited(t *testing.T, opts bridge.Options, g goldenScript) limitedRun {
	t.Helper()
	out, stderr := &syncBuffer{}, &syncBuffer{}
	opts.Stdout, opts.Stderr = out, io.MultiWriter(out, stderr)
	rt, err := bridge.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	registerTestModule(t, rt)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	err = rt.RunString(ctx, g.name, g.src)
	cancel()
	// The Runtime serves on, and closes cleanly.
	if err := rt.RunString(context.Background(), "after", `local t = {} for i = 1, 100 do t[i] = i end`); err != nil {
		t.Errorf("%s: the Runtime does not serve after: %v", g.name, err)
	}
	if err := rt.Close(); err != nil {
		t.Errorf("%s: Close: %v", g.name, err)
	}
	return limitedRun{err: err, out: out.String(), stderr: stderr.String()}
}

// noMemoryForTheChunk is the memory limit error of a run whose chunk or
// values do not fit in MemoryLimit: they are the run's own data, held to
// it, and no task has started.
const noMemoryForTheChunk = "not enough memory for the run's chunk or values"

// checkStopped checks a run that a limit ended: a limit error of op with
// its message (and, for memory, the traceback of the task it stopped: an
// instruction budget may also run out before a task starts, and memory
// before the chunk is loaded, with that error's own message and no
// output), after the script printed what it prints without a limit, up to
// where it stopped.
func checkStopped(t *testing.T, what string, g goldenScript, r limitedRun, op string, prefix bool) {
	t.Helper()
	var le *bridge.LuaError
	switch {
	case !errors.As(r.err, &le) || le.Kind != "limit" || le.Op != op:
		t.Errorf("%s: ended with %v (%T), want a limit error (%s)", what, r.err, r.err, op)
		return
	case le.Message == "":
		t.Errorf("%s: the limit error has no message", what)
	case op == "memory" && le.Message == noMemoryForTheChunk:
		if r.out != "" || le.Traceback != "" {
			t.Errorf("%s: the chunk did not fit, yet the run printed %q, traceback %q", what, r.out, le.Traceback)
		}
	case op == "memory" && (!strings.Contains(le.Traceback, "in task ") || !strings.Contains(le.Traceback, "stack traceback:")):
		t.Errorf("%s: the memory error lacks the traceback of the task it stopped:\n%s", what, le.Traceback)
	case prefix && !strings.HasPrefix(g.out, r.out):
		t.Errorf("%s: before the limit stopped it, the script printed what it does not print without one:\n%s", what, firstDifference(r.out, g.out))
	}
}

// firstDifference shows where got stops being a prefix of want.
func firstDifference(got, want string) string {
	i := 0
	for i < len(got) && i < len(want) && got[i] == want[i] {
		i++
	}
	line := strings.Count(got[:i], "\n") + 1
	return fmt.Sprintf("line %d: got %q, want %q", line, clip(got[i:]), clip(want[i:]))
}

func clip(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	return s
}

// TestScriptsUnderMemoryLimits runs every golden script with memory limits
// from tight to loose, so an allocation fails at many points inside the C
// core (task spawn, channel and promise bookkeeping, joins, the codec) and
// in the scripts. Each run must end one of two ways: as without a limit
// (its golden output, no error), or with a limit error (kind "limit", op
// "memory", errors.Is ErrMemoryLimit) carrying the failing task's traceback,
// after printing a prefix of its golden output. Never a deadlock, never a
// failure reported on stderr besides, never a crash (run it with -asan); and
// the Runtime serves a plain run afterwards. A script that catches the
// memory error itself (pcall, as in stock Lua; counted by the core) may go
// another way: then only the last points hold.
func TestScriptsUnderMemoryLimits(t *testing.T) {
	// Above what a fresh Runtime holds, by a little and then a lot.
	base, _ := newRuntime(t)
	out, err := base.Call(context.Background(), "collectgarbage", "count")
	if err != nil {
		t.Fatal(err)
	}
	held := int64(out[0].(float64) * 1024)
	leakedLua, leakedLoops := leaks.Counts()
	outcomes := map[string]int{}
	for _, g := range goldenScripts(t) {
		for _, extra := range []int64{16, 24, 32, 48, 96, 192, 384, 768} {
			what := fmt.Sprintf("%s at +%d KiB", g.name, extra)
			caught := oom.Caught()
			r := runLimited(t, bridge.Options{MemoryLimit: held + extra<<10}, g)
			caughtOne := oom.Caught() > caught
			switch {
			case errors.Is(r.err, bridge.ErrDeadlock):
				t.Errorf("%s: a deadlock, where running out of memory must end the run: %v", what, r.err)
			case strings.Contains(r.stderr, "nobody waited for it") && !strings.Contains(g.out, "nobody waited for it"):
				t.Errorf("%s: a failure reported on stderr besides the run's own (%v):\n%s", what, r.err, r.stderr)
			case caughtOne:
				outcomes["caught by the script"]++
				if r.err != nil && !errors.Is(r.err, bridge.ErrMemoryLimit) {
					var le *bridge.LuaError
					if !errors.As(r.err, &le) || le.Message == "" || le.Traceback == "" {
						t.Errorf("%s: the script caught a memory error, then ended with %v", what, r.err)
					}
				}
			case r.err == nil:
				outcomes["golden output"]++
				if r.out != g.out {
					t.Errorf("%s: no error, and not its golden output:\n%s", what, firstDifference(r.out, g.out))
				}
			default:
				outcomes["memory limit"]++
				checkStopped(t, what, g, r, "memory", true)
				if !errors.Is(r.err, bridge.ErrMemoryLimit) {
					t.Errorf("%s: %v is not ErrMemoryLimit", what, r.err)
				}
			}
		}
	}
	t.Logf("outcomes: %v", outcomes)
	// The limits span the interesting range: some runs stop, some do not.
	if outcomes["golden output"] == 0 || outcomes["memory limit"] == 0 {
		t.Errorf("every run ended the same way (%v): the limits do not span tight to loose", outcomes)
	}
	if lua, loops := leaks.Counts(); lua != leakedLua || loops != leakedLoops {
		t.Errorf("left behind: %d Lua bytes, %d loops with open handles", lua-leakedLua, loops-leakedLoops)
	}
}

// TestScriptsCutByInstructionLimits ends every golden script at many
// points (its run killed with tasks mid-operation: in channels, joins,
// promises, bridge calls): at fractions of what the script costs in all,
// so that each run is really cut. Each must end with the instruction
// limit's error after printing a prefix of its golden output, and the
// Runtime survives and serves on. Half the cuts come with a time slice,
// so tasks are also killed while preempted (the output's order may then
// differ from the golden one's).
func TestScriptsCutByInstructionLimits(t *testing.T) {
	cuts := 0
	for _, g := range goldenScripts(t) {
		for _, slice := range []int{0, 700} {
			// What the whole script costs: the smallest power-of-two multiple
			// of 1,000 instructions it runs within. The cost is between half
			// of it and it; the cuts are made below half.
			total := int64(1000)
			for ; ; total *= 2 {
				if total > 1<<30 {
					t.Fatalf("%s: does not finish within %d instructions", g.name, total)
				}
				r := runLimited(t, bridge.Options{InstructionLimit: total, TimeSlice: slice}, g)
				if r.err == nil {
					if slice == 0 && r.out != g.out {
						t.Errorf("%s within %d instructions: not its golden output:\n%s", g.name, total, firstDifference(r.out, g.out))
					}
					break
				}
				if !errors.Is(r.err, bridge.ErrInstructionLimit) {
					t.Fatalf("%s under %d instructions: %v, want ErrInstructionLimit", g.name, total, r.err)
				}
			}
			for _, frac := range []float64{0.1, 0.25, 0.4, 0.55, 0.7, 0.85} {
				// A run pays 1,000 up front for its first task: below two
				// of those, every run (even the one after) would end at once.
				limit := int64(float64(total/2) * frac)
				if limit < 2000 {
					continue
				}
				cuts++
				opts := bridge.Options{InstructionLimit: limit, TimeSlice: slice}
				r := runLimited(t, opts, g)
				what := fmt.Sprintf("%s cut at %d of %d..%d instructions (slice %d)", g.name, limit, total/2, total, slice)
				checkStopped(t, what, g, r, "instructions", slice == 0)
				if !errors.Is(r.err, bridge.ErrInstructionLimit) {
					t.Errorf("%s: %v is not ErrInstructionLimit", what, r.err)
				}
				if strings.Contains(r.stderr, "nobody waited for it") {
					t.Errorf("%s: a failure reported on stderr besides the limit:\n%s", what, r.stderr)
				}
			}
		}
	}
	t.Logf("%d runs cut", cuts)
	if cuts < 50 {
		t.Errorf("only %d runs were cut", cuts)
	}
}

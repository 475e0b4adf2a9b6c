package bridge_test

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/moonbridge/moonbridge/bridge"
)

// TestScriptsUnderMemoryLimits runs every golden script with memory limits
// from tight to loose, so an allocation fails at many points inside the C
// core (task spawn, channel and promise bookkeeping, joins, the codec).
// Each run may fail, but only with an error: no crash (run it with -asan),
// and the Runtime must serve a plain run afterwards.
func TestScriptsUnderMemoryLimits(t *testing.T) {
	files, err := filepath.Glob("../testdata/*.lua")
	if err != nil || len(files) == 0 {
		t.Fatal("no scripts", err)
	}
	// Above what a fresh Runtime holds, by a little and then a lot.
	base, _ := newRuntime(t)
	mustRun(t, base, `collectgarbage(); base = collectgarbage("count")`)
	out, err := base.Call(context.Background(), "collectgarbage", "count")
	if err != nil {
		t.Fatal(err)
	}
	held := int64(out[0].(float64) * 1024)
	var limits []int64
	for _, extra := range []int64{16, 24, 32, 48, 96, 192, 384, 768} {
		limits = append(limits, held+extra<<10)
	}
	for _, file := range files {
		src, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		for _, limit := range limits {
			rt, err := bridge.New(bridge.Options{Stdout: io.Discard, Stderr: io.Discard, MemoryLimit: limit})
			if err != nil {
				t.Fatal(err)
			}
			registerTestModule(t, rt)
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			rt.RunString(ctx, filepath.Base(file), string(src)) // an error is fine
			cancel()
			if err := rt.RunString(context.Background(), "after", `local t = {} for i = 1, 100 do t[i] = i end`); err != nil {
				t.Errorf("%s at %d KiB: the Runtime does not serve after: %v", file, limit>>10, err)
			}
			if err := rt.Close(); err != nil {
				t.Errorf("%s at %d KiB: Close: %v", file, limit>>10, err)
			}
		}
	}
}

// TestScriptsCutByInstructionLimits ends every golden script at many
// points (its run killed with tasks mid-operation: in channels, joins,
// promises, bridge calls) and checks the Runtime survives and serves on.
func TestScriptsCutByInstructionLimits(t *testing.T) {
	files, err := filepath.Glob("../testdata/*.lua")
	if err != nil || len(files) == 0 {
		t.Fatal("no scripts", err)
	}
	for _, file := range files {
		src, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		for _, limit := range []int64{1500, 4000, 10000, 30000, 100000} {
			rt, err := bridge.New(bridge.Options{Stdout: io.Discard, Stderr: io.Discard, InstructionLimit: limit, TimeSlice: 700})
			if err != nil {
				t.Fatal(err)
			}
			registerTestModule(t, rt)
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			rt.RunString(ctx, filepath.Base(file), string(src)) // an error is fine
			cancel()
			if err := rt.RunString(context.Background(), "after", `local t = {} for i = 1, 10 do t[i] = i end`); err != nil {
				t.Errorf("%s cut at %d: the Runtime does not serve after: %v", file, limit, err)
			}
			if err := rt.Close(); err != nil {
				t.Errorf("%s cut at %d: Close: %v", file, limit, err)
			}
		}
	}
}

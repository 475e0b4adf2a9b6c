// Package scripttest runs Lua scripts and compares what they print with
// their golden files, for the tests of moonbridge's packages.
package scripttest

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/moonbridge/moonbridge/bridge"
)

var update = flag.Bool("update", false, "rewrite the golden .out files with what the scripts print")

// RunGolden runs every file matching pattern as a subtest: on a fresh
// Runtime, after setup (which may be nil), the script runs under its base
// name and what it prints must equal the NAME.out file beside it. With
// -update, the .out files are written instead.
func RunGolden(t *testing.T, pattern string, setup func(testing.TB, *bridge.Runtime)) {
	t.Helper()
	files, err := filepath.Glob(pattern)
	if err != nil || len(files) == 0 {
		t.Fatalf("no scripts match %s: %v", pattern, err)
	}
	for _, file := range files {
		name := strings.TrimSuffix(filepath.Base(file), ".lua")
		t.Run(name, func(t *testing.T) {
			src, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			golden := strings.TrimSuffix(file, ".lua") + ".out"
			want, err := os.ReadFile(golden)
			if err != nil && !*update {
				t.Fatal(err)
			}
			var out bytes.Buffer
			rt, err := bridge.New(bridge.Options{Stdout: &out, Stderr: &out})
			if err != nil {
				t.Fatal(err)
			}
			defer rt.Close()
			if setup != nil {
				setup(t, rt)
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			if err := rt.RunString(ctx, name, string(src)); err != nil {
				var le *bridge.LuaError
				if errors.As(err, &le) {
					t.Fatalf("run failed: %v\n%s\noutput so far:\n%s", err, le.Traceback, out.String())
				}
				t.Fatalf("run failed: %v\noutput so far:\n%s", err, out.String())
			}
			if *update {
				if err := os.WriteFile(golden, out.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			if got := out.String(); got != string(want) {
				t.Errorf("output differs\n--- got\n%s--- want\n%s", got, want)
			}
		})
	}
}

// Package examples runs every example so that none can rot.
package examples

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/moonbridge/moonbridge/bridge"
)

// TestLuaExamples runs lua/NAME.lua and compares its output with NAME.out.
func TestLuaExamples(t *testing.T) {
	files, _ := filepath.Glob("lua/*.lua")
	if len(files) == 0 {
		t.Fatal("no Lua examples")
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			want, err := os.ReadFile(strings.TrimSuffix(f, ".lua") + ".out")
			if err != nil {
				t.Fatal(err)
			}
			var out bytes.Buffer
			rt, err := bridge.New(bridge.Options{Stdout: &out, Stderr: &out})
			if err != nil {
				t.Fatal(err)
			}
			defer rt.Close()
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			if err := rt.RunFile(ctx, f); err != nil {
				t.Fatalf("%v\n%s", err, out.String())
			}
			if out.String() != string(want) {
				t.Errorf("got\n%s\nwant\n%s", out.String(), want)
			}
		})
	}
}

// TestGoExamples runs each Go example program.
func TestGoExamples(t *testing.T) {
	out, err := exec.Command("go", "run", "./embed").CombinedOutput()
	if err != nil {
		t.Fatalf("go run ./embed: %v\n%s", err, out)
	}
	want := "ALPHA\nBETA\nGAMMA\nhello, ADA\nhello, GRACE\nhello, BARBARA\n"
	if string(out) != want {
		t.Errorf("got\n%s\nwant\n%s", out, want)
	}
}

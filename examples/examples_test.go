// Package examples runs every example so that none can rot.
package examples

import (
	"os/exec"
	"testing"

	"github.com/moonbridge/moonbridge/internal/scripttest"
)

// TestLuaExamples runs lua/NAME.lua and compares its output with NAME.out.
func TestLuaExamples(t *testing.T) {
	scripttest.RunGolden(t, "lua/*.lua", nil)
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

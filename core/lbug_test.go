package core

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// lbugBreak is lua.org's test for 5.4.4's bug "'break' may not properly
// exit a loop with a to-be-closed variable" (5.4.5's testes/locals.lua):
// 5.4.4 prints "true false", 5.4.5 and later "true true".
const lbugBreak = `
local closed = false
local o1 = setmetatable({}, {__close = function() closed = true end})
local function test()
  for k, v in next, {}, nil, o1 do
    local function f() return k end
    break
  end
  return closed
end
print(pcall(test))
`

func newLbugTest(t *testing.T) *lbugState {
	t.Helper()
	s, err := newLbugState()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.close)
	return s
}

// lbugDump loads src as text in s and returns its dump (the function
// stays on the top).
func lbugDump(t *testing.T, s *lbugState, name, src string) []byte {
	t.Helper()
	if err := s.load(name, src, "t"); err != nil {
		t.Fatal(err)
	}
	d, err := s.dump()
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// TestLbugPatchWalksEveryScript walks the dump of every script of
// testdata and testdata/stock: none has the bad pattern, so the patcher
// must walk each to its last byte and change nothing, mb_lbug_fix must
// leave the very same function, and the dump reloaded must dump the
// same; the stock scripts print the same from the text and from the
// reloaded dump.
func TestLbugPatchWalksEveryScript(t *testing.T) {
	files, _ := filepath.Glob("../testdata/*.lua")
	stock, _ := filepath.Glob("../testdata/stock/*.lua")
	if len(files) == 0 || len(stock) == 0 {
		t.Fatal("no scripts in testdata")
	}
	for _, file := range append(files, stock...) {
		t.Run(strings.TrimPrefix(file, "../"), func(t *testing.T) {
			src, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			s := newLbugTest(t)
			d := lbugDump(t, s, "@"+file, string(src))
			patched, n := lbugPatch(d)
			if n != 0 || !bytes.Equal(patched, d) {
				t.Fatalf("mb_lbug_patch: %d rewritten (want 0), chunk changed: %v", n, !bytes.Equal(patched, d))
			}
			if same, err := s.fix(); err != nil || !same {
				t.Fatalf("mb_lbug_fix replaced a function with no pattern (same %v, err %v)", same, err)
			}
			if err := s.load("=reloaded", string(patched), "b"); err != nil {
				t.Fatal(err)
			}
			again, err := s.dump()
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(again, d) {
				t.Fatal("the reloaded dump dumps differently")
			}
			if !strings.Contains(file, "/stock/") {
				return
			}
			fromDump, err := s.run()
			if err != nil {
				t.Fatal(err)
			}
			s2 := newLbugTest(t)
			if err := s2.load("@"+file, string(src), "t"); err != nil {
				t.Fatal(err)
			}
			fromText, err := s2.run()
			if err != nil {
				t.Fatal(err)
			}
			if fromDump != fromText || fromText == "" {
				t.Errorf("output differs\n--- from the reloaded dump\n%s--- from the text\n%s", fromDump, fromText)
			}
		})
	}
}

// TestLbugFixClosesTheLoopsVariable: lua.org's test prints 5.4.4's
// "true false" as loaded, and 5.4.5's "true true" once fixed; one
// instruction changed, the CLOSE after TFORLOOP, and nothing else.
func TestLbugFixClosesTheLoopsVariable(t *testing.T) {
	s := newLbugTest(t)
	if err := s.load("=bug", lbugBreak, "t"); err != nil {
		t.Fatal(err)
	}
	if got, err := s.run(); err != nil || got != "true\tfalse\n" {
		t.Fatalf("unfixed: %q, %v; want 5.4.4's \"true\\tfalse\" (is the Lua underneath fixed?)", got, err)
	}
	s = newLbugTest(t)
	d := lbugDump(t, s, "=bug", lbugBreak)
	patched, n := lbugPatch(d)
	if n != 1 {
		t.Fatalf("rewrote %d instructions, want 1", n)
	}
	diff := 0
	for i := range d {
		if d[i] != patched[i] {
			diff++
		}
	}
	if diff != 1 { // CLOSE 4 -> CLOSE 0: one byte of one instruction
		t.Errorf("%d bytes changed, want 1", diff)
	}
	if same, err := s.fix(); err != nil || same {
		t.Fatalf("mb_lbug_fix kept the function (same %v, err %v)", same, err)
	}
	again, err := s.dump()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(again, patched) {
		t.Error("the fixed function does not dump as the patched chunk")
	}
	if got, err := s.run(); err != nil || got != "true\ttrue\n" {
		t.Fatalf("fixed: %q, %v; want \"true\\ttrue\"", got, err)
	}
}

// TestLbugPatchFindsEveryLoop: loops in the main chunk, in nested
// functions and nested in each other are each rewritten once; a loop
// without a captured variable, a numeric for and a while loop are not
// (their CLOSE is right already).
func TestLbugPatchFindsEveryLoop(t *testing.T) {
	const src = `
local o = setmetatable({}, {__close = function() end})
for k in next, {1}, nil, o do local f = function() return k end break end      -- 1
for k in next, {1}, nil, o do break end                                       -- right
for i = 1, 2 do local f = function() return i end break end                   -- right
while true do local x = 1; local f = function() return x end break end        -- right
local function g()
  for a in next, {1}, nil, o do                                               -- 2
    for b in next, {1}, nil, o do local f = function() return a, b end break end -- 3
    local h = function() return a end
    if a then break end
  end
  return function()
    for c in pairs({}) do local f = function() return c end break end          -- 4
  end
end
`
	s := newLbugTest(t)
	d := lbugDump(t, s, "=loops", src)
	if _, n := lbugPatch(d); n != 4 {
		t.Errorf("rewrote %d instructions, want 4", n)
	}
	patched, _ := lbugPatch(d)
	if _, n := lbugPatch(patched); n != 0 {
		t.Errorf("a patched chunk patched again: %d rewritten, want 0", n)
	}
}

// TestLbugPatchRefusesWhatItCannotWalk: a chunk cut short anywhere, or
// with another header, is refused (-1), never read past its end.
func TestLbugPatchRefusesWhatItCannotWalk(t *testing.T) {
	s := newLbugTest(t)
	d := lbugDump(t, s, "=bug", lbugBreak)
	for i := 0; i < len(d); i++ {
		if _, n := lbugPatch(d[:i]); n != -1 {
			t.Fatalf("a chunk cut at %d of %d bytes: %d, want -1", i, len(d), n)
		}
	}
	bad := bytes.Clone(d)
	bad[4] = 0x53 // Lua 5.3
	if _, n := lbugPatch(bad); n != -1 {
		t.Errorf("another version's header: %d, want -1", n)
	}
	if _, n := lbugPatch(append(bytes.Clone(d), 0)); n != -1 {
		t.Errorf("a byte past the end: %d, want -1", n)
	}
}

// lbugScript is about 10 KB of ordinary Lua: functions, numeric and
// generic loops, tables, strings; with brk, each function's generic for
// is left by break and captures its variable (the pattern lbug.c fixes).
func lbugScript(brk bool) string {
	var b strings.Builder
	for i := 0; b.Len() < 10*1024; i++ {
		exit := "if v == nil then return end"
		if brk {
			exit = "local f = function() return k end if v == nil then break end"
		}
		fmt.Fprintf(&b, `local function f%d(t, n)
  local sum, names = 0, {}
  for i = 1, n do sum = sum + (t[i] or 0) * %d end
  for k, v in pairs(t) do
    %s
    names[#names + 1] = tostring(k) .. "=" .. tostring(v)
  end
  return sum, table.concat(names, ",")
end
`, i, i, exit)
	}
	b.WriteString("return f0\n")
	return b.String()
}

// BenchmarkLbugLoad10KB: loading a 10 KB script as it is (none), with
// mb_lbug_fix_text (no "break" in the text: the cheap path; with
// "break": a dump and a walk, then a reload for the patched loops) and
// with mb_lbug_fix on a text without break (a dump and a walk).
//
//	go test -run '^$' -bench LbugLoad -benchtime 2000x ./core
func BenchmarkLbugLoad10KB(b *testing.B) {
	for _, c := range []struct {
		name     string
		brk      bool
		how      int
		replaced bool
	}{
		{"none", false, 0, false},
		{"fix_text/no_break", false, 1, false},
		{"fix/no_break", false, 2, false},
		{"fix_text/break_patched", true, 1, true},
		{"none/break", true, 0, false},
	} {
		b.Run(c.name, func(b *testing.B) {
			s, err := newLbugState()
			if err != nil {
				b.Fatal(err)
			}
			defer s.close()
			src := lbugScript(c.brk)
			l := s.loader(src)
			defer l.free()
			b.SetBytes(int64(len(src)))
			for b.Loop() {
				replaced, err := l.load(c.how)
				if err != nil || replaced != c.replaced {
					b.Fatalf("replaced %v (want %v), %v", replaced, c.replaced, err)
				}
			}
		})
	}
}

package core

import (
	"bufio"
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// coreLayers is the C core's order, lowest first: a file may include the
// headers of its own layer and of the layers below, never above, and the
// modules' includes form no cycle. A module is a base name: x.c and x.h.
// README.md says what each layer is; keep the two in step. A new file
// must be placed here (the test fails until it is).
var coreLayers = [][]string{
	{"mb", "list", "buf", "codec", "queue", "sleep", "event", "pack", "lbug", "heap"}, // 0 base
	{"state", "errors", "output"},           // 1 records, errors
	{"limit", "userhook", "dbglib", "task"}, // 2 scheduler
	{"call", "stream", "bridge", "chan", "promise", "timer", "coro", "env", "sandbox", "json", "strlib", "tablib"}, // 3 objects
	{"await", "inspect"},       // 4 combinators, introspection
	{"run", "rt", "interrupt"}, // 5 life cycle
}

var includeRe = regexp.MustCompile(`^\s*#\s*include\s+"([^"]+)"`)

// generated headers, not modules: cgo writes _cgo_export.h from
// export.go's preamble, which includes only buf.h.
var generatedHeaders = map[string]bool{"_cgo_export.h": true}

func layerOf() map[string]int {
	m := map[string]int{}
	for i, mods := range coreLayers {
		for _, mod := range mods {
			m[mod] = i
		}
	}
	return m
}

// coreIncludes maps each C file of the core to the headers it includes.
func coreIncludes(t *testing.T) map[string][]string {
	t.Helper()
	files, err := filepath.Glob("*.[ch]")
	if err != nil || len(files) == 0 {
		t.Fatalf("no C files: %v", err)
	}
	inc := map[string][]string{}
	for _, f := range files {
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		inc[f] = []string{}
		sc := bufio.NewScanner(bytes.NewReader(src))
		for sc.Scan() {
			if m := includeRe.FindStringSubmatch(sc.Text()); m != nil {
				inc[f] = append(inc[f], m[1])
			}
		}
	}
	return inc
}

func module(file string) string { return strings.TrimSuffix(strings.TrimSuffix(file, ".c"), ".h") }

// TestCoreLayersHaveNoUpwardIncludeAndNoCycle keeps the layering of
// README.md true: every file is placed, includes only its own layer and
// those below, and the modules' includes form no cycle.
func TestCoreLayersHaveNoUpwardIncludeAndNoCycle(t *testing.T) {
	layer := layerOf()
	inc := coreIncludes(t)
	graph := map[string]map[string]bool{}
	for file, hs := range inc {
		mod := module(file)
		l, ok := layer[mod]
		if !ok {
			t.Errorf("%s: module %q is in no layer: place it in coreLayers (layers_test.go) and README.md", file, mod)
			continue
		}
		for _, h := range hs {
			if generatedHeaders[h] {
				continue
			}
			hm := module(h)
			hl, ok := layer[hm]
			if !ok {
				t.Errorf("%s includes %q, which is no module of the core", file, h)
				continue
			}
			if hl > l {
				t.Errorf("%s (layer %d) includes %s of layer %d above it", file, l, h, hl)
			}
			if hm != mod {
				if graph[mod] == nil {
					graph[mod] = map[string]bool{}
				}
				graph[mod][hm] = true
			}
		}
	}
	if cycle := findCycle(graph); cycle != nil {
		t.Errorf("the modules' includes form a cycle: %s", strings.Join(cycle, " -> "))
	}
}

// findCycle returns a cycle of the graph (its first node repeated at the
// end), or nil.
func findCycle(graph map[string]map[string]bool) []string {
	const (
		unseen = iota
		open
		closed
	)
	state := map[string]int{}
	var stack []string
	var visit func(n string) []string
	visit = func(n string) []string {
		state[n] = open
		stack = append(stack, n)
		next := make([]string, 0, len(graph[n]))
		for m := range graph[n] {
			next = append(next, m)
		}
		slices.Sort(next)
		for _, m := range next {
			switch state[m] {
			case open:
				i := slices.Index(stack, m)
				return append(slices.Clone(stack[i:]), m)
			case unseen:
				if c := visit(m); c != nil {
					return c
				}
			}
		}
		stack = stack[:len(stack)-1]
		state[n] = closed
		return nil
	}
	nodes := make([]string, 0, len(graph))
	for n := range graph {
		nodes = append(nodes, n)
	}
	slices.Sort(nodes)
	for _, n := range nodes {
		if state[n] == unseen {
			if c := visit(n); c != nil {
				return c
			}
		}
	}
	return nil
}

func TestFindCycleFindsOne(t *testing.T) {
	g := map[string]map[string]bool{"a": {"b": true}, "b": {"c": true}, "c": {"a": true}}
	if c := findCycle(g); strings.Join(c, " ") != "a b c a" {
		t.Errorf("cycle %v", c)
	}
	g["c"] = map[string]bool{"d": true}
	if c := findCycle(g); c != nil {
		t.Errorf("no cycle, got %v", c)
	}
}

var funcDefRe = regexp.MustCompile(`^(?:static\s+)?(?:inline\s+)?(?:MB_NORETURN\s+)?(?:const\s+)?[A-Za-z_]\w*(?:\s+\w+)*[\s*]+(mb_\w+)\s*\(`)

// TestCoreFunctionsAreNamedByTheirFile checks that a prefix names its file:
// every function defined in x.c is mb_x_..., so a reader who sees a name
// knows where it lives, and no name is defined twice.
func TestCoreFunctionsAreNamedByTheirFile(t *testing.T) {
	files, _ := filepath.Glob("*.c")
	where := map[string]string{}
	for _, f := range files {
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		prefix := "mb_" + module(f) + "_"
		if module(f) == "mb" {
			prefix = "mb_"
		}
		n := 0
		for _, line := range strings.Split(string(src), "\n") {
			m := funcDefRe.FindStringSubmatch(line)
			if m == nil || strings.HasSuffix(strings.TrimSpace(line), ";") {
				continue
			}
			n++
			name := m[1]
			if !strings.HasPrefix(name, prefix) {
				t.Errorf("%s defines %s: its functions are named %s...", f, name, prefix)
			}
			if other, ok := where[name]; ok {
				t.Errorf("%s is defined in %s and in %s", name, other, f)
			}
			where[name] = f
		}
		if n == 0 && module(f) != "mb" {
			t.Errorf("%s: no function definitions found: does funcDefRe still match its style?", f)
		}
	}
}

// TestCoreHeadersShadowNoSystemHeader: cgo puts the package's directory on
// the include path of every C file, so a header named like a system one
// (error.h, stdio.h) would be picked for #include <error.h> too.
func TestCoreHeadersShadowNoSystemHeader(t *testing.T) {
	out, err := exec.Command("cpp", "-v", "/dev/null").CombinedOutput()
	if err != nil {
		t.Fatalf("cpp -v: %v\n%s", err, out)
	}
	var dirs []string
	in := false
	for _, line := range strings.Split(string(out), "\n") {
		switch {
		case strings.HasPrefix(line, "#include <...> search starts here"):
			in = true
		case strings.HasPrefix(line, "End of search list"):
			in = false
		case in:
			dirs = append(dirs, strings.TrimSpace(line))
		}
	}
	if len(dirs) == 0 {
		t.Fatalf("no system include directories in cpp -v's output:\n%s", out)
	}
	headers, _ := filepath.Glob("*.h")
	for _, h := range headers {
		for _, d := range dirs {
			if _, err := os.Stat(filepath.Join(d, h)); err == nil {
				t.Errorf("%s shadows %s: rename it", h, filepath.Join(d, h))
			}
		}
	}
}

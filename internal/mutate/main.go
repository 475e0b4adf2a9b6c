// Command mutate checks that the tests the README's Guarantees table names
// fail when the promise they show is broken: each mutation in mutations/
// plants one realistic bug, the named test runs, and the mutation must be
// caught (the test fails). `make mutate` runs them all; it is not part of
// `make test` (it rebuilds the module once per mutation).
//
// A mutation file (mutations/*.txt):
//
//	# What the bug is, in a sentence.
//	row: the Guarantees row it breaks (a few words of it)
//	file: core/call.c
//	test: ./bridge ^TestACompletedWaitStands$
//	timeout: 2m   (optional: go test's -timeout, for a bug that hangs)
//	flags: -race  (optional: more go test flags, for a bug only they show)
//	--- find
//	exact text, found exactly once in file
//	--- replace
//	what it becomes
//
// The module is copied once to a work directory (so the build cache keeps
// every package a mutation does not touch); each mutation is applied there,
// its test run, and the file restored.
//
// Usage: go run ./internal/mutate [-work DIR] [-timeout 15m] [mutations/x.txt ...]
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

type mutation struct {
	path    string // the mutation file
	what    string
	row     string
	file    string
	pkg     string
	run     string
	timeout string   // go test's -timeout, when the bug would hang
	flags   []string // more go test flags (-race for a data race)
	find    string
	replace string
}

func main() {
	work := flag.String("work", filepath.Join(os.TempDir(), "moonbridge-mutate"), "where the module is copied")
	timeout := flag.Duration("timeout", 15*time.Minute, "longest a mutation's test may run")
	flag.Parse()
	files := flag.Args()
	if len(files) == 0 {
		var err error
		if files, err = filepath.Glob("mutations/*.txt"); err != nil || len(files) == 0 {
			fail("no mutations in mutations/ (run from the module's root)")
		}
	}
	sort.Strings(files)
	var ms []mutation
	for _, f := range files {
		m, err := parse(f)
		if err != nil {
			fail(err.Error())
		}
		ms = append(ms, m)
	}
	if err := copyModule(".", *work); err != nil {
		fail("copying the module: " + err.Error())
	}
	survived := 0
	fmt.Printf("%-40s %-10s %s\n", "mutation", "result", "test")
	for _, m := range ms {
		res, detail := try(m, *work, *timeout)
		if res != "caught" {
			survived++
		}
		fmt.Printf("%-40s %-10s %s %s\n", strings.TrimSuffix(filepath.Base(m.path), ".txt"), res, m.pkg, m.run)
		if detail != "" {
			fmt.Println("    " + strings.ReplaceAll(strings.TrimSpace(detail), "\n", "\n    "))
		}
	}
	fmt.Printf("%d mutations, %d caught, %d not\n", len(ms), len(ms)-survived, survived)
	if survived > 0 {
		os.Exit(1)
	}
}

func fail(msg string) {
	fmt.Fprintln(os.Stderr, "mutate:", msg)
	os.Exit(2)
}

// parse reads a mutation file.
func parse(path string) (mutation, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return mutation{}, err
	}
	m := mutation{path: path}
	text := string(b)
	head, rest, ok := strings.Cut(text, "--- find\n")
	if !ok {
		return m, fmt.Errorf("%s: no '--- find' section", path)
	}
	find, replace, ok := strings.Cut(rest, "--- replace\n")
	if !ok {
		return m, fmt.Errorf("%s: no '--- replace' section", path)
	}
	m.find, m.replace = find, replace
	for _, line := range strings.Split(head, "\n") {
		switch {
		case strings.HasPrefix(line, "#"):
			m.what = strings.TrimSpace(strings.TrimPrefix(line, "#"))
		case strings.HasPrefix(line, "row:"):
			m.row = strings.TrimSpace(strings.TrimPrefix(line, "row:"))
		case strings.HasPrefix(line, "file:"):
			m.file = strings.TrimSpace(strings.TrimPrefix(line, "file:"))
		case strings.HasPrefix(line, "test:"):
			f := strings.Fields(strings.TrimPrefix(line, "test:"))
			if len(f) != 2 {
				return m, fmt.Errorf("%s: test: wants a package and a -run pattern", path)
			}
			m.pkg, m.run = f[0], f[1]
		case strings.HasPrefix(line, "flags:"):
			m.flags = strings.Fields(strings.TrimPrefix(line, "flags:"))
		case strings.HasPrefix(line, "timeout:"):
			m.timeout = strings.TrimSpace(strings.TrimPrefix(line, "timeout:"))
			if _, err := time.ParseDuration(m.timeout); err != nil {
				return m, fmt.Errorf("%s: timeout: %w", path, err)
			}
		}
	}
	if m.file == "" || m.pkg == "" || m.row == "" || m.find == "" {
		return m, fmt.Errorf("%s: row, file, test and a find text are required", path)
	}
	return m, nil
}

// try applies m in work, runs its test and restores the file. The
// mutation is caught when the test fails; a mutation that does not build
// is a broken mutation, not a catch.
func try(m mutation, work string, timeout time.Duration) (result, detail string) {
	target := filepath.Join(work, m.file)
	orig, err := os.ReadFile(target)
	if err != nil {
		return "broken", err.Error()
	}
	if n := bytes.Count(orig, []byte(m.find)); n != 1 {
		return "broken", fmt.Sprintf("the find text occurs %d times in %s (want exactly once)", n, m.file)
	}
	defer os.WriteFile(target, orig, 0o644)
	if err := os.WriteFile(target, bytes.Replace(orig, []byte(m.find), []byte(m.replace), 1), 0o644); err != nil {
		return "broken", err.Error()
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	args := []string{"test", "-count=1", "-run", m.run}
	if m.timeout != "" {
		args = append(args, "-timeout", m.timeout)
	}
	args = append(args, m.flags...)
	cmd := exec.CommandContext(ctx, "go", append(args, m.pkg)...)
	cmd.Dir = work
	out, err := cmd.CombinedOutput()
	switch {
	case ctx.Err() != nil:
		return "caught", "(the test hung until the timeout)"
	case err == nil:
		return "SURVIVED", m.what
	case bytes.Contains(out, []byte("[build failed]")) || bytes.Contains(out, []byte("[setup failed]")):
		return "broken", "does not build:\n" + lastLines(string(out), 8)
	case bytes.Contains(out, []byte("no tests to run")):
		return "broken", "the -run pattern matches no test"
	}
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		return "broken", err.Error()
	}
	return "caught", ""
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// copyModule copies the module's source (no .git, no build outputs) to
// dst, fresh each time.
func copyModule(src, dst string) error {
	if err := os.RemoveAll(dst); err != nil {
		return err
	}
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		if d.IsDir() && (rel == ".git" || rel == "bin" || rel == filepath.Join("bench", "out")) {
			return filepath.SkipDir
		}
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		if !d.Type().IsRegular() {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		return os.WriteFile(target, b, info.Mode().Perm())
	})
}

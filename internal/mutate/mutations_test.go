package main

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// Every mutation still applies to the code it was written for (its find
// text is there, once), and its row is still in the README: a mutation whose
// find text the code has moved away from is reported "broken" only by a full
// make mutate, which make test does not run. This keeps the list true as the
// code changes, in seconds.
func TestEveryMutationStillApplies(t *testing.T) {
	root := filepath.Join("..", "..")
	files, err := filepath.Glob(filepath.Join(root, "mutations", "*.txt"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no mutations found: %v", err)
	}
	readme, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		t.Run(strings.TrimSuffix(filepath.Base(f), ".txt"), func(t *testing.T) {
			m, err := parse(f)
			if err != nil {
				t.Fatal(err)
			}
			src, err := os.ReadFile(filepath.Join(root, m.file))
			if err != nil {
				t.Fatal(err)
			}
			if n := bytes.Count(src, []byte(m.find)); n != 1 {
				t.Errorf("the find text occurs %d times in %s (want exactly once)", n, m.file)
			}
			if m.find == m.replace {
				t.Error("the replacement is the find text: nothing is mutated")
			}
			if !rowIn(string(readme), m.row) {
				t.Errorf("the row %q is not in README.md", m.row)
			}
		})
	}
}

// rowIn reports whether row, a few words of a Guarantees row (backticks
// may be left out, "..." stands for any text), is in the README.
func rowIn(readme, row string) bool {
	plain := strings.ReplaceAll(readme, "`", "")
	parts := strings.Split(strings.ReplaceAll(row, "`", ""), "...")
	for i, p := range parts {
		parts[i] = regexp.QuoteMeta(p)
	}
	return regexp.MustCompile("(?i)" + strings.Join(parts, "[^\n]*")).MatchString(plain)
}

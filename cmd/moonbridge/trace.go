package main

// --trace: an in-process span processor that keeps every ended span, and
// prints them as a tree when the run is over.

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// collapseOver is how many same-named siblings are printed one by one;
// more become one summary line.
const collapseOver = 8

// spanTree is a sdktrace.SpanProcessor that keeps ended spans.
type spanTree struct {
	mu    sync.Mutex
	spans []sdktrace.ReadOnlySpan
}

func (t *spanTree) OnStart(context.Context, sdktrace.ReadWriteSpan) {}
func (t *spanTree) Shutdown(context.Context) error                  { return nil }
func (t *spanTree) ForceFlush(context.Context) error                { return nil }

func (t *spanTree) OnEnd(s sdktrace.ReadOnlySpan) {
	t.mu.Lock()
	t.spans = append(t.spans, s)
	t.mu.Unlock()
}

// newTracer returns a TracerProvider that records into a new spanTree.
func newTracer() (*sdktrace.TracerProvider, *spanTree) {
	tree := &spanTree{}
	return sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(tree)), tree
}

// print writes the tree of the run named root (the program's own runs,
// which set things up, are left out): each span's name and duration,
// children indented under their parent in start order; an error's message
// follows its span. Siblings of one name past collapseOver are summed up
// in one line.
func (t *spanTree) print(w io.Writer, root string) {
	t.mu.Lock()
	spans := slices.Clone(t.spans)
	t.mu.Unlock()
	known := map[trace.SpanID]bool{}
	for _, s := range spans {
		known[s.SpanContext().SpanID()] = true
	}
	children := map[trace.SpanID][]sdktrace.ReadOnlySpan{}
	var roots []sdktrace.ReadOnlySpan
	for _, s := range spans {
		if p := s.Parent().SpanID(); s.Parent().IsValid() && known[p] {
			children[p] = append(children[p], s)
		} else if s.Name() == root {
			roots = append(roots, s)
		}
	}
	byStart := func(a, b sdktrace.ReadOnlySpan) int { return a.StartTime().Compare(b.StartTime()) }
	fmt.Fprintln(w, "trace:")
	var walk func(list []sdktrace.ReadOnlySpan, depth int)
	walk = func(list []sdktrace.ReadOnlySpan, depth int) {
		slices.SortStableFunc(list, byStart)
		count := map[string]int{}
		for _, s := range list {
			count[s.Name()]++
		}
		summarised := map[string]bool{}
		indent := strings.Repeat("  ", depth+1)
		for _, s := range list {
			name := s.Name()
			if count[name] > collapseOver {
				if !summarised[name] {
					summarised[name] = true
					fmt.Fprintf(w, "%s%s\n", indent, summary(name, list))
				}
				continue
			}
			line := fmt.Sprintf("%s%s  %s", indent, name, round(s.EndTime().Sub(s.StartTime())))
			if s.Status().Code == codes.Error {
				line += "  error: " + firstLine(s.Status().Description)
			}
			fmt.Fprintln(w, line)
			walk(children[s.SpanContext().SpanID()], depth+1)
		}
	}
	walk(roots, 0)
}

// summary is the line of many same-named siblings.
func summary(name string, list []sdktrace.ReadOnlySpan) string {
	var n, errs int
	var total, longest time.Duration
	for _, s := range list {
		if s.Name() != name {
			continue
		}
		d := s.EndTime().Sub(s.StartTime())
		n++
		total += d
		longest = max(longest, d)
		if s.Status().Code == codes.Error {
			errs++
		}
	}
	line := fmt.Sprintf("%s ×%d  total %s, mean %s, max %s", name, n, round(total), round(total/time.Duration(n)), round(longest))
	if errs > 0 {
		line += fmt.Sprintf(", %d failed", errs)
	}
	return line
}

func round(d time.Duration) time.Duration {
	switch {
	case d >= time.Second:
		return d.Round(time.Millisecond)
	case d >= time.Millisecond:
		return d.Round(10 * time.Microsecond)
	}
	return d.Round(100 * time.Nanosecond)
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	return cmp.Or(s, "(no message)")
}

package main

import (
	"fmt"
	"io"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/moonbridge/moonbridge/bridge"
)

// dumpOnQuit prints rt's task table to w on each SIGQUIT (Ctrl-\), as Go
// prints its goroutines, and lets the run go on. It turns the Runtime's
// CPU accounting on at once, so the table's times cover the whole run.
// stop stops listening.
func dumpOnQuit(rt *bridge.Runtime, w io.Writer) (stop func()) {
	rt.Tasks()
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGQUIT)
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-sigs:
				dumpTasks(w, rt.Tasks())
			case <-done:
				return
			}
		}
	}()
	return func() {
		signal.Stop(sigs)
		close(done)
		wg.Wait()
	}
}

// dumpTasks writes the task table: a header, then per task its number,
// name, status, what it waits for, age, CPU and turns, and where it is,
// then an empty line.
//
//	task #2 "reader" [suspended on a channel receive, 1.5s, cpu 0s, 1 resume]:
//		main.lua:4
func dumpTasks(w io.Writer, ts []bridge.TaskInfo) {
	fmt.Fprintf(w, "moonbridge: %d %s\n", len(ts), plural(len(ts), "task"))
	for _, t := range ts {
		name := ""
		if t.Name != "" {
			name = fmt.Sprintf(" %q", t.Name)
		}
		state := t.Status
		if t.WaitingFor != "" {
			state += " on " + t.WaitingFor
		}
		fmt.Fprintf(w, "\ntask #%d%s [%s, %v, cpu %v, %d %s]:\n", t.ID, name, state,
			t.Age.Round(time.Millisecond), t.CPU.Round(time.Microsecond), t.Resumes, plural(int(t.Resumes), "resume"))
		if t.Where != "" {
			fmt.Fprintf(w, "\t%s\n", t.Where)
		}
	}
	fmt.Fprintln(w)
}

func plural(n int, word string) string {
	if n == 1 {
		return word
	}
	return word + "s"
}

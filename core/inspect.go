package core

/*
#include "state.h"
*/
import "C"

import (
	"context"
	"math"
	"time"
)

// TaskInfo describes a live task: what t:info() gives a script.
type TaskInfo struct {
	Run        int64         // the run it belongs to (tasks of one run share it)
	ID         int64         // its number in its run: the main chunk is 0
	Name       string        // task.spawn's name option, or ""
	Status     string        // "pending", "running", "suspended"
	WaitingFor string        // while suspended: "a channel receive", "the Go call kv.get", ...
	Where      string        // file:line it runs or waits at, once started
	CreatedAt  time.Time     // when it was spawned
	Age        time.Duration // how long ago
	CPU        time.Duration // time spent running it, counted from the first time the Runtime was inspected
	Resumes    int64         // turns it was given
}

// Tasks returns a snapshot of every live task, taken by the loop between
// two tasks' turns (so it waits for a task that runs without yielding).
func (l *Loop) Tasks(ctx context.Context) ([]TaskInfo, error) {
	_, vals, err := l.submit(ctx, C.MB_RUN_TASKS, "", nil, Env{})
	if err != nil || len(vals) == 0 {
		return nil, err
	}
	list, _ := vals[0].([]any)
	out := make([]TaskInfo, 0, len(list))
	for _, v := range list {
		m, _ := v.(map[string]any)
		s := func(k string) string { x, _ := m[k].(string); return x }
		i := func(k string) int64 { x, _ := m[k].(int64); return x }
		f := func(k string) float64 {
			switch x := m[k].(type) {
			case float64:
				return x
			case int64:
				return float64(x)
			}
			return 0
		}
		ti := TaskInfo{Run: i("run"), ID: i("id"), Name: s("name"), Status: s("status"),
			WaitingFor: s("waiting_for"), Where: s("where"), Resumes: i("resumes"),
			Age: seconds(f("age")), CPU: seconds(f("cpu"))}
		if c := f("created_at"); c > 0 {
			sec, frac := math.Modf(c)
			ti.CreatedAt = time.Unix(int64(sec), int64(frac*1e9))
		}
		out = append(out, ti)
	}
	return out, nil
}

func seconds(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }

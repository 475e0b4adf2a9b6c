package core

import (
	"context"
	"fmt"
	"strings"
	"testing"
)

// blockingLoop has kv.get, which says it was entered and returns once
// released.
func blockingLoop(t *testing.T, opts Options) (l *Loop, entered chan string, release chan struct{}) {
	l, _ = newTestLoop(t, opts)
	entered, release = make(chan string, 16), make(chan struct{})
	if err := l.RegisterFunc("kv.get", false, func(ctx context.Context, args []Value) ([]any, error) {
		entered <- fmt.Sprint(args[0].Any())
		select {
		case <-release:
		case <-ctx.Done():
		}
		return []any{"v"}, nil
	}); err != nil {
		t.Fatal(err)
	}
	return l, entered, release
}

// t:info() and task.list() say what each task is, waits for and where;
// rt.Tasks gives Go the same, from another goroutine, while the run waits
// in a Go call.
func TestTaskIntrospection(t *testing.T) {
	l, entered, release := blockingLoop(t, Options{})
	done := make(chan error, 1)
	go func() {
		done <- l.RunChunk(context.Background(), "=test", []byte(`local task, channel = require("task"), require("channel")
local ch = channel.new()
local a = task.spawn({name = "reader"}, function() return ch:recv() end)
local b = task.spawn(function() return kv.get("k") end)
local c = task.spawn(function() task.sleep(3600) end)
task.yield()
local list = task.list()
assert(#list == 4 and list[1] == task.current() and list[2] == a and list[4] == c, #list)
local ia = a:info()
assert(ia.id == 1 and ia.name == "reader" and ia.status == "suspended", ia.status)
assert(ia.waiting_for == "a channel receive" and ia.where == "test:3", ia.where)
assert(ia.resumes == 1 and ia.age >= 0 and math.abs(ia.created_at - os.time()) < 60, ia.created_at)
local ib = b:info()
assert(ib.id == 2 and ib.name == nil and ib.waiting_for == "the Go call kv.get" and ib.where == "test:4", ib.waiting_for)
assert(c:info().waiting_for == "a timer" and c:info().where == "test:5")
local me = task.current():info()
assert(me.id == 0 and me.status == "running" and me.where == "test:16" and me.waiting_for == nil and me.resumes == 2, me.where)
task.yield()                           -- a turn counted from start to end
local x = 0
for i = 1, 1e5 do x = x + i end
task.yield()
assert(task.current():info().cpu > 0 and task.current():info().resumes == 4)
kv.get("main")                         -- Go takes its snapshot here
ch:send("hi")
assert(a:wait() == "hi" and a:info().status == "done" and a:info().where == nil)
c:cancel()
assert(b:wait() == "v")
print("ok")`), nil)
	}()
	if got := <-entered + " " + <-entered; got != "k main" {
		t.Fatalf("kv.get(%q)", got)
	}
	ts, err := l.Tasks(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	// The snapshot was taken while main and b waited in kv.get.
	if len(ts) != 4 {
		t.Fatalf("%d tasks: %+v", len(ts), ts)
	}
	for i, ti := range ts {
		if ti.ID != int64(i) || ti.Run != ts[0].Run || ti.CreatedAt.IsZero() || ti.Resumes < 1 {
			t.Errorf("task %d: %+v", i, ti)
		}
	}
	if m := ts[0]; m.Name != "test" || m.WaitingFor != "the Go call kv.get" || m.Where != "test:23" || m.CPU <= 0 || m.Resumes != 4 {
		t.Errorf("main: %+v", m)
	}
	if a := ts[1]; a.Name != "reader" || a.Status != "suspended" || a.WaitingFor != "a channel receive" || a.Where != "test:3" {
		t.Errorf("reader: %+v", a)
	}
	if b := ts[2]; b.Status != "suspended" || b.WaitingFor != "the Go call kv.get" || b.Where != "test:4" {
		t.Errorf("the caller of kv.get: %+v", b)
	}
	if ts, err := l.Tasks(context.Background()); err != nil || len(ts) != 0 {
		t.Errorf("after the run: %v %+v", err, ts)
	}
}

// Under the sandbox a run lists only its own tasks; without it, every
// run's. Go sees them all either way.
func TestTaskListUnderTheSandbox(t *testing.T) {
	for _, sandbox := range []bool{true, false} {
		l, entered, release := blockingLoop(t, Options{Sandbox: sandbox})
		other := make(chan error, 1)
		go func() {
			other <- l.RunChunk(context.Background(), "=other", []byte(`local task = require("task")
				task.spawn(kv.get, "a"); task.spawn(kv.get, "b")`), nil)
		}()
		<-entered
		<-entered
		want := 1
		if !sandbox {
			want = 3 // this run's main, and the other run's two tasks (its main has returned)
		}
		err := l.RunChunk(context.Background(), "=test", []byte(fmt.Sprintf(`local n = #require("task").list()
			assert(n == %d, n)`, want)), nil)
		if err != nil {
			t.Errorf("sandbox %v: %v", sandbox, err)
		}
		ts, err := l.Tasks(context.Background())
		if err != nil || len(ts) != 2 {
			t.Errorf("sandbox %v: Go sees %v %+v", sandbox, err, ts)
		}
		close(release)
		if err := <-other; err != nil {
			t.Fatal(err)
		}
	}
}

// A task's info shows its name and status also once it ended; nothing is
// listed for a run that ended.
func TestTaskInfoAfterTheEnd(t *testing.T) {
	l, out := newTestLoop(t, Options{})
	if err := l.RunChunk(context.Background(), "=test", []byte(`local task = require("task")
		local t = task.spawn({name = "w"}, error, "boom", 0)
		print(pcall(t.wait, t))
		local i = t:info()
		print(i.name, i.status, i.where, i.waiting_for, i.resumes)`), nil); err != nil {
		t.Fatal(err)
	}
	if got := out.String(); !strings.Contains(got, "false\tboom\nw\tfailed\tnil\tnil\t1\n") {
		t.Errorf("got %q", got)
	}
}

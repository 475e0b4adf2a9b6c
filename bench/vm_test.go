package bench

// The Lua VM's own speed beside stock lua5.4 (issue 18): Debian's lua5.4
// program is the floor for plain Lua, since moonbridge runs the same Lua
// 5.4.4. The "lua5.4" implementation runs a workload's text in a lua5.4
// process: one process per benchmark run, doing b.N calls of the chunk in
// a loop, timed from Go around the process (wall clock, as every other
// implementation) minus the time the same process takes with no call
// (starting lua5.4 and loading the chunk: about a millisecond). cpu-ns/op
// is the process's CPU time per call, beside moonbridge's (the test
// process's) in the same run; on a busy machine ns/op includes waiting for
// a core and cpu-ns/op does not.
//
//	go test -run '^$' -bench '^Benchmark(Fib35|StringBuild|StreamChunks)$' -count 5 .
//
// Fib35 is fib(35) (about half a second), where process start is lost in
// the noise and the VM is all there is; Fib (fib(27)) and StringBuild are
// the shared workloads with lua5.4 added as an implementation.

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Fib35N and Fib35Result: the argument and result of Fib35.
const (
	Fib35N      = 35
	Fib35Result = 9227465
)

func init() {
	Register(Impl{
		Name: "lua5.4",
		Fib:  func(b *testing.B) { stockBench(b, FibLua, FibN, strconv.Itoa(FibResult)) },
		StringBuild: func(b *testing.B) {
			stockBench(b, StringBuildLua, StringBuildN, strconv.Itoa(StringBuildLen(StringBuildN)))
		},
	})
}

// stockDriver runs the chunk in file n times with the integer arg and
// prints the last result.
const stockDriver = `
local file, n, arg = ...
local f = assert(loadfile(file))
local r
for _ = 1, math.tointeger(tonumber(n)) do r = f(math.tointeger(tonumber(arg))) end
print(r)
`

// stockBench times b.N calls of chunk(arg) in one lua5.4 process and checks
// that the last one returned want.
func stockBench(b *testing.B, chunk string, arg int, want string) {
	lua, err := exec.LookPath("lua5.4")
	if err != nil {
		b.Fatal("lua5.4 is needed: apt-get install lua5.4")
	}
	dir := b.TempDir()
	driver, work := filepath.Join(dir, "driver.lua"), filepath.Join(dir, "work.lua")
	must(b, os.WriteFile(driver, []byte(stockDriver), 0o644))
	must(b, os.WriteFile(work, []byte(chunk), 0o644))
	run := func(n int) (wall, cpu time.Duration, out string) {
		cmd := exec.Command(lua, driver, work, strconv.Itoa(n), strconv.Itoa(arg))
		start := time.Now()
		res, err := cmd.Output()
		wall = time.Since(start)
		if err != nil {
			b.Fatalf("lua5.4: %v", err)
		}
		ps := cmd.ProcessState
		return wall, ps.UserTime() + ps.SystemTime(), strings.TrimSpace(string(res))
	}
	b.StopTimer()
	idleWall, idleCPU, _ := run(0)
	wall, cpu, out := run(b.N)
	if out != want {
		b.Fatalf("lua5.4 returned %q, want %q", out, want)
	}
	b.ReportMetric(float64(max(wall-idleWall, 0).Nanoseconds())/float64(b.N), "ns/op")
	b.ReportMetric(float64(max(cpu-idleCPU, 0).Nanoseconds())/float64(b.N), "cpu-ns/op")
}

// BenchmarkFib35: fib(35) in lua5.4 and in a moonbridge Runtime.
func BenchmarkFib35(b *testing.B) {
	want := strconv.Itoa(Fib35Result)
	b.Run("lua5.4", func(b *testing.B) { stockBench(b, FibLua, Fib35N, want) })
	b.Run("moonbridge", func(b *testing.B) {
		rt := mbRuntime(b, nil, map[string]string{"fib": FibLua})
		defer rt.Close()
		cpu := processCPU()
		b.ResetTimer()
		for range b.N {
			out := mbCall(b, rt, "fib", Fib35N)
			if len(out) != 1 || fmt.Sprint(out[0]) != want {
				b.Fatalf("fib(35) = %v, want %s", out, want)
			}
		}
		b.StopTimer()
		b.ReportMetric(float64(processCPU()-cpu)/float64(b.N), "cpu-ns/op")
	})
}

package cheap

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// Tunable is the glibc tunable that turns malloc's per-thread caches off.
// Chunks parked in those caches count as in use in mallinfo2, and which
// thread frees what varies from run to run, so with the caches on the C
// heap drifts by a few KiB a round with not a byte leaked.
const Tunable = "glibc.malloc.tcache_count=0"

// Exact reports whether Bytes is exact in this process (malloc's thread
// caches off). Tunables are read at start-up, so when it is not, Exact runs
// the calling test again in a child process of this test binary with the
// tunable set and flags added to its own, relays its report, and returns
// false: the caller then returns.
func Exact(t *testing.T, flags ...string) bool {
	t.Helper()
	if strings.Contains(os.Getenv("GLIBC_TUNABLES"), Tunable) {
		return true
	}
	args := append([]string{"-test.run=^" + t.Name() + "$", "-test.v", "-test.count=1"}, flags...)
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), "GLIBC_TUNABLES="+strings.TrimPrefix(os.Getenv("GLIBC_TUNABLES")+":"+Tunable, ":"))
	out, err := cmd.CombinedOutput()
	for _, line := range strings.Split(strings.TrimRight(string(out), "\n"), "\n") {
		t.Log(line)
	}
	if err != nil {
		t.Fatalf("%s (run with %s): %v", t.Name(), Tunable, err)
	}
	if !strings.Contains(string(out), "--- PASS: "+t.Name()) {
		t.Fatalf("the child process ran no %s", t.Name())
	}
	return false
}

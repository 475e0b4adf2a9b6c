package main

// The run command's own flags: limits, the sandbox, the hosts the http
// module may reach, tracing.

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/moonbridge/moonbridge/bridge"
)

type runFlags struct {
	timeout     time.Duration
	memory      byteSize
	output      byteSize
	instrLimit  int64
	timeSlice   int
	sandbox     bool
	allowDirs   stringList
	allowHosts  stringList
	trace       bool
	maxBody     byteSize
	httpTimeout time.Duration
}

func (f *runFlags) register(fs *flag.FlagSet) {
	fs.DurationVar(&f.timeout, "timeout", 0, "end the run after this long, e.g. 30s or 2m (0: no limit)")
	fs.Var(&f.memory, "memory-limit", "bound the memory Lua holds, e.g. 64MiB or 1G (K, M, G: powers of 1024; KB, MB, GB: of 1000)")
	fs.Var(&f.output, "output-limit", "end the run once it has written this much (print, io.write), e.g. 1MiB (0: no limit)")
	fs.Int64Var(&f.instrLimit, "instruction-limit", 0, "end the run after this many Lua VM instructions (0: no limit)")
	fs.IntVar(&f.timeSlice, "time-slice", 0, "preempt a task after this many VM instructions without a pause, e.g. 10000 (0: never)")
	fs.BoolVar(&f.sandbox, "sandbox", false, "run the script as untrusted: no io, os.execute, debug...; http reaches only --allow-host")
	fs.Var(&f.allowDirs, "allow-dir", "with --sandbox: a directory dofile, loadfile and require may read Lua files from (repeatable)")
	fs.Var(&f.allowHosts, "allow-host", "the only hosts http may reach: name, *.domain, IP or CIDR, optional :port (repeatable; default: any, none with --sandbox)")
	fs.BoolVar(&f.trace, "trace", false, "print the tree of spans (the run, every bridge call) with durations on stderr at the end")
	fs.Var(&f.maxBody, "http-max-body", "bound the bytes one http call hands to the script (default 16MiB)")
	fs.DurationVar(&f.httpTimeout, "http-timeout", 0, "default timeout of an http request (default 30s)")
}

// check rejects combinations that make no sense.
func (f *runFlags) check() error {
	switch {
	case f.timeout < 0:
		return errors.New("--timeout must not be negative")
	case f.instrLimit < 0:
		return errors.New("--instruction-limit must not be negative")
	case f.timeSlice < 0:
		return errors.New("--time-slice must not be negative")
	case len(f.allowDirs) > 0 && !f.sandbox:
		return errors.New("--allow-dir is for --sandbox (without it every file is readable)")
	}
	return nil
}

// options are the Runtime's options the flags ask for.
func (f *runFlags) options(stdout, stderr io.Writer) bridge.Options {
	return bridge.Options{
		Stdout: stdout, Stderr: stderr,
		MemoryLimit: int64(f.memory), OutputLimit: int64(f.output),
		InstructionLimit: f.instrLimit, TimeSlice: f.timeSlice,
		Sandbox: f.sandbox, SandboxDirs: f.allowDirs,
	}
}

func (f *runFlags) httpOptions() bridge.HTTPOptions {
	return bridge.HTTPOptions{AllowHosts: f.allowHosts, MaxBodyBytes: int64(f.maxBody), Timeout: f.httpTimeout}
}

// runContext is ctx bounded by --timeout.
func (f *runFlags) runContext(ctx context.Context) (context.Context, context.CancelFunc) {
	if f.timeout > 0 {
		return context.WithTimeout(ctx, f.timeout)
	}
	return context.WithCancel(ctx)
}

// stringList is a repeatable string flag.
type stringList []string

func (l *stringList) String() string { return strings.Join(*l, ",") }

func (l *stringList) Set(s string) error {
	if s == "" {
		return errors.New("empty value")
	}
	*l = append(*l, s)
	return nil
}

// byteSize is a size flag: 1048576, 512K, 64MiB, 1G, 2GB.
type byteSize int64

func (b *byteSize) String() string {
	if *b == 0 {
		return ""
	}
	return strconv.FormatInt(int64(*b), 10)
}

func (b *byteSize) Set(s string) error {
	n, err := parseSize(s)
	if err != nil {
		return err
	}
	*b = byteSize(n)
	return nil
}

// parseSize reads a byte count with an optional unit: K, M, G, T (and
// KiB, MiB, ...) are powers of 1024, KB, MB, GB, TB powers of 1000; B or
// nothing, bytes. Case does not matter.
func parseSize(s string) (int64, error) {
	t := strings.TrimSpace(s)
	i := 0
	for i < len(t) && (t[i] >= '0' && t[i] <= '9' || t[i] == '.') {
		i++
	}
	num, unit := t[:i], strings.ToLower(strings.TrimSpace(t[i:]))
	v, err := strconv.ParseFloat(num, 64)
	if num == "" || err != nil {
		return 0, fmt.Errorf("%q is not a size (want a number of bytes, or one like 64MiB or 1G)", s)
	}
	mult := map[string]float64{
		"": 1, "b": 1,
		"k": 1 << 10, "kib": 1 << 10, "kb": 1e3,
		"m": 1 << 20, "mib": 1 << 20, "mb": 1e6,
		"g": 1 << 30, "gib": 1 << 30, "gb": 1e9,
		"t": 1 << 40, "tib": 1 << 40, "tb": 1e12,
	}[unit]
	if mult == 0 {
		return 0, fmt.Errorf("%q: unknown unit %q (use B, K, M, G, T, KiB..., KB...)", s, t[i:])
	}
	n := v * mult
	if n >= math.MaxInt64 {
		return 0, fmt.Errorf("%q is too large", s)
	}
	return int64(n), nil
}

package worker

// Running one job on the Pool: the Lua chunk that wraps the job's script,
// the two Go functions it reports through, and the per-run record they
// fill in.

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"sync"

	"github.com/moonbridge/moonbridge/bridge"
)

// runnerLua runs a job's script. Its arguments: the run's token, the
// output bound, the script's source, its chunk name, then the job's
// arguments. The script is loaded with an environment of its own over the
// globals, so the globals it sets stay its own, and with print, io.write
// and io.stdout:write that collect its output (up to the bound) instead of
// writing to the Runtime's Stdout. The output is handed over by a <close>
// variable, so it arrives even when the script fails; the return values
// by deliver. Both Go functions are Inline: they run on the loop's thread,
// so they work even where a script cannot yield (in a __close handler
// of a run being ended). The token, unguessable, ties each call to its
// run.
//
// Compiling this text costs about 65 µs, five times a trivial job. Outside
// the sandbox it is compiled once per Runtime, as the function
// moonbridge_worker.run, and each job's chunk only calls it; there, jobs
// share the Runtime's globals anyway (a job could as well replace print
// for the next ones), so this opens nothing new. Under Options.Sandbox
// each job's chunk is the runner itself: nothing a job reaches is kept
// for the next.
const runnerLua = `
local token, limit, src, chunkname = ...
local job = moonbridge_worker
local deliver, output = job.deliver, job.output
local tostring, select, type, mtype = tostring, select, type, math.type
local format, concat, setmetatable = string.format, table.concat, setmetatable

local buf, size, truncated = {}, 0, false
local function emit(s)
  if size >= limit then truncated = truncated or #s > 0; return end
  if size + #s > limit then s = s:sub(1, limit - size); truncated = true end
  size = size + #s
  buf[#buf + 1] = s
end
local flush <close> = setmetatable({}, {__close = function()
  output(token, concat(buf), truncated)
end})

-- As stock print: tostring of each argument, tabs between, a newline.
local function print(...)
  local n = select("#", ...)
  for i = 1, n do
    if i > 1 then emit("\t") end
    emit(tostring((select(i, ...))))
  end
  emit("\n")
end
-- As stock io.write: strings and numbers only.
local function write(...)
  for i = 1, select("#", ...) do
    local v = select(i, ...)
    local t = type(v)
    if t == "string" then emit(v)
    elseif mtype(v) == "integer" then emit(format("%d", v))
    elseif t == "number" then emit(format("%.14g", v))
    else error(format("bad argument #%d to 'write' (string expected, got %s)", i, t), 2) end
  end
end

local env = setmetatable({print = print}, {__index = _G})
if type(io) == "table" then
  local stdout = {}
  function stdout:write(...) write(...); return self end
  function stdout:flush() return self end
  function stdout:setvbuf() return true end
  env.io = setmetatable({
    write = function(...) write(...); return stdout end,
    stdout = stdout,
  }, {__index = io})
end

local f, err = load(src, chunkname, "t", env)
if not f then error(err, 0) end
deliver(token, f(select(5, ...)))
`

// runnerSetup defines moonbridge_worker.run, the runner as a function.
const runnerSetup = "moonbridge_worker.run = function(...)\n" + runnerLua + "\nend"

// runnerCall is a job's chunk when the runner is a function.
const runnerCall = "return moonbridge_worker.run(...)"

// run is the record of one job's run, filled in by the Go functions the
// runner calls and by watched bridge functions (see Watch).
type run struct {
	mu        sync.Mutex
	values    []any
	delivered bool
	output    string
	truncated bool
	temporary error // the first temporary error a watched function returned
}

type runKey struct{}

// runOf returns the run record ctx belongs to, or nil.
func runOf(ctx context.Context) *run {
	r, _ := ctx.Value(runKey{}).(*run)
	return r
}

// runs maps tokens to the runs in flight, for the runner's Inline
// functions (their ctx is the Runtime's, not the run's).
type runs struct{ m sync.Map }

func (rs *runs) add(r *run) string {
	var b [16]byte
	rand.Read(b[:])
	token := hex.EncodeToString(b[:])
	rs.m.Store(token, r)
	return token
}

func (rs *runs) remove(token string) { rs.m.Delete(token) }

func (rs *runs) get(a bridge.Args) (*run, error) {
	token, err := a.String(0)
	if err != nil {
		return nil, err
	}
	r, ok := rs.m.Load(token)
	if !ok {
		return nil, errors.New("not a run of this worker")
	}
	return r.(*run), nil
}

// register gives rt the runner's two functions and, if cached, the
// runner as moonbridge_worker.run.
func (rs *runs) register(rt *bridge.Runtime, cached bool) error {
	if err := rs.registerFuncs(rt); err != nil {
		return err
	}
	if !cached {
		return nil
	}
	return rt.RunString(context.Background(), "moonbridge worker", runnerSetup)
}

func (rs *runs) registerFuncs(rt *bridge.Runtime) error {
	err := rt.RegisterFunc("moonbridge_worker.deliver", func(ctx context.Context, a bridge.Args) ([]any, error) {
		r, err := rs.get(a)
		if err != nil {
			return nil, err
		}
		vals := make([]any, a.Len()-1)
		for i := range vals {
			vals[i] = a.Get(i + 1)
		}
		r.mu.Lock()
		r.values, r.delivered = vals, true
		r.mu.Unlock()
		return nil, nil
	}, bridge.Inline())
	if err != nil {
		return err
	}
	return rt.RegisterFunc("moonbridge_worker.output", func(ctx context.Context, a bridge.Args) ([]any, error) {
		r, err := rs.get(a)
		if err != nil {
			return nil, err
		}
		s, _ := a.String(1)
		trunc, _ := a.Bool(2)
		r.mu.Lock()
		r.output, r.truncated = s, trunc
		r.mu.Unlock()
		return nil, nil
	}, bridge.Inline())
}

package worker

// The records that travel through NATS: jobs, results, dead letters; and
// the names of the streams and subjects a queue uses.

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Job is one script to run, as submitted to the queue (JSON on the jobs
// subject).
type Job struct {
	// Key is the job's idempotency key: a queue publishes at most one
	// result per key, however often the job is submitted or delivered.
	// At most MaxKeyLen bytes; Client.Submit makes a random one when empty.
	Key string `json:"key"`
	// Script is the Lua source to run; Name instead names a script the
	// worker resolves (Options.Scripts). Exactly one of them is set.
	Script string `json:"script,omitempty"`
	Name   string `json:"name,omitempty"`
	// Source names the script in error messages and tracebacks (e.g. its
	// file name); Name, or "job", when empty.
	Source string `json:"source,omitempty"`
	// Args are the chunk's "..." (JSON values: numbers without a fraction
	// or exponent arrive as Lua integers, objects as tables).
	Args []any `json:"args,omitempty"`
	// Limits bound the run.
	Limits Limits `json:"limits,omitzero"`
}

// Limits are a job's own bounds. Zero fields take the worker's defaults; a
// job asking for more than the worker allows is refused with a "job" error.
type Limits struct {
	// Timeout is the run's deadline, from its start (JSON: a Go duration
	// string such as "90s", or a number of seconds).
	Timeout time.Duration `json:"-"`
	// Instructions bounds the Lua VM instructions of the run.
	Instructions int64 `json:"instructions,omitempty"`
	// Memory is the most memory, in bytes, the job needs. A Runtime's Lua
	// state is shared by the runs it hosts, so a per-run byte limit cannot
	// be attributed exactly: every job runs under the worker's per-Runtime
	// MemoryLimit, and a job asking for more than that is refused.
	Memory int64 `json:"memory,omitempty"`
	// Tokens is the run's LLM token budget (prompt and completion, as
	// the server counts them), over every LLM request of the run: past
	// it, a request raises a "limit" error (op "tokens").
	Tokens int64 `json:"tokens,omitempty"`
}

type limitsJSON struct {
	Timeout      json.RawMessage `json:"timeout,omitempty"`
	Instructions int64           `json:"instructions,omitempty"`
	Memory       int64           `json:"memory,omitempty"`
	Tokens       int64           `json:"tokens,omitempty"`
}

// MarshalJSON writes Timeout as a duration string.
func (l Limits) MarshalJSON() ([]byte, error) {
	j := limitsJSON{Instructions: l.Instructions, Memory: l.Memory, Tokens: l.Tokens}
	if l.Timeout != 0 {
		j.Timeout, _ = json.Marshal(l.Timeout.String())
	}
	return json.Marshal(j)
}

// UnmarshalJSON reads Timeout from a duration string or a number of
// seconds.
func (l *Limits) UnmarshalJSON(b []byte) error {
	var j limitsJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	*l = Limits{Instructions: j.Instructions, Memory: j.Memory, Tokens: j.Tokens}
	if len(j.Timeout) == 0 || string(j.Timeout) == "null" {
		return nil
	}
	var s string
	var secs float64
	switch {
	case json.Unmarshal(j.Timeout, &s) == nil:
		d, err := time.ParseDuration(s)
		if err != nil {
			return fmt.Errorf("limits.timeout: %w", err)
		}
		l.Timeout = d
	case json.Unmarshal(j.Timeout, &secs) == nil:
		if secs < 0 || secs > float64(1<<62)/float64(time.Second) {
			return fmt.Errorf("limits.timeout: %v seconds is out of range", secs)
		}
		l.Timeout = time.Duration(secs * float64(time.Second))
	default:
		return fmt.Errorf("limits.timeout: want a duration string or seconds, got %s", j.Timeout)
	}
	return nil
}

// MaxKeyLen is the longest idempotency key, in bytes.
const MaxKeyLen = 512

// decodeJob reads a job message. Numbers keep their integer-ness: JSON
// numbers without a fraction or exponent become int64, others float64.
func decodeJob(data []byte) (*Job, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var j Job
	if err := dec.Decode(&j); err != nil {
		return nil, fmt.Errorf("malformed job: %w", err)
	}
	if dec.More() {
		return nil, errors.New("malformed job: data after the JSON object")
	}
	if len(j.Key) > MaxKeyLen {
		return nil, fmt.Errorf("malformed job: key of %d bytes (at most %d)", len(j.Key), MaxKeyLen)
	}
	for i, a := range j.Args {
		v, err := luaValue(a)
		if err != nil {
			return nil, fmt.Errorf("malformed job: args[%d]: %w", i, err)
		}
		j.Args[i] = v
	}
	return &j, nil
}

// luaValue turns json.Numbers into int64 or float64, recursively.
func luaValue(v any) (any, error) {
	switch x := v.(type) {
	case json.Number:
		if !strings.ContainsAny(string(x), ".eE") {
			if n, err := x.Int64(); err == nil {
				return n, nil
			}
		}
		return x.Float64()
	case []any:
		for i := range x {
			e, err := luaValue(x[i])
			if err != nil {
				return nil, err
			}
			x[i] = e
		}
	case map[string]any:
		for k := range x {
			e, err := luaValue(x[k])
			if err != nil {
				return nil, err
			}
			x[k] = e
		}
	}
	return v, nil
}

// Result is what a queue publishes once per job key: the run's return
// values or its error.
type Result struct {
	Key string `json:"key"`
	OK  bool   `json:"ok"`
	// Values are the main chunk's return values, as a JSON array.
	Values json.RawMessage `json:"values,omitempty"`
	// Output is what the job's chunk printed (print, io.write,
	// io.stdout:write), up to the worker's OutputLimit.
	Output          string `json:"output,omitempty"`
	OutputTruncated bool   `json:"output_truncated,omitempty"`
	Error           *Error `json:"error,omitempty"`
	Usage           Usage  `json:"usage"`
	// Attempt is the delivery that produced the result (1 for the first).
	Attempt int       `json:"attempt"`
	Worker  string    `json:"worker,omitempty"`
	Time    time.Time `json:"time"`
}

// Error is a failed job's error. Kind is a moonbridge error kind
// ("runtime", "bridge", "limit", "cancelled", ...), "exit" for os.exit with
// a non-zero code, "job" for a job the worker refused (malformed, asking
// more than the worker allows, an unknown script name), or "dead" for a
// job that failed on every delivery.
type Error struct {
	Message   string `json:"message"`
	Kind      string `json:"kind"`
	Op        string `json:"op,omitempty"`
	Traceback string `json:"traceback,omitempty"`
	Code      int    `json:"code,omitempty"` // os.exit's code
}

func (e *Error) Error() string { return e.Message }

// Usage is what a job's run used: its time, its output, and its requests
// through the LLM module and their tokens, as the server reported them.
type Usage struct {
	Duration         time.Duration `json:"duration_ns"`
	OutputBytes      int           `json:"output_bytes"`
	Requests         int64         `json:"llm_requests,omitempty"`
	PromptTokens     int64         `json:"prompt_tokens,omitempty"`
	CompletionTokens int64         `json:"completion_tokens,omitempty"`
}

// DeadLetter is published on the dead-letter subject for a job that
// failed on its last allowed delivery, or could not be read at all.
type DeadLetter struct {
	Key      string          `json:"key,omitempty"`
	Seq      uint64          `json:"stream_seq"`
	Attempts int             `json:"attempts"`
	Reason   string          `json:"reason"`
	Error    *Error          `json:"error,omitempty"`
	Job      json.RawMessage `json:"job,omitempty"`
	Time     time.Time       `json:"time"`
}

// Names are the streams and subjects of one queue, all derived from its
// stream name: for "MOONBRIDGE", jobs on moonbridge.jobs in stream
// MOONBRIDGE, results on moonbridge.results.<key token> in
// MOONBRIDGE_RESULTS, dead letters on moonbridge.dead in MOONBRIDGE_DEAD.
type Names struct {
	Stream        string
	ResultsStream string
	DeadStream    string
	Jobs          string // subject
	Results       string // subject prefix; ResultSubject adds the key
	Dead          string // subject
}

// DefaultStream is the stream name used when none is given.
const DefaultStream = "MOONBRIDGE"

// QueueNames returns the names of the queue whose jobs stream is stream
// (DefaultStream when empty). Stream names are letters, digits, '-' and
// '_'.
func QueueNames(stream string) (Names, error) {
	if stream == "" {
		stream = DefaultStream
	}
	for _, r := range stream {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
			return Names{}, fmt.Errorf("worker: stream name %q: only letters, digits, '-' and '_'", stream)
		}
	}
	p := strings.ToLower(stream)
	return Names{
		Stream:        stream,
		ResultsStream: stream + "_RESULTS",
		DeadStream:    stream + "_DEAD",
		Jobs:          p + ".jobs",
		Results:       p + ".results",
		Dead:          p + ".dead",
	}, nil
}

// ResultSubject is the subject of key's result: the key base64url-encoded,
// so that any key is one subject token.
func (n Names) ResultSubject(key string) string {
	return n.Results + "." + base64.RawURLEncoding.EncodeToString([]byte(key))
}

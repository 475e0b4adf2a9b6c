// LLM providers: assembling tool calls that OpenAI-compatible servers
// stream as fragments, quirks included.

package llm

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
)

// toolDelta is one entry of a streamed delta's tool_calls.
type toolDelta struct {
	Index    *int   `json:"index"`
	ID       string `json:"id"`
	Function struct {
		Name      string          `json:"name"`
		Arguments json.RawMessage `json:"arguments"`
	} `json:"function"`
}

// toolAssembler joins streamed tool-call fragments into whole calls:
//
//   - fragments are grouped by index; OpenAI sends id and name in a call's
//     first fragment only, vLLM repeats the id in every one or leaves it
//     out: a fragment with no id, or with the id of the call at its index,
//     continues that call;
//   - a new non-empty id at an index in use starts a new call (Qwen and
//     DeepSeek reuse index 0 for every call);
//   - indexes need not start at 0 (proxies start at 1) nor be dense: calls
//     keep the order they first appeared in;
//   - one chunk may carry several fragments of one index;
//   - arguments are string fragments, joined and parsed once at the end;
//     "" means no arguments ({}). A server that sends them as a JSON
//     object (not a string) is taken as sending them whole.
type toolAssembler struct {
	calls []*toolBuf
	at    map[int]*toolBuf // the current call at each index
}

type toolBuf struct {
	id, name string
	args     []byte
	whole    json.RawMessage // arguments sent as an object
}

// add applies one fragment.
func (a *toolAssembler) add(d *toolDelta) {
	idx := 0
	if d.Index != nil {
		idx = *d.Index
	}
	cur := a.at[idx]
	if cur == nil || d.ID != "" && cur.id != "" && d.ID != cur.id {
		cur = &toolBuf{}
		if a.at == nil {
			a.at = map[int]*toolBuf{}
		}
		a.at[idx] = cur
		a.calls = append(a.calls, cur)
	}
	if cur.id == "" {
		cur.id = d.ID
	}
	if n := d.Function.Name; n != "" && n != cur.name {
		if cur.name == "" {
			cur.name = n
		} else {
			cur.name += n // a name sent in pieces
		}
	}
	args := bytes.TrimSpace(d.Function.Arguments)
	switch {
	case len(args) == 0 || string(args) == "null":
	case args[0] == '"':
		var s string
		if json.Unmarshal(args, &s) == nil {
			cur.args = append(cur.args, s...)
		}
	default:
		cur.whole = append(json.RawMessage(nil), args...)
	}
}

// seen reports whether any tool call was streamed.
func (a *toolAssembler) seen() bool { return len(a.calls) > 0 }

// result returns the assembled calls. A call without an id gets
// "call_N" (N counting from 1 in the reply); one whose arguments are not
// a JSON object is an error naming it.
func (a *toolAssembler) result(provider string) ([]ToolCall, error) {
	if len(a.calls) == 0 {
		return nil, nil
	}
	out := make([]ToolCall, len(a.calls))
	for i, c := range a.calls {
		raw := c.whole
		if raw == nil {
			raw = c.args
		}
		args, err := toolArguments(raw)
		if err != nil {
			return nil, fmt.Errorf("%s: tool call %d (%q): %w", provider, i+1, c.name, err)
		}
		id := c.id
		if id == "" {
			id = "call_" + strconv.Itoa(i+1)
		}
		if c.name == "" {
			return nil, fmt.Errorf("%s: tool call %d has no function name", provider, i+1)
		}
		out[i] = ToolCall{ID: id, Name: c.name, Arguments: args}
	}
	return out, nil
}

// toolArguments checks a call's arguments: "" (or null) means none ({}),
// anything else must be one JSON object; it is returned compacted.
func toolArguments(raw []byte) (json.RawMessage, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return json.RawMessage("{}"), nil
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, raw); err != nil {
		return nil, fmt.Errorf("arguments are not valid JSON: %q: %w", truncate(string(raw), maxQuoted), err)
	}
	if buf.Bytes()[0] != '{' {
		return nil, fmt.Errorf("arguments are not a JSON object: %q", truncate(buf.String(), maxQuoted))
	}
	return buf.Bytes(), nil
}

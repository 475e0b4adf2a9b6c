// The Lua face of a Provider: Register, and the Go half of the module it
// makes (reading arguments and options, structured output, per-run usage
// and budgets). The Lua half — the agent loop, generate_all, raising
// errors of their proper kind — is luamod/moonbridge.llm.lua.

package llm

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/moonbridge/moonbridge/bridge"
	"github.com/moonbridge/moonbridge/internal/llmhook"
)

func init() {
	llmhook.Set(func(rt any, name string, p any, opts []any) error {
		prov, ok := p.(Provider)
		if !ok || p == nil {
			return fmt.Errorf("moonbridge: RegisterLLM %q: want an llm.Provider, got %T", name, p)
		}
		ropts := make([]RegisterOption, len(opts))
		for i, o := range opts {
			ro, ok := o.(RegisterOption)
			if !ok {
				return fmt.Errorf("moonbridge: RegisterLLM %q: option %d is a %T, not an llm.RegisterOption", name, i+1, o)
			}
			ropts[i] = ro
		}
		return Register(rt.(*bridge.Runtime), name, prov, ropts...)
	})
}

// RegisterOption is an option of Register.
type RegisterOption interface{ applyRegister(*registerConfig) }

type registerConfig struct {
	budget int
}

type budgetOption int

func (b budgetOption) applyRegister(c *registerConfig) { c.budget = int(b) }

// Budget bounds the tokens (prompt and completion, as the server counts
// them) each run may spend through the module; WithTokenBudget overrides
// it for one run. The budget is checked before each request: once a run
// has used n tokens, its next request raises an error of kind "limit", op
// "tokens" (the request that crosses the line completes). 0 means no
// budget.
func Budget(n int) RegisterOption { return budgetOption(n) }

// Register makes p available to Lua as the module name (require(name);
// also the global name when it has no dot):
//
//	local llm = require("llm")
//	local text, info = llm.generate("Write a haiku", {max_tokens = 64})
//	for chunk in llm.stream("Tell a story") do io.write(chunk.content) end
//	local reply, info = llm.chat(messages, {tools = tools, max_steps = 8})
//	local answers = llm.generate_all({"q1", "q2", "q3"}, {concurrency = 8})
//	local u = llm.usage()  -- {requests=, prompt_tokens=, completion_tokens=}
//
// generate, stream and chat take a prompt string or a list of messages and
// an options table: model, max_tokens, temperature, stop, seed, tools,
// tool_choice, schema, schema_name (chat also max_steps). A misspelt or
// mistyped option raises a bridge error naming it. See the README's LLM
// section for tools, the agent loop and structured output.
//
// Register runs no Lua: the module's Lua half is built by a prelude that
// runs before the Runtime's next run (RunString, RunFile or Call), bounded
// by that run's context. Register before running the scripts that use it.
func Register(rt *bridge.Runtime, name string, p Provider, opts ...RegisterOption) error {
	if p == nil {
		return fmt.Errorf("moonbridge: RegisterLLM %q: nil provider", name)
	}
	if name == "" || name[0] == '.' || name[len(name)-1] == '.' {
		return fmt.Errorf("moonbridge: invalid module name %q", name)
	}
	m := &module{name: name, p: p}
	for _, o := range opts {
		o.applyRegister(&m.cfg)
	}
	if m.cfg.budget < 0 {
		return fmt.Errorf("moonbridge: RegisterLLM %q: negative budget %d", name, m.cfg.budget)
	}
	for _, err := range []error{
		rt.RegisterFunc(name+".generate", m.generate),
		rt.RegisterStream(name+".stream", m.stream),
		rt.RegisterFunc(name+".chat", m.chat),
		rt.RegisterFunc(name+".usage", m.usage),
	} {
		if err != nil {
			return err
		}
	}
	llmhook.Prelude(rt, "RegisterLLM "+name,
		fmt.Sprintf("require(%q).extend(require(%q), %q)", "moonbridge.llm", name, name))
	return nil
}

// module is one registered provider.
type module struct {
	name string
	p    Provider
	cfg  registerConfig
}

// The Go functions answer Lua's wrappers with true and the results, or
// with false and the fields of an error of a kind other than "bridge"
// (Go errors can only be bridge errors), which the wrapper raises.

func (m *module) generate(ctx context.Context, args bridge.Args) ([]any, error) {
	call, err := m.request(args, "generate")
	if err != nil {
		return nil, err
	}
	return m.complete(ctx, call)
}

func (m *module) chat(ctx context.Context, args bridge.Args) ([]any, error) {
	switch a := args.Get(0).(type) {
	case int64:
		return m.agentStep(ctx, a, args)
	case []any:
	default:
		return nil, badArg(args, 0, "list of messages")
	}
	call, err := m.request(args, "chat")
	if err != nil {
		return nil, err
	}
	if args.Get(2) != true {
		return m.complete(ctx, call)
	}
	// The agent loop's first step: the conversation stays here, so each
	// later step sends only its tool messages.
	out, err := m.complete(ctx, call)
	if err != nil || out[0] != true {
		return out, err
	}
	if info := out[2].(map[string]any); info["tool_calls"] != nil {
		id := agentSessions(ctx, m).open(call)
		out = append(out, id)
	}
	return out, nil
}

// agentStep is a later step of an agent loop: chat(session, tool
// messages). The previous reply and the tool messages join the kept
// conversation, and the model is asked again.
func (m *module) agentStep(ctx context.Context, id int64, args bridge.Args) ([]any, error) {
	s := agentSessions(ctx, m)
	call := s.take(id)
	if call == nil {
		return nil, fmt.Errorf("bad argument #1 (list of messages expected, got integer)")
	}
	list, ok := args.Get(1).([]any)
	if !ok {
		return nil, badArg(args, 1, "list of tool messages")
	}
	more, err := messages(list)
	if err != nil {
		return nil, fmt.Errorf("bad argument #2 (%w)", err)
	}
	call.req.Messages = append(call.req.Messages, more...)
	if tc := call.req.ToolChoice; tc != "" && tc != "auto" && tc != "none" {
		call.req.ToolChoice = "auto" // a forced call is made once, not at every step
	}
	out, err := m.complete(ctx, call)
	if err != nil || out[0] != true {
		return out, err
	}
	if info := out[2].(map[string]any); info["tool_calls"] != nil {
		s.keep(id, call)
	}
	return out, nil
}

// sessions are a run's agent loops in progress, by id.
type sessions struct {
	mu   sync.Mutex
	next int64
	m    map[int64]*llmCall
}

type sessionsKey struct{ m *module }

func agentSessions(ctx context.Context, m *module) *sessions {
	rs := bridge.RunValues(ctx)
	if rs == nil {
		return &sessions{} // outside a run: a session of one step
	}
	v, _ := rs.LoadOrStore(sessionsKey{m}, &sessions{})
	return v.(*sessions)
}

// open keeps call, with its last reply, as a new session.
func (s *sessions) open(call *llmCall) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.next++
	if s.m == nil {
		s.m = map[int64]*llmCall{}
	}
	s.keepLocked(s.next, call)
	return s.next
}

func (s *sessions) keep(id int64, call *llmCall) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.keepLocked(id, call)
}

// keepLocked adds the reply (the assistant message asking for tools) to
// the conversation; the tool messages come with the next step.
func (s *sessions) keepLocked(id int64, call *llmCall) {
	r := call.last
	call.req.Messages = append(slices.Clip(chatMessages(call.req)), Message{Role: "assistant", Content: r.Text, ToolCalls: r.ToolCalls})
	call.req.Prompt = ""
	s.m[id] = call
}

// take removes and returns a session (a failed step ends it).
func (s *sessions) take(id int64) *llmCall {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.m[id]
	delete(s.m, id)
	return c
}

// usage is llm.usage(): this run's figures.
func (m *module) usage(ctx context.Context, args bridge.Args) ([]any, error) {
	var t Totals
	if rs := runState(ctx, m); rs != nil {
		t = rs.totals()
	}
	return []any{map[string]any{
		"requests":          int64(t.Requests),
		"prompt_tokens":     int64(t.PromptTokens),
		"completion_tokens": int64(t.CompletionTokens),
		"total_tokens":      int64(t.PromptTokens + t.CompletionTokens),
	}}, nil
}

// llmCall is one generate, chat or stream call from Lua.
type llmCall struct {
	fn     string // "llm.generate", for messages
	req    Request
	schema *jsonschema.Schema // nil without option schema
	last   Response           // the last reply complete got
}

// complete runs a call to its end: the request, and with a schema the
// validation and one repair.
func (m *module) complete(ctx context.Context, c *llmCall) ([]any, error) {
	resp, kerr, err := m.send(ctx, c.req)
	if kerr != nil || err != nil {
		return kerr, err
	}
	c.last = resp
	if c.schema == nil || resp.Refusal != "" || len(resp.ToolCalls) > 0 {
		info, err := m.info(resp)
		if err != nil {
			return nil, err
		}
		return []any{true, resp.Text, info}, nil
	}
	v, verr := validateReply(c.schema, resp.Text)
	repaired := false
	if verr != nil {
		var again Response
		again, kerr, err = m.send(ctx, repairRequest(c.req, resp.Text, verr))
		if kerr != nil || err != nil {
			return kerr, err
		}
		again.Usage = addUsage(resp.Usage, again.Usage)
		resp, repaired = again, true
		if v, verr = validateReply(c.schema, resp.Text); verr != nil {
			return schemaFailure(c.fn, verr), nil
		}
	}
	info, err := m.info(resp)
	if err != nil {
		return nil, err
	}
	info["text"] = resp.Text
	info["repaired"] = repaired
	return []any{true, luaValue(v), info}, nil
}

// repairRequest asks the model again, showing its reply and what was wrong
// with it.
func repairRequest(req Request, text string, verr error) Request {
	msgs := slices.Clip(chatMessages(req))
	var se *schemaError
	errors.As(verr, &se)
	msgs = append(msgs,
		Message{Role: "assistant", Content: text},
		Message{Role: "user", Content: "That reply does not match the required JSON Schema: " +
			strings.Join(se.Problems, "; ") + ". Reply again with only the corrected JSON."})
	req.Messages, req.Prompt = msgs, ""
	return req
}

// schemaFailure is the error a reply that still does not match its schema
// raises: kind "bridge", op "schema", with the problems and the raw text.
func schemaFailure(fn string, verr error) []any {
	var se *schemaError
	errors.As(verr, &se)
	probs := make([]any, len(se.Problems))
	for i, p := range se.Problems {
		probs[i] = p
	}
	return []any{false, map[string]any{
		"kind": "bridge", "op": "schema",
		"message": fn + ": " + se.Error() + " (after one repair attempt)",
		"errors":  probs, "text": se.Text,
	}}
}

// send makes one request, within the run's budget, and counts its usage.
// kerr is a Lua error to raise (over budget).
func (m *module) send(ctx context.Context, req Request) (Response, []any, error) {
	rs := runState(ctx, m)
	if kerr := rs.check(m.name); kerr != nil {
		return Response{}, kerr, nil
	}
	resp, err := m.p.Generate(ctx, req)
	if err != nil {
		return Response{}, nil, err
	}
	rs.add(ctx, resp.Usage)
	return resp, nil, nil
}

// stream is llm.stream's Go half: chunk tables, the last with done = true.
// An error of another kind than bridge arrives as a last chunk {error =
// fields}, which the Lua wrapper raises.
func (m *module) stream(ctx context.Context, args bridge.Args, emit func(any) error) error {
	c, err := m.request(args, "stream")
	if err != nil {
		return err
	}
	rs := runState(ctx, m)
	if kerr := rs.check(m.name); kerr != nil {
		return emit(map[string]any{"error": kerr[1]})
	}
	// emit encodes its value before it returns, so one table serves every
	// chunk but the last, its fields in order (no map to hash and walk).
	// It and its strings go by pointer: nothing is boxed, so nothing is
	// allocated, per token.
	var content, reasoning, refusal string
	part := bridge.Fields{{Key: "content", Value: &content}, {Key: "done", Value: false}, {Key: "reasoning"}, {Key: "refusal"}}
	var text []byte
	return m.p.Stream(ctx, c.req, func(ch Chunk) error {
		if !ch.Done {
			content, reasoning, refusal = ch.Content, ch.Reasoning, ch.Refusal
			part[2].Value = nonEmpty(&reasoning)
			part[3].Value = nonEmpty(&refusal)
			if c.schema != nil {
				text = append(text, ch.Content...)
			}
			return emit(&part)
		}
		if ch.Usage != nil {
			rs.add(ctx, *ch.Usage)
		} else {
			rs.add(ctx, Usage{})
		}
		last, err := m.lastChunk(ctx, c, ch, string(text))
		if err != nil {
			return err
		}
		return emit(last)
	})
}

// nonEmpty is s, or nil (a field left out) when *s is empty.
func nonEmpty(s *string) any {
	if *s == "" {
		return nil
	}
	return s
}

func setOrDelete(m map[string]any, k, v string) {
	if v != "" {
		m[k] = v
	} else if _, ok := m[k]; ok {
		delete(m, k)
	}
}

// lastChunk is the stream's last chunk as Lua sees it; with a schema it
// carries the validated value (after one repair, made as a whole request).
func (m *module) lastChunk(ctx context.Context, c *llmCall, ch Chunk, text string) (map[string]any, error) {
	last := map[string]any{"content": ch.Content, "done": true, "finish_reason": ch.FinishReason}
	setOrDelete(last, "reasoning", ch.Reasoning)
	setOrDelete(last, "refusal", ch.Refusal)
	if ch.Usage != nil {
		last["usage"] = usageTable(*ch.Usage)
	}
	if len(ch.ToolCalls) > 0 {
		calls, err := toolCallsTable(ch.ToolCalls)
		if err != nil {
			return nil, err
		}
		last["tool_calls"] = calls
	}
	if c.schema == nil || len(ch.ToolCalls) > 0 {
		return last, nil
	}
	text += ch.Content
	v, verr := validateReply(c.schema, text)
	if verr != nil {
		resp, kerr, err := m.send(ctx, repairRequest(c.req, text, verr))
		switch {
		case err != nil:
			return nil, err
		case kerr != nil:
			return map[string]any{"error": kerr[1]}, nil
		}
		if v, verr = validateReply(c.schema, resp.Text); verr != nil {
			return map[string]any{"error": schemaFailure(c.fn, verr)[1]}, nil
		}
		last["text"], last["repaired"] = resp.Text, true
	}
	last["value"] = luaValue(v)
	return last, nil
}

// info is generate's and chat's second result.
func (m *module) info(r Response) (map[string]any, error) {
	info := map[string]any{"finish_reason": r.FinishReason, "usage": usageTable(r.Usage)}
	if r.Model != "" {
		info["model"] = r.Model
	}
	if r.Refusal != "" {
		info["refusal"] = r.Refusal
	}
	if r.Reasoning != "" {
		info["reasoning"] = r.Reasoning
	}
	if len(r.ToolCalls) > 0 {
		calls, err := toolCallsTable(r.ToolCalls)
		if err != nil {
			return nil, err
		}
		info["tool_calls"] = calls
		info["message"] = assistantTable(r)
	}
	return info, nil
}

// toolCallsTable is info.tool_calls: the calls with decoded arguments.
func toolCallsTable(calls []ToolCall) ([]any, error) {
	out := make([]any, len(calls))
	for i, c := range calls {
		args, err := decodeJSON(c.Arguments)
		if err != nil {
			return nil, fmt.Errorf("tool call %q: arguments: %w", c.Name, err)
		}
		out[i] = map[string]any{"id": c.ID, "name": c.Name, "arguments": args}
	}
	return out, nil
}

// assistantTable is the reply as a message for the transcript, its tool
// calls' arguments kept as the JSON the model sent.
func assistantTable(r Response) map[string]any {
	calls := make([]any, len(r.ToolCalls))
	for i, c := range r.ToolCalls {
		calls[i] = map[string]any{"id": c.ID, "name": c.Name, "arguments": string(c.Arguments)}
	}
	return map[string]any{"role": "assistant", "content": r.Text, "tool_calls": calls}
}

func usageTable(u Usage) map[string]any {
	return map[string]any{
		"prompt_tokens":     int64(u.PromptTokens),
		"completion_tokens": int64(u.CompletionTokens),
		"total_tokens":      int64(u.TotalTokens),
	}
}

func addUsage(a, b Usage) Usage {
	return Usage{a.PromptTokens + b.PromptTokens, a.CompletionTokens + b.CompletionTokens, a.TotalTokens + b.TotalTokens}
}

// ---- arguments and options ----

func badArg(args bridge.Args, i int, want string) error {
	return fmt.Errorf("bad argument #%d (%s expected, got %s)", i+1, want, luaType(args.Get(i)))
}

// request reads the arguments shared by generate, stream and chat: a
// prompt or a list of messages, then the options.
func (m *module) request(args bridge.Args, fn string) (*llmCall, error) {
	c := &llmCall{fn: m.name + "." + fn}
	switch v := args.Get(0).(type) {
	case string:
		c.req.Prompt = v
	case []any:
		msgs, err := messages(v)
		if err != nil {
			return nil, fmt.Errorf("bad argument #1 (%w)", err)
		}
		c.req.Messages = msgs
	default:
		return nil, badArg(args, 0, "prompt string or list of messages")
	}
	if args.Len() < 2 || args.Get(1) == nil {
		return c, nil
	}
	opts, ok := asMap(args.Get(1))
	if !ok {
		return nil, badArg(args, 1, "options table")
	}
	if err := options(c, opts, fn); err != nil {
		return nil, err
	}
	return c, nil
}

// messages reads a list of message tables: {role=, content=} and, for
// tools, an assistant's tool_calls ({id=, name=, arguments=}: arguments a
// table or a JSON string) and a tool message's tool_call_id; a tool
// message's content that is not a string is sent as JSON.
func messages(list []any) ([]Message, error) {
	if len(list) == 0 {
		return nil, errors.New("the list of messages is empty")
	}
	msgs := make([]Message, len(list))
	for i, v := range list {
		t, ok := v.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("message %d is a %s, not a table {role=, content=}", i+1, luaType(v))
		}
		msg, err := message(t)
		if err != nil {
			return nil, fmt.Errorf("message %d %w", i+1, err)
		}
		msgs[i] = msg
	}
	return msgs, nil
}

func message(t map[string]any) (Message, error) {
	var m Message
	role, ok := t["role"].(string)
	if !ok {
		return m, errors.New("needs string fields role and content")
	}
	m.Role = role
	for k, v := range t {
		switch k {
		case "role":
		case "content":
			switch c := v.(type) {
			case string:
				m.Content = c
			default:
				if role != "tool" {
					return m, errors.New("needs string fields role and content")
				}
				b, err := jsonText(c)
				if err != nil {
					return m, fmt.Errorf("content: %w", err)
				}
				m.Content = b
			}
		case "tool_call_id":
			id, ok := v.(string)
			if !ok {
				return m, fmt.Errorf("field tool_call_id must be a string, got %s", luaType(v))
			}
			m.ToolCallID = id
		case "tool_calls":
			calls, err := messageToolCalls(v)
			if err != nil {
				return m, err
			}
			m.ToolCalls = calls
		case "name":
			// an optional participant name: accepted, not sent
		default:
			return m, fmt.Errorf("has unknown field %q (fields are role, content, tool_calls, tool_call_id)", k)
		}
	}
	if _, ok := t["content"]; !ok && len(m.ToolCalls) == 0 {
		return m, errors.New("needs string fields role and content")
	}
	if role == "tool" && m.ToolCallID == "" {
		return m, errors.New("(role tool) needs the tool_call_id of the call it answers")
	}
	return m, nil
}

func messageToolCalls(v any) ([]ToolCall, error) {
	l, ok := asList(v)
	if !ok {
		return nil, fmt.Errorf("field tool_calls must be a list, got %s", luaType(v))
	}
	calls := make([]ToolCall, len(l))
	for i, x := range l {
		t, ok := x.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("tool call %d must be a table {id=, name=, arguments=}", i+1)
		}
		id, _ := t["id"].(string)
		name, _ := t["name"].(string)
		if id == "" || name == "" {
			return nil, fmt.Errorf("tool call %d needs string fields id and name", i+1)
		}
		var args json.RawMessage
		switch a := t["arguments"].(type) {
		case nil:
			args = json.RawMessage("{}")
		case string:
			r, err := toolArguments([]byte(a))
			if err != nil {
				return nil, fmt.Errorf("tool call %d: %w", i+1, err)
			}
			args = r
		default:
			s, err := jsonText(a)
			if err != nil {
				return nil, fmt.Errorf("tool call %d: arguments: %w", i+1, err)
			}
			args = json.RawMessage(s)
		}
		calls[i] = ToolCall{ID: id, Name: name, Arguments: args}
	}
	return calls, nil
}

// jsonText encodes a Lua value as JSON (an empty table as {}).
func jsonText(v any) (string, error) {
	j, err := jsonValue(v, 0)
	if err != nil {
		return "", err
	}
	b, err := json.Marshal(j)
	if err != nil {
		return "", err
	}
	return string(b), nil
}

// optionNames are the options generate, stream and chat accept, sorted.
var optionNames = []string{"max_tokens", "model", "schema", "schema_name", "seed", "stop", "temperature", "tool_choice", "tools"}

// options applies opts to c; the error names the option at fault.
func options(c *llmCall, opts map[string]any, fn string) error {
	req := &c.req
	var schema json.RawMessage
	for k, v := range opts {
		var err error
		switch k {
		case "model":
			req.Model, err = optString(v)
		case "max_tokens":
			var n int64
			n, err = optInt(v)
			if err == nil && (n < 0 || n > math.MaxInt32) {
				err = fmt.Errorf("must be between 0 and %d, got %d", math.MaxInt32, n)
			}
			req.MaxTokens = int(n)
		case "temperature":
			var t float64
			t, err = optFloat(v)
			if err == nil && (t < 0 || math.IsNaN(t)) {
				err = fmt.Errorf("must be a number >= 0, got %v", t)
			}
			req.Temperature = &t
		case "stop":
			req.Stop, err = optStrings(v)
		case "seed":
			var s int64
			s, err = optInt(v)
			req.Seed = &s
		case "tools":
			req.Tools, err = tools(v)
		case "tool_choice":
			req.ToolChoice, err = optString(v)
		case "schema":
			schema, err = schemaFromLua(v)
		case "schema_name":
			req.SchemaName, err = optString(v)
		default:
			names := optionNames
			if fn == "chat" {
				names = append([]string{"max_steps"}, names...)
			}
			return fmt.Errorf("unknown option %q (options are %s)", k, strings.Join(names, ", "))
		}
		if err != nil {
			return fmt.Errorf("option '%s' %w", k, err)
		}
	}
	if err := checkToolChoice(req); err != nil {
		return fmt.Errorf("option 'tool_choice' %w", err)
	}
	if schema != nil {
		s, err := compileSchema(schema)
		if err != nil {
			return fmt.Errorf("option 'schema': %w", err)
		}
		req.Schema, c.schema = schema, s
	}
	return nil
}

func checkToolChoice(req *Request) error {
	switch req.ToolChoice {
	case "", "auto", "none":
		return nil
	case "required":
		if len(req.Tools) == 0 {
			return errors.New(`"required" needs option tools`)
		}
		return nil
	}
	for _, t := range req.Tools {
		if t.Name == req.ToolChoice {
			return nil
		}
	}
	return fmt.Errorf(`must be "auto", "none", "required" or the name of a tool, got %q`, req.ToolChoice)
}

// tools reads option tools: a list of {name=, description=, parameters=}.
func tools(v any) ([]Tool, error) {
	l, ok := asList(v)
	if !ok {
		return nil, fmt.Errorf("must be a list of tools, got %s", luaType(v))
	}
	out := make([]Tool, len(l))
	seen := map[string]bool{}
	for i, x := range l {
		t, ok := x.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("tool %d must be a table {name=, description=, parameters=}, got %s", i+1, luaType(x))
		}
		var tool Tool
		for k, f := range t {
			var err error
			switch k {
			case "name":
				tool.Name, err = optString(f)
			case "description":
				tool.Description, err = optString(f)
			case "parameters":
				tool.Parameters, err = schemaFromLua(f)
				if err == nil {
					_, err = compileSchema(tool.Parameters)
				}
			default:
				err = fmt.Errorf("is unknown (fields are name, description, parameters, fn)")
			}
			if err != nil {
				return nil, fmt.Errorf("tool %d field '%s' %w", i+1, k, err)
			}
		}
		if tool.Name == "" {
			return nil, fmt.Errorf("tool %d needs a name", i+1)
		}
		if seen[tool.Name] {
			return nil, fmt.Errorf("tool %d: the name %q is taken by another tool", i+1, tool.Name)
		}
		seen[tool.Name] = true
		if tool.Parameters == nil {
			tool.Parameters = json.RawMessage(`{"type":"object","properties":{}}`)
		}
		out[i] = tool
	}
	return out, nil
}

func optString(v any) (string, error) {
	if s, ok := v.(string); ok {
		return s, nil
	}
	return "", fmt.Errorf("must be a string, got %s", luaType(v))
}

func optInt(v any) (int64, error) {
	switch n := v.(type) {
	case int64:
		return n, nil
	case float64:
		if n == math.Trunc(n) && n >= math.MinInt64 && n < math.MaxInt64 {
			return int64(n), nil
		}
		return 0, fmt.Errorf("must be an integer, got %v", n)
	}
	return 0, fmt.Errorf("must be an integer, got %s", luaType(v))
}

func optFloat(v any) (float64, error) {
	switch n := v.(type) {
	case int64:
		return float64(n), nil
	case float64:
		return n, nil
	}
	return 0, fmt.Errorf("must be a number, got %s", luaType(v))
}

func optStrings(v any) ([]string, error) {
	switch s := v.(type) {
	case string:
		return []string{s}, nil
	case []any:
		out := make([]string, len(s))
		for i, x := range s {
			str, ok := x.(string)
			if !ok {
				return nil, fmt.Errorf("must be a string or a list of strings, got a %s at %d", luaType(x), i+1)
			}
			out[i] = str
		}
		return out, nil
	case map[string]any:
		if len(s) == 0 {
			return nil, nil
		}
	}
	return nil, fmt.Errorf("must be a string or a list of strings, got %s", luaType(v))
}

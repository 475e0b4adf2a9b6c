// LLM providers: the embedded generator's tool calls and structured
// output. Deterministic, so that tools, the agent loop and schemas work
// offline and in tests: offered tools, it calls the ones whose name and
// description best match the last user message, with arguments built
// from its schema and the message's words; after tool results it answers
// with them; given a schema, it writes JSON that matches it.

package llm

import (
	"context"
	"encoding/json"
	"math"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// localPlan is a reply the generator builds whole: text, or tool calls.
type localPlan struct {
	text  string
	calls []ToolCall
}

// localStructured returns the plan for a request that asks for tools or
// a schema, or answers tool results; ok is false for plain text.
func localStructured(req Request) (localPlan, bool) {
	conv := localConversation(req)
	if n := len(conv); n > 0 && conv[n-1].Role == "tool" {
		return localPlan{text: localAnswerFromTools(conv)}, true
	}
	if len(req.Tools) > 0 && req.ToolChoice != "none" {
		if calls := localToolCalls(req, localTopicText(conv)); len(calls) > 0 {
			return localPlan{calls: calls}, true
		}
	}
	if len(req.Schema) > 0 {
		var schema any
		if json.Unmarshal(req.Schema, &schema) == nil {
			w := newLocalWords(localTopicText(conv), nil)
			v := w.value(schema, schema, "", 0)
			b, err := json.Marshal(v)
			if err == nil {
				return localPlan{text: string(b)}, true
			}
		}
	}
	return localPlan{}, false
}

// runPlan streams a built reply in pieces, as the generator streams words.
func (l *Local) runPlan(ctx context.Context, req Request, p localPlan, fn func(Chunk) error) error {
	w := localWaiter{done: ctx.Done(), delay: l.opts.TokenDelay}
	defer w.close()
	n := 0
	for _, piece := range localPieces(p.text) {
		if !w.wait() {
			return ctx.Err()
		}
		n++
		if err := fn(Chunk{Content: piece}); err != nil {
			return err
		}
	}
	if !w.wait() {
		return ctx.Err()
	}
	for _, c := range p.calls {
		n += localTokenCount(string(c.Arguments)) + 1
	}
	prompt := localCountTokens(localConversation(req))
	c := Chunk{Done: true, FinishReason: "stop", Usage: &Usage{prompt, n, prompt + n}}
	if len(p.calls) > 0 {
		c.ToolCalls, c.FinishReason = p.calls, "tool_calls"
	}
	return fn(c)
}

// localPieces cuts text into pieces of a word and the space before it.
func localPieces(s string) []string {
	var out []string
	start := 0
	for i, r := range s {
		if i > start && unicode.IsSpace(r) {
			out = append(out, s[start:i])
			start = i
		}
	}
	if start < len(s) {
		out = append(out, s[start:])
	}
	return out
}

// localAnswerFromTools answers with the results of the calls since the
// last assistant message: "get_weather: {...}; search: ...".
func localAnswerFromTools(conv []Message) string {
	start := len(conv)
	for start > 0 && conv[start-1].Role == "tool" {
		start--
	}
	names := map[string]string{}
	if start > 0 {
		for _, c := range conv[start-1].ToolCalls {
			names[c.ID] = c.Name
		}
	}
	parts := make([]string, 0, len(conv)-start)
	for _, m := range conv[start:] {
		name := names[m.ToolCallID]
		if name == "" {
			name = "the tool"
		}
		parts = append(parts, name+" says "+strings.TrimSpace(m.Content))
	}
	return "Here is what I found: " + strings.Join(parts, "; ") + "."
}

// localToolCalls picks the tools that match the message: each tool scores
// the message's words found in its name (twice) and description; a tool
// is called when a word of its name is in the message (generic verbs such
// as get aside), or when it scores at least half the best; in the order
// offered.
// ToolChoice "required" calls the best even with no match; a tool's name
// calls that tool.
func localToolCalls(req Request, msg string) []ToolCall {
	words := localContentWords(msg)
	scores := make([]int, len(req.Tools))
	named := make([]bool, len(req.Tools))
	best := 0
	for i, t := range req.Tools {
		name := localContentWords(localSplitName(t.Name))
		desc := localContentWords(t.Description)
		for w := range words {
			if name[w] {
				scores[i] += 2
				named[i] = named[i] || !localToolVerbs[w]
			}
			if desc[w] {
				scores[i]++
			}
		}
		best = max(best, scores[i])
	}
	var chosen []Tool
	switch {
	case req.ToolChoice != "" && req.ToolChoice != "auto" && req.ToolChoice != "required":
		for _, t := range req.Tools {
			if t.Name == req.ToolChoice {
				chosen = append(chosen, t)
			}
		}
	case best > 0:
		for i, t := range req.Tools {
			if named[i] || scores[i]*2 >= best && scores[i] > 0 {
				chosen = append(chosen, t)
			}
		}
	case req.ToolChoice == "required":
		chosen = req.Tools[:1]
	}
	calls := make([]ToolCall, len(chosen))
	for i, t := range chosen {
		var schema any
		if json.Unmarshal(t.Parameters, &schema) != nil {
			schema = map[string]any{"type": "object"}
		}
		avoid := localContentWords(localSplitName(t.Name) + " " + t.Description)
		w := newLocalWords(msg, avoid)
		args, _ := json.Marshal(w.value(schema, schema, "", 0))
		if len(args) == 0 || args[0] != '{' {
			args = []byte("{}")
		}
		calls[i] = ToolCall{ID: "call_" + strconv.Itoa(i+1), Name: t.Name, Arguments: args}
	}
	return calls
}

// localToolVerbs are words of tool names too generic to choose a tool by.
var localToolVerbs = localWordSet("get set fetch find tool run call lookup look")

// localSplitName splits get_weather, getWeather, get-weather into words.
func localSplitName(s string) string {
	var b strings.Builder
	prev := rune(0)
	for _, r := range s {
		switch {
		case r == '_' || r == '-' || r == '.':
			r = ' '
		case unicode.IsUpper(r) && unicode.IsLower(prev):
			b.WriteByte(' ')
		}
		b.WriteRune(unicode.ToLower(r))
		prev = r
	}
	return b.String()
}

// localContentWords is the set of a text's words, lowercased, without stop
// words, each also in its singular ("cities" adds "city" too).
func localContentWords(s string) map[string]bool {
	set := map[string]bool{}
	for tok, word, i := localNextToken(s, 0); tok != ""; tok, word, i = localNextToken(s, i) {
		w := strings.ToLower(tok)
		if !word || localStopWords[w] {
			continue
		}
		set[w] = true
		set[localSingular(w)] = true
	}
	return set
}

func localSingular(w string) string {
	switch {
	case strings.HasSuffix(w, "ies") && len(w) > 4:
		return w[:len(w)-3] + "y"
	case strings.HasSuffix(w, "ss"):
		return w
	case strings.HasSuffix(w, "s") && len(w) > 3:
		return w[:len(w)-1]
	}
	return w
}

// localWords hands out the message's words and numbers to fill a schema,
// each once: a property named in the message gets the word after it ("from
// Lisbon"); other strings get names (capitalised words) first, then words.
type localWords struct {
	msg     string
	toks    []localTok
	numbers []float64
	nn      int
	made    int // values made and array slots taken (localMaxValues)
}

// localMaxValues bounds what one reply is made of: values, and the slots
// of the arrays that hold them. A schema asking for more (minItems of 1e9,
// or arrays of arrays) gets a reply cut short, which its check refuses,
// instead of the host allocating without end.
const localMaxValues = 1 << 16

type localTok struct {
	text, low  string
	name, used bool
	content    bool // not a stop word, not a word of the tool's own
}

func newLocalWords(msg string, avoid map[string]bool) *localWords {
	w := &localWords{msg: strings.TrimSpace(msg)}
	seen := map[string]bool{}
	initial := true
	for tok, word, i := localNextToken(msg, 0); tok != ""; tok, word, i = localNextToken(msg, i) {
		if f, err := strconv.ParseFloat(tok, 64); err == nil {
			w.numbers = append(w.numbers, f)
			initial = false
			continue
		}
		if !word {
			initial = localSentenceEnd(tok)
			continue
		}
		low := strings.ToLower(tok)
		r, _ := utf8.DecodeRuneInString(tok)
		t := localTok{text: tok, low: low, name: unicode.IsUpper(r) && !initial}
		t.content = !localStopWords[low] && !avoid[low] && !avoid[localSingular(low)] && !seen[low]
		if t.content {
			seen[low] = true
		}
		if !t.name {
			t.text = low
		}
		initial = false
		w.toks = append(w.toks, t)
	}
	return w
}

// after returns the unused content word right after the word prop, if the
// message has one.
func (w *localWords) after(prop string) (string, bool) {
	p := strings.ToLower(prop)
	for i := 0; i+1 < len(w.toks); i++ {
		if t := &w.toks[i+1]; (w.toks[i].low == p || localSingular(w.toks[i].low) == p) && t.content && !t.used {
			t.used = true
			return t.text, true
		}
	}
	return "", false
}

// free fills the properties that take text rather than a word: a query or
// question gets the whole message, an expression or formula the longest
// arithmetic in it.
func (w *localWords) free(prop string) (string, bool) {
	switch strings.ToLower(prop) {
	case "query", "question", "text", "input", "prompt", "message", "q":
		return w.msg, w.msg != ""
	case "expression", "expr", "formula":
		best := ""
		for _, m := range localArithmetic.FindAllString(w.msg, -1) {
			if m = strings.TrimSpace(m); len(m) > len(best) && strings.ContainsAny(m, "0123456789") {
				best = m
			}
		}
		return best, best != ""
	}
	return "", false
}

var localArithmetic = regexp.MustCompile(`[0-9(][0-9 .+\-*/^%()]*`)

// str is the next word for a string property: a name first.
func (w *localWords) str(prop string) string {
	for _, names := range []bool{true, false} {
		for i := range w.toks {
			if t := &w.toks[i]; t.content && !t.used && t.name == names {
				t.used = true
				return t.text
			}
		}
	}
	if prop != "" {
		return prop
	}
	return "moonbridge"
}

func (w *localWords) num() (float64, bool) {
	if w.nn < len(w.numbers) {
		w.nn++
		return w.numbers[w.nn-1], true
	}
	return 0, false
}

// value builds a value that matches schema (root is the whole document,
// for "$ref": "#/..."). Every property is filled, so required ones are.
func (w *localWords) value(schema, root any, prop string, depth int) any {
	s, ok := schema.(map[string]any)
	if !ok || depth > 16 || w.made >= localMaxValues {
		return nil
	}
	w.made++
	if ref, ok := s["$ref"].(string); ok {
		return w.value(localResolve(root, ref), root, prop, depth+1)
	}
	if c, ok := s["const"]; ok {
		return c
	}
	if e, ok := s["enum"].([]any); ok && len(e) > 0 {
		return w.enum(e)
	}
	for _, k := range []string{"anyOf", "oneOf", "allOf"} {
		if l, ok := s[k].([]any); ok && len(l) > 0 {
			if k == "allOf" {
				return w.value(localMerge(l, root), root, prop, depth+1)
			}
			return w.value(l[0], root, prop, depth+1)
		}
	}
	typ := localType(s)
	switch typ {
	case "object":
		return w.object(s, root, depth)
	case "array":
		n := 1
		if m, ok := localNum(s["minItems"]); ok && m > 1 {
			n = int(min(m, localMaxValues))
		}
		if m, ok := localNum(s["maxItems"]); ok && m < float64(n) {
			n = int(max(m, 0))
		}
		n = min(n, localMaxValues-w.made)
		w.made += n
		items := s["items"]
		out := make([]any, n)
		for i := range out {
			out[i] = w.value(items, root, prop, depth+1)
			if items == nil {
				out[i] = w.str(prop)
			}
		}
		return out
	case "integer", "number":
		return localNumber(w, s, typ == "integer")
	case "boolean":
		return true
	case "null":
		return nil
	}
	return localString(w.str(prop), s)
}

func (w *localWords) enum(e []any) any {
	for _, v := range e { // a value the message names
		if str, ok := v.(string); ok {
			for _, t := range w.toks {
				if strings.EqualFold(t.text, str) {
					return v
				}
			}
		}
	}
	return e[0]
}

// object fills the required properties first (in their order), then the
// others by name; string properties named in the message take the word
// after their name before any takes a word in turn.
func (w *localWords) object(s map[string]any, root any, depth int) map[string]any {
	props, _ := s["properties"].(map[string]any)
	var order []string
	listed := map[string]bool{}
	if req, ok := s["required"].([]any); ok {
		for _, r := range req {
			if k, ok := r.(string); ok && !listed[k] {
				order, listed[k] = append(order, k), true
			}
		}
	}
	rest := make([]string, 0, len(props))
	for k := range props {
		if !listed[k] {
			rest = append(rest, k)
		}
	}
	sort.Strings(rest)
	order = append(order, rest...)
	out := make(map[string]any, len(order))
	for _, k := range order {
		if ps, ok := props[k].(map[string]any); ok && localType(ps) == "string" && ps["enum"] == nil && ps["const"] == nil {
			if v, ok := w.free(k); ok {
				out[k] = localString(v, ps)
			} else if v, ok := w.after(k); ok {
				out[k] = localString(v, ps)
			}
		}
	}
	for _, k := range order {
		if _, done := out[k]; done {
			continue
		}
		if ps, ok := props[k]; ok {
			out[k] = w.value(ps, root, k, depth+1)
		} else {
			out[k] = w.str(k) // required, and not described
		}
	}
	return out
}

// localType is a schema's type: the first of a list that is not null;
// guessed from the keywords when absent.
func localType(s map[string]any) string {
	switch t := s["type"].(type) {
	case string:
		return t
	case []any:
		for _, x := range t {
			if str, ok := x.(string); ok && str != "null" {
				return str
			}
		}
		return "null"
	}
	switch {
	case s["properties"] != nil:
		return "object"
	case s["items"] != nil:
		return "array"
	case s["minimum"] != nil || s["maximum"] != nil:
		return "number"
	}
	return "string"
}

func localNum(v any) (float64, bool) {
	f, ok := v.(float64)
	return f, ok
}

func localNumber(w *localWords, s map[string]any, integer bool) any {
	v, ok := w.num()
	if !ok {
		v = 1
	}
	if m, ok := localNum(s["minimum"]); ok && v < m {
		v = m
	}
	if m, ok := localNum(s["exclusiveMinimum"]); ok && v <= m {
		v = m + 1
	}
	if m, ok := localNum(s["maximum"]); ok && v > m {
		v = m
	}
	if m, ok := localNum(s["exclusiveMaximum"]); ok && v >= m {
		v = m - 1
	}
	if integer {
		v = math.Round(v)
		if m, ok := localNum(s["multipleOf"]); ok && m >= 1 {
			v = math.Ceil(v/m) * m
		}
		return int64(v)
	}
	return v
}

// localMaxString is the longest string the local generator pads to: a
// schema asking for more (a script's minLength of 1e9) gets this many
// runes, which the schema's check then refuses, instead of the host
// building a gigabyte.
const localMaxString = 1 << 16

// localString fits a word to minLength, maxLength and (simple) pattern.
func localString(v string, s map[string]any) string {
	if p, ok := s["pattern"].(string); ok {
		if re, err := regexp.Compile(p); err == nil && !re.MatchString(v) {
			v = localPatternExample(p, v)
		}
	}
	n := utf8.RuneCountInString(v)
	if m, ok := localNum(s["minLength"]); ok && float64(n) < m {
		want := int(min(m, localMaxString))
		if want > n {
			v += strings.Repeat("x", want-n)
			n = want
		}
	}
	if m, ok := localNum(s["maxLength"]); ok && float64(n) > m {
		v = string([]rune(v)[:int(max(m, 0))])
	}
	return v
}

// localPatternExample makes a string for the common anchored patterns of
// digits or letters; others get the word unchanged (and may not match).
func localPatternExample(p, v string) string {
	switch {
	case strings.Contains(p, `\d`) || strings.Contains(p, "[0-9]"):
		return "2026"
	case strings.Contains(p, "[A-Z]"):
		return strings.ToUpper(v)
	case strings.Contains(p, "[a-z]"):
		return strings.ToLower(v)
	}
	return v
}

// localResolve follows a local "$ref" ("#/$defs/x").
func localResolve(root any, ref string) any {
	if !strings.HasPrefix(ref, "#") {
		return nil
	}
	cur := root
	for _, part := range strings.Split(strings.TrimPrefix(ref, "#"), "/") {
		if part == "" {
			continue
		}
		part = strings.ReplaceAll(strings.ReplaceAll(part, "~1", "/"), "~0", "~")
		m, ok := cur.(map[string]any)
		if !ok {
			return nil
		}
		cur = m[part]
	}
	return cur
}

// localMerge joins allOf's object schemas into one.
func localMerge(l []any, root any) any {
	props := map[string]any{}
	var req []any
	for _, x := range l {
		m, ok := x.(map[string]any)
		if !ok {
			continue
		}
		if ref, ok := m["$ref"].(string); ok {
			if r, ok := localResolve(root, ref).(map[string]any); ok {
				m = r
			}
		}
		if p, ok := m["properties"].(map[string]any); ok {
			for k, v := range p {
				props[k] = v
			}
		}
		if r, ok := m["required"].([]any); ok {
			req = append(req, r...)
		}
	}
	return map[string]any{"type": "object", "properties": props, "required": req}
}

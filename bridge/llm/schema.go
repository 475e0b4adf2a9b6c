// Structured output: JSON Schemas written as Lua tables, their strict form
// for OpenAI, and validating replies with santhosh-tekuri/jsonschema.

package llm

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"sort"
	"strings"
	"sync"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// ---- Lua tables to JSON Schema ----

// An empty Lua table crosses as an empty map or an empty list, and
// JSON Schema tells which it must be by the keyword it is the value of:
// properties = {} is an object, required = {} a list, items = {} the
// schema that allows anything.
var (
	schemaMapOfSchemas  = wordSet("properties patternProperties $defs definitions dependentSchemas")
	schemaListOfSchemas = wordSet("allOf anyOf oneOf prefixItems")
	schemaLists         = wordSet("required enum examples type")
	schemaOneSchema     = wordSet("additionalProperties additionalItems not if then else contains propertyNames unevaluatedItems unevaluatedProperties contentSchema")
)

func wordSet(s string) map[string]bool {
	m := map[string]bool{}
	for _, w := range strings.Fields(s) {
		m[w] = true
	}
	return m
}

// maxSchemaDepth bounds how deep a schema from a script may nest.
const maxSchemaDepth = 64

// schemaFromLua turns a schema written as a Lua value (a table, or a JSON
// string) into JSON.
func schemaFromLua(v any) (json.RawMessage, error) {
	if s, ok := v.(string); ok {
		var doc any
		if err := json.Unmarshal([]byte(s), &doc); err != nil {
			return nil, fmt.Errorf("is not valid JSON: %w", err)
		}
		if _, ok := doc.(map[string]any); !ok {
			return nil, errors.New("must be a JSON object")
		}
		return json.RawMessage(s), nil
	}
	doc, err := schemaNode(v, "", 0)
	if err != nil {
		return nil, err
	}
	if _, ok := doc.(map[string]any); !ok {
		return nil, fmt.Errorf("must be a table, got %s", luaType(v))
	}
	return json.Marshal(doc)
}

// schemaNode converts one schema (a table, or true/false).
func schemaNode(v any, path string, depth int) (any, error) {
	if depth > maxSchemaDepth {
		return nil, fmt.Errorf("nests deeper than %d levels at %s", maxSchemaDepth, pathOr(path))
	}
	switch t := v.(type) {
	case bool:
		return t, nil
	case []any:
		if len(t) == 0 {
			return map[string]any{}, nil
		}
	case map[string]any:
		out := make(map[string]any, len(t))
		for k, x := range t {
			y, err := schemaKeyword(k, x, path+"."+k, depth+1)
			if err != nil {
				return nil, err
			}
			out[k] = y
		}
		return out, nil
	}
	return nil, fmt.Errorf("at %s must be a table (a schema), got %s", pathOr(path), luaType(v))
}

func pathOr(p string) string {
	if p == "" {
		return "the top"
	}
	return strings.TrimPrefix(p, ".")
}

// schemaKeyword converts the value of keyword k.
func schemaKeyword(k string, v any, path string, depth int) (any, error) {
	switch {
	case schemaMapOfSchemas[k]:
		m, ok := asMap(v)
		if !ok {
			return nil, fmt.Errorf("at %s must be a table of schemas, got %s", pathOr(path), luaType(v))
		}
		out := make(map[string]any, len(m))
		for name, s := range m {
			y, err := schemaNode(s, path+"."+name, depth)
			if err != nil {
				return nil, err
			}
			out[name] = y
		}
		return out, nil
	case schemaListOfSchemas[k] || k == "items" && isNonEmptyList(v):
		l, ok := asList(v)
		if !ok {
			return nil, fmt.Errorf("at %s must be a list of schemas, got %s", pathOr(path), luaType(v))
		}
		out := make([]any, len(l))
		for i, s := range l {
			y, err := schemaNode(s, fmt.Sprintf("%s[%d]", path, i+1), depth)
			if err != nil {
				return nil, err
			}
			out[i] = y
		}
		return out, nil
	case schemaOneSchema[k] || k == "items":
		return schemaNode(v, path, depth)
	case schemaLists[k]:
		if s, ok := v.(string); ok && k == "type" {
			return s, nil
		}
		l, ok := asList(v)
		if !ok {
			return nil, fmt.Errorf("at %s must be a list, got %s", pathOr(path), luaType(v))
		}
		if len(l) == 0 {
			return []any{}, nil
		}
		return jsonValue(l, depth)
	case k == "dependentRequired":
		m, ok := asMap(v)
		if !ok {
			return nil, fmt.Errorf("at %s must be a table of lists, got %s", pathOr(path), luaType(v))
		}
		out := make(map[string]any, len(m))
		for name, x := range m {
			l, ok := asList(x)
			if !ok {
				return nil, fmt.Errorf("at %s.%s must be a list, got %s", pathOr(path), name, luaType(x))
			}
			out[name] = l
		}
		return out, nil
	}
	return jsonValue(v, depth)
}

// jsonValue is a Lua value as JSON: an empty table is an object.
func jsonValue(v any, depth int) (any, error) {
	if depth > maxSchemaDepth {
		return nil, fmt.Errorf("nests deeper than %d levels", maxSchemaDepth)
	}
	switch t := v.(type) {
	case []any:
		if len(t) == 0 {
			return map[string]any{}, nil
		}
		out := make([]any, len(t))
		for i, x := range t {
			y, err := jsonValue(x, depth+1)
			if err != nil {
				return nil, err
			}
			out[i] = y
		}
		return out, nil
	case map[string]any:
		out := make(map[string]any, len(t))
		for k, x := range t {
			y, err := jsonValue(x, depth+1)
			if err != nil {
				return nil, err
			}
			out[k] = y
		}
		return out, nil
	case float64:
		if math.IsNaN(t) || math.IsInf(t, 0) {
			return nil, fmt.Errorf("holds %v, which JSON cannot", t)
		}
	}
	return v, nil
}

func asMap(v any) (map[string]any, bool) {
	switch t := v.(type) {
	case map[string]any:
		return t, true
	case []any:
		return map[string]any{}, len(t) == 0
	}
	return nil, false
}

func asList(v any) ([]any, bool) {
	switch t := v.(type) {
	case []any:
		return t, true
	case map[string]any:
		return []any{}, len(t) == 0
	}
	return nil, false
}

func isNonEmptyList(v any) bool {
	l, ok := v.([]any)
	return ok && len(l) > 0
}

// ---- OpenAI's strict mode ----

// StrictSchema returns schema as OpenAI's strict structured output needs
// it, and whether it can be strict at all. Strict mode demands that every
// object schema set additionalProperties to false and list every property
// in required. An object schema that says nothing about
// additionalProperties gets false (replies then carry no extra fields,
// which every schema allows anyway). A schema with an optional property,
// or additionalProperties allowed, cannot be strict without changing what
// it means: it is sent unchanged with strict false, so the server treats
// it as guidance, and the reply is still validated against it.
func StrictSchema(schema json.RawMessage) (json.RawMessage, bool) {
	var doc any
	if json.Unmarshal(schema, &doc) != nil {
		return schema, false
	}
	if !strictNode(doc, 0) {
		return schema, false
	}
	out, err := json.Marshal(doc)
	if err != nil {
		return schema, false
	}
	return out, true
}

// strictNode makes one schema strict in place; false when it cannot be.
func strictNode(v any, depth int) bool {
	m, ok := v.(map[string]any)
	if !ok || depth > maxSchemaDepth {
		return ok || v == true || v == false
	}
	props, hasProps := m["properties"].(map[string]any)
	if hasProps || m["type"] == "object" {
		switch ap := m["additionalProperties"].(type) {
		case nil:
			m["additionalProperties"] = false
		case bool:
			if ap {
				return false
			}
		default:
			return false
		}
		req := map[string]bool{}
		if l, ok := m["required"].([]any); ok {
			for _, r := range l {
				if s, ok := r.(string); ok {
					req[s] = true
				}
			}
		}
		for name := range props {
			if !req[name] {
				return false
			}
		}
	}
	for k, x := range m {
		switch {
		case schemaMapOfSchemas[k]:
			if mm, ok := x.(map[string]any); ok {
				for _, s := range mm {
					if !strictNode(s, depth+1) {
						return false
					}
				}
			}
		case schemaListOfSchemas[k] || k == "items":
			if l, ok := x.([]any); ok {
				for _, s := range l {
					if !strictNode(s, depth+1) {
						return false
					}
				}
			} else if !strictNode(x, depth+1) {
				return false
			}
		case schemaOneSchema[k] && k != "additionalProperties":
			if !strictNode(x, depth+1) {
				return false
			}
		}
	}
	return true
}

// ---- validation ----

// compiledSchemas caches compiled schemas by their JSON: a script asks for
// the same schema again and again.
var compiledSchemas struct {
	sync.Mutex
	m map[string]*jsonschema.Schema
}

const maxCompiledSchemas = 256

// compileSchema compiles a JSON Schema. No $ref may leave it: the
// compiler has no loader, so a schema from a script cannot read files or
// reach the network.
func compileSchema(schema json.RawMessage) (*jsonschema.Schema, error) {
	key := string(schema)
	compiledSchemas.Lock()
	s := compiledSchemas.m[key]
	compiledSchemas.Unlock()
	if s != nil {
		return s, nil
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(schema))
	if err != nil {
		return nil, fmt.Errorf("schema is not valid JSON: %w", err)
	}
	c := jsonschema.NewCompiler()
	c.UseLoader(jsonschema.SchemeURLLoader{})
	const loc = "mem:///schema.json"
	if err := c.AddResource(loc, doc); err != nil {
		return nil, fmt.Errorf("bad schema: %w", err)
	}
	s, err = c.Compile(loc)
	if err != nil {
		return nil, fmt.Errorf("bad schema: %w", err)
	}
	compiledSchemas.Lock()
	if len(compiledSchemas.m) >= maxCompiledSchemas || compiledSchemas.m == nil {
		compiledSchemas.m = map[string]*jsonschema.Schema{}
	}
	compiledSchemas.m[key] = s
	compiledSchemas.Unlock()
	return s, nil
}

// schemaError reports a reply that does not match its schema: the
// validator's findings, and the reply's text.
type schemaError struct {
	Problems []string // "at /path: what is wrong", in a stable order
	Text     string   // the reply as received
}

func (e *schemaError) Error() string {
	return "the reply does not match the schema: " + strings.Join(e.Problems, "; ")
}

// maxProblems bounds the findings a schemaError keeps.
const maxProblems = 10

// validateReply parses text as JSON (a reply in a ```json fence is taken
// out of it) and checks it against s. It returns the value, decoded with
// exact integers, or a *schemaError.
func validateReply(s *jsonschema.Schema, text string) (any, error) {
	body := strings.TrimSpace(text)
	if inner, ok := unfence(body); ok {
		body = inner
	}
	doc, err := jsonschema.UnmarshalJSON(strings.NewReader(body))
	if err != nil {
		return nil, &schemaError{Problems: []string{"the reply is not JSON: " + err.Error()}, Text: text}
	}
	if err := s.Validate(doc); err != nil {
		var ve *jsonschema.ValidationError
		if !errors.As(err, &ve) {
			return nil, &schemaError{Problems: []string{err.Error()}, Text: text}
		}
		return nil, &schemaError{Problems: problems(ve), Text: text}
	}
	return doc, nil
}

// unfence takes JSON out of a Markdown code fence, as models write it.
func unfence(s string) (string, bool) {
	if !strings.HasPrefix(s, "```") || !strings.HasSuffix(s, "```") || len(s) < 6 {
		return "", false
	}
	s = strings.TrimSuffix(s[3:], "```")
	if i := strings.IndexByte(s, '\n'); i >= 0 && !strings.ContainsAny(s[:i], "{[\"") {
		s = s[i+1:] // the language tag
	}
	return strings.TrimSpace(s), true
}

// problems lists the leaves of a validation error.
func problems(ve *jsonschema.ValidationError) []string {
	var out []string
	for _, u := range ve.BasicOutput().Errors {
		if u.Error == nil {
			continue
		}
		at := u.InstanceLocation
		if at == "" {
			at = "/"
		}
		out = append(out, "at "+at+": "+u.Error.String())
	}
	if len(out) == 0 {
		out = append(out, ve.Error())
	}
	sort.Strings(out)
	if len(out) > maxProblems {
		out = append(out[:maxProblems], fmt.Sprintf("and %d more", len(out)-maxProblems))
	}
	return out
}

// luaValue turns a decoded JSON value (json.Number for numbers) into the
// values that cross into Lua: integers that fit int64 stay integers.
func luaValue(v any) any {
	switch t := v.(type) {
	case json.Number:
		if i, err := t.Int64(); err == nil {
			return i
		}
		f, _ := t.Float64()
		return f
	case []any:
		for i, x := range t {
			t[i] = luaValue(x)
		}
		return t
	case map[string]any:
		for k, x := range t {
			t[k] = luaValue(x)
		}
		return t
	}
	return v
}

// decodeJSON decodes one JSON value for Lua; nothing is an empty table.
func decodeJSON(raw []byte) (any, error) {
	if len(bytes.TrimSpace(raw)) == 0 {
		return map[string]any{}, nil
	}
	d := json.NewDecoder(bytes.NewReader(raw))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		return nil, err
	}
	return luaValue(v), nil
}

// luaType names a decoded Lua value's type, as Lua would.
func luaType(v any) string {
	switch v.(type) {
	case nil:
		return "nil"
	case bool:
		return "boolean"
	case int64:
		return "integer"
	case float64:
		return "number"
	case string:
		return "string"
	case []any, map[string]any:
		return "table"
	}
	return fmt.Sprintf("%T", v)
}

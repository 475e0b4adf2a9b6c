package bridge

import (
	"fmt"
	"math"
	"strconv"

	"github.com/moonbridge/moonbridge/core"
)

// Args are the arguments Lua passed to a bridge function, decoded: nil,
// bool, int64, float64, string, []any or map[string]any. Indexes start at
// 0; error messages count from 1, as Lua does. Returned from the function,
// such an error is raised in Lua as "kv.get: bad argument #1 (string
// expected, got table)": values are named as core.KindName names them.
//
// Integers, floats and booleans are held unboxed: reading one with Int,
// Float or Bool allocates nothing (Get boxes the value it returns).
type Args struct {
	fn   string
	vals []core.Value
}

// NewArgs returns Args holding vals, for calling a Func from Go (tests).
func NewArgs(fn string, vals ...any) Args { return Args{fn: fn, vals: core.Values(vals)} }

// Name is the name the function was registered under.
func (a Args) Name() string { return a.fn }

// Len is the number of arguments.
func (a Args) Len() int { return len(a.vals) }

// Get returns argument i, or nil when there is none.
func (a Args) Get(i int) any {
	if i < 0 || i >= len(a.vals) {
		return nil
	}
	return a.vals[i].Any()
}

// at returns argument i, or nil when there is none (read only).
func (a Args) at(i int) *core.Value {
	if uint(i) >= uint(len(a.vals)) {
		return &noValue
	}
	return &a.vals[i]
}

// noValue is the nil at returns for a missing argument.
var noValue core.Value

func (a Args) bad(i int, want string) error {
	got := "no value"
	if i >= 0 && i < len(a.vals) {
		got = a.vals[i].KindName()
	}
	return fmt.Errorf("bad argument #%d (%s expected, got %s)", i+1, want, got)
}

// luaType names a value for an error message, in core's one vocabulary.
func luaType(v any) string { return core.KindName(v) }

// String returns argument i, which must be a string (numbers are
// converted, as Lua does).
func (a Args) String(i int) (string, error) {
	if uint(i) < uint(len(a.vals)) { // the common case, inlined at the caller
		if s, ok := a.vals[i].Str(); ok {
			return s, nil
		}
	}
	return a.stringOther(i)
}

// stringOther is String for anything but a string argument.
func (a Args) stringOther(i int) (string, error) {
	v := a.at(i)
	if n, ok := v.Int(); ok {
		return strconv.FormatInt(n, 10), nil
	}
	if f, ok := v.Float(); ok {
		return fmt.Sprint(f), nil
	}
	return "", a.bad(i, "string")
}

// Int returns argument i, which must be an integer or a float with an
// exact integer value.
func (a Args) Int(i int) (int64, error) {
	if uint(i) < uint(len(a.vals)) { // the common case, inlined at the caller
		if n, ok := a.vals[i].Int(); ok {
			return n, nil
		}
	}
	return intOther(a.vals, i)
}

// intOther is Int for anything but an integer argument.
func intOther(vals []core.Value, i int) (int64, error) {
	a := Args{vals: vals}
	v := a.at(i)
	if f, ok := v.Float(); ok {
		if !core.IsIntegral(f) {
			return 0, fmt.Errorf("bad argument #%d (%w)", i+1, core.NotIntegerError(f))
		}
		if f < math.MinInt64 || f >= math.MaxInt64 {
			return 0, fmt.Errorf("bad argument #%d (float %g overflows int64)", i+1, f)
		}
		return int64(f), nil
	}
	return 0, a.bad(i, "integer")
}

// Float returns argument i, which must be a number.
func (a Args) Float(i int) (float64, error) {
	if uint(i) < uint(len(a.vals)) { // the common case, inlined at the caller
		if f, ok := a.vals[i].Float(); ok {
			return f, nil
		}
	}
	return a.floatOther(i)
}

// floatOther is Float for anything but a float argument.
func (a Args) floatOther(i int) (float64, error) {
	if n, ok := a.at(i).Int(); ok {
		return float64(n), nil
	}
	return 0, a.bad(i, "number")
}

// Bool returns argument i, which must be a boolean.
func (a Args) Bool(i int) (bool, error) {
	if uint(i) < uint(len(a.vals)) { // the common case, inlined at the caller
		if b, ok := a.vals[i].Bool(); ok {
			return b, nil
		}
	}
	return false, a.bad(i, "boolean")
}

// Map returns argument i, which must be a table with string keys (an empty
// table is an empty map).
func (a Args) Map(i int) (map[string]any, error) {
	switch v := a.at(i).Ref().(type) {
	case map[string]any:
		return v, nil
	case []any:
		if len(v) == 0 {
			return map[string]any{}, nil
		}
	}
	return nil, a.bad(i, "table with string keys")
}

// Slice returns argument i, which must be a sequence (an empty table is an
// empty slice).
func (a Args) Slice(i int) ([]any, error) {
	switch v := a.at(i).Ref().(type) {
	case []any:
		return v, nil
	case map[string]any:
		if len(v) == 0 {
			return []any{}, nil
		}
	}
	return nil, a.bad(i, "sequence")
}

// Decode stores argument i in the value out points to: a struct (fields
// matched by `lua:"name"` tags, then by name), a map, a slice or a scalar.
func (a Args) Decode(i int, out any) error {
	if i < 0 || i >= len(a.vals) {
		return a.bad(i, "value")
	}
	if err := core.DecodeInto(a.vals[i].Any(), out); err != nil {
		return fmt.Errorf("bad argument #%d (%w)", i+1, err)
	}
	return nil
}

package core

// Arguments as a bridge function receives them: a message decoded into
// Values, which keep nil, booleans, integers and floats unboxed. Decoding
// into []any costs an allocation per integer or float (an interface holds
// a pointer), which on an inline call is as much as the rest of the Go
// side together; a Value is read by its accessors without one.

import (
	"encoding/binary"
	"math"
)

// valueKind says what a Value holds.
type valueKind uint8

const (
	valueNil valueKind = iota
	valueBool
	valueInt
	valueFloat
	valueString
	valueAny // ref holds the value as it is: a table ([]any, map[string]any, map[int64]any) or any Go value (ValueOf)
)

// Value is one argument of a bridge call. The zero Value is nil.
type Value struct {
	ref  any    // valueAny
	str  string // valueString
	num  uint64 // valueBool (0 or 1), valueInt (the int64), valueFloat (the float64's bits)
	kind valueKind
}

// ValueOf makes a Value of v as the decoder would: nil, bool, int64,
// float64 and string are kept as such; anything else (tables, and Go
// values of other types, for calling a function from Go) as it is.
func ValueOf(v any) Value {
	switch x := v.(type) {
	case nil:
		return Value{}
	case bool:
		return BoolValue(x)
	case int64:
		return IntValue(x)
	case float64:
		return FloatValue(x)
	case string:
		return Value{kind: valueString, str: x}
	}
	return Value{kind: valueAny, ref: v}
}

// BoolValue, IntValue and FloatValue make Values of scalars.
func BoolValue(b bool) Value {
	if b {
		return Value{kind: valueBool, num: 1}
	}
	return Value{kind: valueBool}
}

// IntValue is an integer Value.
func IntValue(i int64) Value { return Value{kind: valueInt, num: uint64(i)} }

// FloatValue is a float Value.
func FloatValue(f float64) Value { return Value{kind: valueFloat, num: math.Float64bits(f)} }

// Any returns the value as DecodeMessage would have: nil, bool, int64,
// float64, string, []any, map[string]any (or what ValueOf was given). A
// scalar is boxed here, when it is asked for.
func (v *Value) Any() any {
	switch v.kind {
	case valueBool:
		return v.num != 0
	case valueInt:
		return int64(v.num)
	case valueFloat:
		return math.Float64frombits(v.num)
	case valueString:
		return v.str
	case valueAny:
		return v.ref
	}
	return nil
}

// IsNil reports whether v is nil.
func (v *Value) IsNil() bool { return v.kind == valueNil || (v.kind == valueAny && v.ref == nil) }

// Bool returns v's boolean, if it is one.
func (v *Value) Bool() (bool, bool) { return v.num != 0, v.kind == valueBool }

// Int returns v's integer, if it is one (an int64; a float is not).
func (v *Value) Int() (int64, bool) { return int64(v.num), v.kind == valueInt }

// Float returns v's float, if it is one (a float64; an integer is not).
func (v *Value) Float() (float64, bool) { return math.Float64frombits(v.num), v.kind == valueFloat }

// Str returns v's string, if it is one.
func (v *Value) Str() (string, bool) { return v.str, v.kind == valueString }

// Ref returns a value that is neither a scalar nor a string: a table (or
// what ValueOf was given), else nil.
func (v *Value) Ref() any {
	if v.kind == valueAny {
		return v.ref
	}
	return nil
}

// KindName names v as KindName names v.Any().
func (v *Value) KindName() string {
	switch v.kind {
	case valueNil:
		return "nil"
	case valueBool:
		return "boolean"
	case valueInt:
		return "integer"
	case valueFloat:
		return "float"
	case valueString:
		return "string"
	}
	return KindName(v.ref)
}

// Values converts vals with ValueOf.
func Values(vals []any) []Value {
	out := make([]Value, len(vals))
	for i, v := range vals {
		out[i] = ValueOf(v)
	}
	return out
}

// AppendValues decodes one message as DecodeMessage does, appending its
// values to dst as Values: scalars unboxed, strings copied, tables as
// DecodeMessage makes them. On error dst is returned as it was.
func AppendValues(dst []Value, data []byte) ([]Value, error) {
	d := msgDecoder{data: data}
	n, err := d.count()
	if err != nil {
		return dst, err
	}
	if n > d.left() {
		return dst, d.fail(0, "value count %d exceeds the %d bytes left", n, d.left())
	}
	start := len(dst)
	if cap(dst)-start < n {
		grown := make([]Value, start, start+n)
		copy(grown, dst)
		dst = grown
	}
	out := dst[:start+n]
	if scalars(out[start:], data) {
		return out, nil
	}
	for i := start; i < len(out); i++ {
		if err := d.scalar(&out[i]); err != nil {
			clear(out[start:])
			return dst[:start], err
		}
	}
	if d.pos != len(d.data) {
		clear(out[start:])
		return dst[:start], d.fail(d.pos, "%d bytes of trailing garbage", d.left())
	}
	return out, nil
}

// scalars decodes a message of len(vals) integers and floats into vals,
// the common arguments, and reports whether it was one: for anything else
// the general decoder, which says what is wrong if anything is, takes
// over (and overwrites what this wrote).
func scalars(vals []Value, data []byte) bool {
	if len(data) != 4+9*len(vals) {
		return false
	}
	for i := range vals {
		p := data[4+9*i : 4+9*i+9]
		kind := valueInt
		switch p[0] {
		case wireInt:
		case wireFloat:
			kind = valueFloat
		default:
			return false
		}
		vals[i] = Value{kind: kind, num: binary.LittleEndian.Uint64(p[1:])}
	}
	return true
}

// scalar decodes the next value into *v: the common tags here, with no
// allocation but a string's copy; tables through value.
func (d *msgDecoder) scalar(v *Value) error {
	if d.pos >= len(d.data) {
		return d.need(1)
	}
	switch tag := d.data[d.pos]; tag {
	case wireNil:
		d.pos++
		*v = Value{}
		return nil
	case wireFalse, wireTrue:
		d.pos++
		*v = BoolValue(tag == wireTrue)
		return nil
	case wireInt, wireFloat:
		if len(d.data)-d.pos < 9 {
			d.pos++
			return d.need(8)
		}
		*v = Value{kind: valueInt, num: binary.LittleEndian.Uint64(d.data[d.pos+1:])}
		if tag == wireFloat {
			v.kind = valueFloat
		}
		d.pos += 9
		return nil
	case wireString:
		at := d.pos
		d.pos++
		n, err := d.count()
		if err != nil {
			return err
		}
		if n > d.left() {
			return d.fail(at, "string length %d exceeds the %d bytes left", n, d.left())
		}
		*v = Value{kind: valueString, str: string(d.data[d.pos : d.pos+n])}
		d.pos += n
		return nil
	}
	x, err := d.value(0)
	if err != nil {
		return err
	}
	*v = Value{kind: valueAny, ref: x}
	return nil
}

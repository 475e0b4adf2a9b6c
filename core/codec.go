package core

// The Go half of the value codec. codec.c holds the C half and the
// description of the wire format; the two must stay in step.
//
// Values that cross: nil, booleans, integers (int64), floats (float64),
// strings (any bytes), arrays ([]any) and string-keyed maps
// (map[string]any), nested to any depth up to the limits below.
//
// Lua cannot tell an empty array from an empty map, and encodes every
// empty table as an empty map; a Go empty slice therefore comes back from
// Lua as an empty map[string]any. DecodeInto accepts an empty map where a
// slice is wanted. Lua tables cannot hold nil either: a nil map value
// disappears on the Lua side, and a nil inside an array leaves a hole that
// Lua cannot send back unless only nils follow it.

import (
	"encoding/binary"
	"fmt"
	"math"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unsafe"
)

// Wire tags, as in codec.h.
const (
	wireNil byte = iota
	wireFalse
	wireTrue
	wireInt
	wireFloat
	wireString
	wireArray
	wireMap
	wireIntMap // Go → Lua only: a map with integer keys (lua's arg, say)
)

const (
	wireMaxEncodeDepth = 100 // containers (and, separately, pointers) on one path
	wireMaxDecodeDepth = 200 // decoders accept more than encoders produce
)

var (
	typeOfAnySlice = reflect.TypeFor[[]any]()
	typeOfAnyMap   = reflect.TypeFor[map[string]any]()
	typeOfFields   = reflect.TypeFor[Fields]()
	typeOfField    = reflect.TypeFor[Field]()
	typeOfTime     = reflect.TypeFor[time.Time]()
	typeOfError    = reflect.TypeFor[error]()
)

// ---------------------------------------------------------------------------
// Encoding

// AppendMessage appends the encoding of vals as one message to dst.
//
// It accepts nil, bool, every integer kind (a uint above MaxInt64 is an
// error), float32/float64, string, []byte (as a string), slices and arrays
// (as arrays), maps with string-kinded keys and structs (as maps, using
// `lua:"name,omitempty"` field tags like DecodeInto), pointers and
// interfaces (followed; nil encodes as nil). Named types go by their kind.
// Nil slices and maps encode as empty ones. Map entries are not sorted.
// A time.Time encodes as its RFC 3339 string with nanoseconds
// (time.RFC3339Nano); any other struct with fields but none exported (an
// error value such as errors.New's, a sync.Mutex, a big.Int) is an error
// naming its type and path, never an empty table.
// On error dst is returned with its original length.
func AppendMessage(dst []byte, vals ...any) ([]byte, error) {
	if uint64(len(vals)) > math.MaxUint32 {
		return dst, fmt.Errorf("cannot send %d values to Lua in one message", len(vals))
	}
	buf := binary.LittleEndian.AppendUint32(dst, uint32(len(vals)))
	// Scalars, what most calls return, straight in; the first value of
	// any other kind goes to the encoder with the rest.
	for i, v := range vals {
		switch x := v.(type) {
		case int64:
			buf = binary.LittleEndian.AppendUint64(append(buf, wireInt), uint64(x))
		case int:
			buf = binary.LittleEndian.AppendUint64(append(buf, wireInt), uint64(x))
		case float64:
			buf = binary.LittleEndian.AppendUint64(append(buf, wireFloat), math.Float64bits(x))
		case bool:
			if x {
				buf = append(buf, wireTrue)
			} else {
				buf = append(buf, wireFalse)
			}
		case nil:
			buf = append(buf, wireNil)
		default:
			return appendRest(dst, buf, vals, i)
		}
	}
	return buf, nil
}

// appendRest encodes vals[i:] after the first i, already in buf.
func appendRest(dst, buf []byte, vals []any, i int) ([]byte, error) {
	e := msgEncoder{buf: buf}
	for ; i < len(vals); i++ {
		if err := e.value(vals[i]); err != nil {
			return dst, err.finish(i + 1)
		}
	}
	return e.buf, nil
}

type msgEncoder struct {
	buf   []byte
	depth int // open containers on the current path
	ptrs  int // pointers followed on the current path
}

func (e *msgEncoder) value(v any) *encodeError {
	switch x := v.(type) {
	case nil:
		e.buf = append(e.buf, wireNil)
	case string:
		return e.str(x)
	case int:
		e.int(int64(x))
	case int64:
		e.int(x)
	case float64:
		e.float(x)
	case bool:
		e.bool(x)
	case []any:
		return e.anySlice(x)
	case map[string]any:
		return e.anyMap(x)
	case Fields:
		return e.fields(x)
	case *Fields: // a stream's chunk: no allocation to box a slice per emit
		if x == nil {
			e.buf = append(e.buf, wireNil)
			return nil
		}
		return e.fields(*x)
	case *string: // a reused field: no allocation to box a string per emit
		if x == nil {
			e.buf = append(e.buf, wireNil)
			return nil
		}
		return e.str(*x)
	default:
		return e.reflect(reflect.ValueOf(v))
	}
	return nil
}

func (e *msgEncoder) bool(b bool) {
	if b {
		e.buf = append(e.buf, wireTrue)
	} else {
		e.buf = append(e.buf, wireFalse)
	}
}

func (e *msgEncoder) int(i int64) {
	e.buf = binary.LittleEndian.AppendUint64(append(e.buf, wireInt), uint64(i))
}

func (e *msgEncoder) float(f float64) {
	e.buf = binary.LittleEndian.AppendUint64(append(e.buf, wireFloat), math.Float64bits(f))
}

// head appends a tag and a u32 count or length.
func (e *msgEncoder) head(tag byte, n int) {
	e.buf = binary.LittleEndian.AppendUint32(append(e.buf, tag), uint32(n))
}

func (e *msgEncoder) str(s string) *encodeError {
	if uint64(len(s)) > math.MaxUint32 {
		return &encodeError{msg: fmt.Sprintf("string too long (%d bytes)", len(s))}
	}
	e.head(wireString, len(s))
	e.buf = append(e.buf, s...)
	return nil
}

func (e *msgEncoder) key(k string) *encodeError {
	if uint64(len(k)) > math.MaxUint32 {
		return &encodeError{msg: fmt.Sprintf("map key too long (%d bytes)", len(k))}
	}
	e.buf = append(binary.LittleEndian.AppendUint32(e.buf, uint32(len(k))), k...)
	return nil
}

// count checks the size of a container about to be opened.
func (e *msgEncoder) count(n int) *encodeError {
	if uint64(n) > math.MaxUint32 {
		return &encodeError{msg: fmt.Sprintf("too many elements (%d)", n)}
	}
	return nil
}

func (e *msgEncoder) anySlice(s []any) *encodeError {
	if e.depth >= wireMaxEncodeDepth {
		return tooDeepError(refIdent{typeOfAnySlice, unsafe.Pointer(unsafe.SliceData(s)), len(s)})
	}
	if err := e.count(len(s)); err != nil {
		return err
	}
	e.depth++
	e.head(wireArray, len(s))
	for i, x := range s {
		if err := e.value(x); err != nil {
			return err.at(pathStep{index: i, id: refIdent{typeOfAnySlice, unsafe.Pointer(unsafe.SliceData(s)), len(s)}})
		}
	}
	e.depth--
	return nil
}

func (e *msgEncoder) anyMap(m map[string]any) *encodeError {
	if e.depth >= wireMaxEncodeDepth {
		return tooDeepError(refOfMap(m))
	}
	if err := e.count(len(m)); err != nil {
		return err
	}
	e.depth++
	e.head(wireMap, len(m))
	for k, x := range m {
		if err := e.key(k); err != nil {
			return err
		}
		if err := e.value(x); err != nil {
			return err.at(pathStep{key: k, isKey: true, id: refOfMap(m)})
		}
	}
	e.depth--
	return nil
}

// Fields is a table with string keys that encodes in its order, without a
// map's hashing and shuffled iteration: for a value of fixed shape sent
// often, such as a stream's chunks (the caller may reuse it once emit or
// the function has returned). A field whose Value is nil is left out, as
// in a Lua table; a key given twice keeps its last value. A *Fields, and a
// Fields reached by reflection (a struct field, a typed slice or map),
// encode the same way.
type Fields []Field

// Field is one key and value of Fields.
type Field struct {
	Key   string
	Value any
}

func (e *msgEncoder) fields(fs Fields) *encodeError {
	id := refIdent{typeOfFields, unsafe.Pointer(unsafe.SliceData(fs)), len(fs)}
	if e.depth >= wireMaxEncodeDepth {
		return tooDeepError(id)
	}
	n := 0
	for i := range fs {
		if fs[i].Value != nil {
			n++
		}
	}
	if err := e.count(n); err != nil {
		return err
	}
	e.depth++
	e.head(wireMap, n)
	for i := range fs {
		f := &fs[i]
		if f.Value == nil {
			continue
		}
		if err := e.key(f.Key); err != nil {
			return err
		}
		if err := e.value(f.Value); err != nil {
			return err.at(pathStep{key: f.Key, isKey: true, id: id})
		}
	}
	e.depth--
	return nil
}

func refOfMap(m map[string]any) refIdent {
	return refIdent{typeOfAnyMap, reflect.ValueOf(m).UnsafePointer(), 0}
}

// reflect encodes what the type switch in value does not cover.
func (e *msgEncoder) reflect(v reflect.Value) *encodeError {
	switch v.Kind() {
	case reflect.Invalid:
		e.buf = append(e.buf, wireNil)
	case reflect.Bool:
		e.bool(v.Bool())
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		e.int(v.Int())
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		u := v.Uint()
		if u > math.MaxInt64 {
			return &encodeError{msg: fmt.Sprintf("%s value %d overflows int64", v.Type(), u)}
		}
		e.int(int64(u))
	case reflect.Float32, reflect.Float64:
		e.float(v.Float())
	case reflect.String:
		return e.str(v.String())
	case reflect.Interface:
		if v.IsNil() {
			e.buf = append(e.buf, wireNil)
			return nil
		}
		return e.reflect(v.Elem())
	case reflect.Pointer:
		return e.pointer(v)
	case reflect.Slice:
		if v.Type().Elem() == typeOfField { // Fields, held in a struct, a typed slice or map
			return e.fields(unsafe.Slice((*Field)(v.UnsafePointer()), v.Len()))
		}
		if v.Type().Elem().Kind() == reflect.Uint8 {
			b := v.Bytes()
			return e.str(unsafe.String(unsafe.SliceData(b), len(b)))
		}
		return e.list(v)
	case reflect.Array:
		return e.list(v)
	case reflect.Map:
		return e.mapValue(v)
	case reflect.Struct:
		return e.structValue(v)
	default: // chan, func, complex, unsafe.Pointer
		return &encodeError{msg: "cannot send a " + v.Kind().String() + " to Lua"}
	}
	return nil
}

func (e *msgEncoder) pointer(v reflect.Value) *encodeError {
	if v.IsNil() {
		e.buf = append(e.buf, wireNil)
		return nil
	}
	// Pointers do not nest on the wire, but a pointer cycle
	// (p = &p through an interface) would recurse forever.
	if e.ptrs >= wireMaxEncodeDepth {
		return tooDeepError(refIdent{v.Type(), v.UnsafePointer(), 0})
	}
	e.ptrs++
	if err := e.reflect(v.Elem()); err != nil {
		return err.at(pathStep{deref: true, id: refIdent{v.Type(), v.UnsafePointer(), 0}})
	}
	e.ptrs--
	return nil
}

// refOfSlice names a slice for cycle detection; arrays held by value
// cannot be part of a cycle and get none.
func refOfSlice(v reflect.Value) refIdent {
	if v.Kind() != reflect.Slice {
		return refIdent{}
	}
	return refIdent{v.Type(), v.UnsafePointer(), v.Len()}
}

func (e *msgEncoder) list(v reflect.Value) *encodeError {
	n := v.Len()
	if e.depth >= wireMaxEncodeDepth {
		return tooDeepError(refOfSlice(v))
	}
	if err := e.count(n); err != nil {
		return err
	}
	e.depth++
	e.head(wireArray, n)
	for i := 0; i < n; i++ {
		if err := e.reflect(v.Index(i)); err != nil {
			return err.at(pathStep{index: i, id: refOfSlice(v)})
		}
	}
	e.depth--
	return nil
}

func (e *msgEncoder) mapValue(v reflect.Value) *encodeError {
	t := v.Type()
	switch t.Key().Kind() {
	case reflect.String:
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return e.intMap(v)
	default:
		return &encodeError{msg: fmt.Sprintf("map key type %s cannot cross to Lua (keys must be strings or signed integers)", t.Key())}
	}
	if t == typeOfAnyMap && v.CanInterface() {
		return e.anyMap(v.Interface().(map[string]any))
	}
	id := refIdent{t, v.UnsafePointer(), 0}
	if e.depth >= wireMaxEncodeDepth {
		return tooDeepError(id)
	}
	if err := e.count(v.Len()); err != nil {
		return err
	}
	e.depth++
	e.head(wireMap, v.Len())
	for it := v.MapRange(); it.Next(); {
		k := it.Key().String()
		if err := e.key(k); err != nil {
			return err
		}
		if err := e.reflect(it.Value()); err != nil {
			return err.at(pathStep{key: k, isKey: true, id: id})
		}
	}
	e.depth--
	return nil
}

// intMap encodes a map with signed integer keys: a Lua table with those
// keys (a table Lua code builds with t[0] = ..., as lua's arg is).
func (e *msgEncoder) intMap(v reflect.Value) *encodeError {
	id := refIdent{v.Type(), v.UnsafePointer(), 0}
	if e.depth >= wireMaxEncodeDepth {
		return tooDeepError(id)
	}
	if err := e.count(v.Len()); err != nil {
		return err
	}
	e.depth++
	e.head(wireIntMap, v.Len())
	for it := v.MapRange(); it.Next(); {
		k := it.Key().Int()
		e.buf = binary.LittleEndian.AppendUint64(e.buf, uint64(k))
		if err := e.reflect(it.Value()); err != nil {
			return err.at(pathStep{key: strconv.FormatInt(k, 10), isKey: true, id: id})
		}
	}
	e.depth--
	return nil
}

func (e *msgEncoder) structValue(v reflect.Value) *encodeError {
	if v.Type() == typeOfTime && v.CanInterface() {
		return e.str(v.Interface().(time.Time).Format(time.RFC3339Nano))
	}
	si := luaStructOf(v.Type())
	if len(si.fields) == 0 && v.NumField() > 0 {
		return opaqueStructError(v.Type())
	}
	if e.depth >= wireMaxEncodeDepth {
		return tooDeepError(refIdent{})
	}
	e.depth++
	at := len(e.buf)
	e.head(wireMap, 0) // count patched below: omitempty decides it
	n := 0
	for i := range si.fields {
		f := &si.fields[i]
		fv := v.FieldByIndex(f.index)
		if f.omitEmpty && isEmptyLuaValue(fv) {
			continue
		}
		if err := e.key(f.name); err != nil {
			return err
		}
		if err := e.reflect(fv); err != nil {
			return err.at(pathStep{key: f.name, isKey: true})
		}
		n++
	}
	binary.LittleEndian.PutUint32(e.buf[at+1:], uint32(n))
	e.depth--
	return nil
}

// opaqueStructError is the error for a struct Lua would see as an empty
// table: it has fields, but none that crosses. Errors get their own advice.
func opaqueStructError(t reflect.Type) *encodeError {
	switch {
	case t.Implements(typeOfError):
		return &encodeError{msg: fmt.Sprintf("cannot send an error value (%s) to Lua: return it as the function's error, or send its Error() text", t)}
	case reflect.PointerTo(t).Implements(typeOfError):
		return &encodeError{msg: fmt.Sprintf("cannot send an error value (*%s) to Lua: return it as the function's error, or send its Error() text", t)}
	}
	return &encodeError{msg: fmt.Sprintf("cannot send a %s to Lua: it has no exported fields (convert it, or use a struct with exported fields and lua tags)", t)}
}

// isEmptyLuaValue is encoding/json's notion of empty, for omitempty.
func isEmptyLuaValue(v reflect.Value) bool {
	switch v.Kind() {
	case reflect.Array, reflect.Map, reflect.Slice, reflect.String:
		return v.Len() == 0
	case reflect.Bool, reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr,
		reflect.Float32, reflect.Float64, reflect.Interface, reflect.Pointer:
		return v.IsZero()
	}
	return false
}

// refIdent identifies a container reached by reference, to tell a cycle
// from mere depth. The zero ident matches nothing.
type refIdent struct {
	typ reflect.Type
	ptr unsafe.Pointer
	n   int
}

// pathStep is one level of the path from a value # to where an error arose.
type pathStep struct {
	key   string
	index int
	isKey bool // key, else index, unless deref
	deref bool // a pointer followed: no path text
	end   bool // the container that was one level too deep
	id    refIdent
}

// encodeError collects its path while it unwinds, so that the success
// path pays nothing for error reporting.
type encodeError struct {
	steps   []pathStep // innermost first until finish
	msg     string
	tooDeep bool
	arg     int
	path    string
	cyclic  bool
}

func tooDeepError(id refIdent) *encodeError {
	return &encodeError{
		msg:     fmt.Sprintf("nested too deeply (more than %d levels)", wireMaxEncodeDepth),
		tooDeep: true,
		steps:   []pathStep{{end: true, id: id}},
	}
}

func (e *encodeError) at(s pathStep) *encodeError {
	e.steps = append(e.steps, s)
	return e
}

// finish fixes the argument number and works out the path. Every cycle
// ends in a too-deep error, so cycles are looked for only then: the first
// container that repeats an enclosing one closes the cycle.
func (e *encodeError) finish(arg int) error {
	e.arg = arg
	s := e.steps
	for i, j := 0, len(s)-1; i < j; i, j = i+1, j-1 {
		s[i], s[j] = s[j], s[i]
	}
	if e.tooDeep {
	search:
		for j := 1; j < len(s); j++ {
			if s[j].id.ptr == nil {
				continue
			}
			for i := 0; i < j; i++ {
				if s[i].id == s[j].id {
					e.cyclic = true
					s = s[:j]
					break search
				}
			}
		}
	}
	if !e.tooDeep || e.cyclic { // a path 100 levels long says nothing
		e.path = formatValuePath(s)
	}
	e.steps = nil
	return e
}

func (e *encodeError) Error() string {
	switch {
	case e.cyclic && e.path == "":
		return fmt.Sprintf("value #%d: value is cyclic (a pointer refers back to itself)", e.arg)
	case e.cyclic:
		return fmt.Sprintf("value #%d: value is cyclic (field \"%s\" refers back to an enclosing value)", e.arg, e.path)
	case e.path == "":
		return fmt.Sprintf("value #%d: %s", e.arg, e.msg)
	}
	return fmt.Sprintf("value #%d (field \"%s\"): %s", e.arg, e.path, e.msg)
}

// formatValuePath writes steps (outermost first) as a.b[2]["odd key"].
func formatValuePath(steps []pathStep) string {
	var b strings.Builder
	for _, s := range steps {
		switch {
		case s.deref || s.end:
		case !s.isKey:
			b.WriteByte('[')
			b.WriteString(strconv.Itoa(s.index))
			b.WriteByte(']')
		case isLuaName(s.key):
			if b.Len() > 0 {
				b.WriteByte('.')
			}
			b.WriteString(s.key)
		default:
			k := s.key
			if len(k) > 32 {
				k = k[:32] + "..."
			}
			b.WriteByte('[')
			b.WriteString(strconv.QuoteToASCII(k))
			b.WriteByte(']')
		}
	}
	return b.String()
}

func isLuaName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '_' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || i > 0 && '0' <= c && c <= '9' {
			continue
		}
		return false
	}
	return true
}

// ---------------------------------------------------------------------------
// Decoding

// DecodeMessage decodes one message. Arrays become []any, maps
// map[string]any, ints int64, floats float64, strings string. It rejects
// anything malformed: short data, counts the remaining bytes cannot hold,
// unknown tags, nesting deeper than 200 levels and trailing bytes.
func DecodeMessage(data []byte) ([]any, error) {
	return AppendDecoded(nil, data)
}

// AppendDecoded decodes one message like DecodeMessage, appending its
// values to dst (so a caller can reuse one slice across messages).
func AppendDecoded(dst []any, data []byte) ([]any, error) {
	d := msgDecoder{data: data}
	n, err := d.count()
	if err != nil {
		return nil, err
	}
	if n > d.left() {
		return nil, d.fail(0, "value count %d exceeds the %d bytes left", n, d.left())
	}
	out := slices.Grow(dst, n)[:len(dst)+n]
	vals := out[len(dst):]
	for i := range vals {
		if vals[i], err = d.value(0); err != nil {
			return nil, err
		}
	}
	if d.pos != len(d.data) {
		return nil, d.fail(d.pos, "%d bytes of trailing garbage", d.left())
	}
	return out, nil
}

type msgDecoder struct {
	data []byte
	pos  int
}

func (d *msgDecoder) left() int { return len(d.data) - d.pos }

// fail reports a malformed message; codec.c words its errors the same.
func (d *msgDecoder) fail(at int, format string, args ...any) error {
	return fmt.Errorf("malformed message at offset %d: "+format, append([]any{at}, args...)...)
}

func (d *msgDecoder) need(n int) error {
	if d.left() < n {
		return d.fail(d.pos, "truncated (need %d bytes, have %d)", n, d.left())
	}
	return nil
}

// count reads a u32 count or length; callers never trust it beyond the
// bytes left.
func (d *msgDecoder) count() (int, error) {
	if err := d.need(4); err != nil {
		return 0, err
	}
	n := binary.LittleEndian.Uint32(d.data[d.pos:])
	d.pos += 4
	return int(n), nil
}

func (d *msgDecoder) value(depth int) (any, error) {
	at := d.pos
	if err := d.need(1); err != nil {
		return nil, err
	}
	tag := d.data[d.pos]
	d.pos++
	switch tag {
	case wireNil:
		return nil, nil
	case wireFalse:
		return false, nil
	case wireTrue:
		return true, nil
	case wireInt, wireFloat:
		if err := d.need(8); err != nil {
			return nil, err
		}
		u := binary.LittleEndian.Uint64(d.data[d.pos:])
		d.pos += 8
		if tag == wireInt {
			return int64(u), nil
		}
		return math.Float64frombits(u), nil
	case wireString:
		n, err := d.count()
		if err != nil {
			return nil, err
		}
		if n > d.left() {
			return nil, d.fail(at, "string length %d exceeds the %d bytes left", n, d.left())
		}
		s := string(d.data[d.pos : d.pos+n])
		d.pos += n
		return s, nil
	case wireArray:
		return d.array(depth, at)
	case wireMap:
		return d.object(depth, at)
	case wireIntMap:
		return d.intObject(depth, at)
	}
	return nil, d.fail(at, "unknown tag 0x%02x", tag)
}

// open reads the count of the container at at, nested depth deep, and
// checks it against the depth bound and the bytes left, where each of its
// entries takes at least per bytes.
func (d *msgDecoder) open(depth, at, per int, what string) (int, error) {
	n, err := d.count()
	if err != nil {
		return 0, err
	}
	if depth >= wireMaxDecodeDepth {
		return 0, d.fail(at, "nested too deeply (more than %d levels)", wireMaxDecodeDepth)
	}
	if per == 1 && n > d.left() {
		return 0, d.fail(at, "%s count %d exceeds the %d bytes left", what, n, d.left())
	}
	if n > d.left()/per {
		return 0, d.fail(at, "%s count %d exceeds what the %d bytes left can hold", what, n, d.left())
	}
	return n, nil
}

func (d *msgDecoder) array(depth, at int) (any, error) {
	n, err := d.open(depth, at, 1, "array") // each value takes at least one byte
	if err != nil {
		return nil, err
	}
	a := make([]any, n)
	for i := range a {
		if a[i], err = d.value(depth + 1); err != nil {
			return nil, err
		}
	}
	return a, nil
}

// intObject decodes a map with integer keys (only Go encodes one).
func (d *msgDecoder) intObject(depth, at int) (any, error) {
	n, err := d.open(depth, at, 9, "map") // a key of 8 bytes and a value
	if err != nil {
		return nil, err
	}
	m := make(map[int64]any, n)
	for range n {
		if err := d.need(8); err != nil { // the key, as the C decoder says it
			return nil, err
		}
		k := int64(binary.LittleEndian.Uint64(d.data[d.pos:]))
		d.pos += 8
		v, err := d.value(depth + 1)
		if err != nil {
			return nil, err
		}
		if v != nil {
			m[k] = v
		}
	}
	return m, nil
}

func (d *msgDecoder) object(depth, at int) (any, error) {
	n, err := d.open(depth, at, 5, "map") // a key's length (4 bytes) and a value
	if err != nil {
		return nil, err
	}
	m := make(map[string]any, n)
	for range n {
		kat := d.pos
		kl, err := d.count()
		if err != nil {
			return nil, err
		}
		if kl > d.left() {
			return nil, d.fail(kat, "key length %d exceeds the %d bytes left", kl, d.left())
		}
		k := string(d.data[d.pos : d.pos+kl])
		d.pos += kl
		v, err := d.value(depth + 1)
		if err != nil {
			return nil, err
		}
		m[k] = v
	}
	return m, nil
}

// ---------------------------------------------------------------------------
// DecodeInto

// DecodeInto converts a decoded value (as DecodeMessage returns them) into
// *out. Structs come from maps by `lua:"name"` field tags (exported fields
// only; `lua:"-"` skips a field; untagged fields match their Go name, and
// failing an exact match a case-insensitive one; embedded structs, not
// pointers to them, without a tag are flattened, as AppendMessage does);
// unknown keys are ignored and missing fields keep their value. Integers,
// unsigned integers and floats are range-checked, and a float fills an integer only when integral (3.0 fits an int, 3.5
// does not). []T comes from an array (or an empty map, which is what Lua
// sends for {}), [N]T from an array of exactly N elements, map[string]T
// from a map, []byte from a string, pointers are allocated as needed and
// any takes the value as it is, a time.Time comes from an RFC 3339 string.
// nil sets the zero value. Errors name the path: `field
// "opts.max_tokens": cannot use string as int`.
func DecodeInto(v any, out any) error {
	rv := reflect.ValueOf(out)
	if rv.Kind() != reflect.Pointer || rv.IsNil() {
		return fmt.Errorf("DecodeInto: out must be a non-nil pointer, not %T", out)
	}
	if err := decodeInto(v, rv.Elem()); err != nil {
		return err.finishInto()
	}
	return nil
}

// intoError is a DecodeInto error; like encodeError it collects its path
// while unwinding.
type intoError struct {
	steps []pathStep
	msg   string
	path  string
}

func (e *intoError) at(s pathStep) *intoError {
	e.steps = append(e.steps, s)
	return e
}

func (e *intoError) finishInto() error {
	s := e.steps
	for i, j := 0, len(s)-1; i < j; i, j = i+1, j-1 {
		s[i], s[j] = s[j], s[i]
	}
	e.path = formatValuePath(s)
	e.steps = nil
	return e
}

func (e *intoError) Error() string {
	if e.path == "" {
		return e.msg
	}
	return fmt.Sprintf("field \"%s\": %s", e.path, e.msg)
}

func intoErrorf(format string, args ...any) *intoError {
	return &intoError{msg: fmt.Sprintf(format, args...)}
}

// KindName names a decoded value (as DecodeMessage returns them) the one
// way moonbridge's errors do, in Lua's words (a script's author reads
// them): nil, boolean, integer, float (math.type's names), string, table;
// a value of any other Go type by its type.
func KindName(v any) string {
	switch x := v.(type) {
	case nil:
		return "nil"
	case bool:
		return "boolean"
	case int64:
		return "integer"
	case float64:
		return "float"
	case string:
		return "string"
	case []any, map[string]any:
		return "table"
	default:
		return fmt.Sprintf("%T", x)
	}
}

// IsIntegral reports whether f has an exact integer value (NaN and the
// infinities do not): the one test for a float used where an integer is
// wanted, as 3.0 can be and 3.5 cannot.
func IsIntegral(f float64) bool { return f == math.Trunc(f) }

// NotIntegerError is the error for a float used where an integer is
// wanted that IsIntegral refuses.
func NotIntegerError(f float64) error {
	return fmt.Errorf("float %s is not an integer", codecFloatString(f))
}

// intoMismatch is the error for a value that does not fit dst, unless the
// value is of a Go type that can simply be assigned.
func intoMismatch(src any, dst reflect.Value) *intoError {
	if sv := reflect.ValueOf(src); sv.IsValid() && sv.Type().AssignableTo(dst.Type()) {
		dst.Set(sv)
		return nil
	}
	return intoErrorf("cannot use %s as %s", KindName(src), dst.Type())
}

func codecFloatString(f float64) string { return strconv.FormatFloat(f, 'g', -1, 64) }

func decodeInto(src any, dst reflect.Value) *intoError {
	if src == nil {
		dst.SetZero()
		return nil
	}
	switch dst.Kind() {
	case reflect.Interface:
		sv := reflect.ValueOf(src)
		if !sv.Type().Implements(dst.Type()) {
			return intoErrorf("cannot use %s as %s", KindName(src), dst.Type())
		}
		dst.Set(sv)
	case reflect.Pointer:
		if dst.IsNil() {
			dst.Set(reflect.New(dst.Type().Elem()))
		}
		return decodeInto(src, dst.Elem())
	case reflect.Bool:
		b, ok := src.(bool)
		if !ok {
			return intoMismatch(src, dst)
		}
		dst.SetBool(b)
	case reflect.String:
		s, ok := src.(string)
		if !ok {
			return intoMismatch(src, dst)
		}
		dst.SetString(s)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return intInto(src, dst)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		return uintInto(src, dst)
	case reflect.Float32, reflect.Float64:
		return floatInto(src, dst)
	case reflect.Slice:
		return sliceInto(src, dst)
	case reflect.Array:
		a, ok := src.([]any)
		if !ok {
			return intoMismatch(src, dst)
		}
		if len(a) != dst.Len() {
			return intoErrorf("array of %d elements does not fit %s", len(a), dst.Type())
		}
		for i, x := range a {
			if err := decodeInto(x, dst.Index(i)); err != nil {
				return err.at(pathStep{index: i})
			}
		}
	case reflect.Map:
		return mapInto(src, dst)
	case reflect.Struct:
		return structInto(src, dst)
	default:
		return intoErrorf("cannot decode into %s", dst.Type())
	}
	return nil
}

// intoOverflow reports a number out of the range of dst.
func intoOverflow(src any, dst reflect.Value) *intoError {
	if f, ok := src.(float64); ok {
		return intoErrorf("float %s overflows %s", codecFloatString(f), dst.Type())
	}
	return intoErrorf("integer %v overflows %s", src, dst.Type())
}

// floatFits checks a float for an integer dst: integral, and in [lo, hi)
// (int64's or uint64's range; dst's own is checked after conversion).
func floatFits(x float64, dst reflect.Value, lo, hi float64) *intoError {
	if !IsIntegral(x) {
		return intoErrorf("%v, cannot use it as %s", NotIntegerError(x), dst.Type())
	}
	if x < lo || x >= hi {
		return intoOverflow(x, dst)
	}
	return nil
}

func intInto(src any, dst reflect.Value) *intoError {
	var i int64
	switch x := src.(type) {
	case int64:
		i = x
	case float64:
		if err := floatFits(x, dst, -(1 << 63), 1<<63); err != nil {
			return err
		}
		i = int64(x)
	default:
		return intoMismatch(src, dst)
	}
	if dst.OverflowInt(i) {
		return intoOverflow(src, dst)
	}
	dst.SetInt(i)
	return nil
}

func uintInto(src any, dst reflect.Value) *intoError {
	var u uint64
	switch x := src.(type) {
	case int64:
		if x < 0 {
			return intoOverflow(src, dst)
		}
		u = uint64(x)
	case float64:
		if err := floatFits(x, dst, 0, 1<<64); err != nil {
			return err
		}
		u = uint64(x)
	default:
		return intoMismatch(src, dst)
	}
	if dst.OverflowUint(u) {
		return intoOverflow(src, dst)
	}
	dst.SetUint(u)
	return nil
}

func floatInto(src any, dst reflect.Value) *intoError {
	switch x := src.(type) {
	case float64:
		if dst.OverflowFloat(x) {
			return intoOverflow(src, dst)
		}
		dst.SetFloat(x)
	case int64:
		f := float64(x)
		exact := f != 1<<63 && int64(f) == x
		if dst.Kind() == reflect.Float32 {
			exact = exact && float64(float32(f)) == f
		}
		if !exact {
			return intoErrorf("integer %d cannot be represented exactly as %s", x, dst.Type())
		}
		dst.SetFloat(f)
	default:
		return intoMismatch(src, dst)
	}
	return nil
}

func sliceInto(src any, dst reflect.Value) *intoError {
	t := dst.Type()
	switch x := src.(type) {
	case []any:
		s := reflect.MakeSlice(t, len(x), len(x))
		for i, el := range x {
			if err := decodeInto(el, s.Index(i)); err != nil {
				return err.at(pathStep{index: i})
			}
		}
		dst.Set(s)
	case map[string]any:
		if len(x) != 0 {
			return intoMismatch(src, dst)
		}
		dst.Set(reflect.MakeSlice(t, 0, 0)) // Lua sends {} as an empty map
	case string:
		if t.Elem().Kind() != reflect.Uint8 {
			return intoMismatch(src, dst)
		}
		b := reflect.MakeSlice(t, len(x), len(x))
		reflect.Copy(b, reflect.ValueOf(x))
		dst.Set(b)
	default:
		return intoMismatch(src, dst)
	}
	return nil
}

func mapInto(src any, dst reflect.Value) *intoError {
	t := dst.Type()
	if t.Key().Kind() != reflect.String {
		return intoErrorf("cannot decode into %s: keys must be strings", t)
	}
	var m map[string]any
	switch x := src.(type) {
	case map[string]any:
		m = x
	case []any:
		if len(x) != 0 {
			return intoMismatch(src, dst)
		}
	default:
		return intoMismatch(src, dst)
	}
	if dst.IsNil() {
		dst.Set(reflect.MakeMapWithSize(t, len(m)))
	}
	ev := reflect.New(t.Elem()).Elem()
	for k, x := range m {
		ev.SetZero()
		if err := decodeInto(x, ev); err != nil {
			return err.at(pathStep{key: k, isKey: true})
		}
		dst.SetMapIndex(reflect.ValueOf(k).Convert(t.Key()), ev)
	}
	return nil
}

func structInto(src any, dst reflect.Value) *intoError {
	if dst.Type() == typeOfTime {
		return timeInto(src, dst)
	}
	var m map[string]any
	switch x := src.(type) {
	case map[string]any:
		m = x
	case []any:
		if len(x) != 0 {
			return intoMismatch(src, dst)
		}
		return nil
	default:
		return intoMismatch(src, dst)
	}
	si := luaStructOf(dst.Type())
	for k, x := range m {
		i, ok := si.byName[k]
		if !ok {
			if i, ok = si.byFold[strings.ToLower(k)]; !ok {
				continue
			}
			if _, exact := m[si.fields[i].name]; exact {
				continue // the exact key wins whatever the map order
			}
		}
		if err := decodeInto(x, dst.FieldByIndex(si.fields[i].index)); err != nil {
			return err.at(pathStep{key: k, isKey: true})
		}
	}
	return nil
}

// timeInto decodes what AppendMessage makes of a time.Time: an RFC 3339
// string (fractional seconds optional).
func timeInto(src any, dst reflect.Value) *intoError {
	s, ok := src.(string)
	if !ok {
		return intoMismatch(src, dst)
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		if len(s) > 64 {
			s = s[:64] + "..."
		}
		return intoErrorf("cannot use string %q as time.Time (want RFC 3339, such as 2006-01-02T15:04:05Z)", s)
	}
	dst.Set(reflect.ValueOf(t))
	return nil
}

// ---------------------------------------------------------------------------
// Struct fields, shared by AppendMessage and DecodeInto

type luaField struct {
	name      string
	index     []int
	omitEmpty bool
	depth     int  // embedding depth, for Go's shadowing rule
	tagged    bool // named by a tag, which wins a tie
}

type luaStruct struct {
	fields []luaField
	byName map[string]int
	byFold map[string]int // lower-cased names
}

var luaStructCache sync.Map // reflect.Type -> *structInfo

func luaStructOf(t reflect.Type) *luaStruct {
	if si, ok := luaStructCache.Load(t); ok {
		return si.(*luaStruct)
	}
	si, _ := luaStructCache.LoadOrStore(t, buildLuaStruct(t))
	return si.(*luaStruct)
}

func buildLuaStruct(t reflect.Type) *luaStruct {
	var all []luaField
	collectLuaFields(t, nil, 0, &all)
	// The shallowest field of a name wins; at equal depth a single tagged
	// one wins; otherwise the name is ambiguous and dropped (as in
	// encoding/json).
	byName := make(map[string][]int)
	for i, f := range all {
		byName[f.name] = append(byName[f.name], i)
	}
	si := &luaStruct{byName: make(map[string]int), byFold: make(map[string]int)}
	for i, f := range all {
		if !fieldDominates(all, i, byName[f.name]) {
			continue
		}
		si.byName[f.name] = len(si.fields)
		si.fields = append(si.fields, f)
	}
	for i, f := range si.fields {
		if _, dup := si.byFold[strings.ToLower(f.name)]; !dup {
			si.byFold[strings.ToLower(f.name)] = i
		}
	}
	return si
}

// dominates reports whether field i beats every other field of its name.
func fieldDominates(all []luaField, i int, cands []int) bool {
	for _, j := range cands {
		if j == i {
			continue
		}
		a, b := all[i], all[j]
		if b.depth < a.depth || b.depth == a.depth && (b.tagged || !a.tagged) {
			return false
		}
	}
	return true
}

func collectLuaFields(t reflect.Type, index []int, depth int, out *[]luaField) {
	for i := 0; i < t.NumField(); i++ {
		sf := t.Field(i)
		tag := sf.Tag.Get("lua")
		if tag == "-" {
			continue
		}
		name, opts, _ := strings.Cut(tag, ",")
		idx := append(append([]int(nil), index...), i)
		if sf.Anonymous && name == "" && sf.Type.Kind() == reflect.Struct {
			collectLuaFields(sf.Type, idx, depth+1, out)
			continue
		}
		if !sf.IsExported() {
			continue
		}
		f := luaField{name: name, index: idx, depth: depth, tagged: name != ""}
		if name == "" {
			f.name = sf.Name
		}
		for opts != "" {
			var o string
			o, opts, _ = strings.Cut(opts, ",")
			if o == "omitempty" {
				f.omitEmpty = true
			}
		}
		*out = append(*out, f)
	}
}

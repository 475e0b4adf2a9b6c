package core

import (
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"strings"
	"sync"
	"testing"
	"time"
)

// Values that Lua could only see as an empty table: a time.Time crosses as
// its RFC 3339 text, and every other struct with fields but none exported
// is an error that names its type and where it was.

func TestTimeCrossesAsRFC3339WithNanoseconds(t *testing.T) {
	when := time.Date(2024, 5, 17, 9, 30, 1, 250, time.FixedZone("CEST", 2*3600))
	type event struct {
		At   time.Time  `lua:"at"`
		Next *time.Time `lua:"next"`
	}
	enc, err := AppendMessage(nil, when, event{At: when, Next: &when}, map[string]any{"t": when.UTC()})
	if err != nil {
		t.Fatal(err)
	}
	vals, err := DecodeMessage(enc)
	if err != nil {
		t.Fatal(err)
	}
	const text = "2024-05-17T09:30:01.00000025+02:00"
	want := []any{text, map[string]any{"at": text, "next": text}, map[string]any{"t": "2024-05-17T07:30:01.00000025Z"}}
	for i := range want {
		if !codecEqualBits(vals[i], want[i]) {
			t.Errorf("value %d: got %#v, want %#v", i+1, vals[i], want[i])
		}
	}
	// And back: DecodeInto parses the text into a time.Time, the same instant.
	var back event
	if err := DecodeInto(vals[1], &back); err != nil {
		t.Fatal(err)
	}
	if !back.At.Equal(when) || back.Next == nil || !back.Next.Equal(when) {
		t.Errorf("decoded %v / %v, want %v", back.At, back.Next, when)
	}
	var noFrac time.Time
	if err := DecodeInto("2024-05-17T09:30:01Z", &noFrac); err != nil || noFrac.Second() != 1 {
		t.Errorf("RFC 3339 without fraction: %v, %v", noFrac, err)
	}
}

func TestTimeFromBadTextNamesTheFieldAndTheFormat(t *testing.T) {
	var ev struct {
		At time.Time `lua:"at"`
	}
	err := DecodeInto(map[string]any{"at": "yesterday"}, &ev)
	if err == nil || err.Error() != `field "at": cannot use string "yesterday" as time.Time (want RFC 3339, such as 2006-01-02T15:04:05Z)` {
		t.Errorf("got %v", err)
	}
	err = DecodeInto(map[string]any{"at": int64(5)}, &ev)
	if err == nil || err.Error() != `field "at": cannot use integer as time.Time` {
		t.Errorf("integer: %v", err)
	}
}

type opaqueErr struct{ code int }

func (e opaqueErr) Error() string { return fmt.Sprint("code ", e.code) }

func TestStructsWithNoExportedFieldsAreErrorsNotEmptyTables(t *testing.T) {
	var mu sync.Mutex
	cases := []struct {
		name string
		v    any
		want string
	}{
		{"errors.New", errors.New("boom"),
			"value #1: cannot send an error value (*errors.errorString) to Lua: return it as the function's error, or send its Error() text"},
		{"error type by value, in a map", map[string]any{"err": opaqueErr{3}},
			`value #1 (field "err"): cannot send an error value (core.opaqueErr) to Lua: return it as the function's error, or send its Error() text`},
		{"wrapped error in a list", []any{1, fmt.Errorf("x: %w", fs.ErrNotExist)},
			"value #1 (field \"[1]\"): cannot send an error value (*fmt.wrapError) to Lua: return it as the function's error, or send its Error() text"},
		{"mutex in a struct field", struct {
			Lock *sync.Mutex `lua:"lock"`
		}{&mu},
			`value #1 (field "lock"): cannot send a sync.Mutex to Lua: it has no exported fields (convert it, or use a struct with exported fields and lua tags)`},
		{"big.Int", big.NewInt(7),
			"value #1: cannot send a big.Int to Lua: it has no exported fields (convert it, or use a struct with exported fields and lua tags)"},
	}
	for _, c := range cases {
		_, err := AppendMessage(nil, c.v)
		if err == nil {
			t.Errorf("%s: encoded without error", c.name)
			continue
		}
		if got := err.Error(); got != c.want {
			t.Errorf("%s:\n got %s\nwant %s", c.name, got, c.want)
		}
	}
}

func TestStructsThatStillCross(t *testing.T) {
	// An empty struct is an empty table (nothing is lost); untagged
	// exported fields cross under their Go names, as documented.
	type plain struct {
		Name  string
		Count int
		note  string
	}
	enc, err := AppendMessage(nil, struct{}{}, plain{Name: "a", Count: 2, note: "hidden"})
	if err != nil {
		t.Fatal(err)
	}
	vals, err := DecodeMessage(enc)
	if err != nil {
		t.Fatal(err)
	}
	if !codecEqualBits(vals[0], map[string]any{}) {
		t.Errorf("struct{}{}: %#v", vals[0])
	}
	if !codecEqualBits(vals[1], map[string]any{"Name": "a", "Count": int64(2)}) {
		t.Errorf("plain: %#v", vals[1])
	}
	if strings.Contains(fmt.Sprint(vals[1]), "hidden") {
		t.Error("an unexported field crossed")
	}
}

package llm

import (
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"
	"testing/iotest"
	"time"
)

// sseEvents reads every event of r, and the error that ended the stream.
func sseEvents(r io.Reader) ([]string, error) {
	sr := newSSEReader(r)
	var evs []string
	for {
		d, err := sr.next()
		if err != nil {
			return evs, err
		}
		evs = append(evs, d)
	}
}

func TestSSEReader(t *testing.T) {
	tests := []struct {
		name, in string
		want     []string
	}{
		{"one", "data: a\n\n", []string{"a"}},
		{"two", "data: a\n\ndata: b\n\n", []string{"a", "b"}},
		{"crlf", "data: a\r\n\r\ndata: b\r\n\r\n", []string{"a", "b"}},
		{"cr", "data: a\r\rdata: b\r\r", []string{"a", "b"}},
		{"mixed ends", "data: a\r\n\rdata: b\n\r\n", []string{"a", "b"}},
		{"multi-line", "data: a\ndata: b\r\ndata:c\n\n", []string{"a\nb\nc"}},
		{"no space", "data:a\n\n", []string{"a"}},
		{"one space only", "data:  a \n\n", []string{" a "}},
		{"colon in value", "data: {\"a\":1}\n\n", []string{`{"a":1}`}},
		{"comments", ": ping\n:\ndata: a\n: mid\ndata: b\n\n: ping\n\n", []string{"a\nb"}},
		{"extra blank lines", "\n\n\r\n\rdata: a\n\n\n\n", []string{"a"}},
		{"other fields", "event: message\nid: 7\nretry: 100\ndata: a\n\n", []string{"a"}},
		{"event without data", "event: x\nid: 1\n\ndata: a\n\n", []string{"a"}},
		{"unknown field", "dat: x\ndata2: y\nDATA: z\ndata: a\n\n", []string{"a"}},
		{"empty data", "data:\n\n", []string{""}},
		{"bare data", "data\n\n", []string{""}},
		{"empty data lines", "data\ndata\n\n", []string{"\n"}},
		{"bom", "\xEF\xBB\xBFdata: a\n\n", []string{"a"}},
		{"bom only at start", "data: a\n\n\xEF\xBB\xBFdata: b\n\n", []string{"a"}},
		{"utf8", "data: héllo 世界\n\n", []string{"héllo 世界"}},
		{"unfinished event dropped", "data: a\n\ndata: b\n", []string{"a"}},
		{"unfinished line dropped", "data: a\n\ndata: b", []string{"a"}},
		{"empty", "", nil},
		{"done", "data: [DONE]\n\n", []string{"[DONE]"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			readers := map[string]io.Reader{
				"whole":    strings.NewReader(tt.in),
				"bytewise": iotest.OneByteReader(strings.NewReader(tt.in)),
				"halves":   iotest.HalfReader(strings.NewReader(tt.in)),
			}
			for how, r := range readers {
				got, err := sseEvents(r)
				if err != io.EOF {
					t.Errorf("%s: err = %v, want io.EOF", how, err)
				}
				if !reflect.DeepEqual(got, tt.want) {
					t.Errorf("%s: events = %q, want %q", how, got, tt.want)
				}
			}
		})
	}
}

func TestSSEReaderReadError(t *testing.T) {
	boom := errors.New("boom")
	r := io.MultiReader(strings.NewReader("data: a\n\ndata: b\n"), iotest.ErrReader(boom))
	got, err := sseEvents(r)
	if !errors.Is(err, boom) || !reflect.DeepEqual(got, []string{"a"}) {
		t.Errorf("events %q, err %v; want [a], boom", got, err)
	}
}

func TestSSEReaderTooLarge(t *testing.T) {
	line := "data: " + strings.Repeat("x", maxEvent+1) + "\n\n"
	if _, err := sseEvents(strings.NewReader(line)); !errors.Is(err, errTooLarge) {
		t.Errorf("long line: err = %v", err)
	}
	many := strings.Repeat("data: "+strings.Repeat("x", 1<<20)+"\n", 9) + "\n"
	if _, err := sseEvents(strings.NewReader(many)); !errors.Is(err, errTooLarge) {
		t.Errorf("long event: err = %v", err)
	}
}

// TestSSEReaderCRThenWait checks that a CR ending a blank line dispatches
// the event without waiting to see whether an LF follows.
func TestSSEReaderCRThenWait(t *testing.T) {
	pr, pw := io.Pipe()
	defer pw.Close()
	go io.WriteString(pw, "data: a\r\r") // and no more until the test ends
	type result struct {
		d   string
		err error
	}
	done := make(chan result, 1)
	go func() {
		d, err := newSSEReader(pr).next()
		done <- result{d, err}
	}()
	select {
	case r := <-done:
		if r.err != nil || r.d != "a" {
			t.Errorf("next = %q, %v", r.d, r.err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("next waited for a byte after the CR")
	}
}

// FuzzSSEReader checks that the parser does not panic and that how the
// input is split into reads does not change the events.
func FuzzSSEReader(f *testing.F) {
	for _, s := range []string{
		"data: a\n\n", "data: a\r\n\r\ndata:b\r\r", ": c\ndata\ndata: x\n\n",
		"\xEF\xBB\xBFdata: a\n\n", "data: a\r", "event: e\nid: 1\n\n",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		whole, err1 := sseEvents(strings.NewReader(in))
		bytewise, err2 := sseEvents(iotest.OneByteReader(strings.NewReader(in)))
		if err1 != io.EOF || err2 != io.EOF {
			t.Fatalf("errors %v, %v", err1, err2)
		}
		if !reflect.DeepEqual(whole, bytewise) {
			t.Fatalf("whole %q != bytewise %q", whole, bytewise)
		}
	})
}

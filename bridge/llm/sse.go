// LLM providers: a parser for server-sent events (the WHATWG
// "text/event-stream" format), as OpenAI-compatible servers stream them.

package llm

import (
	"bufio"
	"bytes"
	"io"
)

// maxEvent bounds one line, and the data of one event, in bytes.
const maxEvent = 8 << 20

var utf8BOM = []byte("\xEF\xBB\xBF")

// sseReader reads the data of server-sent events, following the WHATWG
// rules: lines end in LF, CRLF or CR; a line starting with ":" is a
// comment; "data:" lines (one optional space after the colon) append to
// the event's data, joined by "\n"; a blank line dispatches the event;
// "event:" names the event (Event after next returns); id and retry are
// ignored. llama.cpp's server reports an error in a stream as a line
// "error: {json}": that reads as the data of an event named "error". The input may be split at
// any byte: a CR at the end of one read and an LF at the start of the
// next make one line end, and nothing waits for a byte it does not need.
type sseReader struct {
	br      *bufio.Reader
	line    []byte // the line being read
	data    []byte // the event's data so far, each line followed by "\n"
	skipLF  bool   // the last line ended in CR: an LF next is part of it
	started bool   // the first line has been read (its BOM removed)
	name    string // the event name being built ("" is "message")
	// Event is the name of the event next returned last: "" for the
	// default ("message"), "error" for an error event.
	Event string
}

func newSSEReader(r io.Reader) *sseReader {
	return &sseReader{br: bufio.NewReader(r)}
}

// next returns the data of the next event that has a data field. At the
// end of the input it returns io.EOF, dropping an event that no blank line
// ended, as the standard says. Other errors are read errors, or
// errTooLarge beyond maxEvent bytes.
func (r *sseReader) next() (string, error) {
	for {
		line, err := r.readLine()
		if err != nil {
			return "", err
		}
		if len(line) > 0 {
			r.field(line)
			if len(r.data) > maxEvent {
				return "", errTooLarge
			}
			continue
		}
		if len(r.data) > 0 {
			d := string(r.data[:len(r.data)-1]) // drop the last "\n"
			r.data = r.data[:0]
			r.Event, r.name = r.name, ""
			return d, nil
		}
		r.name = "" // an event without data is not dispatched
	}
}

// field applies one non-blank line to the event being built.
func (r *sseReader) field(line []byte) {
	if line[0] == ':' {
		return // a comment
	}
	name, value, _ := bytes.Cut(line, []byte(":"))
	if len(value) > 0 && value[0] == ' ' {
		value = value[1:]
	}
	switch string(name) {
	case "data":
		r.data = append(r.data, value...)
		r.data = append(r.data, '\n')
	case "event":
		r.name = string(value)
	case "error":
		r.name = "error"
		r.data = append(r.data, value...)
		r.data = append(r.data, '\n')
	}
}

// readLine returns the next line without its end. The slice is valid
// until the next call. A line the input ends in the middle of is not
// returned: the error (io.EOF at a clean end) is.
func (r *sseReader) readLine() ([]byte, error) {
	r.line = r.line[:0]
	for {
		if _, err := r.br.Peek(1); err != nil {
			return nil, err
		}
		buf, _ := r.br.Peek(r.br.Buffered())
		if r.skipLF {
			r.skipLF = false
			if buf[0] == '\n' {
				r.br.Discard(1)
				continue
			}
		}
		i := bytes.IndexAny(buf, "\r\n")
		if i < 0 {
			r.line = append(r.line, buf...)
			r.br.Discard(len(buf))
			if len(r.line) > maxEvent {
				return nil, errTooLarge
			}
			continue
		}
		r.line = append(r.line, buf[:i]...)
		r.skipLF = buf[i] == '\r'
		r.br.Discard(i + 1)
		return r.stripBOM(r.line), nil
	}
}

// stripBOM removes a byte order mark from the start of the stream.
func (r *sseReader) stripBOM(line []byte) []byte {
	if r.started {
		return line
	}
	r.started = true
	return bytes.TrimPrefix(line, utf8BOM)
}

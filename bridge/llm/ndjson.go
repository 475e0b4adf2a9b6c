// LLM providers: a parser for newline-delimited JSON, as Ollama streams it.

package llm

import (
	"bufio"
	"bytes"
	"io"
)

// ndjsonReader reads the lines of an NDJSON stream. Lines end in LF or
// CRLF; blank lines are skipped; a last line without a line end is
// returned too. The input may be split at any byte.
type ndjsonReader struct {
	br   *bufio.Reader
	line []byte
	// unended is set when the line next returned last was cut off by the
	// end of the input rather than ended by a newline.
	unended bool
}

func newNDJSONReader(r io.Reader) *ndjsonReader {
	return &ndjsonReader{br: bufio.NewReader(r)}
}

// next returns the next non-blank line, trimmed of surrounding white
// space; the slice is valid until the next call. After the last line it
// returns io.EOF at a clean end of the input, or the read error. A line
// longer than maxEvent bytes gives errTooLarge.
func (r *ndjsonReader) next() ([]byte, error) {
	for {
		err := r.readLine()
		line := bytes.TrimSpace(r.line)
		switch {
		case err == nil && len(line) > 0:
			r.unended = false
			return line, nil
		case err == io.EOF && len(line) > 0:
			r.unended = true
			r.line = r.line[:0]
			return line, nil // the next call returns io.EOF
		case err != nil:
			return nil, err
		}
	}
}

// readLine reads up to and including the next "\n" into r.line.
func (r *ndjsonReader) readLine() error {
	r.line = r.line[:0]
	for {
		frag, err := r.br.ReadSlice('\n')
		r.line = append(r.line, frag...)
		if len(r.line) > maxEvent {
			return errTooLarge
		}
		if err != bufio.ErrBufferFull {
			return err
		}
	}
}

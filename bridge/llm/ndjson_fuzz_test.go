package llm

// Fuzz targets for the stream parsers, beside FuzzSSEReader in
// sse_test.go: the NDJSON line reader, and whole response bodies through
// readOllamaStream and readOpenAIStream. However the body is split into
// reads, the results must be the same.
//
// Run one with: go test -run '^$' -fuzz '^FuzzOllamaStream$' -fuzztime 30s ./bridge/llm

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"testing/iotest"
)

// fzSplitReader returns s in reads of pseudo-random sizes drawn from seed,
// now and then an empty read, and maybe io.EOF with the last bytes.
type fzSplitReader struct {
	s       string
	rng     *rand.Rand
	eofLast bool
}

func newFzSplitReader(s string, seed uint64) *fzSplitReader {
	return &fzSplitReader{s: s, rng: rand.New(rand.NewPCG(seed, seed>>32|1)), eofLast: seed&1 == 1}
}

func (r *fzSplitReader) Read(p []byte) (int, error) {
	if len(r.s) == 0 {
		return 0, io.EOF
	}
	if len(p) == 0 || r.rng.IntN(16) == 0 {
		return 0, nil
	}
	n := 1 + r.rng.IntN(8)
	if r.rng.IntN(4) == 0 {
		n = 1 + r.rng.IntN(600)
	}
	n = copy(p, r.s[:min(n, len(r.s))])
	r.s = r.s[n:]
	if len(r.s) == 0 && r.eofLast {
		return n, io.EOF
	}
	return n, nil
}

// fzReaders gives in several ways: whole, a byte at a time, with io.EOF
// along with the last byte, and split at pseudo-random points.
func fzReaders(in string, seed uint64) map[string]func() io.Reader {
	return map[string]func() io.Reader{
		"whole":    func() io.Reader { return strings.NewReader(in) },
		"bytewise": func() io.Reader { return iotest.OneByteReader(strings.NewReader(in)) },
		"data+eof": func() io.Reader { return iotest.DataErrReader(strings.NewReader(in)) },
		"halves":   func() io.Reader { return iotest.HalfReader(strings.NewReader(in)) },
		"split":    func() io.Reader { return newFzSplitReader(in, seed) },
	}
}

type fzLine struct {
	Text    string
	Unended bool
}

// fzNDJSON reads every line of r, and the error that ended it.
func fzNDJSON(r io.Reader) ([]fzLine, error) {
	nr := newNDJSONReader(r)
	var lines []fzLine
	for {
		l, err := nr.next()
		if err != nil {
			return lines, err
		}
		lines = append(lines, fzLine{string(l), nr.unended})
	}
}

// FuzzNDJSONReader checks the line reader against a model (split on LF,
// trim, drop blank lines; only a last line with no LF after it is
// unended) however the input is split.
func FuzzNDJSONReader(f *testing.F) {
	for _, s := range []string{
		"", "{}\n", "{}", "\n\r\n \t\n", "{}\r\n[1]\r\n", " {} \r\n{\"b\":\"é\"}", "a\rb\n", "\xc2\x85x\xc2\xa0\n",
		genLine("a") + `{"done":true}`, "\x00\n\x00", strings.Repeat("x", 5000) + "\n" + strings.Repeat("y", 5000),
	} {
		f.Add(s, uint64(1))
	}
	f.Fuzz(func(t *testing.T, in string, seed uint64) {
		var want []fzLine
		pieces := strings.Split(in, "\n")
		for i, p := range pieces {
			if l := bytes.TrimSpace([]byte(p)); len(l) > 0 {
				want = append(want, fzLine{string(l), i == len(pieces)-1})
			}
		}
		for how, r := range fzReaders(in, seed) {
			got, err := fzNDJSON(r())
			if err != io.EOF {
				t.Fatalf("%s: err = %v, want io.EOF", how, err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("%s: lines %+v\nwant %+v", how, got, want)
			}
		}
	})
}

var errFzStop = errors.New("fn stops the stream")

// fzStreamResult is what a stream reader did with a body.
type fzStreamResult struct {
	Chunks []Chunk
	Err    string
}

// fzRunStream reads body with read, collecting chunks; fn fails at chunk
// number stop (counted from 0) when stop >= 0.
func fzRunStream(ctx context.Context, r io.Reader, read func(context.Context, io.Reader, func(Chunk) error) error, stop int) (fzStreamResult, error) {
	var res fzStreamResult
	err := read(ctx, r, func(c Chunk) error {
		if len(res.Chunks) == stop {
			return errFzStop
		}
		res.Chunks = append(res.Chunks, c)
		return nil
	})
	if err != nil {
		res.Err = err.Error()
	}
	return res, err
}

// fzCheckStream checks a stream reader on one body: the same result
// however the body is split; nil with exactly one Done chunk, the last,
// or an error of a known kind and no Done chunk; an error from fn comes
// back as it is; a cancelled context stops it before any chunk.
func fzCheckStream(t *testing.T, provider, body string, seed uint64, read func(context.Context, io.Reader, func(Chunk) error) error, known func(error) bool) {
	ctx := context.Background()
	want, err := fzRunStream(ctx, strings.NewReader(body), read, -1)
	for how, r := range fzReaders(body, seed) {
		got, _ := fzRunStream(ctx, r(), read, -1)
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("%s: got %+v\nwhole gave %+v", how, got, want)
		}
	}

	for i, c := range want.Chunks {
		last := i == len(want.Chunks)-1
		switch {
		case c.Done && (!last || err != nil):
			t.Fatalf("Done chunk %d of %d, err %v: %+v", i, len(want.Chunks), err, want.Chunks)
		case c.Done && c.FinishReason == "":
			t.Fatalf("Done chunk without a finish reason: %+v", c)
		case !c.Done && (c.Content == "" && c.Reasoning == "" && c.Refusal == "" || c.FinishReason != "" || c.Usage != nil):
			t.Fatalf("content chunk %d: %+v", i, c)
		case c.Usage != nil && c.Usage.TotalTokens != c.Usage.PromptTokens+c.Usage.CompletionTokens && provider == "ollama":
			t.Fatalf("usage %+v", *c.Usage)
		}
	}
	if err == nil {
		if n := len(want.Chunks); n == 0 || !want.Chunks[n-1].Done {
			t.Fatalf("nil error without a Done chunk: %+v", want.Chunks)
		}
	} else {
		if !strings.HasPrefix(err.Error(), provider+": ") || !known(err) {
			t.Fatalf("unexpected error %v", err)
		}
	}

	// fn's error ends the stream and is returned as it is.
	stop := int(seed>>8) % (len(want.Chunks) + 1)
	if stop < len(want.Chunks) {
		got, err := fzRunStream(ctx, newFzSplitReader(body, seed), read, stop)
		if err != errFzStop || len(got.Chunks) != stop || stop > 0 && !reflect.DeepEqual(got.Chunks, want.Chunks[:stop]) {
			t.Fatalf("fn failing at chunk %d: %v, %+v; want %+v", stop, err, got.Chunks, want.Chunks[:stop])
		}
	}

	// A cancelled context: its error, and no chunk.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	got, err := fzRunStream(cctx, strings.NewReader(body), read, -1)
	if !errors.Is(err, context.Canceled) || len(got.Chunks) != 0 {
		t.Fatalf("cancelled: %v, %+v", err, got.Chunks)
	}
}

func fzKnownStreamError(what string) func(error) bool {
	return func(err error) bool {
		var ae *APIError
		return errors.Is(err, ErrTruncated) || errors.Is(err, ErrEmptyStream) || errors.As(err, &ae) && ae.StatusCode == 200 ||
			strings.Contains(err.Error(), what)
	}
}

func readOllamaBody(ctx context.Context, r io.Reader, fn func(Chunk) error) error {
	return readOllamaStream(ctx, newNDJSONReader(r), fn)
}

func readOpenAIBody(ctx context.Context, r io.Reader, fn func(Chunk) error) error {
	return readOpenAIStream(ctx, newSSEReader(r), fn)
}

// FuzzOllamaStream feeds arbitrary bytes as a whole /api/chat or
// /api/generate stream body to readOllamaStream.
func FuzzOllamaStream(f *testing.F) {
	done := `{"model":"llama3","done":true,"done_reason":"length","prompt_eval_count":5,"eval_count":2}`
	for _, s := range []string{
		"",
		genLine("Hel") + genLine("lo") + done + "\n",
		chatLine("a") + chatLine("") + `{"message":{"content":"b"},"done":true}`,
		genLine("a") + done,
		genLine("a") + "\r\n\n" + `{"done":true}` + "\r\n" + genLine("after"),
		genLine("a") + `{"response": nope}` + "\n" + done,
		genLine("a") + `{"error":"model not found"}` + "\n",
		`{"error":{"message":"boom","type":"server","code":500}}`,
		`{"error":null,"done":true}`, `null`, `[1]`, `"x"`, `{"done":"yes"}`,
		genLine("a") + `{"response":"b","do`,
		`{"response":"\ud800","done":true,"eval_count":-3}`,
	} {
		f.Add(s, uint64(0x1234_5678_9abc_def1))
	}
	f.Fuzz(func(t *testing.T, body string, seed uint64) {
		fzCheckStream(t, "ollama", body, seed, readOllamaBody, fzKnownStreamError("ollama: malformed stream line"))
	})
}

// FuzzOpenAIStream feeds arbitrary bytes as a whole SSE body to
// readOpenAIStream.
func FuzzOpenAIStream(f *testing.F) {
	for _, s := range []string{
		"",
		sseRole + delta("Hel") + delta("lo") + sseFinish + sseUsage + sseDone,
		delta("a") + sseFinish,
		delta("a") + delta("b"),
		": ping\r\n\r\n" + delta("é") + "data: {\"choices\":[{\"delta\":\r\ndata: {\"content\":\"x\"}}]}\r\r" + sseDone,
		delta("a") + `data: {"choices":[{"delta":{"content":"b"}}]` + "\n\n" + sseDone,
		delta("a") + `data: {"error":{"message":"too long","type":"invalid_request_error","code":null}}` + "\n\n",
		`data: {"error":"plain"}` + "\n\n",
		"data:\n\ndata: [DONE]", "data: [DONE]\n\n" + delta("after"), "data:  [DONE] \n\n",
		`data: {"choices":null,"usage":{"prompt_tokens":1}}` + "\n\n" + sseDone,
		"\xef\xbb\xbfdata: [DONE]\n\n", "data: null\n\n" + sseDone, "data: 1\n\n",
	} {
		f.Add(s, uint64(0xfeed_f00d_0000_0101))
	}
	f.Fuzz(func(t *testing.T, body string, seed uint64) {
		fzCheckStream(t, "openai", body, seed, readOpenAIBody, fzKnownStreamError("openai: malformed stream chunk"))
	})
}

// LLM providers: HTTP helpers shared by the OpenAI-compatible and Ollama
// clients — posting JSON, and turning an error reply into an *APIError.

package llm

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

const (
	maxErrorBody    = 64 << 10 // bytes of an error reply read for its message
	maxResponseBody = 32 << 20 // bytes of a whole (non-streamed) reply
	maxErrorText    = 200      // bytes of a non-JSON error body kept as Message
	maxQuoted       = 100      // bytes of a bad payload quoted in an error
)

// newHTTPClient is the default client: no overall timeout, since a stream
// may run for minutes; cancel the context to stop a request.
func newHTTPClient() *http.Client { return &http.Client{} }

// postJSON sends body, JSON, to url with the given headers. It returns
// the response when the status is 200 OK; the caller closes its body. Any
// other status becomes an *APIError, and the body is closed here.
func postJSON(ctx context.Context, c *http.Client, provider, url string, header http.Header, body []byte) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", provider, err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		return nil, ioError(ctx, provider, err) // "openai: Post \"http://...\": ..."
	}
	if resp.StatusCode != http.StatusOK {
		defer resp.Body.Close()
		return nil, statusError(ctx, provider, resp)
	}
	return resp, nil
}

// ioError wraps an error from the connection, preferring ctx's error when
// ctx is done (the read then failed because the request was cancelled).
func ioError(ctx context.Context, provider string, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("%s: %w", provider, ctx.Err())
	}
	return fmt.Errorf("%s: %w", provider, err)
}

// readBody reads a whole (non-streamed) reply of at most maxResponseBody
// bytes.
func readBody(ctx context.Context, provider string, resp *http.Response) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBody+1))
	if err != nil {
		return nil, ioError(ctx, provider, err)
	}
	if len(b) > maxResponseBody {
		return nil, fmt.Errorf("%s: reply longer than %d bytes", provider, maxResponseBody)
	}
	return b, nil
}

// statusError reads (the start of) an error reply into an *APIError.
func statusError(ctx context.Context, provider string, resp *http.Response) error {
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	if err != nil && ctx.Err() != nil {
		return fmt.Errorf("%s: %w", provider, ctx.Err())
	}
	e := &APIError{Provider: provider, StatusCode: resp.StatusCode, RetryAfter: retryAfter(resp.Header, time.Now())}
	e.Message, e.Type = errorFromBody(body)
	if e.Message == "" {
		e.Message = http.StatusText(resp.StatusCode)
	}
	return e
}

// retryAfter reads how long the server asks to wait: OpenAI's
// retry-after-ms (milliseconds), else Retry-After in seconds or as an
// HTTP date. 0 when absent, unreadable or in the past.
func retryAfter(h http.Header, now time.Time) time.Duration {
	if v := h.Get("Retry-After-Ms"); v != "" {
		if ms, err := strconv.ParseFloat(v, 64); err == nil && ms > 0 && ms < 1e9 {
			return time.Duration(ms * float64(time.Millisecond))
		}
	}
	v := strings.TrimSpace(h.Get("Retry-After"))
	if v == "" {
		return 0
	}
	if s, err := strconv.ParseFloat(v, 64); err == nil {
		if s > 0 && s < 1e6 {
			return time.Duration(s * float64(time.Second))
		}
		return 0
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}

// errorFromBody finds the message and type in an error body: OpenAI's
// {"error":{"message","type","code"}}, Ollama's {"error":"..."}, vLLM's
// top-level {"message","type"}; otherwise the body's text, shortened.
func errorFromBody(body []byte) (msg, typ string) {
	var v struct {
		Error   json.RawMessage `json:"error"`
		Message string          `json:"message"`
		Type    string          `json:"type"`
	}
	if json.Unmarshal(body, &v) == nil {
		if msg, typ, ok := parseErrorValue(v.Error); ok {
			return msg, typ
		}
		if v.Message != "" {
			return v.Message, v.Type
		}
	}
	return truncate(strings.TrimSpace(string(body)), maxErrorText), ""
}

// parseErrorValue reads the value of an "error" field: a string, or an
// object with message, type and code (a string, a number or null). ok is
// false when the field is absent or null.
func parseErrorValue(raw json.RawMessage) (msg, typ string, ok bool) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return "", "", false
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s, "", true
	}
	var o struct {
		Message string          `json:"message"`
		Type    string          `json:"type"`
		Code    json.RawMessage `json:"code"`
	}
	if json.Unmarshal(raw, &o) != nil {
		return truncate(string(raw), maxErrorText), "", true
	}
	typ = o.Type
	if typ == "" {
		typ = codeText(o.Code)
	}
	return o.Message, typ, true
}

// codeText renders an error code that may be a string, a number or null.
func codeText(raw json.RawMessage) string {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	t := strings.TrimSpace(string(raw))
	if t == "null" {
		return ""
	}
	return t
}

// streamError is an error object found inside a 200 OK stream or reply.
func streamError(provider string, raw json.RawMessage) error {
	msg, typ, ok := parseErrorValue(raw)
	if !ok {
		return nil
	}
	if msg == "" {
		msg = "error reported in the reply"
	}
	return &APIError{Provider: provider, StatusCode: http.StatusOK, Message: msg, Type: typ}
}

// endError is the error for a stream whose reading stopped with err before
// the server said the reply was complete.
func endError(ctx context.Context, provider string, err error) error {
	switch {
	case ctx.Err() != nil:
		return fmt.Errorf("%s: %w", provider, ctx.Err())
	case err == io.EOF:
		return fmt.Errorf("%s: %w", provider, ErrTruncated)
	case errors.Is(err, errTooLarge):
		return fmt.Errorf("%s: %w", provider, err)
	default: // the connection broke: io.ErrUnexpectedEOF, a reset, ...
		return fmt.Errorf("%s: %w: %w", provider, ErrTruncated, err)
	}
}

// errTooLarge reports a stream event or line beyond the parsers' limit.
var errTooLarge = errors.New("stream event or line too large")

// truncate shortens s to at most n bytes, cutting on a rune boundary and
// marking the cut with "...".
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	i := n
	for i > 0 && !utf8.RuneStart(s[i]) {
		i--
	}
	return s[:i] + "..."
}

// finishStream closes a stream's body. After a complete reply the rest of
// the body (the chunked encoding's end, usually already on its way) is
// read first, so the connection goes back to the pool instead of being
// closed; a server that keeps the body open is cut off after a moment.
// After an error, or cancellation, the body is closed at once.
func finishStream(body io.ReadCloser, err error) error {
	if err == nil {
		cut := time.AfterFunc(streamDrainWait, func() { body.Close() })
		io.CopyN(io.Discard, body, streamDrainMax)
		cut.Stop()
	}
	body.Close()
	return err
}

const (
	streamDrainWait = 100 * time.Millisecond
	streamDrainMax  = 64 << 10
)

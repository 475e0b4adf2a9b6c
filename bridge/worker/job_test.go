package worker

import (
	"encoding/json"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/moonbridge/moonbridge/bridge/worker/embedded"
)

func TestJobJSON(t *testing.T) {
	j, err := decodeJob([]byte(`{"key":"k","script":"s","args":[1, 1.5, -0, 1e2, 9007199254740993, {"a":[2, 2.0]}, null, "x"],
		"limits":{"timeout":"1m30s","instructions":7,"memory":8,"tokens":9}}`))
	if err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprintf("%#v", j.Args); got != `[]interface {}{1, 1.5, 0, 100, 9007199254740993, map[string]interface {}{"a":[]interface {}{2, 2}}, interface {}(nil), "x"}` {
		t.Errorf("args %s", got)
	}
	if _, ok := j.Args[3].(float64); !ok {
		t.Errorf("1e2 is a %T, want float64", j.Args[3])
	}
	if m := j.Args[5].(map[string]any)["a"].([]any); fmt.Sprintf("%T %T", m[0], m[1]) != "int64 float64" {
		t.Errorf("nested numbers: %T %T", m[0], m[1])
	}
	if j.Limits != (Limits{Timeout: 90 * time.Second, Instructions: 7, Memory: 8, Tokens: 9}) {
		t.Errorf("limits %+v", j.Limits)
	}
	// Timeout as seconds, and back as a duration string.
	j, err = decodeJob([]byte(`{"script":"s","limits":{"timeout":2.5}}`))
	if err != nil || j.Limits.Timeout != 2500*time.Millisecond {
		t.Fatalf("%+v, %v", j, err)
	}
	out, _ := json.Marshal(Job{Key: "k", Script: "s", Limits: Limits{Timeout: 2500 * time.Millisecond}})
	if string(out) != `{"key":"k","script":"s","limits":{"timeout":"2.5s"}}` {
		t.Errorf("encoded %s", out)
	}
	out, _ = json.Marshal(Job{Key: "k", Name: "n"})
	if string(out) != `{"key":"k","name":"n"}` {
		t.Errorf("encoded %s", out)
	}
	for _, bad := range []string{
		`{"script":"s","limits":{"timeout":"soon"}}`,
		`{"script":"s","limits":{"timeout":-1}}`,
		`{"script":"s","limits":{"timeout":true}}`,
		`{"script":"s"} {}`,
		`{"key":"` + strings.Repeat("k", MaxKeyLen+1) + `","script":"s"}`,
	} {
		if _, err := decodeJob([]byte(bad)); err == nil || !strings.HasPrefix(err.Error(), "malformed job") && !strings.Contains(err.Error(), "limits.timeout") {
			t.Errorf("%.60s: %v", bad, err)
		}
	}
}

func TestQueueNames(t *testing.T) {
	n, err := QueueNames("")
	if err != nil || n.Stream != "MOONBRIDGE" || n.Jobs != "moonbridge.jobs" || n.ResultsStream != "MOONBRIDGE_RESULTS" ||
		n.Dead != "moonbridge.dead" || n.ResultSubject("doc 1/ä.b") != "moonbridge.results.ZG9jIDEvw6QuYg" {
		t.Errorf("%+v, %q, %v", n, n.ResultSubject("doc 1/ä.b"), err)
	}
	if _, err := QueueNames("a.b"); err == nil {
		t.Error("a stream name with a dot was accepted")
	}
}

func TestEmbeddedServerErrors(t *testing.T) {
	if _, err := embedded.Start(embedded.Options{}); err == nil {
		t.Error("no directory: started")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, err = embedded.Start(embedded.Options{Dir: t.TempDir(), Addr: ln.Addr().String()})
	if err == nil || !strings.Contains(err.Error(), "address already in use") {
		t.Errorf("a taken port: %v", err)
	}
	for _, addr := range []string{"nohost", ":4222", "127.0.0.1:x", "127.0.0.1:70000"} {
		if _, err := embedded.Start(embedded.Options{Dir: t.TempDir(), Addr: addr}); err == nil {
			t.Errorf("%q: started", addr)
		}
	}
}

package bridge_test

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/moonbridge/moonbridge/bridge"
)

func TestGetReadsWhatAScriptOrSetGlobalLeft(t *testing.T) {
	rt, _ := newRuntime(t)
	ctx := context.Background()
	if err := rt.SetGlobal(ctx, "config", map[string]any{"n": 3, "tags": []any{"a", "b"}}); err != nil {
		t.Fatal(err)
	}
	if err := rt.RunString(ctx, "main", `
		counter = config.n * 2
		ratio = 0.5
		name = "moon\0bridge"
		nested = {list = {1, 2, {deep = true}}, empty = {}}
	`); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]any{
		"config":  map[string]any{"n": int64(3), "tags": []any{"a", "b"}},
		"counter": int64(6),
		"ratio":   0.5,
		"name":    "moon\x00bridge",
		"nested":  map[string]any{"list": []any{int64(1), int64(2), map[string]any{"deep": true}}, "empty": map[string]any{}},
		"missing": nil,
	} {
		got, err := rt.Get(ctx, name)
		if err != nil {
			t.Errorf("Get(%q): %v", name, err)
			continue
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("Get(%q) = %#v, want %#v", name, got, want)
		}
	}
}

func TestGetNamesWhatCannotCross(t *testing.T) {
	rt, _ := newRuntime(t)
	ctx := context.Background()
	if err := rt.RunString(ctx, "main", `
		handler = function() end
		cfg = {hooks = {on_start = print}}
		loop = {}; loop.self = loop
	`); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{
		"handler": "Get 'handler': cannot send a function to Go",
		"cfg":     "Get 'cfg' (field 'hooks.on_start'): cannot send a function to Go",
		"loop":    "Get 'loop': table is cyclic (field 'self' refers back to an enclosing table)",
	} {
		_, err := rt.Get(ctx, name)
		var le *bridge.LuaError
		if !errors.As(err, &le) || !strings.HasPrefix(le.Message, want) {
			t.Errorf("Get(%q): %v, want %q...", name, err, want)
		}
	}
	// The runtime keeps serving.
	if err := rt.RunString(ctx, "after", `x = 1`); err != nil {
		t.Fatal(err)
	}
	if v, err := rt.Get(ctx, "x"); err != nil || v != int64(1) {
		t.Errorf("after the errors: %v, %v", v, err)
	}
}

// A script's metatable on _G does not run inside Get: it reads raw, on the
// loop, outside any task and its limits.
func TestGetDoesNotRunAScriptsIndexMetamethod(t *testing.T) {
	rt, _ := newRuntime(t)
	ctx := context.Background()
	if err := rt.RunString(ctx, "main", `
		calls = 0
		setmetatable(_G, {__index = function(_, k) calls = calls + 1; error("no global " .. k) end})
	`); err != nil {
		t.Fatal(err)
	}
	if v, err := rt.Get(ctx, "undefined"); err != nil || v != nil {
		t.Fatalf("Get(undefined) = %v, %v; want nil, nil", v, err)
	}
	if v, err := rt.Get(ctx, "calls"); err != nil || v != int64(0) {
		t.Errorf("__index ran %v times (%v)", v, err)
	}
	// Nor does a __newindex inside SetGlobal; the value lands in _G.
	if err := rt.RunString(ctx, "newindex", `
		getmetatable(_G).__newindex = function(_, k) error("no new global " .. k) end
	`); err != nil {
		t.Fatal(err)
	}
	if err := rt.SetGlobal(ctx, "fresh", "v"); err != nil {
		t.Fatalf("SetGlobal: %v", err)
	}
	if err := rt.RunString(ctx, "check", `assert(rawget(_G, "fresh") == "v")`); err != nil {
		t.Error(err)
	}
}

func TestGetAfterCloseAndWithACancelledContext(t *testing.T) {
	rt, err := bridge.New(bridge.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := rt.Get(ctx, "x"); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled context: %v", err)
	}
	rt.Close()
	if _, err := rt.Get(context.Background(), "x"); !errors.Is(err, bridge.ErrClosed) {
		t.Errorf("after Close: %v", err)
	}
}

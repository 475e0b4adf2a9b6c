// Package llmhook lets package bridge and package bridge/llm reach each
// other without bridge importing llm: llm installs its Register here from
// init, for bridge.Runtime.RegisterLLM; bridge installs the way to add a
// prelude (Lua run once before a Runtime's next run), for llm.Register.
// Embedders that never import bridge/llm link neither its HTTP clients nor
// the local generator's corpus.
package llmhook

import "sync/atomic"

// RegisterFunc registers provider p (an llm.Provider) in rt (a
// *bridge.Runtime) as the Lua module name; opts are llm.RegisterOption
// values.
type RegisterFunc func(rt any, name string, p any, opts []any) error

// PreludeFunc adds Lua source src, named name, to run once before rt's
// next run.
type PreludeFunc func(rt any, name, src string)

var (
	register atomic.Pointer[RegisterFunc]
	prelude  atomic.Pointer[PreludeFunc]
)

// Set installs f; package llm calls it from init.
func Set(f RegisterFunc) { register.Store(&f) }

// Get returns the installed function, or nil when package llm is not
// linked into the program.
func Get() RegisterFunc {
	if f := register.Load(); f != nil {
		return *f
	}
	return nil
}

// SetPrelude installs f; package bridge calls it from init.
func SetPrelude(f PreludeFunc) { prelude.Store(&f) }

// Prelude adds a prelude to rt through the function bridge installed.
func Prelude(rt any, name, src string) {
	(*prelude.Load())(rt, name, src)
}

package core_test

import (
	"fmt"

	"github.com/moonbridge/moonbridge/core"
)

// KindName names decoded values in the one vocabulary moonbridge's errors
// use; IsIntegral is the one test for a float used as an integer.
func ExampleKindName() {
	vals, _ := core.DecodeMessage(mustMessage(int64(1), 2.5, "s", []any{int64(1)}, map[string]any{"k": true}))
	for i, v := range vals {
		if i > 0 {
			fmt.Print(" ")
		}
		fmt.Print(core.KindName(v))
	}
	fmt.Println()
	fmt.Println(core.IsIntegral(3.0), core.IsIntegral(3.5), core.NotIntegerError(3.5))
	// Output:
	// integer float string table table
	// true false float 3.5 is not an integer
}

func mustMessage(vals ...any) []byte {
	b, err := core.AppendMessage(nil, vals...)
	if err != nil {
		panic(err)
	}
	return b
}

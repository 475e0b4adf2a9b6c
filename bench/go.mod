module github.com/moonbridge/moonbridge/bench

go 1.26.0

require (
	github.com/moonbridge/moonbridge v0.0.0-00010101000000-000000000000
	github.com/yuin/gopher-lua v1.1.2
)

// The library itself; moonbridge_test.go (the lead's) imports it, and
// `go mod tidy` adds the require then.
replace github.com/moonbridge/moonbridge => ../

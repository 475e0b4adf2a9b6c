module github.com/moonbridge/moonbridge/bench

go 1.26.0

require (
	github.com/moonbridge/moonbridge v0.0.0-00010101000000-000000000000
	github.com/yuin/gopher-lua v1.1.2
)

require (
	github.com/cespare/xxhash/v2 v2.3.0 // indirect
	github.com/cjoudrey/gluahttp v0.0.0-20201111170219-25003d9adfa9
	go.opentelemetry.io/otel v1.47.0 // indirect
	go.opentelemetry.io/otel/trace v1.47.0 // indirect
)

// The library itself; moonbridge_test.go (the lead's) imports it, and
// `go mod tidy` adds the require then.
replace github.com/moonbridge/moonbridge => ../

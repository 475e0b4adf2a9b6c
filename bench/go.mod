module github.com/moonbridge/moonbridge/bench

go 1.26.0

require (
	github.com/moonbridge/moonbridge v0.0.0-00010101000000-000000000000
	github.com/openai/openai-go/v3 v3.102.0
	github.com/yuin/gopher-lua v1.1.2
)

require (
	github.com/cespare/xxhash/v2 v2.3.0 // indirect
	github.com/cjoudrey/gluahttp v0.0.0-20201111170219-25003d9adfa9
	github.com/coder/websocket v1.8.15 // indirect
	github.com/santhosh-tekuri/jsonschema/v6 v6.0.3 // indirect
	github.com/tidwall/gjson v1.20.0 // indirect
	github.com/tidwall/match v1.1.1 // indirect
	github.com/tidwall/pretty v1.2.1 // indirect
	github.com/tidwall/sjson v1.2.5 // indirect
	go.opentelemetry.io/otel v1.47.0 // indirect
	go.opentelemetry.io/otel/trace v1.47.0 // indirect
	golang.org/x/text v0.42.0 // indirect
)

// The library itself; moonbridge_test.go (the lead's) imports it, and
// `go mod tidy` adds the require then.
replace github.com/moonbridge/moonbridge => ../

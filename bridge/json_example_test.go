package bridge_test

import (
	"context"
	"os"

	"github.com/moonbridge/moonbridge/bridge"
)

// A script reads a chat completion's tool call with the json module and
// answers in JSON: integers stay integers, arrays stay arrays, and an
// error names where it is.
func Example_json() {
	rt, err := bridge.New(bridge.Options{Stdout: os.Stdout})
	if err != nil {
		panic(err)
	}
	defer rt.Close()

	body := `{"choices":[{"message":{"tool_calls":[{"function":{"name":"get_weather",
		"arguments":"{\"city\":\"Paris\",\"days\":3}"}}]}}],"usage":{"total_tokens":46}}`
	if err := rt.SetGlobal(context.Background(), "body", body); err != nil {
		panic(err)
	}
	err = rt.RunString(context.Background(), "main", `
local json = require("json")
local reply = json.decode(body)
local call = reply.choices[1].message.tool_calls[1]["function"]
local args = json.decode(call.arguments)
print(call.name, args.city, args.days, math.type(args.days), reply.usage.total_tokens)
print(json.encode({city = args.city, forecast = json.array(), temp = 21.0}, {sort_keys = true}))
print(pcall(json.encode, {tools = {{name = "a"}, {fn = print}}}))
print(pcall(json.decode, '{"a": [1, 2,]}'))
`)
	if err != nil {
		panic(err)
	}
	// Output:
	// get_weather	Paris	3	integer	46
	// {"city":"Paris","forecast":[],"temp":21.0}
	// false	json.encode: cannot encode a function at $.tools[2].fn
	// false	json.decode: expected a value but found ']' at byte 13
}

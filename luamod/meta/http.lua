---@meta http
-- LuaLS annotations for the module bridge.RegisterHTTP registers
-- (Go: bridge/http.go). `moonbridge run` registers it.

---@class http.Request
---@field url string http:// or https:// only
---@field method string? default "GET" ("POST" for http.post)
---@field headers table<string, string|number|string[]>? a list sends the header once per value
---@field body string|table? a table is sent as JSON (Content-Type application/json unless set)
---@field timeout number? seconds; replaces the host's timeout (under the sandbox it may only shorten it)

---@class http.StreamRequest: http.Request
---@field lines boolean? yield the body's lines, without "\n" or "\r\n"
---@field sse boolean? yield server-sent events

---@class http.Options
---@field headers table<string, string|number|string[]>?
---@field timeout number? seconds

---@class http.AllOptions: http.Options
---@field concurrency integer? requests in flight at most, 1 to 1024 (default 8)

---@class http.Response
---@field status integer 4xx and 5xx are responses too
---@field headers table<string, string> lower-case names; repeated headers joined by ", " (set-cookie: "\n")
---@field body string
---@field url string the final URL, after redirects

---@class http.Event
---@field event string "message" unless the server named it
---@field data string data lines joined by "\n"
---@field id string? the last id the server sent, if any

local http = {}

---Send a request and read the whole response. Failures to get a response
---(bad URL, host not allowed, connection, TLS, timeout, body over the
---host's limit) raise a "bridge" error naming the method and the URL.
---@param req http.Request
---@return http.Response
function http.request(req) end

---@param url string
---@param opts http.Options?
---@return http.Response
function http.get(url, opts) end

---@param url string
---@param body string|table? a table is sent as JSON
---@param opts http.Options?
---@return http.Response
function http.post(url, body, opts) end

---The body as it arrives, for a generic for: chunks (strings), lines
---(lines = true) or events (sse = true). A status other than 2xx raises.
---Leaving the loop (break) cancels the request. One task reads it: the
---first that calls the iterator (another task gets an error).
---@param req http.StreamRequest
---@return fun(): string|http.Event|nil
function http.stream(req) end

---Fetch every item, at most opts.concurrency at a time; the responses in
---input order. The first failure cancels the others and is raised, naming
---the item.
---@param list (string|http.Request)[]
---@param opts http.AllOptions?
---@return http.Response[]
function http.get_all(list, opts) end

return http

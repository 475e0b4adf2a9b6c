package core

import "testing"

// Lua's blocks keep their bytes through the small-block heap (heap.c):
// strings of every length across the classes and past the largest, table
// parts that grow from a page into malloc and shrink back, buffers that
// grow through every class, all while garbage of every size is freed
// around them. A block handed out twice, copied short on a move between
// classes, or put on the wrong page's list shows up as a wrong byte.
func TestHeapBlocksKeepTheirBytes(t *testing.T) {
	l, _ := newTestLoop(t, Options{})
	runOK(t, l, `
		local function str(n, salt)
			local b = {}
			for i = 1, n do b[i] = string.char(33 + (i * 7 + salt) % 90) end
			return table.concat(b)
		end
		local function check(s, n, salt, what)
			assert(#s == n, what .. ": length " .. #s .. ", want " .. n)
			for i = 1, n do
				if s:byte(i) ~= 33 + (i * 7 + salt) % 90 then
					error(what .. ": byte " .. i .. " of " .. n .. " changed")
				end
			end
		end
		local keep, tabs = {}, {}
		for round = 1, 6 do
			for n = 1, 300 do
				keep[#keep + 1] = {n = n, salt = round, s = str(n, round)}
				local t = {}
				for i = 1, n % 40 do t[i] = i * round end -- array parts of 16..640 bytes
				for i = 1, n % 13 do t["k" .. i] = -i end  -- node parts across classes
				tabs[#tabs + 1] = {t = t, n = n % 40, h = n % 13, round = round}
				local garbage = {str(n % 50 + 1, 3), {n}, string.rep("g", n)}
			end
			if round % 2 == 0 then -- free every other kept one: pages half empty
				for i = #keep, 1, -2 do table.remove(keep, i) end
				for i = #tabs, 1, -2 do table.remove(tabs, i) end
			end
			collectgarbage()
		end
		for _, k in ipairs(keep) do check(k.s, k.n, k.salt, "kept string") end
		for _, e in ipairs(tabs) do
			for i = 1, e.n do assert(e.t[i] == i * e.round, "array slot " .. i .. " changed") end
			for i = 1, e.h do assert(e.t["k" .. i] == -i, "hash slot " .. i .. " changed") end
			for i = e.n, 1, -1 do e.t[i] = nil end -- shrink on the next rehash
			for i = 1, e.h do e.t["k" .. i] = nil end
			e.t.x = 1 -- a rehash: the parts shrink, from malloc onto a page
			assert(e.t.x == 1 and next(e.t, "x") == nil)
		end
		-- A buffer growing through every class and past them, byte by byte.
		local b = {}
		for i = 1, 600 do b[i] = string.char(33 + (i * 7 + 5) % 90) end
		local s = table.concat(b)
		check(s, 600, 5, "concatenated")
		for n = 1, 600 do check(s:sub(1, n), n, 5, "prefix") end
	`)
}

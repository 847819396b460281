-- chat.timer: after, every (handles with :cancel()) and sleep. Under chatd --run timers fire
-- while the spec waits (chat.timer.sleep drives the loop).
local chat = require "chat"

-- Sleeps in small steps until done() or the deadline; true when done() came true.
local function wait_until(done, ms)
    local waited = 0
    while not done() and waited < (ms or 2000) do
        chat.timer.sleep(5)
        waited = waited + 5
    end
    return done()
end

describe("chat.timer", function()
    it("sleep waits at least that long", function()
        local t0 = chat.now()
        chat.timer.sleep(60)
        assert.is_true(chat.now() - t0 >= 59)
    end)

    it("after runs the function once, later", function()
        local runs = 0
        chat.timer.after(20, function() runs = runs + 1 end)
        assert.equal(0, runs)
        assert.is_true(wait_until(function() return runs == 1 end))
        chat.timer.sleep(60)
        assert.equal(1, runs)
    end)

    it("every repeats until cancelled", function()
        local runs = 0
        local h = chat.timer.every(10, function() runs = runs + 1 end)
        assert.is_true(wait_until(function() return runs >= 3 end))
        h.cancel()
        local seen = runs
        chat.timer.sleep(60)
        assert.equal(seen, runs)
    end)

    it("a cancelled after never runs; cancelling twice or after it ran is harmless", function()
        local ran = false
        local h = chat.timer.after(20, function() ran = true end)
        h.cancel()
        h.cancel()
        chat.timer.sleep(60)
        assert.is_false(ran)
        local done = chat.timer.after(0, function() end)
        chat.timer.sleep(20)
        done.cancel()
    end)

    it("a timer's function may wait for I/O and sleep, like a handler", function()
        local got
        chat.timer.after(0, function()
            chat.kv.set("spec:timer", "set by a timer")
            chat.timer.sleep(10)
            got = chat.kv.get("spec:timer")
        end)
        assert.is_true(wait_until(function() return got ~= nil end))
        assert.equal("set by a timer", got)
    end)

    it("an error in a timer's function is logged and stops only that call", function()
        local after = false
        chat.timer.after(0, function() error("boom") end)
        chat.timer.after(5, function() after = true end)
        assert.is_true(wait_until(function() return after end))
    end)

    it("a handle whose timer ran never reaches a timer started later", function()
        for _ = 1, 50 do
            local old = chat.timer.after(0, function() end)
            chat.timer.sleep(5) -- old ran: its memory may now hold the next timer
            local ran = false
            chat.timer.after(10, function() ran = true end)
            old.cancel()
            assert.is_true(wait_until(function() return ran end))
        end
    end)

    it("many timers: each cancel reaches its own, in any order (a figure: start and cancel time)", function()
        local n, fired = 10000, 0
        local handles = {}
        local t0 = chat.now()
        for i = 1, n do
            handles[i] = chat.timer.after(200 + i % 7, function() fired = fired + 1 end)
        end
        local started = chat.now()
        for i = n, 1, -1 do -- newest first: the last of a list is the slowest to find there
            if i % 2 == 0 then handles[i].cancel() end
        end
        print(string.format("chat.timer: %d timers started in %d ms, %d cancelled newest first in %d ms",
            n, started - t0, n // 2, chat.now() - started))
        assert.is_true(wait_until(function() return fired == n // 2 end, 5000))
        chat.timer.sleep(20)
        assert.equal(n // 2, fired)
    end)

    it("raises on misuse: negative or huge delays, every below 10 ms, no function", function()
        assert.has_error(function() chat.timer.after(-1, function() end) end)
        assert.has_error(function() chat.timer.after(8 * 86400 * 1000, function() end) end)
        assert.has_error(function() chat.timer.every(5, function() end) end)
        assert.has_error(function() chat.timer.after(10) end)
        assert.has_error(function() chat.timer.sleep(-5) end)
    end)
end)

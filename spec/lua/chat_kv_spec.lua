-- chat.kv: values and counters with TTLs (milliseconds), on the runtime's real kv.
local chat = require "chat"
local support = require "support"

local function key() return "spec:kv:" .. support.id() end

describe("chat.kv", function()
    it("set stores a value that get returns; a missing key is nil", function()
        local k = key()
        assert.is_nil(chat.kv.get(k))
        assert.is_true(chat.kv.set(k, "hello"))
        assert.equal("hello", chat.kv.get(k))
        assert.is_true(chat.kv.set(k, "again"))
        assert.equal("again", chat.kv.get(k))
    end)

    it("keeps bytes as they are", function()
        local k = key()
        chat.kv.set(k, "ünï\1cödé")
        assert.equal("ünï\1cödé", chat.kv.get(k))
    end)

    it("a value set with a TTL is gone once it expires", function()
        local k = key()
        chat.kv.set(k, "brief", 50)
        assert.equal("brief", chat.kv.get(k))
        chat.timer.sleep(120)
        assert.is_nil(chat.kv.get(k))
    end)

    it("incr counts from 0, by 1 or by a step, and returns the new value", function()
        local k = key()
        assert.equal(1, chat.kv.incr(k))
        assert.equal(2, chat.kv.incr(k))
        assert.equal(12, chat.kv.incr(k, 10))
        assert.equal(7, chat.kv.incr(k, -5))
        assert.equal("7", chat.kv.get(k))
    end)

    it("incr gives a TTL to a new key only, so a window ends when it started to", function()
        local k = key()
        assert.equal(1, chat.kv.incr(k, 1, 150))
        chat.timer.sleep(80)
        assert.equal(2, chat.kv.incr(k, 1, 150)) -- does not push the expiry back
        chat.timer.sleep(120)
        assert.equal(1, chat.kv.incr(k, 1, 150))
    end)

    it("expire sets or removes a TTL and says whether the key existed", function()
        local k = key()
        assert.is_false(chat.kv.expire(k, 100))
        chat.kv.set(k, "v")
        assert.is_true(chat.kv.expire(k, 50))
        chat.timer.sleep(120)
        assert.is_nil(chat.kv.get(k))

        chat.kv.set(k, "v", 50)
        assert.is_true(chat.kv.expire(k, 0)) -- 0: no expiry any more
        chat.timer.sleep(120)
        assert.equal("v", chat.kv.get(k))
    end)

    it("del removes a key and says whether it existed", function()
        local k = key()
        chat.kv.set(k, "v")
        assert.is_true(chat.kv.del(k))
        assert.is_nil(chat.kv.get(k))
        assert.is_false(chat.kv.del(k))
    end)

    it("raises on misuse: a key that is not a string, a TTL that is not an integer", function()
        assert.has_error(function() chat.kv.get({}) end)
        assert.has_error(function() chat.kv.set(key(), "v", 1.5) end)
        assert.has_error(function() chat.kv.expire(key()) end)
    end)

    it("in a coroutine a handler starts itself, I/O is refused with a message that says why", function()
        local outcome
        chat.timer.after(0, function()
            local co = coroutine.wrap(function() return pcall(chat.kv.get, "x") end)
            local ok, err = co()
            outcome = { ok = ok, err = err }
        end)
        local waited = 0
        while not outcome and waited < 2000 do
            chat.timer.sleep(10)
            waited = waited + 10
        end
        assert.is_table(outcome)
        assert.is_false(outcome.ok)
        assert.matches("nested coroutine", outcome.err)
    end)
end)

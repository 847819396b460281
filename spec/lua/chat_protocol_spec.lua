-- The Socket.IO surface scripts own: several values as one answer (an ack with several
-- arguments), chat.reject's data, and the connect/auth answers chat.accept and
-- chat.accept_anonymous.
local chat = require "chat"
local support = require "support"

describe("answers with several values", function()
    before_each(support.reset_hooks)

    it("the deciding handler's every value comes back from the chain", function()
        chat.hook("event/pair", function() end, 10)
        chat.hook("event/pair", function(ev) return ev.args[1], nil, "third" end, 5)
        chat.hook("event/pair", function() return "never" end, 1)
        local a, b, c = chat.dispatch("event/pair", { args = { "first" } })
        assert.equal("first", a)
        assert.is_nil(b)
        assert.equal("third", c)
        assert.equal(3, select("#", chat.dispatch("event/pair", { args = { "x" } })))
    end)

    it("a leading nil is no answer, whatever follows it", function()
        chat.hook("event/lead", function() return nil, "ignored" end, 10)
        chat.hook("event/lead", function() return "decided" end, 1)
        assert.equal("decided", chat.dispatch("event/lead", {}))
    end)

    it("many handlers that answer nothing do not grow the stack", function()
        for _ = 1, 500 do chat.hook("event/many", function() end) end
        chat.hook("event/many", function() return 1, 2 end, -1)
        local a, b = chat.dispatch("event/many", {})
        assert.same({ 1, 2 }, { a, b })
    end)
end)

describe("chat.reject with data", function()
    it("keeps the data beside the code and message", function()
        local data = { reason = "expired", n = { 1, 2 } }
        local r = chat.reject("unauthorized", "expired", data)
        assert.equal("unauthorized", r.code)
        assert.equal("expired", r.message)
        assert.equal(data, r.data)
        assert.equal("expired", r.data.reason)
        assert.is_nil(chat.reject("forbidden", "no").data)
    end)

    it("refuses data JSON cannot carry, at once", function()
        assert.has_error(function() chat.reject("forbidden", "x", { f = print }) end)
    end)
end)

describe("chat.accept and chat.accept_anonymous", function()
    it("name a user by id, or nobody", function()
        local id = "0123456789abcdef01234567"
        assert.equal(id, chat.accept(id).userId)
        assert.is_nil(chat.accept_anonymous().userId)
    end)

    it("refuse what is not a user id, so a typo cannot let a socket in", function()
        assert.has_error(function() chat.accept(nil) end)
        assert.has_error(function() chat.accept("") end)
        assert.has_error(function() chat.accept("0123456789ABCDEF01234567") end)
        assert.has_error(function() chat.accept("0123456789abcdef0123456") end)
        assert.has_error(function() chat.accept({ id = "0123456789abcdef01234567" }) end)
    end)

    it("connect/auth is a hook scripts may use", function()
        support.reset_hooks()
        chat.hook("connect/auth", function(ev)
            if ev.auth.guest then return chat.accept_anonymous() end
        end)
        assert.is_nil(chat.dispatch("connect/auth", { auth = {} }))
        assert.is_table(chat.dispatch("connect/auth", { auth = { guest = true } }))
    end)
end)

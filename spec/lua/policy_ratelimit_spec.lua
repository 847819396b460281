-- scripts/ratelimit.lua: messages per user and per IP in fixed windows, and per-room slow
-- mode, each refusal saying when to retry. The spec sets small limits through the settings
-- table the policy returns.
local chat = require "chat"
local support = require "support"

describe("policy: rate limits", function()
    local limits, room

    before_each(function()
        limits = support.load("scripts/ratelimit.lua")
        -- windows are aligned to the clock: a long one does not end in the middle of a spec
        limits.per_user, limits.per_ip, limits.window_s = 3, 1000, 3600
        room = chat.store.room(support.room(support.person()).id)
    end)

    local function send(user, ip, r)
        return chat.dispatch("message/before", support.message_ev(user, r or room, "hi", ip))
    end

    it("lets a user send per_user messages in a window, then refuses with when to retry", function()
        local user = support.person()
        for _ = 1, 3 do assert.is_nil(send(user, support.id())) end
        local msg = support.rejected(send(user, support.id()), "rate_limited")
        local retry = tonumber(msg:match("retry in (%d+) s"))
        assert.matches("^3 messages per 3600 s", msg)
        assert.is_true(retry >= 1 and retry <= 3600, msg)
    end)

    it("counts each user on their own key", function()
        local a, b = support.person(), support.person()
        for _ = 1, 3 do send(a, support.id()) end
        assert.is_truthy(send(a, support.id()))
        assert.is_nil(send(b, support.id()))
        assert.equal("4", chat.kv.get("ratelimit:" .. a.id))
    end)

    it("counts an IP address across users", function()
        limits.per_ip = 2
        local ip = "198.51.100." .. math.random(1, 254) .. "-" .. support.id()
        assert.is_nil(send(support.person(), ip))
        assert.is_nil(send(support.person(), ip))
        local msg = support.rejected(send(support.person(), ip), "rate_limited")
        assert.matches("^2 messages per 3600 s; retry in %d+ s$", msg)
        assert.is_nil(send(support.person(), support.id()))
    end)

    it("a new window starts afresh", function()
        limits.window_s = 0.2
        chat.timer.sleep(200 - chat.now() % 200 + 5) -- start at the start of a window
        local user = support.person()
        for _ = 1, 3 do send(user, support.id()) end
        assert.is_truthy(send(user, support.id()))
        chat.timer.sleep(250)
        assert.is_nil(send(user, support.id()))
    end)

    it("events without a socket (no IP) count the user only", function()
        local user = support.person()
        local ev = support.message_ev(user, room, "hi")
        ev.socket = nil
        assert.is_nil(chat.dispatch("message/before", ev))
    end)

    it("slow mode: one message per slowMode seconds per user in that room", function()
        limits.per_user = 100
        local slow = chat.store.room(support.room(support.person(), { slowMode = 0.3 }).id)
        local a, b = support.person(), support.person()
        assert.is_nil(send(a, support.id(), slow))
        local msg = support.rejected(send(a, support.id(), slow), "rate_limited")
        assert.equal("slow mode: one message per 0.3 s in this room; retry in 1 s", msg)
        assert.is_nil(send(b, support.id(), slow)) -- others are not held up
        assert.is_nil(send(a, support.id())) -- nor is the user elsewhere
        chat.timer.sleep(350)
        assert.is_nil(send(a, support.id(), slow))
    end)
end)

-- chat.hook, chat.dispatch, chat.handlers, chat.reject, chat.namespace, chat.setting: how
-- handlers are ordered and how the first answer wins. chat.dispatch is the chain the server
-- runs for every hook.
local chat = require "chat"
local support = require "support"

describe("chat.hook and chat.dispatch", function()
    before_each(support.reset_hooks)

    it("runs handlers by priority, highest first; equal priorities in the order hooked", function()
        local order = {}
        local function track(name) return function() order[#order + 1] = name end end
        chat.hook("typing", track("zero"))
        chat.hook("typing", track("hundred"), 100)
        chat.hook("typing", track("minus"), -5)
        chat.hook("typing", track("ninety"), 90)
        chat.hook("typing", track("ninety again"), 90)
        chat.hook("typing", track("zero again"))
        assert.is_nil(chat.dispatch("typing", {}))
        assert.same({ "hundred", "ninety", "ninety again", "zero", "zero again", "minus" }, order)
    end)

    it("the first handler that returns something decides; the rest do not run", function()
        local later = false
        chat.hook("message/before", function(ev) if ev.stop then return "first" end end, 10)
        chat.hook("message/before", function() return chat.reject("forbidden", "second") end, 5)
        chat.hook("message/before", function() later = true end, 1)
        assert.equal("first", chat.dispatch("message/before", { stop = true }))
        local r = chat.dispatch("message/before", {})
        assert.equal("second", support.rejected(r, "forbidden"))
        assert.is_false(later)
    end)

    it("false counts as an answer too: it stops the chain (and the server allows)", function()
        local ran = false
        chat.hook("room/join", function() return false end, 2)
        chat.hook("room/join", function() ran = true end, 1)
        assert.is_false(chat.dispatch("room/join", {}))
        assert.is_false(ran)
    end)

    it("a handler's changes to the event are what the next handler sees", function()
        chat.hook("message/before", function(ev) ev.message.content = ev.message.content .. "!" end, 2)
        chat.hook("message/before", function(ev) ev.message.content = ev.message.content:upper() end, 1)
        local ev = { message = { content = "hi" } }
        chat.dispatch("message/before", ev)
        assert.equal("HI!", ev.message.content)
    end)

    it("a hook with no handlers answers nil", function()
        assert.is_nil(chat.dispatch("disconnect", {}))
        assert.is_nil(chat.dispatch("event/nothing-here", {}))
    end)

    it("handlers(name) lists the functions in the order they run", function()
        local a, b = function() end, function() end
        chat.hook("room/leave", a, 1)
        chat.hook("room/leave", b, 2)
        assert.same({ b, a }, chat.handlers("room/leave"))
        assert.same({}, chat.handlers("connect"))
    end)

    it("accepts the documented hooks and event/<name>; refuses other names", function()
        for _, name in ipairs({ "connect", "room/join", "room/joined", "room/leave", "message/before",
            "message/after", "typing", "disconnect", "event/dice:roll" }) do
            assert.has_no.errors(function() chat.hook(name, function() end) end)
        end
        assert.has_error(function() chat.hook("message", function() end) end, "bad argument #1 to 'hook' (unknown hook 'message')")
        assert.has_error(function() chat.hook("event/", function() end) end)
        assert.has_error(function() chat.hook("typing", "not a function") end)
    end)
end)

describe("chat.reject", function()
    it("makes an answer with a protocol error code and a message for the client", function()
        local r = chat.reject("rate_limited", "slow down; retry in 3 s")
        assert.equal("rate_limited", r.code)
        assert.equal("slow down; retry in 3 s", r.message)
        assert.is_string(chat.reject("forbidden").message)
    end)

    it("takes only the codes of PROTOCOL.md", function()
        for _, code in ipairs({ "unauthorized", "forbidden", "not_found", "invalid_payload",
            "payload_too_large", "rate_limited", "policy_rejected", "conflict", "unavailable", "internal" }) do
            assert.equal(code, chat.reject(code, "m").code)
        end
        assert.has_error(function() chat.reject("nope", "m") end)
        assert.has_error(function() chat.reject() end)
    end)
end)

describe("chat.namespace", function()
    it("takes names like /name, with or without anonymous access", function()
        assert.has_no.errors(function() chat.namespace("/specs") end)
        assert.has_no.errors(function() chat.namespace("/specs-open", { anonymous = true }) end)
        local declared = debug.getregistry()["chat.namespaces"]
        assert.is_true(declared["/specs-open"].anonymous)
        assert.is_falsy(declared["/specs"].anonymous)
    end)

    it("refuses names that are not namespaces", function()
        assert.has_error(function() chat.namespace("specs") end)
        assert.has_error(function() chat.namespace("/") end)
        assert.has_error(function() chat.namespace("/" .. ("x"):rep(200)) end)
    end)
end)

describe("chat.setting, chat.now, chat.null", function()
    it("setting reads CHAT_<NAME>, else answers the default", function()
        assert.equal(os.getenv("CHAT_DATA_DIR"), chat.setting("data_dir", "unused"))
        assert.equal("fallback", chat.setting("no_such_setting_for_specs", "fallback"))
        assert.equal(42, chat.setting("no_such_setting_for_specs", 42))
    end)

    it("a numeric default wants a number: a setting that is not one raises", function()
        assert.has_error(function() chat.setting("data_dir", 1) end)
    end)

    it("now is the time in milliseconds since the epoch", function()
        local now = chat.now()
        assert.equal("integer", math.type(now))
        assert.is_true(math.abs(now - os.time() * 1000) < 2000)
    end)

    it("null is JSON's null", function()
        assert.equal(chat.json.null, chat.null)
    end)
end)

describe("chat.setting and secrets", function()
    it("refuses secret settings: the JWT secret, the admin token, URLs with passwords", function()
        for _, name in ipairs({ "jwt_secret", "JWT_SECRET", "admin_token", "redis_url", "mongo_uri",
            "smtp_password", "my_api_secret" }) do
            local ok, err = pcall(chat.setting, name, "x")
            assert.is_false(ok, name)
            assert.matches("secret setting", err)
        end
    end)
end)

describe("expected failures", function()
    it("are nil, a message and the error table's code, in every binding", function()
        local v, msg, code = chat.json.decode("{")
        assert.is_nil(v)
        assert.matches("invalid JSON", msg)
        assert.equal("invalid_payload", code)
        v, msg, code = chat.jwt.verify("not a token")
        assert.is_nil(v)
        assert.is_string(msg)
        assert.equal("unauthorized", code)
    end)
end)

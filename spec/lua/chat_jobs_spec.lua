-- chat.jobs (push, handle, dead) and chat.http, with the real queue of chatd --run (the
-- SQLite table in the spec's data dir; no worker runs here: specs drive handlers with
-- chat.dispatch("job/<name>", job), as the server runs them). The worker, retries, the
-- dead-letter list filling up and Redis are covered end to end in spec/e2e/jobs.test.js.
local chat = require "chat"
local support = require "support"

local function job(name, payload, attempt)
    return { id = support.id(), name = name, payload = payload, attempt = attempt or 0,
        maxAttempts = 5, createdAt = chat.now() }
end

-- The rejection a handler's run ended with: code, message (nil when it succeeded).
local function failure(...)
    local r = ...
    if type(r) == "table" and r.code then return r.code, r.message end
    return nil
end

describe("chat.jobs.push", function()
    it("queues a job and answers its id", function()
        local id = assert(chat.jobs.push("spec.push", { n = 1 }))
        assert.matches("^[0-9a-f]+$", id)
        assert.equal(24, #id)
        local other = assert(chat.jobs.push("spec.push", { n = 2 }, { delay_ms = 60000 }))
        assert.are_not.equal(id, other)
    end)

    it("takes any JSON value as the payload, nil as null", function()
        assert.truthy(chat.jobs.push("spec.push", "text"))
        assert.truthy(chat.jobs.push("spec.push", chat.array({})))
        assert.truthy(chat.jobs.push("spec.push", nil))
    end)

    it("refuses a payload over CHAT_JOBS_PAYLOAD_MAX with payload_too_large", function()
        local id, err, code = chat.jobs.push("spec.push", { pad = ("x"):rep(70000) })
        assert.is_nil(id)
        assert.equal("payload_too_large", code)
        assert.matches("CHAT_JOBS_PAYLOAD_MAX", err)
    end)

    it("raises on misuse: a bad name, no payload, bad options, a value JSON cannot carry", function()
        assert.has_error(function() chat.jobs.push("has space", {}) end)
        assert.has_error(function() chat.jobs.push(("n"):rep(65), {}) end)
        assert.has_error(function() chat.jobs.push("spec.push") end)
        assert.has_error(function() chat.jobs.push("spec.push", {}, { delay_ms = -1 }) end)
        assert.has_error(function() chat.jobs.push("spec.push", {}, { max_attempts = 0 }) end)
        assert.has_error(function() chat.jobs.push("spec.push", {}, { max_attempts = 1.5 }) end)
        assert.has_error(function() chat.jobs.push("spec.push", { f = print }) end)
    end)
end)

describe("chat.jobs.dead", function()
    it("answers the dead-letter list, an array (empty here: no worker ran)", function()
        local dead = assert(chat.jobs.dead())
        assert.equal("table", type(dead))
        assert.equal("[]", chat.json.encode(dead))
        assert.has_error(function() chat.jobs.dead(0) end)
    end)
end)

describe("chat.jobs.handle", function()
    before_each(function() support.reset_hooks() end)

    it("declares the handler of a job name: the hook job/<name>", function()
        local seen
        chat.jobs.handle("spec.echo", function(j) seen = j end)
        assert.equal(1, #chat.handlers("job/spec.echo"))
        local j = job("spec.echo", { text = "hi" })
        assert.is_nil(failure(chat.dispatch("job/spec.echo", j)))
        assert.equal("hi", seen.payload.text)
        assert.equal(j.id, seen.id)
    end)

    it("refuses a second handler for the same name, bad names and non-functions", function()
        chat.jobs.handle("spec.once", function() end)
        assert.has_error(function() chat.jobs.handle("spec.once", function() end) end,
            "a handler for job 'spec.once' is declared already")
        assert.has_error(function() chat.jobs.handle("bad name", function() end) end)
        assert.has_error(function() chat.jobs.handle("spec.fn", "not a function") end)
    end)

    it("a run fails when the handler returns nil, err or false or chat.reject", function()
        chat.jobs.handle("spec.nil_err", function() return nil, "the remote said no" end)
        chat.jobs.handle("spec.false", function() return false end)
        chat.jobs.handle("spec.reject", function() return chat.reject("rate_limited", "later") end)
        chat.jobs.handle("spec.ok", function() return { anything = true } end)
        local code, message = failure(chat.dispatch("job/spec.nil_err", job("spec.nil_err")))
        assert.equal("unavailable", code)
        assert.equal("the remote said no", message)
        assert.equal("unavailable", (failure(chat.dispatch("job/spec.false", job("spec.false")))))
        code, message = failure(chat.dispatch("job/spec.reject", job("spec.reject")))
        assert.equal("rate_limited", code)
        assert.equal("later", message)
        assert.is_nil(failure(chat.dispatch("job/spec.ok", job("spec.ok"))))
    end)

    it("chat.hook refuses job/ without a name", function()
        assert.has_error(function() chat.hook("job/", function() end) end)
    end)
end)

describe("scripts/webhook.lua", function()
    before_each(function() support.load("scripts/webhook.lua") end)

    it("declares the webhook job", function()
        assert.equal(1, #chat.handlers("job/webhook"))
    end)

    it("fails a job whose payload has no url, saying so", function()
        local code, message = failure(chat.dispatch("job/webhook", job("webhook", { body = 1 })))
        assert.equal("unavailable", code)
        assert.matches("url", message)
    end)

    it("fails (to be retried) when nothing answers at the URL", function()
        local code, message = failure(chat.dispatch("job/webhook",
            job("webhook", { url = "http://127.0.0.1:1/hook", body = { a = 1 } })))
        assert.equal("unavailable", code)
        assert.is_string(message)
    end)
end)

describe("scripts/notify_offline.lua", function()
    local settings
    before_each(function() settings = support.load("scripts/notify_offline.lua") end)

    local function offline_job()
        return job("notify.offline", { userId = support.id(), user = { username = "ada" },
            notification = { id = support.id(), type = "mention", data = { excerpt = "@ada hi" } } })
    end

    it("declares the notify.offline job", function()
        assert.equal(1, #chat.handlers("job/notify.offline"))
    end)

    it("with no CHAT_PUSH_WEBHOOK_URL the job is done and nothing is sent", function()
        settings.url = ""
        assert.is_nil(failure(chat.dispatch("job/notify.offline", offline_job())))
    end)

    it("fails (to be retried) when the push service does not answer", function()
        settings.url = "http://127.0.0.1:1/push"
        local code, message = failure(chat.dispatch("job/notify.offline", offline_job()))
        assert.equal("unavailable", code)
        assert.is_string(message)
    end)
end)

describe("chat.http.request", function()
    it("answers nil, message, unavailable when the connection is refused", function()
        local res, err, code = chat.http.request({ url = "http://127.0.0.1:1/", timeout_ms = 2000 })
        assert.is_nil(res)
        assert.equal("unavailable", code)
        assert.is_string(err)
    end)

    it("raises on misuse: no table, a URL that is not http(s), a bad timeout", function()
        assert.has_error(function() chat.http.request("http://127.0.0.1:1/") end)
        assert.has_error(function() chat.http.request({ url = "ftp://example.org/" }) end)
        assert.has_error(function() chat.http.request({ url = "file:///etc/passwd" }) end)
        assert.has_error(function()
            chat.http.request({ url = "http://127.0.0.1:1/", timeout_ms = 0 })
        end)
    end)
end)

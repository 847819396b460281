-- scripts/webhook.lua: the "webhook" job. It POSTs a JSON body to a URL and counts as done
-- when the URL answers 2xx; otherwise the queue tries again with backoff (CHAT_JOBS_ATTEMPTS,
-- CHAT_JOBS_BACKOFF_MS) and finally puts it on the dead-letter list (GET /admin/jobs/dead).
-- Push one from any handler:
--   chat.jobs.push("webhook", { url = "https://hooks.example/chat", body = { text = "hi" } })
local chat = require "chat"

local TIMEOUT_MS = chat.setting("webhook_timeout_ms", 10000) -- CHAT_WEBHOOK_TIMEOUT_MS

chat.jobs.handle("webhook", function(job)
    local p = job.payload
    if type(p) ~= "table" or type(p.url) ~= "string" then
        return nil, "the payload is not { url, body?, headers? }"
    end
    local headers = { ["Content-Type"] = "application/json", ["X-Chat-Job"] = job.id,
        ["X-Chat-Attempt"] = tostring(job.attempt + 1) }
    for k, v in pairs(type(p.headers) == "table" and p.headers or {}) do headers[k] = v end
    local res, err = chat.http.request({
        url = p.url, method = "POST", headers = headers, timeout_ms = TIMEOUT_MS,
        body = chat.json.encode(p.body == nil and chat.null or p.body),
    })
    if not res then return nil, err end
    if res.status < 200 or res.status > 299 then
        return nil, ("%s answered %d"):format(p.url, res.status)
    end
end)

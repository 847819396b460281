-- scripts/notify_offline.lua: the "notify.offline" job, a mention for someone offline. chatd
-- queues one when a mention notifies a user who has no socket on any node (someone online gets
-- the `notification` event and no job). This handler POSTs the payload as JSON to the
-- operator's push service, CHAT_PUSH_WEBHOOK_URL:
--   { userId, user = { id, username, displayName, avatar, ... }, notification = { id, type,
--     data = { roomId, messageId, senderId, excerpt }, createdAt, read } }
-- with X-Chat-Job (stable across attempts: dedupe on it) and X-Chat-Attempt. It is done on a
-- 2xx answer; otherwise the queue tries again with backoff and finally keeps it on the
-- dead-letter list. With no URL set it does nothing: the notification waits in the app.
-- The job runs once queued even if the user has come back meanwhile (the notification is
-- still unread until they read it). Replace this file to send mail, APNs, FCM, ...; remove it
-- and chatd queues no such job.
local chat = require "chat"

local settings = {
    url = chat.setting("push_webhook_url", ""),                -- CHAT_PUSH_WEBHOOK_URL
    timeout_ms = chat.setting("push_webhook_timeout_ms", 10000), -- CHAT_PUSH_WEBHOOK_TIMEOUT_MS
}

chat.jobs.handle("notify.offline", function(job)
    if settings.url == "" then return end
    local res, err = chat.http.request({
        url = settings.url, method = "POST", timeout_ms = settings.timeout_ms,
        headers = { ["Content-Type"] = "application/json", ["X-Chat-Job"] = job.id,
            ["X-Chat-Attempt"] = tostring(job.attempt + 1) },
        body = chat.json.encode(job.payload),
    })
    if not res then return nil, err end
    if res.status < 200 or res.status > 299 then
        return nil, ("the push service answered %d"):format(res.status)
    end
end)

return settings

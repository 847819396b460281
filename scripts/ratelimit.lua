-- Rate limits: messages per user and per IP address in fixed windows (60 s by default, on the
-- keys ratelimit:{userId} and ratelimit:{ipAddress}), and a per-room slow mode
-- (settings.slowMode = seconds between two messages of one user).
-- Configure with CHAT_RATELIMIT_USER, CHAT_RATELIMIT_IP and CHAT_RATELIMIT_WINDOW_S.
local chat = require "chat"

local PER_USER = chat.setting("ratelimit_user", 30)
local PER_IP = chat.setting("ratelimit_ip", 120)
local WINDOW_MS = chat.setting("ratelimit_window_s", 60) * 1000

-- Counts one message in the current window; the key expires when the window ends, so the
-- time to wait is the time to the next window.
local function count(key)
    local now = chat.now()
    local left = WINDOW_MS - now % WINDOW_MS
    local n, err = chat.kv.incr(key, 1, left)
    return n, left, err
end

local function refuse(limit, left)
    return chat.reject("rate_limited", ("%d messages per %d s; retry in %d s"):format(
        limit, WINDOW_MS // 1000, math.max(1, math.ceil(left / 1000))))
end

chat.hook("message/before", function(ev)
    local n, left = count("ratelimit:" .. ev.user.id)
    if n and n > PER_USER then return refuse(PER_USER, left) end
    local ip = ev.socket and ev.socket.ip
    if ip and ip ~= "" then
        n, left = count("ratelimit:" .. ip)
        if n and n > PER_IP then return refuse(PER_IP, left) end
    end

    local slow = tonumber((ev.room.settings or {}).slowMode)
    if slow and slow > 0 then
        local key = "slowmode:" .. ev.room.id .. ":" .. ev.user.id
        local last = tonumber(chat.kv.get(key))
        local now = chat.now()
        if last and now - last < slow * 1000 then
            return chat.reject("rate_limited", ("slow mode: one message per %d s in this room; retry in %d s"):format(
                slow, math.ceil((slow * 1000 - (now - last)) / 1000)))
        end
        chat.kv.set(key, tostring(now), slow * 1000)
    end
end, 90)

-- Rate limits: messages per user and per IP address in fixed windows (60 s by default, on the
-- keys ratelimit:{userId} and ratelimit:{ipAddress}), and a per-room slow mode
-- (settings.slowMode = seconds between two messages of one user).
-- Configure with CHAT_RATELIMIT_USER, CHAT_RATELIMIT_IP and CHAT_RATELIMIT_WINDOW_S.
local chat = require "chat"

local limits = {
    per_user = chat.setting("ratelimit_user", 30),
    per_ip = chat.setting("ratelimit_ip", 120),
    window_s = chat.setting("ratelimit_window_s", 60),
}

-- Counts one message in the current window; the key expires when the window ends, so the
-- time to wait is the time to the next window.
local function count(key)
    local window = math.floor(limits.window_s * 1000)
    local left = window - chat.now() % window
    return chat.kv.incr(key, 1, left), left
end

local function refuse(limit, left)
    return chat.reject("rate_limited", ("%d messages per %g s; retry in %d s"):format(
        limit, limits.window_s, math.ceil(left / 1000)))
end

chat.hook("message/before", function(ev)
    local n, left = count("ratelimit:" .. ev.user.id)
    if n and n > limits.per_user then return refuse(limits.per_user, left) end
    local ip = ev.socket and ev.socket.ip
    if ip and ip ~= "" then
        n, left = count("ratelimit:" .. ip)
        if n and n > limits.per_ip then return refuse(limits.per_ip, left) end
    end

    local slow = tonumber((ev.room.settings or {}).slowMode)
    if slow and slow > 0 then
        local key = "slowmode:" .. ev.room.id .. ":" .. ev.user.id
        local last, now = tonumber(chat.kv.get(key)), chat.now()
        if last and now - last < slow * 1000 then
            return chat.reject("rate_limited", ("slow mode: one message per %g s in this room; retry in %d s"):format(
                slow, math.ceil((slow * 1000 - (now - last)) / 1000)))
        end
        chat.kv.set(key, tostring(now), math.floor(slow * 1000))
    end
end, 90)

return limits -- read at every message; specs that load this file adjust them

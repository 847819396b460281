-- Moderation: a word filter (in messages and in profiles), room-admin commands and flood
-- control.
--   /mute @name 10m   /unmute @name   /kick @name   /ban @name 1h   /unban @name
--   /invite @name (adds someone to the room, also to a private one)
-- Durations: 30s, 10m, 2h, 1d; no duration means until lifted.
-- Configure with CHAT_BLOCKED_WORDS="word1,word2" (masked: whole words, any case), and
-- CHAT_FLOOD_REPEATS / CHAT_FLOOD_WINDOW_S (the same text more than 3 times in 30 s is refused).
local chat = require "chat"
local duration = require "chat.duration"

local settings = {
    blocked = {},
    flood_repeats = chat.setting("flood_repeats", 3),
    flood_window_s = chat.setting("flood_window_s", 30),
}
for word in chat.setting("blocked_words", "darn,heck"):gmatch("[^,%s]+") do
    settings.blocked[word:lower()] = true
end

-- Masks blocked words: "darn" becomes "d***". Most messages have none: a word can only be
-- masked when it occurs in the lower-cased text, so without any the per-word pass is skipped.
local function mask(content)
    local lower, any = content:lower(), false
    for word in pairs(settings.blocked) do
        if lower:find(word, 1, true) then any = true break end
    end
    if not any then return content end
    return (content:gsub("%w+", function(w)
        if settings.blocked[w:lower()] then return w:sub(1, 1) .. ("*"):rep(#w - 1) end
    end))
end

local function member(room, userId)
    for _, id in ipairs(room.participants or {}) do
        if id == userId then return true end
    end
    return false
end

local function lasting(seconds)
    return seconds and "for " .. duration.text(seconds) or "until lifted"
end

-- Each command returns the notice posted in the room, or nil and a rejection.
local commands = {
    mute = function(room, target, seconds)
        if not member(room, target.id) then return nil, target.username .. " is not in this room" end
        chat.mute(room.id, target.id, seconds)
        return ("%s was muted %s"):format(target.username, lasting(seconds))
    end,
    unmute = function(room, target)
        chat.unmute(room.id, target.id)
        return ("%s can post again"):format(target.username)
    end,
    kick = function(room, target)
        if not member(room, target.id) then return nil, target.username .. " is not in this room" end
        chat.kick(room.id, target.id, "kicked by the room's admin")
        return ("%s was removed from the room"):format(target.username)
    end,
    ban = function(room, target, seconds)
        chat.ban(room.id, target.id, seconds, "banned by the room's admin")
        return ("%s was banned %s"):format(target.username, lasting(seconds))
    end,
    unban = function(room, target)
        chat.unban(room.id, target.id)
        return ("%s may join again"):format(target.username)
    end,
    invite = function(room, target)
        local ok, _, code = chat.join(room.id, target.id)
        if not ok then return nil, ("%s could not be added (%s)"):format(target.username, code) end
        return ("%s was added to the room"):format(target.username)
    end,
}
local timed = { mute = true, ban = true }

chat.hook("message/before", function(ev)
    local room, user, message = ev.room, ev.user, ev.message

    -- an admin command becomes a notice in the room, stored like any message
    local name, rest = message.content:match("^/(%a+)%s*(.*)$")
    local command = name and commands[name:lower()]
    if command then
        name = name:lower()
        if room.admin ~= user.id then
            return chat.reject("forbidden", ("only the room's admin can use /%s"):format(name))
        end
        local who, when = rest:match("^@?([%w_.-]+)%s*(%S*)$")
        local target = who and chat.store.user_by_name(who)
        if not target then
            return chat.reject("invalid_payload", ("usage: /%s @username%s"):format(name,
                timed[name] and " [30s|10m|2h|1d]" or ""))
        end
        local seconds = duration.parse(when)
        if when ~= "" and not (timed[name] and seconds) then
            return chat.reject("invalid_payload", timed[name] and "a duration looks like 30s, 10m, 2h or 1d"
                or ("/%s takes no duration"):format(name))
        end
        local notice, problem = command(room, target, seconds)
        if not notice then return chat.reject("invalid_payload", problem) end
        message.content = notice
        return
    end

    local muted = chat.muted_for(room.id, user.id)
    if muted then
        return chat.reject("forbidden", muted == math.huge and "you are muted in this room until an admin lifts it"
            or ("you are muted in this room; you can post again in %s"):format(duration.text(muted)))
    end

    -- flood control: the same text again and again
    local digest = chat.crypto.hex(chat.crypto.sha256(message.content)):sub(1, 16)
    local repeats = chat.kv.incr("flood:" .. room.id .. ":" .. user.id .. ":" .. digest, 1,
        math.floor(settings.flood_window_s * 1000))
    if repeats and repeats > settings.flood_repeats then
        return chat.reject("policy_rejected", "you sent the same message several times; say something new")
    end

    message.content = mask(message.content)
end, 80)

-- The same words in profiles (PATCH /me): a display name with one is refused (a masked name
-- would still say it), a status has them masked.
chat.hook("user/update", function(ev)
    local name = ev.changes.displayName
    if name and mask(name) ~= name then
        return chat.reject("policy_rejected", "that display name has a word this chat does not allow")
    end
    if ev.changes.statusText then
        ev.changes.statusText = mask(ev.changes.statusText)
    end
end, 80)

return settings -- read at every message; specs that load this file adjust them

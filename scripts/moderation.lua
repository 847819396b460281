-- Moderation: a word filter, room-admin commands and flood control.
--   /mute @name 10m   /unmute @name   /kick @name   /ban @name 1h   /unban @name
-- Durations: 30s, 10m, 2h, 1d; no duration means until lifted.
-- Words to mask: CHAT_BLOCKED_WORDS="word1,word2" (case-insensitive, whole words).
local chat = require "chat"

local blocked = {}
for word in (chat.setting("blocked_words", "darn,heck")):gmatch("[^,%s]+") do
    blocked[word:lower()] = true
end
local FLOOD_REPEATS = chat.setting("flood_repeats", 3)
local FLOOD_WINDOW_MS = chat.setting("flood_window_s", 30) * 1000

local units = { s = 1, m = 60, h = 3600, d = 86400 }

local function duration(text)
    local n, unit = (text or ""):match("^(%d+)([smhd])$")
    return n and tonumber(n) * units[unit] or nil
end

-- Masks blocked words (whole words, any case): "darn" becomes "d***".
local function mask(content)
    return (content:gsub("%w+", function(w)
        if blocked[w:lower()] then return w:sub(1, 1) .. ("*"):rep(#w - 1) end
    end))
end

local function say(seconds)
    if not seconds then return "until lifted" end
    if seconds % 86400 == 0 then return ("for %d d"):format(seconds // 86400) end
    if seconds % 3600 == 0 then return ("for %d h"):format(seconds // 3600) end
    if seconds % 60 == 0 then return ("for %d min"):format(seconds // 60) end
    return ("for %d s"):format(seconds)
end

local commands = {
    mute = function(room, target, seconds)
        chat.mute(room.id, target.id, seconds)
        return ("%s was muted %s"):format(target.username, say(seconds))
    end,
    unmute = function(room, target)
        chat.unmute(room.id, target.id)
        return ("%s can post again"):format(target.username)
    end,
    kick = function(room, target)
        chat.kick(room.id, target.id, "kicked by the room's admin")
        return ("%s was removed from the room"):format(target.username)
    end,
    ban = function(room, target, seconds)
        chat.ban(room.id, target.id, seconds, "banned by the room's admin")
        return ("%s was banned %s"):format(target.username, say(seconds))
    end,
    unban = function(room, target)
        chat.unban(room.id, target.id)
        return ("%s may join again"):format(target.username)
    end,
}

chat.hook("message/before", function(ev)
    local room, user, message = ev.room, ev.user, ev.message

    -- an admin command becomes a notice in the room, stored like any message
    local name, rest = message.content:match("^/(%a+)%s*(.*)$")
    local command = name and commands[name:lower()]
    if command then
        if room.admin ~= user.id then
            return chat.reject("forbidden", ("only the room's admin can use /%s"):format(name))
        end
        local who, when = rest:match("^@?([%w_.-]+)%s*(%S*)$")
        local target = who and chat.store.user_by_name(who)
        if not target then
            return chat.reject("invalid_payload", ("usage: /%s @username%s"):format(name,
                (name == "mute" or name == "ban") and " [30s|10m|2h|1d]" or ""))
        end
        if when ~= "" and not duration(when) then
            return chat.reject("invalid_payload", "a duration looks like 30s, 10m, 2h or 1d")
        end
        message.content = command(room, target, duration(when))
        return
    end

    local muted = chat.muted_for(room.id, user.id)
    if muted then
        return chat.reject("forbidden", muted == math.huge and "you are muted in this room"
            or ("you are muted in this room for %d more s"):format(math.ceil(muted)))
    end

    -- flood control: the same text again and again
    local digest = chat.crypto.hex(chat.crypto.sha256(message.content)):sub(1, 16)
    local repeats = chat.kv.incr("flood:" .. room.id .. ":" .. user.id .. ":" .. digest, 1,
        FLOOD_WINDOW_MS)
    if repeats and repeats > FLOOD_REPEATS then
        return chat.reject("policy_rejected", "you sent the same message several times; say something new")
    end

    message.content = mask(message.content)
end, 80)

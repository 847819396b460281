-- Room rules: private rooms, member limits, read-only rooms, bans.
-- A room's rules live in its settings, given at creation:
--   room:create { name = "staff", type = "group",
--                 settings = { private = true, maxMembers = 50, readOnly = false } }
-- Bots that post in a room become members but do not take a seat.
local chat = require "chat"
local duration = require "chat.duration"

local function people(room)
    local n = 0
    for _, id in ipairs(room.participants) do
        if not chat.is_bot(id) then n = n + 1 end
    end
    return n
end

chat.hook("room/join", function(ev)
    local room, settings = ev.room, ev.room.settings or {}
    if settings.private then
        return chat.reject("forbidden", "this room is private: ask its admin to /invite you")
    end
    local limit = tonumber(settings.maxMembers)
    if limit and #room.participants >= limit and people(room) >= limit then
        return chat.reject("forbidden",
            ("this room is full (%d members); ask its admin to make room"):format(limit))
    end
    local banned = chat.banned_for(room.id, ev.user.id)
    if banned then
        return chat.reject("forbidden", banned == math.huge and "you are banned from this room"
            or ("you are banned from this room; you can join again in %s"):format(duration.text(banned)))
    end
end, 100)

chat.hook("message/before", function(ev)
    local settings = ev.room.settings or {}
    if settings.readOnly and ev.room.admin ~= ev.user.id then
        return chat.reject("forbidden", "this room is read-only: only its admin posts here")
    end
end, 100)

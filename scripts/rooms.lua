-- Room rules: private rooms, member limits, read-only rooms, bans.
-- A room's rules live in its settings, given at creation:
--   room:create { name = "staff", type = "group",
--                 settings = { private = true, maxMembers = 50, readOnly = false } }
local chat = require "chat"

chat.hook("room/join", function(ev)
    local room, settings = ev.room, ev.room.settings or {}
    if settings.private then
        return chat.reject("forbidden", "this room is private: ask its admin to add you")
    end
    if type(settings.maxMembers) == "number" and #room.participants >= settings.maxMembers then
        return chat.reject("forbidden",
            ("this room is full (%d members); ask its admin to make room"):format(settings.maxMembers))
    end
    local banned = chat.banned_for(room.id, ev.user.id)
    if banned then
        return chat.reject("forbidden", banned == math.huge and "you are banned from this room"
            or ("you are banned from this room for %d more minutes"):format(math.ceil(banned / 60)))
    end
end, 100)

chat.hook("message/before", function(ev)
    local settings = ev.room.settings or {}
    if settings.readOnly and ev.room.admin ~= ev.user.id then
        return chat.reject("forbidden", "this room is read-only: only its admin posts here")
    end
end, 100)

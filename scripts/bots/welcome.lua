-- The welcome bot greets everyone who joins a room (people, not other bots).
local chat = require "chat"

local bot = chat.bot(chat.setting("welcome_bot", "welcome-bot"))

chat.hook("room/joined", function(ev)
    if chat.is_bot(ev.user.id) then return end
    bot:send(ev.room.id, ("Welcome to %s, %s! Type /help to see what I can do."):format(
        ev.room.name ~= "" and ev.room.name or "the room", ev.user.username or "there"))
end)

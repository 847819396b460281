-- The welcome bot greets everyone who joins a room.
local chat = require "chat"

local bot = chat.bot(chat.setting("welcome_bot", "welcome-bot"))

chat.hook("room/joined", function(ev)
    if ev.user.id == bot.id then return end
    local name = ev.user.username or "there"
    bot:send(ev.room.id, ("Welcome to %s, %s! Type /help to see what I can do."):format(
        ev.room.name ~= "" and ev.room.name or "the room", name))
end)

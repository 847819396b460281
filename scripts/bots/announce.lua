-- The announcement bot posts a message on a schedule to the rooms it is given.
--   CHAT_ANNOUNCE_ROOMS="<roomId>,<roomId>"  CHAT_ANNOUNCE_TEXT="..."  CHAT_ANNOUNCE_EVERY_S=3600
-- It does nothing until rooms are configured.
local chat = require "chat"

local announce = {
    rooms = {},
    text = chat.setting("announce_text", "Reminder: be kind, and have fun."),
    every_s = chat.setting("announce_every_s", 3600),
    bot = chat.bot(chat.setting("announce_bot", "announce-bot")),
}
for id in chat.setting("announce_rooms", ""):gmatch("%x+") do
    announce.rooms[#announce.rooms + 1] = id
end

function announce.post()
    for _, id in ipairs(announce.rooms) do
        local ok, err, code = announce.bot:send(id, announce.text)
        if not ok then
            chat.log.warn("the announcement could not be posted", { room = id, error = err, code = code })
        end
    end
end

if #announce.rooms > 0 then
    chat.timer.every(math.floor(announce.every_s * 1000), announce.post)
end

return announce -- specs that load this file post with announce.post()

-- The announcement bot posts a message on a schedule to the rooms it is given.
--   CHAT_ANNOUNCE_ROOMS="<roomId>,<roomId>"  CHAT_ANNOUNCE_TEXT="..."  CHAT_ANNOUNCE_EVERY_S=3600
-- It does nothing until rooms are configured.
local chat = require "chat"

local rooms = {}
for id in (chat.setting("announce_rooms", "")):gmatch("[%x]+") do rooms[#rooms + 1] = id end
local text = chat.setting("announce_text", "Reminder: be kind, and have fun.")
local every = chat.setting("announce_every_s", 3600)

if #rooms > 0 then
    local bot = chat.bot(chat.setting("announce_bot", "announce-bot"))
    chat.timer.every(math.floor(every * 1000), function()
        for _, id in ipairs(rooms) do
            local ok, err = bot:send(id, text)
            if not ok then
                chat.log.warn("the announcement could not be posted", { room = id, error = err })
            end
        end
    end)
end

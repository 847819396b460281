-- An echo bot: post "/echo some text" in any room and the bot says it back.
-- Run it alone:   mkdir /tmp/bots && cp examples/bots/echo_bot.lua /tmp/bots/
--                 CHAT_SCRIPTS_DIR=/tmp/bots build/chatd
-- or drop it into scripts/bots/ next to the default bots.
local chat = require "chat"

-- A bot is a user: its account is created the first time it speaks, and what it says is
-- stored and delivered like anyone's message.
local bot = chat.bot("echo-bot")

-- message/after runs once a message is stored; nothing waits for it.
chat.hook("message/after", function(ev)
    local text = ev.message.content:match("^/echo%s+(.+)$")
    if text and not chat.is_bot(ev.user.id) then
        local ok, err, code = bot:send(ev.room.id, text) -- joins the room first if it must
        if not ok then
            chat.log.warn("the echo bot could not answer", { room = ev.room.id, error = code, message = err })
        end
    end
end)

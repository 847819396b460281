-- The help bot answers commands posted in a room: /help, /rules, /time.
local chat = require "chat"

local bot = chat.bot(chat.setting("help_bot", "help-bot"))

local answers = {
    help = "Commands: /help, /rules, /time. Room admins: /mute @name 10m, /unmute @name, "
        .. "/kick @name, /ban @name 1h, /unban @name, /invite @name.",
    rules = "Be kind. No spam: repeating a message is blocked, and there is a rate limit.",
    time = function() return os.date("!Server time: %Y-%m-%d %H:%M UTC") end,
}

chat.hook("message/after", function(ev)
    local command = ev.message.content:match("^/(%a+)%s*$")
    local answer = command and answers[command:lower()]
    if answer and not chat.is_bot(ev.user.id) then
        bot:send(ev.room.id, type(answer) == "function" and answer() or answer)
    end
end)

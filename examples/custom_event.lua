-- A custom event on a namespace of its own: clients connect to /dice, without signing in,
-- and roll dice; what the handler returns is the event's ack.
--   const dice = io("http://127.0.0.1:8080/dice");
--   const { rolls, total } = await dice.emitWithAck("roll", { sides: 6, count: 2 });
-- Run it:   mkdir /tmp/dice && cp examples/custom_event.lua /tmp/dice/
--           CHAT_SCRIPTS_DIR=/tmp/dice build/chatd
local chat = require "chat"

-- clients may connect to /dice; anonymous: without a token
chat.namespace("/dice", { anonymous = true })

-- "event/roll" receives the "roll" event from every namespace: answer on /dice only.
chat.hook("event/roll", function(ev)
    if ev.namespace ~= "/dice" then
        return chat.reject("not_found", "roll dice on the /dice namespace")
    end
    local req = ev.args[1]
    if type(req) ~= "table" then
        return chat.reject("invalid_payload", "send { sides, count }")
    end
    local sides, count = math.tointeger(req.sides or 6), math.tointeger(req.count or 1)
    if not sides or sides < 2 or sides > 100 or not count or count < 1 or count > 10 then
        return chat.reject("invalid_payload", "sides must be 2 to 100 and count 1 to 10")
    end
    local rolls, total = {}, 0
    for i = 1, count do
        rolls[i] = math.random(sides)
        total = total + rolls[i]
    end
    return { ok = true, rolls = rolls, total = total }
end)

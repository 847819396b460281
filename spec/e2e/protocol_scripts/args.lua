local chat = require "chat"

-- every argument back as the ack's arguments, in order
chat.hook("event/echo", function(ev)
    return table.unpack(ev.args, 1, #ev.args)
end)

-- what the handler saw: ev.data is the first argument, ev.args all of them
chat.hook("event/inspect", function(ev)
    local kinds = chat.array()
    for i = 1, #ev.args do kinds[i] = type(ev.args[i]) end
    return { n = #ev.args, data = ev.data, kinds = kinds }
end)

-- several arguments to one socket, to every socket of a user and to a room
chat.hook("event/fanout", function(ev)
    local roomId = ev.args[1]
    chat.emit_socket(ev.socket.id, "to:socket", 1, "two", { three = { true } })
    chat.emit_user(ev.user.id, "to:user", "a", chat.null, 3)
    chat.emit_room(roomId, "to:room", { room = roomId }, 42)
    chat.emit_socket(ev.socket.id, "to:bare")
    return true
end)

-- binary values in place: the bytes of each argument, reversed, nested as they came
local function reverse(v)
    if type(v) == "userdata" then return chat.binary(tostring(v):reverse()) end
    if type(v) == "table" then
        local out = {}
        for k, x in pairs(v) do out[k] = reverse(x) end
        return setmetatable(out, getmetatable(v))
    end
    return v
end
chat.hook("event/reverse", function(ev)
    local out = {}
    for i = 1, #ev.args do out[i] = reverse(ev.args[i]) end
    return table.unpack(out, 1, #out)
end)

-- binary to the client: two attachments nested in an emit, and in an ack
chat.hook("event/blobs", function(ev)
    chat.emit_socket(ev.socket.id, "blobs", "head",
        { a = chat.binary("\1\2"), list = { chat.binary("\3"), { deep = chat.binary("") } } },
        chat.binary("\255"))
    return chat.binary("ack-bytes"), { more = chat.binary("\0") }
end)
chat.hook("event/room-blobs", function(ev)
    chat.emit_room(ev.args[1], "room:blobs", chat.binary("x"), { y = chat.binary("yy") })
    chat.emit_user(ev.user.id, "user:blobs", chat.binary("u1"), chat.binary("u2"))
    return true
end)

-- docs/SCRIPTING.md's example: socket.emit("divide", 7, 2, (q, r) => ...)
chat.hook("event/divide", function(ev)
    local a, b = ev.args[1], ev.args[2]
    if type(a) ~= "number" or type(b) ~= "number" or b == 0 then
        return chat.reject("invalid_payload", "send two numbers, the second not 0")
    end
    return a // b, a % b
end)

-- to another user, wherever they are connected: several arguments, one of them bytes
chat.hook("event/poke", function(ev)
    chat.emit_user(ev.args[1], "poked", "from", ev.user.id, { bytes = chat.binary("\1\2") })
    return true
end)

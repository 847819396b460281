-- examples/auth_session.lua: authentication as a policy. Sign-in with opaque session tokens
-- kept in the kv (Redis when CHAT_REDIS_URL is set, so every node knows them), and
-- anonymous visitors; anything else gets the built-in JWT check, as without this file.
--
--   a signed-in client asks for a session:  socket.emitWithAck("session:create") -> { session }
--   later connections, on any node:         io(url, { auth: { session } })
--   ending it:                               socket.emitWithAck("session:end")
--   visitors:                                io(url, { auth: { guest: true } })
local chat = require "chat"

local TTL_MS = chat.setting("session_ttl_s", 86400) * 1000   -- CHAT_SESSION_TTL_S

chat.hook("connect/auth", function(ev)
    local session = ev.auth.session
    if session ~= nil then
        if type(session) ~= "string" or not session:match("^%x+$") or #session ~= 64 then
            return chat.reject("unauthorized", "that is not a session token",
                { reason = "malformed" })
        end
        local userId = chat.kv.get("session:" .. session)
        if not userId then
            return chat.reject("unauthorized", "the session has ended; sign in again",
                { reason = "expired" })
        end
        return chat.accept(userId)
    end
    if ev.auth.guest == true and ev.auth.token == nil then
        return chat.accept_anonymous()   -- the chat's own events answer it "unauthorized"
    end
    -- nothing returned: no decision, so the token check (auth.token, a JWT) applies
end)

chat.hook("event/session:create", function(ev)
    if not ev.user then
        return chat.reject("unauthorized", "sign in first")
    end
    local session = chat.crypto.hex(chat.crypto.random_bytes(32))
    chat.kv.set("session:" .. session, ev.user.id, TTL_MS)
    return { ok = true, session = session }
end)

chat.hook("event/session:end", function(ev)
    local session = ev.data and ev.data.session
    if type(session) == "string" and chat.kv.get("session:" .. session) == (ev.user and ev.user.id) then
        chat.kv.del("session:" .. session)
    end
    return { ok = true }
end)

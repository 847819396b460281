-- chat.actions: the parts of the `chat` module written in Lua: kick, ban, mute and bots.
-- Bans and mutes are kv keys with a TTL, so they expire by themselves and hold on every node.
return function(chat)
    local function ban_key(roomId, userId) return "ban:" .. roomId .. ":" .. userId end
    local function mute_key(roomId, userId) return "mute:" .. roomId .. ":" .. userId end

    -- Removes the user from the room on every device and tells them why.
    function chat.kick(roomId, userId, reason)
        local ok, err, code = chat.leave(roomId, userId)
        if ok then
            chat.emit_user(userId, "notify", { type = "kicked", roomId = roomId, reason = reason })
        end
        return ok, err, code
    end

    -- A ban or a mute is stored as the time it ends (0: never), with a TTL to match.
    local function restrict(key, seconds)
        local ms = seconds and math.floor(seconds * 1000) or 0
        local untilMs = ms > 0 and chat.now() + ms or 0
        return chat.kv.set(key, tostring(untilMs), ms)
    end

    local function remaining(key)
        local v = chat.kv.get(key)
        if v == nil then return nil end
        local untilMs = tonumber(v) or 0
        if untilMs == 0 then return math.huge end
        local left = untilMs - chat.now()
        return left > 0 and left / 1000 or nil
    end

    -- Keeps the user out for `seconds` (forever when nil) and removes them if they are in.
    function chat.ban(roomId, userId, seconds, reason)
        local ok, err, code = restrict(ban_key(roomId, userId), seconds)
        if not ok then return nil, err, code end
        chat.kick(roomId, userId, reason or "banned")
        return true
    end

    function chat.unban(roomId, userId) return chat.kv.del(ban_key(roomId, userId)) end

    -- Seconds left on a ban (math.huge: forever), or nil when the user is not banned.
    function chat.banned_for(roomId, userId) return remaining(ban_key(roomId, userId)) end

    function chat.is_banned(roomId, userId) return chat.banned_for(roomId, userId) ~= nil end

    -- The user stays in the room but cannot post for `seconds` (forever when nil).
    function chat.mute(roomId, userId, seconds)
        local ok, err = restrict(mute_key(roomId, userId), seconds)
        if ok then
            chat.emit_user(userId, "notify", { type = "muted", roomId = roomId, seconds = seconds })
        end
        return ok, err
    end

    function chat.unmute(roomId, userId) return chat.kv.del(mute_key(roomId, userId)) end

    -- Seconds left on a mute (math.huge: until lifted), or nil when the user may post.
    function chat.muted_for(roomId, userId) return remaining(mute_key(roomId, userId)) end

    function chat.is_muted(roomId, userId) return chat.muted_for(roomId, userId) ~= nil end

    -- Bots' accounts get an address under this domain, which people cannot register.
    local BOT_EMAIL = "@bots.invalid"

    -- true when the user is a bot (an account made by chat.bot or chat._ensure_user).
    function chat.is_bot(userId)
        local user = chat.store.user(userId)
        local email = user and user.email
        return type(email) == "string" and email:lower():sub(-#BOT_EMAIL) == BOT_EMAIL
    end

    -- A bot is a user: chat.bot("helper") returns an object whose messages are stored and
    -- delivered like anyone's. Its account is created the first time it acts.
    local Bot = {}
    Bot.__index = Bot

    function Bot:account()
        if not self.id then
            local user, err, code = chat._ensure_user(self.username)
            if not user then return nil, err, code end
            self.id = user.id
        end
        return self.id
    end

    function Bot:join(roomId)
        local id, err, code = self:account()
        if not id then return nil, err, code end
        return chat.join(roomId, id)
    end

    -- Posts in the room, joining it first when the bot is not a member yet.
    function Bot:send(roomId, content)
        local id, err, code = self:account()
        if not id then return nil, err, code end
        local message, serr, scode = chat._send_as(id, roomId, content)
        if not message and scode == "forbidden" then
            local room, jerr, jcode = chat.join(roomId, id)
            if not room then return nil, jerr, jcode end
            return chat._send_as(id, roomId, content)
        end
        return message, serr, scode
    end

    function chat.bot(username)
        assert(type(username) == "string" and #username >= 3, "a bot needs a username")
        return setmetatable({ username = username }, Bot)
    end
end

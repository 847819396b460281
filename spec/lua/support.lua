-- Helpers shared by the specs in spec/lua: load a policy alone, make rooms in the real store,
-- and build events shaped like the ones runtime/src/domain.c builds for each hook.
local chat = require "chat"

local M = {}

-- A fresh 24-hex id. People in specs are plain ids: chatd --run has no sign-up, and accounts
-- made with chat._ensure_user are bots (chat.is_bot), which some policies treat differently.
function M.id()
    return chat.crypto.hex(chat.crypto.random_bytes(12))
end

local seq = 0
local function unique(prefix)
    seq = seq + 1
    return ("%s_%d_%s"):format(prefix, seq, chat.crypto.hex(chat.crypto.random_bytes(3)))
end

-- A person: { id, username } (no account in the store).
function M.person(name)
    return { id = M.id(), username = name or unique("p") }
end

-- An account in the store that chat.store.user_by_name finds (a moderation target).
function M.account(name)
    return assert(chat._ensure_user(name or unique("acct")))
end

-- A group room in the store with admin as its admin; others are member ids.
function M.room(admin, settings, others)
    local ids = {}
    for i, p in ipairs(others or {}) do ids[i] = p.id end
    return assert(chat.create_room(admin.id, {
        name = unique("room"), type = "group", participants = chat.array(ids),
        settings = settings or {},
    }))
end

-- Drops every hook (the state is shared by all spec files), so what runs is only what the
-- spec loads next. The dispatch chain holds the same table, so it is emptied in place.
function M.reset_hooks()
    local hooks = debug.getregistry()["chat.hooks"]
    for name in pairs(hooks) do hooks[name] = nil end
end

-- Loads policy files alone (hooks reset first); returns what the last one returns (its
-- settings, when it has some).
function M.load(...)
    M.reset_hooks()
    local result
    for _, path in ipairs({ ... }) do result = dofile(path) end
    return result
end

local function socket(ip)
    return { id = unique("sock"), namespace = "/", ip = ip or "127.0.0.1" }
end

-- The events, as domain.c builds them.
function M.join_ev(user, room) return { socket = socket(), user = user, room = room } end

function M.message_ev(user, room, content, ip)
    return { socket = socket(ip), user = user, room = room, message = { content = content } }
end

function M.after_ev(user, room, message)
    return { socket = socket(), user = user, room = { id = room.id }, message = message }
end

-- The messages of a room, oldest first.
function M.history(room)
    local page = assert(chat.store.messages(room.id, { limit = 100 }))
    local out = {}
    for i = #page.messages, 1, -1 do out[#out + 1] = page.messages[i] end
    return out
end

-- Asserts r is a chat.reject(...) result with this code; returns its message.
function M.rejected(r, code)
    assert(type(r) == "table" and r.code, "expected a rejection, got " .. tostring(r))
    assert(r.code == code, ("expected %s, got %s (%s)"):format(code, r.code, r.message))
    return r.message
end

function M.is_member(room, userId)
    local fresh = assert(chat.store.room(room.id))
    for _, id in ipairs(fresh.participants) do
        if id == userId then return true end
    end
    return false
end

return M

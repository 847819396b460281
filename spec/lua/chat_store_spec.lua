-- chat.store: read queries on the real store (SQLite in the data dir).
local chat = require "chat"
local support = require "support"

describe("chat.store", function()
    local admin, other, room

    setup(function()
        admin = support.account()
        other = support.person()
        room = support.room(admin, { topic = "specs" }, { other })
    end)

    it("room(id) returns the room with its participants, admin and settings", function()
        local r = chat.store.room(room.id)
        assert.equal(room.id, r.id)
        assert.equal(admin.id, r.admin)
        assert.equal("group", r.type)
        assert.equal("specs", r.settings.topic)
        assert.same({ admin.id, other.id }, { r.participants[1], r.participants[2] })
    end)

    it("a room or user that does not exist is nil, not an error", function()
        local r, err = chat.store.room(support.id())
        assert.is_nil(r)
        assert.is_nil(err)
        assert.is_nil(chat.store.user(support.id()))
        assert.is_nil(chat.store.user_by_name("nobody_" .. support.id()))
    end)

    it("user(id) and user_by_name(name) find an account, never with its password hash", function()
        local u = chat.store.user(admin.id)
        assert.equal(admin.username, u.username)
        assert.is_nil(u.passwordHash)
        local same = chat.store.user_by_name(admin.username)
        assert.equal(admin.id, same.id)
        assert.is_nil(same.passwordHash)
    end)

    it("rooms_for_user(id) lists the rooms a user belongs to", function()
        local mine = support.room(admin)
        local ids = {}
        for _, r in ipairs(chat.store.rooms_for_user(admin.id)) do ids[r.id] = true end
        assert.is_true(ids[room.id])
        assert.is_true(ids[mine.id])
        local theirs = {}
        for _, r in ipairs(chat.store.rooms_for_user(other.id)) do theirs[r.id] = true end
        assert.is_true(theirs[room.id])
        assert.is_nil(theirs[mine.id])
    end)

    it("messages(roomId, {limit, before}) pages the history newest first", function()
        local r = support.room(admin)
        for i = 1, 5 do assert(chat._send_as(admin.id, r.id, "m" .. i)) end
        local page = chat.store.messages(r.id, { limit = 2 })
        assert.same({ "m5", "m4" }, { page.messages[1].content, page.messages[2].content })
        assert.is_string(page.nextBefore)
        local older = chat.store.messages(r.id, { limit = 10, before = page.nextBefore })
        local contents = {}
        for i, m in ipairs(older.messages) do contents[i] = m.content end
        assert.same({ "m3", "m2", "m1" }, contents)
        assert.equal(admin.id, older.messages[1].senderId)
    end)

    it("messages() raises when the limit is outside 1..100", function()
        assert.has_error(function() chat.store.messages(room.id, { limit = 0 }) end)
        assert.has_error(function() chat.store.messages(room.id, { limit = 101 }) end)
    end)

    it("query arguments are checked: an id must be a string", function()
        assert.has_error(function() chat.store.room() end)
        assert.has_error(function() chat.store.user({}) end)
    end)
end)

-- scripts/rooms.lua: private rooms, member limits, read-only rooms and bans, as the hooks the
-- server runs see them.
local chat = require "chat"
local support = require "support"

describe("policy: rooms", function()
    before_each(function() support.load("scripts/rooms.lua") end)

    local function join(user, room)
        return chat.dispatch("room/join", support.join_ev(user, chat.store.room(room.id)))
    end

    it("lets anyone join an open room", function()
        local room = support.room(support.person())
        assert.is_nil(join(support.person(), room))
    end)

    it("refuses to let people join a private room, saying who can add them", function()
        local room = support.room(support.person(), { private = true })
        local msg = support.rejected(join(support.person(), room), "forbidden")
        assert.matches("private", msg)
        assert.matches("admin", msg)
    end)

    it("refuses a join once the room has maxMembers people, and says the limit", function()
        local admin = support.person()
        local room = support.room(admin, { maxMembers = 3 }, { support.person() })
        assert.is_nil(join(support.person(), room))
        chat.join(room.id, support.person().id) -- the third member
        local msg = support.rejected(join(support.person(), room), "forbidden")
        assert.matches("full %(3 members%)", msg)
    end)

    it("does not count bots that joined to post as taking a seat", function()
        local admin = support.person()
        local room = support.room(admin, { maxMembers = 2 })
        assert(chat.bot("spec-seat-" .. support.id():sub(1, 8)):send(room.id, "hello"))
        assert.equal(2, #chat.store.room(room.id).participants)
        assert.is_nil(join(support.person(), room))
    end)

    it("refuses a banned user, saying when they may come back; unban lets them in", function()
        local room = support.room(support.person())
        local user = support.person()
        chat.ban(room.id, user.id, 600)
        local msg = support.rejected(join(user, room), "forbidden")
        assert.matches("banned", msg)
        assert.matches("join again in 10 min", msg)
        chat.unban(room.id, user.id)
        assert.is_nil(join(user, room))
    end)

    it("a ban without a duration says it is for good", function()
        local room = support.room(support.person())
        local user = support.person()
        chat.ban(room.id, user.id)
        local msg = support.rejected(join(user, room), "forbidden")
        assert.equal("you are banned from this room", msg)
    end)

    it("in a read-only room, only the admin posts", function()
        local admin, member = support.person(), support.person()
        local room = chat.store.room(support.room(admin, { readOnly = true }, { member }).id)
        local msg = support.rejected(chat.dispatch("message/before",
            support.message_ev(member, room, "hi")), "forbidden")
        assert.matches("read%-only", msg)
        assert.is_nil(chat.dispatch("message/before", support.message_ev(admin, room, "news")))
    end)

    it("messages in an ordinary room pass", function()
        local admin, member = support.person(), support.person()
        local room = chat.store.room(support.room(admin, {}, { member }).id)
        assert.is_nil(chat.dispatch("message/before", support.message_ev(member, room, "hi")))
    end)
end)

-- scripts/bots/: the welcome bot, the help bot and the announcement bot. Bots are users: what
-- they say is in the room's history like anyone's message.
local chat = require "chat"
local support = require "support"

local function from(bot_name, room)
    local bot = chat.store.user_by_name(bot_name)
    local said = {}
    for _, m in ipairs(support.history(room)) do
        if bot and m.senderId == bot.id then said[#said + 1] = m.content end
    end
    return said
end

describe("bots", function()
    describe("welcome bot", function()
        before_each(function() support.load("scripts/bots/welcome.lua") end)

        it("greets whoever joins, by name, in the room's history", function()
            local admin, joiner = support.person(), support.person("ada_" .. support.id():sub(1, 6))
            local room = support.room(admin, {}, { joiner })
            chat.dispatch("room/joined", support.join_ev(joiner, chat.store.room(room.id)))
            local said = from("welcome-bot", room)
            assert.equal(1, #said)
            assert.matches("^Welcome to " .. room.name:gsub("%p", "%%%0") .. ", " .. joiner.username .. "!", said[1])
            assert.matches("/help", said[1])
        end)

        it("does not greet bots, itself included", function()
            local room = support.room(support.person())
            for _, name in ipairs({ "welcome-bot", "spec-newbot-" .. support.id():sub(1, 6) }) do
                local bot = chat.bot(name)
                assert(bot:join(room.id))
                chat.dispatch("room/joined", support.join_ev({ id = bot.id, username = name },
                    chat.store.room(room.id)))
            end
            assert.same({}, from("welcome-bot", room))
        end)
    end)

    describe("help bot", function()
        before_each(function() support.load("scripts/bots/help.lua") end)

        local function ask(user, room, content)
            local message = assert(chat._send_as(user.id, room.id, content))
            chat.dispatch("message/after", support.after_ev(user, room, message))
        end

        it("answers /help with the commands", function()
            local user = support.person()
            local room = support.room(user)
            ask(user, room, "/help")
            local said = from("help-bot", room)
            assert.equal(1, #said)
            assert.matches("^Commands: /help, /rules, /time", said[1])
        end)

        it("answers /rules and /time too, and nothing else", function()
            local user = support.person()
            local room = support.room(user)
            ask(user, room, "/rules")
            ask(user, room, "/time")
            ask(user, room, "hello /help")
            ask(user, room, "/unknown")
            local said = from("help-bot", room)
            assert.equal(2, #said)
            assert.matches("^Be kind", said[1])
            assert.matches("^Server time: %d+%-%d+%-%d+ %d+:%d+ UTC$", said[2])
        end)

        it("does not answer bots, so two bots never talk in circles", function()
            local room = support.room(support.person())
            local other = chat.bot("spec-talker-" .. support.id():sub(1, 6))
            local message = assert(other:send(room.id, "/help"))
            chat.dispatch("message/after", support.after_ev({ id = other.id }, room, message))
            assert.same({}, from("help-bot", room))
        end)
    end)

    describe("announcement bot", function()
        it("posts its text to every room it is given", function()
            local announce = support.load("scripts/bots/announce.lua")
            local a, b = support.room(support.person()), support.room(support.person())
            announce.rooms = { a.id, b.id }
            announce.text = "Maintenance at noon"
            announce.post()
            assert.same({ "Maintenance at noon" }, from("announce-bot", a))
            assert.same({ "Maintenance at noon" }, from("announce-bot", b))
        end)

        it("a room it cannot post to is logged and the others still get the text", function()
            local announce = support.load("scripts/bots/announce.lua")
            local good = support.room(support.person())
            announce.rooms = { support.id(), good.id }
            announce.text = "Still here"
            announce.post()
            assert.same({ "Still here" }, from("announce-bot", good))
        end)
    end)
end)

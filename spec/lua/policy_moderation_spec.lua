-- scripts/moderation.lua: the word filter, the room admin's commands (/mute /unmute /kick /ban
-- /unban /invite with durations) and flood control.
local chat = require "chat"
local support = require "support"

describe("policy: moderation", function()
    local settings, admin, target, room

    before_each(function()
        settings = support.load("scripts/moderation.lua")
        settings.blocked = { darn = true, heck = true }
        settings.flood_repeats, settings.flood_window_s = 3, 30
        admin = support.person()
        target = support.account() -- found by name, as /mute @name needs
        room = support.room(admin, {}, { target })
    end)

    -- What the policy answers, and the event after it (the content as it would be stored).
    local function send(user, content)
        local ev = support.message_ev(user, chat.store.room(room.id), content)
        return chat.dispatch("message/before", ev), ev.message.content
    end

    describe("word filter", function()
        it("masks blocked words, whole words in any case, and keeps the rest", function()
            local r, content = send(target, "Darn it, what the HECK; darnation")
            assert.is_nil(r)
            assert.equal("D*** it, what the H***; darnation", content)
        end)

        it("leaves clean messages as they were", function()
            local _, content = send(target, "all good here")
            assert.equal("all good here", content)
        end)
    end)

    describe("profiles", function()
        local function update(changes)
            local ev = { user = { id = target.id }, changes = changes }
            return chat.dispatch("user/update", ev), ev.changes
        end

        it("refuses a display name with a blocked word, whole words in any case", function()
            assert.matches("display name", support.rejected(update({ displayName = "Heck Yes" }), "policy_rejected"))
            assert.is_nil(update({ displayName = "Darnation" }))
        end)

        it("masks blocked words in the status and leaves the rest as sent", function()
            local r, changes = update({ displayName = "Fine", statusText = "darn busy", avatar = "" })
            assert.is_nil(r)
            assert.same({ displayName = "Fine", statusText = "d*** busy", avatar = "" }, changes)
        end)
    end)

    describe("admin commands", function()
        it("/mute @name 10m: the notice replaces the command; the user's posts are refused with how long", function()
            local r, notice = send(admin, "/mute @" .. target.username .. " 10m")
            assert.is_nil(r)
            assert.equal(target.username .. " was muted for 10 min", notice)
            local msg = support.rejected(send(target, "let me talk"), "forbidden")
            assert.equal("you are muted in this room; you can post again in 10 min", msg)
            assert.is_nil(send(admin, "others still talk"))
        end)

        it("/mute without a duration lasts until /unmute", function()
            local _, notice = send(admin, "/mute " .. target.username)
            assert.equal(target.username .. " was muted until lifted", notice)
            assert.matches("until an admin lifts it", support.rejected(send(target, "hello?"), "forbidden"))
            _, notice = send(admin, "/unmute @" .. target.username)
            assert.equal(target.username .. " can post again", notice)
            assert.is_nil(send(target, "thanks"))
        end)

        it("a mute ends by itself", function()
            send(admin, "/mute @" .. target.username .. " 1s")
            assert.is_truthy(send(target, "now?"))
            chat.timer.sleep(1050)
            assert.is_nil(send(target, "now!"))
        end)

        it("/kick removes the user from the room", function()
            local _, notice = send(admin, "/kick @" .. target.username)
            assert.equal(target.username .. " was removed from the room", notice)
            assert.is_false(support.is_member(room, target.id))
        end)

        it("/ban @name 1h removes the user and keeps them out for that long", function()
            local _, notice = send(admin, "/ban @" .. target.username .. " 1h")
            assert.equal(target.username .. " was banned for 1 h", notice)
            assert.is_false(support.is_member(room, target.id))
            local left = chat.banned_for(room.id, target.id)
            assert.is_true(left > 3590 and left <= 3600)
            send(admin, "/unban @" .. target.username)
            assert.is_false(chat.is_banned(room.id, target.id))
        end)

        it("/invite adds someone, also to a private room", function()
            local private = support.room(admin, { private = true })
            local ev = support.message_ev(admin, chat.store.room(private.id), "/invite " .. target.username)
            assert.is_nil(chat.dispatch("message/before", ev))
            assert.equal(target.username .. " was added to the room", ev.message.content)
            assert.is_true(support.is_member(private, target.id))
        end)

        it("only the room's admin may use them", function()
            local msg = support.rejected(send(target, "/kick @" .. target.username), "forbidden")
            assert.equal("only the room's admin can use /kick", msg)
            assert.is_true(support.is_member(room, target.id))
        end)

        it("refuses an unknown user, a bad duration, a duration where none belongs", function()
            assert.matches("usage: /mute @username", support.rejected(send(admin, "/mute @nobody_" .. support.id()), "invalid_payload"))
            assert.matches("30s, 10m, 2h or 1d", support.rejected(send(admin, "/ban @" .. target.username .. " soon"), "invalid_payload"))
            assert.matches("30s, 10m, 2h or 1d", support.rejected(send(admin, "/mute @" .. target.username .. " 0s"), "invalid_payload"))
            assert.matches("takes no duration", support.rejected(send(admin, "/kick @" .. target.username .. " 5m"), "invalid_payload"))
            assert.is_true(support.is_member(room, target.id))
        end)

        it("refuses to mute or kick someone who is not in the room", function()
            local outsider = support.account()
            assert.matches("is not in this room", support.rejected(send(admin, "/kick @" .. outsider.username), "invalid_payload"))
            assert.matches("is not in this room", support.rejected(send(admin, "/mute @" .. outsider.username), "invalid_payload"))
        end)

        it("other slash words are ordinary messages (/help is for the help bot)", function()
            local r, content = send(target, "/help")
            assert.is_nil(r)
            assert.equal("/help", content)
        end)
    end)

    describe("flood control", function()
        it("refuses the same text more than flood_repeats times", function()
            for _ = 1, 3 do assert.is_nil(send(target, "buy now")) end
            local msg = support.rejected(send(target, "buy now"), "policy_rejected")
            assert.matches("same message", msg)
            assert.is_nil(send(target, "something new"))
            assert.is_nil(send(admin, "buy now")) -- counted per user
        end)

        it("forgets after the window", function()
            settings.flood_window_s = 0.2
            for _ = 1, 3 do send(target, "again") end
            assert.is_truthy(send(target, "again"))
            chat.timer.sleep(250)
            assert.is_nil(send(target, "again"))
        end)
    end)
end)

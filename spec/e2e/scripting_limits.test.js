'use strict';
// What a runaway or hostile policy can no longer do to everyone else (issue 10 items 3, 6,
// 10, 11, 12 and issue 9 item 5): escape the instruction budget through nested coroutines
// and pcall, starve the loop with a chain of 0 ms timers, freeze it with a catastrophic
// pattern, grow memory outside the Lua cap with timers or kv values, change what another
// policy relies on, read the JWT secret, or hold a hook waiting for an hour. In each case the
// script call alone fails; the server keeps serving and the other clients do not notice.
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { describe } = require('node:test');
const h = require('./helpers');
const { test, emitAck, assertAckOk, assertAckError, eventually, metric, roomOf } = h;

const ADMIN_TOKEN = crypto.randomBytes(16).toString('hex');

function scriptsDir(files) {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'chatd-limits-'));
    for (const [name, text] of Object.entries(files)) {
        fs.writeFileSync(path.join(dir, name), text);
    }
    return dir;
}

async function sendOk(socket, roomId, content) {
    const ack = await emitAck(socket, 'message:send', { roomId, content, clientMsgId: crypto.randomUUID() });
    assertAckOk(ack, `message:send "${content}"`);
    return ack.message;
}

/** While `attack` runs, another client sends and receives; both must work. */
async function othersKeepChatting(srv, attack) {
    const { sockets: [a, b, c], room } = await roomOf(srv, 3);
    const result = await attack(c);
    const m = await sendOk(b, room.id, 'still here');
    await h.waitFor(a, 'message:new', (x) => x.id === m.id);
    srv.assertAlive();
    return result;
}

const HOSTILE_LUA = `local chat = require "chat"

-- issue 10 item 3: out of budget inside a nested coroutine, then a loop that catches every kill
chat.hook("event/escape", function()
    pcall(coroutine.wrap(function() while true do end end))
    while true do pcall(function() for i = 1, 1e12 do end end) end
end)
chat.hook("event/escape_xpcall", function()
    pcall(coroutine.wrap(function() while true do end end))
    while true do
        xpcall(function() while true do end end, function() while true do end end)
    end
end)
chat.hook("event/escape_close", function()
    pcall(coroutine.wrap(function() while true do end end))
    while true do
        pcall(function()
            local guard <close> = setmetatable({}, { __close = function() while true do end end })
            while true do end
        end)
    end
end)
chat.hook("event/escape_new_coroutines", function()
    while true do
        pcall(coroutine.wrap(function()
            while true do pcall(coroutine.wrap(function() while true do end end)) end
        end))
    end
end)

-- issue 10 item 6: a chain of 0 ms timers that never ends by itself
local chain_on, links = false, 0
local function link()
    links = links + 1
    if chain_on then chat.timer.after(0, link) end
end
chat.hook("event/chain_start", function()
    chain_on = true
    chat.timer.after(0, link)
    return { ok = true }
end)
chat.hook("event/chain_stop", function()
    chain_on = false
    return { links = links }
end)

-- issue 10 item 10
chat.hook("event/pattern", function()
    return { found = ("a"):rep(27):find(("a*"):rep(9) .. "b") or false }
end)

-- issue 10 item 11: timers and kv outside the Lua cap
chat.hook("event/timers", function()
    local made, ok, err = 0, true, nil
    while ok and made < 100000 do
        ok, err = pcall(chat.timer.after, 3600000, function() end)
        if ok then made = made + 1 end
    end
    return { made = made, error = tostring(err) }
end)
chat.hook("event/kv_fill", function()
    local big = ("x"):rep(300000)
    for i = 1, 100 do
        local ok, msg, code = chat.kv.set("big:" .. i, big)
        if not ok then return { stored = i - 1, message = msg, code = code } end
    end
    return { stored = 100 }
end)
chat.hook("event/kv_incr_fill", function()
    local long = ("k"):rep(2000)
    local made = 0
    local r = {}
    for i = 1, 5000 do
        local n, msg, code = chat.kv.incr("incr:" .. long .. i)
        if not n then r = { made = made, message = msg, code = code } break end
        made = i
    end
    for i = 1, made do chat.kv.del("incr:" .. long .. i) end
    r.made = made
    return r
end)
chat.hook("event/kv_small", function()
    return { ok = chat.kv.set("small", "fits") == true }
end)

-- issue 10 item 12
chat.hook("event/secret", function()
    local ok, err = pcall(chat.setting, "jwt_secret", "")
    return { ok = ok, error = tostring(err) }
end)

-- issue 9 item 5: hooks may not wait long; print goes to the log
chat.hook("event/sleep_long", function()
    chat.timer.sleep(3600000)
    return { slept = true }
end)
chat.hook("event/sleep_twice", function()
    chat.timer.sleep(300)
    chat.timer.sleep(300)
    return { slept = true }
end)
chat.hook("event/print", function(ev)
    print("printed by a policy", ev.args[1])
    return { ok = true }
end)
chat.hook("event/ping", function() return { pong = true } end)
`;

// One policy trying to change what the others rely on; each attempt is recorded.
const VANDAL_LUA = `local chat = require "chat"
local changed = {}
local function try(name, fn) if pcall(fn) then changed[#changed + 1] = name end end
try("string metatable __index", function() getmetatable("").__index = { upper = function() return "pwned" end } end)
try("string metatable's table", function() getmetatable("").__index.upper = function() return "pwned" end end)
try("string.upper", function() string.upper = function() return "pwned" end end)
try("rawset(string)", function() rawset(string, "upper", function() return "pwned" end) end)
try("chat.reject", function() chat.reject = function() return nil end end)
try("chat.kv.get", function() chat.kv.get = function() return "pwned" end end)
try("require('chat').hook", function() require("chat").hook = nil end)
try("table.insert", function() table.insert = nil end)
try("package.loaded.chat", function() package.loaded.chat = {} end)
_G.shared_name = "vandal" -- its own _G: nobody else sees it
try("load() globals", function() load("shared_name = 'vandal'")() end)
try("setmetatable(string)", function() setmetatable(string, nil) end)
try("string table via require", function() require("string").upper = function() return "pwned" end end)
-- the vandal's own globals are its own: this must work
my_counter = 1
chat.hook("event/vandal", function() return { changed = chat.array(changed), mine = my_counter } end)
`;

const VICTIM_LUA = `local chat = require "chat"
chat.hook("event/victim", function()
    local r = chat.reject("forbidden", "no")
    return { upper = ("x"):upper(), upper_fn = string.upper("y"), reject = getmetatable(r) ~= nil,
             shared = shared_name or chat.null, my_counter = my_counter or chat.null,
             insert = type(table.insert), hook = type(chat.hook) }
end)
`;

const SLEEPER_LUA = `local chat = require "chat"
chat.hook("event/sleep_in_timer", function(ev)
    local user = ev.user.id
    chat.timer.after(0, function()
        chat.emit_user(user, "sleeping", {})
        chat.timer.sleep(3600000)
    end)
    return { ok = true }
end)
`;

describe('a hostile policy', () => {
    const dir = scriptsDir({ 'a_hostile.lua': HOSTILE_LUA, 'b_vandal.lua': VANDAL_LUA, 'c_victim.lua': VICTIM_LUA });
    const srv = h.useServer({
        scripts: dir,
        env: {
            CHAT_LUA_BUDGET: '2000000', CHAT_LUA_TIMERS_MAX: '500', CHAT_LUA_KV_MB: '1',
            CHAT_LUA_HOOK_WAIT_MS: '500',
        },
    });

    for (const event of ['escape', 'escape_xpcall', 'escape_close', 'escape_new_coroutines']) {
        test(`${event}: the budget holds on every thread; that call fails, everyone else chats`, async () => {
            await othersKeepChatting(srv, async (c) => {
                assertAckError(await emitAck(c, event, {}, 20000), 'internal');
                assert.deepEqual(await emitAck(c, 'ping', {}), { pong: true });
            });
        });
    }

    test('a chain of 0 ms timers leaves the loop to I/O and ends when told', async () => {
        await othersKeepChatting(srv, async (c) => {
            assert.deepEqual(await emitAck(c, 'chain_start', {}), { ok: true });
            // the chain runs while the messages of othersKeepChatting go through
        });
        const u = await srv.register();
        const s = await srv.connect(u.token);
        const stopped = await emitAck(s, 'chain_stop', {});
        assert.ok(stopped.links > 0, 'the chain ran');
    });

    test('a catastrophic pattern fails that call at once with a clear error', async () => {
        const before = await metric(srv.server, 'chatd_script_patterns_refused_total');
        await othersKeepChatting(srv, async (c) => {
            assertAckError(await emitAck(c, 'pattern', {}, 20000), 'internal');
        });
        assert.match(srv.server.output, /pattern too complex/);
        assert.ok(await metric(srv.server, 'chatd_script_patterns_refused_total') > before);
    });

    test('timers are bounded per state (CHAT_LUA_TIMERS_MAX), counted in /metrics', async () => {
        const r = await othersKeepChatting(srv, async (c) => emitAck(c, 'timers', {}, 20000));
        assert.ok(r.made <= 500, `made ${r.made}`);
        assert.match(r.error, /too many timers/);
        assert.ok(await metric(srv.server, 'chatd_script_timers_refused_total') > 0);
        assert.ok(await metric(srv.server, 'chatd_script_timers') <= 500);
    });

    test('kv memory is bounded (CHAT_LUA_KV_MB): nil, message, payload_too_large', async () => {
        const r = await othersKeepChatting(srv, async (c) => emitAck(c, 'kv_fill', {}, 20000));
        assert.ok(r.stored >= 1 && r.stored < 5, `stored ${r.stored}`);
        assert.equal(r.code, 'payload_too_large');
        assert.match(r.message, /CHAT_LUA_KV_MB/);
        assert.ok(await metric(srv.server, 'chatd_script_kv_refused_total') > 0);
    });

    test('kv memory is bounded for incr of new keys too (CHAT_LUA_KV_MB)', async () => {
        const r = await othersKeepChatting(srv, async (c) => emitAck(c, 'kv_incr_fill', {}, 20000));
        assert.ok(r.made < 5000, `made ${r.made} keys of 2 KB each in a 1 MB kv`);
        assert.equal(r.code, 'payload_too_large');
        assert.match(r.message, /CHAT_LUA_KV_MB/);
    });

    test('one policy cannot change the libraries, the chat module or the string metatable of another', async () => {
        const u = await srv.register();
        const s = await srv.connect(u.token);
        const vandal = await emitAck(s, 'vandal', {});
        assert.deepEqual(vandal.changed, [], `changed: ${JSON.stringify(vandal.changed)}`);
        assert.equal(vandal.mine, 1, "a policy's own globals work");
        const victim = await emitAck(s, 'victim', {});
        assert.deepEqual(victim, {
            upper: 'X', upper_fn: 'Y', reject: true, shared: null, my_counter: null,
            insert: 'function', hook: 'function',
        });
    });

    test('chat.setting("jwt_secret") is refused', async () => {
        const u = await srv.register();
        const s = await srv.connect(u.token);
        const r = await emitAck(s, 'secret', {});
        assert.equal(r.ok, false);
        assert.match(r.error, /secret setting/);
        assert.ok(!srv.server.output.includes(srv.secret), 'the secret is not in the log');
    });

    test('a hook cannot sleep past CHAT_LUA_HOOK_WAIT_MS: the call fails, at once', async () => {
        await othersKeepChatting(srv, async (c) => {
            assertAckError(await emitAck(c, 'sleep_long', {}, 5000), 'internal');
            assertAckError(await emitAck(c, 'sleep_twice', {}, 5000), 'internal');
        });
        assert.match(srv.server.output, /CHAT_LUA_HOOK_WAIT_MS/);
    });

    test('print writes a log line, not stdout', async () => {
        const u = await srv.register();
        const s = await srv.connect(u.token);
        assert.deepEqual(await emitAck(s, 'print', 'abc'), { ok: true });
        await eventually(() => /"event":"script","msg":"printed by a policy\\tabc"/.test(srv.server.output),
            'the print is a JSON log line');
    });
});

describe('a reload abandons what the old scripts were waiting on', () => {
    const dir = scriptsDir({ 'sleeper.lua': SLEEPER_LUA });
    const srv = h.useServer({ scripts: dir, env: { CHAT_ADMIN_TOKEN: ADMIN_TOKEN } });

    test("a timer's function sleeping for an hour is dropped by a reload, its sleep cancelled", async () => {
        const u = await srv.register();
        const s = await srv.connect(u.token);
        const sleeping = h.waitFor(s, 'sleeping');
        assert.deepEqual(await emitAck(s, 'sleep_in_timer', {}), { ok: true });
        await sleeping;
        const res = await h.http(srv.server, 'POST', '/admin/reload', '', ADMIN_TOKEN);
        assert.equal(res.status, 200, res.text);
        await eventually(() => /"event":"script_abandoned"/.test(srv.server.output),
            'the sleeping timer function is abandoned');
        assert.deepEqual(await emitAck(s, 'sleep_in_timer', {}), { ok: true }, 'the new scripts serve');
    });
});

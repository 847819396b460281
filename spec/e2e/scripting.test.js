'use strict';
// The Lua layer seen from clients: hot reload (a file changed on disk, POST /admin/reload,
// SIGHUP) changes behaviour for connected clients without a reconnect; a broken script is
// refused while the old version keeps serving; handlers already running finish on their
// version and timers stop with it; a runaway script (a loop, a pcall-wrapped loop, a memory
// bomb) is stopped without harm to anyone else; the sandbox; repeated reloads while clients
// chat lose nothing; and the examples in examples/ run as documented.
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { describe } = require('node:test');
const h = require('./helpers');
const { test, emitAck, assertAckOk, assertAckError, eventually, send, metric, roomOf } = h;

const REPO = path.join(__dirname, '..', '..');
const ADMIN_TOKEN = crypto.randomBytes(16).toString('hex');

/** A temp scripts folder: a copy of the repo's scripts/ (or empty) plus extra files. */
function scriptsDir({ copyDefaults = false, files = {} } = {}) {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'chatd-scripts-'));
    if (copyDefaults) {
        fs.cpSync(path.join(REPO, 'scripts'), dir, { recursive: true });
    }
    for (const [name, text] of Object.entries(files)) {
        fs.mkdirSync(path.dirname(path.join(dir, name)), { recursive: true });
        fs.writeFileSync(path.join(dir, name), text);
    }
    return dir;
}

function adminReload(server, token = ADMIN_TOKEN) {
    return h.http(server, 'POST', '/admin/reload', '', token);
}

function noDisconnects(...sockets) {
    for (const s of sockets) {
        assert.deepEqual(s.inbox.list('disconnect'), [], 'no client was disconnected');
        assert.ok(s.connected, 'still connected');
    }
}

// ---- reload ------------------------------------------------------------------------------

// A handler that tags messages asking for it with its file's VERSION, after an optional
// hold: it tells the sender it is waiting, then waits until a "release" event (run by
// whichever version is current then) sets the hold's kv key. And a ticker that emits its
// VERSION.
const versionLua = (version) => `local chat = require "chat"
local VERSION = "${version}"
chat.hook("message/before", function(ev)
    local hold = ev.message.content:match("^version%? hold=(%w+)")
    if not ev.message.content:match("^version%?") then return end
    if hold then
        chat.emit_socket(ev.socket.id, "test:waiting", { version = VERSION })
        for _ = 1, 250 do -- at most 5 s: the test fails on the content if it never came
            if chat.kv.get("hold:" .. hold) then break end
            chat.timer.sleep(20)
        end
    end
    ev.message.content = ev.message.content .. " -> " .. VERSION
end, 50)

chat.hook("event/release", function(ev)
    chat.kv.set("hold:" .. ev.data.key, "released")
end)

chat.hook("event/ticker", function(ev)
    chat.kv.set("ticker:user", ev.user.id)
end)
chat.timer.every(40, function()
    local user = chat.kv.get("ticker:user")
    if user then chat.emit_user(user, "tick", { version = VERSION }) end
end)
`;

describe('hot reload', () => {
    const dir = scriptsDir({ copyDefaults: true, files: { 'version.lua': versionLua('v1') } });
    const moderation = path.join(dir, 'moderation.lua');
    const srv = h.useServer({
        scripts: dir,
        env: { CHAT_ADMIN_TOKEN: ADMIN_TOKEN, CHAT_RATELIMIT_USER: '100000', CHAT_RATELIMIT_IP: '100000' },
    });

    test('an edited file takes effect for connected clients, without a reconnect', async () => {
        const { sockets: [a, b], room } = await roomOf(srv, 2);
        const before = await send(a, room.id, 'gosh, hello', crypto.randomUUID());
        assert.equal(before.content, 'gosh, hello');
        const text = fs.readFileSync(moderation, 'utf8');
        assert.ok(text.includes('"darn,heck"'), 'moderation.lua has its default word list');
        fs.writeFileSync(moderation, text.replace('"darn,heck"', '"darn,heck,gosh"'));
        let n = 0;
        const masked = await eventually(async () => {
            const m = await send(a, room.id, `gosh ${++n}`, crypto.randomUUID());
            return m.content.startsWith('g***') && m;
        }, 'the edited word list to mask "gosh"');
        await h.waitFor(b, 'message:new', (m) => m.id === masked.id && m.content === `g*** ${n}`);
        noDisconnects(a, b);
    });

    test('POST /admin/reload swaps in the edited scripts before it answers', async () => {
        const { sockets: [a], room } = await roomOf(srv, 1);
        const version = await metric(srv.server, 'chatd_scripts_version');
        fs.writeFileSync(path.join(dir, 'version.lua'), versionLua('v2'));
        const res = await adminReload(srv.server);
        assert.equal(res.status, 200, res.text);
        assert.equal(res.body.ok, true);
        assert.ok(res.body.version > version, `a new version: ${res.text}`);
        const m = await send(a, room.id, 'version?', crypto.randomUUID());
        assert.equal(m.content, 'version? -> v2');
        noDisconnects(a);
    });

    test('POST /admin/reload and SIGHUP reload even when nothing changed', async () => {
        const v0 = await metric(srv.server, 'chatd_scripts_version');
        const res = await adminReload(srv.server);
        assert.equal(res.status, 200, res.text);
        assert.ok(res.body.version > v0);
        srv.server.proc.kill('SIGHUP');
        await eventually(async () => (await metric(srv.server, 'chatd_scripts_version')) > res.body.version,
            'SIGHUP to load a new version');
    });

    test('the admin call needs the admin token', async () => {
        for (const token of [null, 'wrong', h.makeJwt(srv.secret, { sub: h.randomHex24(), exp: h.nowS() + 60 })]) {
            const res = await adminReload(srv.server, token);
            h.assertRestError(res, 401, 'unauthorized');
        }
    });

    test('a handler already running finishes on its version; timers stop with theirs', async () => {
        const { sockets: [a], room } = await roomOf(srv, 1);
        fs.writeFileSync(path.join(dir, 'version.lua'), versionLua('old'));
        assert.equal((await adminReload(srv.server)).status, 200);
        assertAckOk(await emitAck(a, 'ticker', {}), 'ticker subscription');
        await h.waitFor(a, 'tick', (t) => t.version === 'old');

        const key = crypto.randomBytes(6).toString('hex');
        let answered = false;
        const pending = emitAck(a, 'message:send', { roomId: room.id, content: `version? hold=${key}` });
        pending.then(() => { answered = true; });
        await h.waitFor(a, 'test:waiting', (w) => w.version === 'old');
        fs.writeFileSync(path.join(dir, 'version.lua'), versionLua('new'));
        assert.equal((await adminReload(srv.server)).status, 200);
        const fresh = await send(a, room.id, 'version?', crypto.randomUUID());
        assert.equal(fresh.content, 'version? -> new', 'new messages meet the new version');
        assert.equal(answered, false, 'the old handler is still holding after the reload');
        assertAckOk(await emitAck(a, 'release', { key }), 'release');
        const ack = await pending;
        assertAckOk(ack, 'the message that was in the old handler');
        assert.equal(ack.message.content, `version? hold=${key} -> old`);

        // the old version's ticker stopped: after the first "new" tick, only "new" ones come
        const firstNew = await h.waitFor(a, 'tick', (t) => t.version === 'new');
        const ticks = a.inbox.entries.filter((e) => e.event === 'tick');
        const at = ticks.findIndex((e) => e.data === firstNew);
        await h.waitFor(a, 'tick', () => a.inbox.list('tick').length >= at + 4); // a few more
        const after = a.inbox.entries.filter((e) => e.event === 'tick').slice(at + 1);
        assert.ok(after.length >= 3, 'ticks kept coming');
        assert.deepEqual([...new Set(after.map((e) => e.data.version))], ['new']);
        noDisconnects(a);
    });

    test('a broken script is refused with file:line; the old version keeps serving', async () => {
        const { sockets: [a], room } = await roomOf(srv, 1);
        const failures = await metric(srv.server, 'chatd_scripts_reload_failures_total');
        const version = await metric(srv.server, 'chatd_scripts_version');
        const broken = path.join(dir, 'broken.lua');
        fs.writeFileSync(broken, 'local chat = require "chat"\n\nchat.hook("typing", function(ev)\n  return ev.\nend)\n');
        try {
            const res = await adminReload(srv.server);
            h.assertRestError(res, 400, 'invalid_payload');
            assert.match(res.body.error.message, /broken\.lua:\d+:/, 'the error names the file and line');
            assert.ok(await metric(srv.server, 'chatd_scripts_reload_failures_total') > failures,
                'the failure is counted');
            assert.equal(await metric(srv.server, 'chatd_scripts_version'), version, 'the old version serves');
            const m = await send(a, room.id, 'darn it', crypto.randomUUID());
            assert.equal(m.content, 'd*** it', 'the old policies still apply');

            // a file that parses but fails while it initialises is refused the same way
            fs.writeFileSync(broken, 'local chat = require "chat"\nchat.hook("no/such/hook", function() end)\n');
            const init = await adminReload(srv.server);
            h.assertRestError(init, 400, 'invalid_payload');
            assert.match(init.body.error.message, /broken\.lua:2: .*unknown hook 'no\/such\/hook'/);
        } finally {
            fs.rmSync(broken, { force: true });
        }
        const ok = await adminReload(srv.server);
        assert.equal(ok.status, 200, ok.text);
        noDisconnects(a);
    });

    test('20 reloads while clients chat: no connection dropped, no message lost', async () => {
        // a handler that waits a little, so reloads happen while handlers are running
        const slow = path.join(dir, 'slow.lua');
        fs.writeFileSync(slow, `local chat = require "chat"
chat.hook("message/before", function(ev)
    if ev.message.content:match("^sender ") then chat.timer.sleep(5) end
end, 60)
`);
        assert.equal((await adminReload(srv.server)).status, 200);
        const { users, sockets, room } = await roomOf(srv, 3);
        const acked = []; // every message a sender got an ok ack for
        let stop = false;
        let progress = 0; // acks so far, to pace the reloads against the chatting
        const senders = sockets.map(async (s, i) => {
            for (let n = 0; !stop; n++) {
                const content = `sender ${i} message ${n}`;
                const ack = await emitAck(s, 'message:send', { roomId: room.id, content, clientMsgId: crypto.randomUUID() });
                assertAckOk(ack, content);
                acked.push({ from: i, id: ack.message.id });
                progress++;
            }
        });
        const reloadsBefore = await metric(srv.server, 'chatd_scripts_reloads_total');
        try {
            for (let r = 0; r < 20; r++) {
                const mark = progress;
                const res = await adminReload(srv.server);
                assert.equal(res.status, 200, res.text);
                // let every sender get at least one more message through before the next reload
                await eventually(() => progress >= mark + sockets.length, 'messages between reloads');
            }
        } finally {
            stop = true;
            await Promise.all(senders);
            fs.rmSync(slow, { force: true });
        }
        assert.ok(await metric(srv.server, 'chatd_scripts_reloads_total') >= reloadsBefore + 20);
        assert.ok(acked.length >= 60, `${acked.length} messages were sent during the reloads`);
        // delivered: every other member got every acked message
        for (const { from, id } of acked) {
            for (let j = 0; j < sockets.length; j++) {
                if (j !== from) {
                    await h.waitFor(sockets[j], 'message:new', (m) => m.id === id);
                }
            }
        }
        // stored: the history holds every acked message
        const stored = new Set();
        for (let before = ''; ;) {
            const res = await srv.http('GET', `/messages?roomId=${room.id}&limit=100${before}`,
                undefined, users[0].token);
            assert.equal(res.status, 200, res.text);
            res.body.messages.forEach((m) => stored.add(m.id));
            if (!res.body.nextBefore) {
                break;
            }
            before = `&before=${res.body.nextBefore}`;
        }
        const missing = acked.filter((m) => !stored.has(m.id));
        assert.deepEqual(missing, [], 'every acked message is in the history');
        noDisconnects(...sockets);
    });
});

// ---- runaway scripts and the sandbox --------------------------------------------------------

const RUNAWAY_LUA = `local chat = require "chat"
chat.hook("event/spin", function() while true do end end)
chat.hook("event/spin_pcall", function()
    while true do pcall(function() while true do end end) end
end)
chat.hook("event/bomb", function()
    local t = {}
    for i = 1, math.huge do t[i] = ("x"):rep(4096) .. i end
end)
chat.hook("event/raise", function() error("deliberate") end)
chat.hook("event/ping", function(ev) return { ok = true, pong = ev.args[1] } end)

-- what a script can reach that it must not
chat.hook("event/sandbox", function()
    local reachable = {}
    local function check(name, value) if value ~= nil then reachable[#reachable + 1] = name end end
    check("io", io)
    check("debug", debug)
    check("dofile", dofile)
    check("loadfile", loadfile)
    check("os.execute", os.execute)
    check("os.getenv", os.getenv)
    check("os.exit", os.exit)
    check("os.remove", os.remove)
    check("os.rename", os.rename)
    check("string.dump", string.dump)
    check("package.loadlib", package.loadlib)
    check("package.cpath", package.cpath)
    local _, bytecode = load("\\27LuaT\\0", "bytecode", "b")
    local gc_ok = pcall(setmetatable, {}, { __gc = function() end })
    local stop_ok = pcall(collectgarbage, "stop")
    local c_ok = pcall(require, "lpeg")
    return { reachable = chat.array(reachable), bytecode = tostring(bytecode), gc = gc_ok,
             stop = stop_ok, c_module = c_ok, os_time = type(os.time) }
end)
`;

describe('runaway scripts', () => {
    const dir = scriptsDir({ files: { 'runaway.lua': RUNAWAY_LUA } });
    const srv = h.useServer({
        scripts: dir,
        env: { CHAT_LUA_BUDGET: '2000000', CHAT_LUA_MEMORY_MB: '32' },
    });

    for (const [event, what] of [['spin', 'an infinite loop'], ['spin_pcall', 'a loop that catches its own kill with pcall'],
        ['bomb', 'a memory bomb'], ['raise', 'an error']]) {
        test(`${what} fails that one call with internal; everyone else keeps chatting`, async () => {
            const { sockets: [a, b, c], room } = await roomOf(srv, 3);
            const errorsBefore = await metric(srv.server, 'chatd_script_errors_total');
            const inflight = send(b, room.id, 'while the script runs', crypto.randomUUID());
            const ack = await emitAck(c, event, {}, 20000);
            assertAckError(ack, 'internal');
            const m = await inflight;
            await h.waitFor(a, 'message:new', (x) => x.id === m.id);
            const after = await send(a, room.id, 'and after it', crypto.randomUUID());
            await h.waitFor(c, 'message:new', (x) => x.id === after.id);
            const pong = await emitAck(c, 'ping', 'again');
            assert.deepEqual(pong, { ok: true, pong: 'again' }, 'the same client is answered next');
            assert.ok(await metric(srv.server, 'chatd_script_errors_total') > errorsBefore, 'counted');
            noDisconnects(a, b, c);
        });
    }

    test('without an ack callback, the failure arrives as an error event', async () => {
        const u = await srv.register();
        const s = await srv.connect(u.token);
        s.emit('spin', {});
        const e = await h.waitFor(s, 'error', (x) => x.event === 'spin', 20000);
        assert.equal(e.error.code, 'internal');
    });

    test('the sandbox: no os.execute, io, raw files, debug, C modules, bytecode, finalizers', async () => {
        const u = await srv.register();
        const s = await srv.connect(u.token);
        const r = await emitAck(s, 'sandbox', {});
        assert.deepEqual(r.reachable, [], `reachable: ${JSON.stringify(r.reachable)}`);
        assert.match(r.bytecode, /binary chunk/);
        assert.equal(r.gc, false, '__gc is refused');
        assert.equal(r.stop, false, 'collectgarbage("stop") is refused');
        assert.equal(r.c_module, false, 'C modules do not load');
        assert.equal(r.os_time, 'function', 'the harmless parts of os stay');
    });
});

// ---- ev.room --------------------------------------------------------------------------------

// chatd converts a room to Lua once per version of it and gives each event a copy: what one
// event's handlers do to ev.room is seen by the handlers after them in that event only, and
// a join or a leave shows in the next event.
const ROOM_EV_LUA = `local chat = require "chat"
local function describe(r)
    return ("%s | %s | %s | %s"):format(table.concat(r.participants, ","), r.name,
        tostring(r.settings.tag), tostring(r.extra))
end
chat.hook("message/before", function(ev)
    if ev.message.content ~= "room?" then return end
    ev.message.content = describe(ev.room)
end, 70)
chat.hook("message/before", function(ev)
    local r = ev.room
    if not r.settings.tag or not ev.message.content:find(" | ", 1, true) then return end
    r.participants[#r.participants + 1] = "not-a-member"
    r.name, r.extra, r.settings.tag = "renamed", "added", "changed"
end, 60)
chat.hook("message/before", function(ev)
    if not ev.room.settings.tag or not ev.message.content:find(" | ", 1, true) then return end
    ev.message.content = ev.message.content .. " => " .. describe(ev.room)
end, 50)
chat.hook("room/join", function(ev)
    chat.kv.set("join:" .. ev.user.id, describe(ev.room))
end)
chat.hook("event/seen_at_join", function(ev)
    return { seen = chat.kv.get("join:" .. ev.user.id) }
end)
`;

describe('ev.room', () => {
    const srv = h.useServer({ scripts: scriptsDir({ files: { 'room_ev.lua': ROOM_EV_LUA } }) });

    test('each event gets the room as it is now, and a table of its own', async () => {
        const { users: [ua, ub], sockets: [a], room } = await roomOf(srv, 2, { tag: 'blue' });
        const two = `${ua.user.id},${ub.user.id}`;
        const clean = (ids) => `${ids} | ${room.name} | blue | nil`;
        const changed = (ids) => `${ids},not-a-member | renamed | changed | added`;
        const ask = async (who) => (await send(who, room.id, 'room?', crypto.randomUUID())).content;

        assert.equal(await ask(a), `${clean(two)} => ${changed(two)}`,
            'a handler sees what the handlers before it changed in ev.room');
        assert.equal(await ask(a), `${clean(two)} => ${changed(two)}`,
            'the next event starts from the room, not from what the last one changed');

        const uc = await srv.register();
        const c = await srv.connect(uc.token);
        assertAckOk(await emitAck(c, 'room:join', { roomId: room.id }), 'room:join');
        assert.deepEqual(await emitAck(c, 'seen_at_join', {}), { seen: clean(two) },
            'room/join sees the room before the join');
        const three = `${two},${uc.user.id}`;
        assert.equal(await ask(a), `${clean(three)} => ${changed(three)}`, 'the join shows');
        assert.equal(await ask(c), `${clean(three)} => ${changed(three)}`, 'to the new member too');

        assertAckOk(await emitAck(c, 'room:leave', { roomId: room.id }), 'room:leave');
        assert.equal(await ask(a), `${clean(two)} => ${changed(two)}`, 'the leave shows');
    });

    test('rooms are kept apart', async () => {
        const one = await roomOf(srv, 1, { tag: 'one' });
        const two = await roomOf(srv, 2, { tag: 'two' });
        for (let i = 0; i < 2; i++) {
            const m1 = await send(one.sockets[0], one.room.id, 'room?', crypto.randomUUID());
            assert.equal(m1.content.split(' => ')[0], `${one.users[0].user.id} | ${one.room.name} | one | nil`);
            const m2 = await send(two.sockets[0], two.room.id, 'room?', crypto.randomUUID());
            assert.equal(m2.content.split(' => ')[0],
                `${two.users[0].user.id},${two.users[1].user.id} | ${two.room.name} | two | nil`);
        }
    });
});

describe('a script that keeps what it allocates', () => {
    const dir = scriptsDir({
        files: {
            'hoard.lua': `local chat = require "chat"
hoard = nil
chat.hook("event/hoard", function() while true do hoard = { hoard } end end)
chat.hook("event/ping", function() return { ok = true } end)
`,
        },
    });
    const srv = h.useServer({
        scripts: dir,
        env: { CHAT_LUA_BUDGET: '200000000', CHAT_LUA_MEMORY_MB: '16', CHAT_ADMIN_TOKEN: ADMIN_TOKEN },
    });

    test('fills the state: that call fails, chat goes on, the log says so, a reload recovers', async () => {
        const { sockets: [a, b], room } = await roomOf(srv, 2);
        assertAckError(await emitAck(a, 'hoard', {}, 20000), 'internal');
        srv.assertAlive();
        const m = await send(b, room.id, 'messages need no script', crypto.randomUUID());
        await h.waitFor(a, 'message:new', (x) => x.id === m.id);
        assert.match(srv.server.output, /"event":"scripts_memory_full"/);
        assert.equal((await adminReload(srv.server)).status, 200);
        assert.deepEqual(await emitAck(a, 'ping', {}), { ok: true });
        noDisconnects(a, b);
    });
});

// ---- the connect and disconnect hooks -------------------------------------------------------

const GATE_LUA = `local chat = require "chat"
chat.hook("connect", function(ev)
    if ev.auth.client == "blocked" then
        return chat.reject("forbidden", "this client version is blocked; please update")
    end
end)
chat.hook("disconnect", function(ev)
    chat.kv.set("left:" .. ev.user.id, ev.reason)
end)
chat.hook("event/why_left", function(ev)
    return { reason = chat.kv.get("left:" .. ev.args[1]) or chat.null }
end)
chat.hook("typing", function(ev)
    if ev.typing then return chat.reject("policy_rejected", "typing indicators are off here") end
end)
`;

describe('connect, disconnect and typing hooks', () => {
    const srv = h.useServer({ scripts: scriptsDir({ files: { 'gate.lua': GATE_LUA } }) });

    test('connect may refuse a connection with a message; others connect', async () => {
        const u = await srv.register();
        const err = await srv.connectError(u.token, { auth: { token: u.token, client: 'blocked' } });
        assert.equal(err.message, 'this client version is blocked; please update');
        const ok = await srv.connect(u.token, { auth: { token: u.token, client: 'fine' } });
        assert.ok(ok.connected);
    });

    test('disconnect runs when a client goes away', async () => {
        const u = await srv.register();
        const gone = await srv.connect(u.token);
        gone.disconnect();
        const watcher = await srv.connect((await srv.register()).token);
        const r = await eventually(async () => {
            const ack = await emitAck(watcher, 'why_left', u.user.id);
            return ack.reason && ack;
        }, 'the disconnect hook to record the reason');
        assert.match(r.reason, /disconnect|close/);
    });

    test('typing may be refused', async () => {
        const { sockets: [a], room } = await roomOf(srv, 1);
        assertAckError(await emitAck(a, 'typing:start', { roomId: room.id }), 'policy_rejected');
        assertAckOk(await emitAck(a, 'typing:stop', { roomId: room.id }), 'typing:stop');
    });
});

// ---- examples/ ----------------------------------------------------------------------------

describe('examples/bots/echo_bot.lua', () => {
    const dir = scriptsDir();
    fs.copyFileSync(path.join(REPO, 'examples', 'bots', 'echo_bot.lua'), path.join(dir, 'echo_bot.lua'));
    const srv = h.useServer({ scripts: dir });

    test('/echo text: the echo bot posts the text back to the room, stored like any message', async () => {
        const { users: [a], sockets: [as, bs], room } = await roomOf(srv, 2);
        const asked = await send(as, room.id, '/echo hello there', crypto.randomUUID());
        const echo = await h.waitFor(bs, 'message:new', (m) => m.id !== asked.id && m.content === 'hello there');
        await h.waitFor(as, 'message:new', (m) => m.id === echo.id);
        assert.notEqual(echo.senderId, a.user.id);
        const res = await srv.http('GET', `/messages?roomId=${room.id}`, undefined, a.token);
        assert.deepEqual(res.body.messages.map((m) => m.content), ['hello there', '/echo hello there']);
    });

    test('the admin API is off unless CHAT_ADMIN_TOKEN is set', async () => {
        const res = await adminReload(srv.server, 'anything');
        h.assertRestError(res, 404, 'not_found', 'CHAT_ADMIN_TOKEN');
    });
});

describe('bots never speak as a person', () => {
    const dir = scriptsDir();
    fs.copyFileSync(path.join(REPO, 'examples', 'bots', 'echo_bot.lua'), path.join(dir, 'echo_bot.lua'));
    const srv = h.useServer({ scripts: dir });

    test('a person cannot take a bot address, and a bot will not post as a person who took its name', async () => {
        const res = await srv.http('POST', '/auth/register',
            { email: 'sneaky@bots.invalid', username: h.uniqueName('sneaky'), password: h.PASSWORD });
        h.assertRestError(res, 400, 'invalid_payload');
        const squatter = await srv.register('echo-bot');
        const { users: [a], sockets: [as], room } = await roomOf(srv, 1);
        await send(as, room.id, '/echo say it as me', crypto.randomUUID());
        await eventually(() => /"error":"conflict"/.test(srv.server.output) &&
            srv.server.output.includes('the echo bot could not answer'), 'the bot to give up');
        const msgs = (await srv.http('GET', `/messages?roomId=${room.id}`, undefined, a.token)).body.messages;
        assert.deepEqual(msgs.map((m) => [m.senderId, m.content]), [[a.user.id, '/echo say it as me']]);
        assert.notEqual(msgs[0].senderId, squatter.user.id);
    });
});

describe('examples/custom_event.lua', () => {
    const dir = scriptsDir();
    fs.copyFileSync(path.join(REPO, 'examples', 'custom_event.lua'), path.join(dir, 'custom_event.lua'));
    const srv = h.useServer({ scripts: dir });

    test('anyone may connect to /dice without signing in and roll; the answer is the ack', async () => {
        const dice = await srv.connect(undefined, { nsp: '/dice' });
        const r = await emitAck(dice, 'roll', { sides: 6, count: 3 });
        assert.equal(r.ok, true, JSON.stringify(r));
        assert.equal(r.rolls.length, 3);
        for (const v of r.rolls) {
            assert.ok(Number.isInteger(v) && v >= 1 && v <= 6, JSON.stringify(r));
        }
        assert.equal(r.total, r.rolls.reduce((x, y) => x + y, 0));
    });

    test('a bad request is refused with invalid_payload', async () => {
        const dice = await srv.connect(undefined, { nsp: '/dice' });
        assertAckError(await emitAck(dice, 'roll', { sides: 1000 }), 'invalid_payload');
        assertAckError(await emitAck(dice, 'roll', 'six'), 'invalid_payload');
    });

    test('an undeclared namespace is refused, and the event belongs to /dice only', async () => {
        const err = await srv.connectError(undefined, { nsp: '/cards' });
        assert.equal(err.message, 'Invalid namespace');
        const u = await srv.register();
        const main = await srv.connect(u.token);
        assertAckError(await emitAck(main, 'roll', { sides: 6 }), 'not_found');
    });
});

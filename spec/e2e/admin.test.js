'use strict';
// The admin API against its contract, docs/admin-openapi.yaml: every documented path, method
// and status is exercised here and each answer must have the documented shape (a small
// JSON Schema check of the subset the file uses). Besides the shapes, what an operator's
// action does to users: a disabled account is cut off and refused; kick, ban and mute in a
// room or everywhere, announced with a `moderation` event; system messages; a reload that
// fails names file:line and changes nothing; each action logged with the token's name; and
// sanctions survive a restart. (Across nodes: cluster_admin.test.js.)
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { after } = require('node:test');
const YAML = require('yaml');
const h = require('./helpers');
const { test, emitAck, assertAckOk, send } = h;

const REPO = path.join(__dirname, '..', '..');
const SPEC = YAML.parse(fs.readFileSync(path.join(REPO, 'docs', 'admin-openapi.yaml'), 'utf8'));
const ALICE = `alice-${crypto.randomBytes(12).toString('hex')}`;
const ROOT = `root-${crypto.randomBytes(12).toString('hex')}`;
const scripts = fs.mkdtempSync(path.join(os.tmpdir(), 'chatd-admin-scripts-'));
fs.writeFileSync(path.join(scripts, 'ok.lua'), 'local chat = require "chat"\n' +
    'chat.hook("event/probe", function() return { ok = (pcall(chat.setting, "admin_tokens")) } end)\n');
const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'chatd-admin-data-'));
const ENV = { CHAT_ADMIN_TOKEN: ROOT, CHAT_ADMIN_TOKENS: `alice=${ALICE},bob=${crypto.randomBytes(8).toString('hex')}` };
const srv = h.useServer({ scripts, dataDir, env: ENV });

// ---- the contract ---------------------------------------------------------------------

function resolve(node) {
    while (node && node.$ref) {
        node = node.$ref.replace(/^#\//, '').split('/').reduce((o, k) => o[k], SPEC);
    }
    return node;
}

/** Checks v against a JSON Schema of the subset the file uses; throws naming the place. */
function validate(schema, v, where) {
    schema = resolve(schema);
    if (schema.allOf) {
        for (const s of schema.allOf) validate(s, v, where);
        return;
    }
    if (v === null) {
        assert.ok(schema.nullable, `${where} is null, but not nullable`);
        return;
    }
    const types = { object: 'object', array: 'array', string: 'string', integer: 'integer', number: 'number', boolean: 'boolean' };
    if (schema.type) {
        const actual = Array.isArray(v) ? 'array' : Number.isInteger(v) ? 'integer' : typeof v;
        const ok = actual === types[schema.type] || (schema.type === 'number' && actual === 'integer');
        assert.ok(ok, `${where}: a ${schema.type}, got ${JSON.stringify(v)}`);
    }
    if (schema.enum) assert.ok(schema.enum.includes(v), `${where}: one of ${schema.enum}, got ${v}`);
    if (schema.pattern) assert.match(v, new RegExp(schema.pattern), where);
    for (const r of schema.required || []) assert.ok(r in v, `${where}.${r} is required`);
    for (const [k, s] of Object.entries(schema.properties || {})) {
        if (v && k in v) validate(s, v[k], `${where}.${k}`);
    }
    if (schema.items) v.forEach((item, i) => validate(schema.items, item, `${where}[${i}]`));
}

const seen = new Set(); // "METHOD template status"

function operation(method, template) {
    const item = SPEC.paths[template];
    assert.ok(item, `docs/admin-openapi.yaml documents ${template}`);
    const op = item[method.toLowerCase()];
    assert.ok(op, `docs/admin-openapi.yaml documents ${method} ${template}`);
    return op;
}

/** Calls a documented operation and checks the answer against the file. */
async function call(method, template, params = {}, body, token = ALICE, query = '') {
    const op = operation(method, template);
    const urlPath = template.replace(/\{(\w+)\}/g, (_, k) => params[k]) + query;
    const res = await srv.http(method, urlPath, body === undefined && method === 'POST' ? {} : body, token);
    const doc = op.responses[String(res.status)];
    assert.ok(doc, `${method} ${template} answered ${res.status}, which the file does not list: ${res.text}`);
    const schema = resolve(doc).content['application/json'].schema;
    assert.match(res.headers.get('content-type'), /^application\/json/);
    validate(schema, res.body, `${method} ${template} ${res.status}`);
    seen.add(`${method} ${template} ${res.status}`);
    return res;
}

after(() => {
    // every documented path, method and status was answered as documented
    const exempt = {
        // a node that does not answer a reload: needs a second node (cluster_admin.test.js)
        'POST /admin/reload 503': 'cluster_admin.test.js',
    };
    const missing = [];
    for (const [template, item] of Object.entries(SPEC.paths)) {
        for (const method of ['get', 'post']) {
            for (const status of Object.keys(item[method]?.responses || {})) {
                const key = `${method.toUpperCase()} ${template} ${status}`;
                if (!seen.has(key) && !exempt[key]) missing.push(key);
            }
        }
    }
    assert.deepEqual(missing, [], 'documented answers no test produced');
});

// ---- helpers --------------------------------------------------------------------------

async function member(opts) {
    const u = await srv.register();
    const socket = await srv.connect(u.token, opts);
    return { ...u, socket };
}

function adminLines(mark) {
    return srv.server.output.slice(mark).split('\n').filter((l) => l.includes('"admin_action"'))
        .map((l) => JSON.parse(l));
}

const OPS = Object.entries(SPEC.paths).flatMap(([template, item]) =>
    ['get', 'post'].filter((m) => item[m]).map((m) => [m.toUpperCase(), template]));
const SOME_ID = '0123456789abcdef01234567';

// ---- tests ----------------------------------------------------------------------------

test('every path refuses a missing or wrong token (401) and names the failure in the log', async () => {
    for (const [method, template] of OPS) {
        const params = { roomId: SOME_ID, userId: SOME_ID };
        h.assertRestError(await call(method, template, params, undefined, null), 401, 'unauthorized');
        h.assertRestError(await call(method, template, params, undefined, 'wrong'), 401, 'unauthorized');
    }
    assert.match(srv.server.output, /"event":"auth_failed"[^\n]*"door":"admin"/);
    assert.ok(!srv.server.output.includes(ALICE) && !srv.server.output.includes(ROOT), 'no token in the log');
});

test('malformed ids are 400, unknown ones 404, on every path with an id', async () => {
    for (const [method, template] of OPS.filter(([, t]) => t.includes('{'))) {
        const body = method === 'GET' ? undefined : template.endsWith('/system') ? { content: 'hi' } : {};
        h.assertRestError(await call(method, template, { roomId: 'nope', userId: 'nope' }, body), 400, 'invalid_payload');
        h.assertRestError(await call(method, template, { roomId: SOME_ID, userId: SOME_ID }, body), 404, 'not_found');
    }
});

test('scripts cannot read CHAT_ADMIN_TOKENS (chat.setting refuses it as a secret)', async () => {
    const { socket } = await member();
    assert.deepEqual(await emitAck(socket, 'probe', {}), { ok: false });
});

test('GET /admin/stats: this node and the cluster it sees', async () => {
    const { socket } = await member();
    const res = await call('GET', '/admin/stats');
    assert.equal(res.body.cluster.nodes, 1);
    assert.equal(res.body.nodes.length, 1);
    assert.equal(res.body.nodes[0].id, res.body.node.id);
    assert.ok(res.body.node.connections >= 1 && res.body.node.usersOnline >= 1);
    assert.equal(res.body.cluster.scriptsConsistent, true);
    assert.match(res.body.node.scriptsHash, /^[0-9a-f]{64}$/);
    socket.close();
});

test('GET /admin/jobs/dead: the job queue\'s dead-letter list (filled in jobs.test.js)', async () => {
    const res = await call('GET', '/admin/jobs/dead');
    assert.ok(Array.isArray(res.body.jobs));
});

test('GET /admin/users/{id} and /admin/rooms/{id}: the user, their rooms, who is online', async () => {
    const a = await member();
    const b = await srv.register(); // never connects
    const ack = await emitAck(a.socket, 'room:create', { name: h.uniqueName('r'), type: 'group', participants: [b.user.id] });
    assertAckOk(ack, 'room:create');
    const u = await call('GET', '/admin/users/{userId}', { userId: a.user.id });
    assert.equal(u.body.user.id, a.user.id);
    assert.equal(u.body.user.passwordHash, undefined, 'never the password hash');
    assert.ok(u.body.rooms.includes(ack.room.id));
    assert.equal(u.body.online, true);
    const r = await call('GET', '/admin/rooms/{roomId}', { roomId: ack.room.id });
    assert.equal(r.body.room.id, ack.room.id);
    const online = Object.fromEntries(r.body.members.map((m) => [m.id, m.online]));
    assert.deepEqual(online, { [a.user.id]: true, [b.user.id]: false });
});

test('GET /admin/rooms pages through every room; GET /admin/users finds by the start of a name or email', async () => {
    const a = await member();
    const created = [];
    for (let i = 0; i < 3; i++) {
        const ack = await emitAck(a.socket, 'room:create', { name: h.uniqueName('page'), type: 'group', participants: [] });
        assertAckOk(ack, 'room:create');
        created.push(ack.room.id);
    }
    assert.ok((await call('GET', '/admin/rooms')).body.rooms.length >= 3);
    const ids = [];
    let after = '';
    for (let page = 0; page < 100; page++) {
        const res = await call('GET', '/admin/rooms', {}, undefined, ALICE, `?limit=2${after ? `&after=${after}` : ''}`);
        assert.ok(res.body.rooms.length <= 2);
        ids.push(...res.body.rooms.map((r) => r.id));
        if (!res.body.next) break;
        after = res.body.next;
    }
    assert.deepEqual([...ids].sort(), ids, 'oldest first, in id order');
    assert.equal(new Set(ids).size, ids.length, 'no room twice');
    for (const id of created) assert.ok(ids.includes(id), `room ${id} listed`);
    h.assertRestError(await call('GET', '/admin/rooms', {}, undefined, ALICE, '?limit=0'), 400, 'invalid_payload');
    h.assertRestError(await call('GET', '/admin/rooms', {}, undefined, ALICE, '?after=zz'), 400, 'invalid_payload');

    const tag = crypto.randomBytes(3).toString('hex');
    await srv.register(`Find_${tag}_a`);
    await srv.register(`find_${tag}_b`);
    await srv.register(`other_${tag}`, { email: `find_${tag}_c@example.test` });
    const res = await call('GET', '/admin/users', {}, undefined, ALICE, `?q=FIND_${tag}`);
    assert.deepEqual(res.body.users.map((u) => u.username), [`Find_${tag}_a`, `find_${tag}_b`, `other_${tag}`],
        'any case; the email matches too; by username');
    assert.ok(res.body.users.every((u) => u.passwordHash === undefined && u.disabled === false));
    assert.equal((await call('GET', '/admin/users', {}, undefined, ALICE, `?q=find_${tag}&limit=1`)).body.users.length, 1);
    assert.deepEqual((await call('GET', '/admin/users', {}, undefined, ALICE, '?q=%25')).body.users, [],
        'a % is a character, not a wildcard');
    h.assertRestError(await call('GET', '/admin/users'), 400, 'invalid_payload');
});

test('system messages: to everyone connected, and to one room', async () => {
    const a = await member();
    const b = await member({ transports: ['polling'] });
    const ack = await emitAck(a.socket, 'room:create', { name: h.uniqueName('r'), type: 'group', participants: [] });
    assertAckOk(ack, 'room:create');
    h.assertRestError(await call('POST', '/admin/system', {}, {}), 400, 'invalid_payload');
    h.assertRestError(await call('POST', '/admin/system', {}, { content: 'x'.repeat(10001) }), 400, 'invalid_payload');
    h.assertRestError(await call('POST', '/admin/rooms/{roomId}/system', { roomId: ack.room.id }, { content: '' }), 400, 'invalid_payload');
    const all = await call('POST', '/admin/system', {}, { content: 'maintenance at noon' });
    assert.equal(all.body.message.roomId, null);
    for (const s of [a.socket, b.socket]) {
        const m = await h.waitFor(s, 'system:message', (x) => x.content === 'maintenance at noon');
        assert.equal(m.roomId, null);
        h.assertTimeMs(m.createdAt, 'createdAt');
    }
    await call('POST', '/admin/rooms/{roomId}/system', { roomId: ack.room.id }, { content: 'room rules' });
    const m = await h.waitFor(a.socket, 'system:message', (x) => x.content === 'room rules');
    assert.equal(m.roomId, ack.room.id);
    assert.ok(!b.socket.inbox.entries.some((e) => e.event === 'system:message' && e.data.content === 'room rules'),
        'a non-member does not get the room message');
});

test('disable cuts the sockets and refuses tokens, logins and connects; enable lifts it', async () => {
    const u = await member();
    const mark = srv.server.output.length;
    const res = await call('POST', '/admin/users/{userId}/disable', { userId: u.user.id }, { reason: 'spam' });
    assert.equal(res.body.sanctions.length, 1);
    assert.equal(res.body.sanctions[0].kind, 'disable');
    assert.equal(res.body.sanctions[0].by, 'alice');
    const note = await h.waitFor(u.socket, 'moderation');
    assert.deepEqual(note, { action: 'disabled', roomId: null, until: null, reason: 'spam' });
    assert.equal(await h.waitFor(u.socket, 'disconnect'), 'io server disconnect');
    h.assertRestError(await srv.http('GET', '/me', undefined, u.token), 403, 'forbidden', 'disabled');
    h.assertRestError(await srv.http('POST', '/auth/login', { login: u.username, password: u.password }), 403, 'forbidden');
    assert.equal((await srv.connectError(u.token)).message, 'forbidden');
    const line = adminLines(mark).find((l) => l.action === 'disable');
    assert.equal(line.by, 'alice');
    assert.equal(line.userId, u.user.id);
    assert.equal(line.reason, 'spam');
    assert.equal(typeof line.request_id, 'string');

    const en = await call('POST', '/admin/users/{userId}/enable', { userId: u.user.id }, undefined, ROOT);
    assert.deepEqual(en.body.sanctions, []);
    assert.equal((await srv.http('GET', '/me', undefined, u.token)).status, 200);
    (await srv.connect(u.token)).close();
    assert.equal(adminLines(mark).find((l) => l.action === 'enable').by, 'admin');
});

test('kick from a room removes the membership and tells them; kick everywhere disconnects', async () => {
    const a = await member();
    const b = await member();
    const ack = await emitAck(a.socket, 'room:create', { name: h.uniqueName('r'), type: 'group', participants: [b.user.id] });
    assertAckOk(ack, 'room:create');
    const res = await call('POST', '/admin/users/{userId}/kick', { userId: b.user.id }, { roomId: ack.room.id, reason: 'off topic' });
    assert.equal(res.body.roomId, ack.room.id);
    assert.deepEqual(await h.waitFor(b.socket, 'moderation'), { action: 'kicked', roomId: ack.room.id, until: null, reason: 'off topic' });
    await h.waitFor(a.socket, 'room:member_left', (x) => x.userId === b.user.id);
    const r = await call('GET', '/admin/rooms/{roomId}', { roomId: ack.room.id });
    assert.ok(!r.body.room.participants.includes(b.user.id));
    assert.ok(b.socket.connected, 'a kick from a room keeps the connection');

    await call('POST', '/admin/users/{userId}/kick', { userId: b.user.id }, {});
    assert.equal((await h.waitFor(b.socket, 'moderation', (x) => x.roomId === null)).action, 'kicked');
    assert.equal(await h.waitFor(b.socket, 'disconnect'), 'io server disconnect');
    (await srv.connect(b.token)).close(); // a kick is not a ban
    h.assertRestError(await call('POST', '/admin/users/{userId}/kick', { userId: b.user.id }, { seconds: 5 }), 400, 'invalid_payload');
});

test('ban in a room removes and keeps them out; ban everywhere refuses connects; unban lifts each', async () => {
    const a = await member();
    const b = await member();
    const ack = await emitAck(a.socket, 'room:create', { name: h.uniqueName('r'), type: 'group', participants: [b.user.id] });
    assertAckOk(ack, 'room:create');
    const roomId = ack.room.id;
    h.assertRestError(await call('POST', '/admin/users/{userId}/ban', { userId: b.user.id }, { seconds: 0 }), 400, 'invalid_payload');
    h.assertRestError(await call('POST', '/admin/users/{userId}/ban', { userId: b.user.id }, { roomId: 'x' }), 400, 'invalid_payload');
    const res = await call('POST', '/admin/users/{userId}/ban', { userId: b.user.id }, { roomId, seconds: 3600, reason: 'abuse' });
    const ban = res.body.sanctions.find((s) => s.kind === 'ban');
    assert.equal(ban.roomId, roomId);
    assert.ok(ban.until > Date.now() + 3500 * 1000 && ban.until <= Date.now() + 3600 * 1000);
    const note = await h.waitFor(b.socket, 'moderation');
    assert.equal(note.action, 'banned');
    assert.equal(note.roomId, roomId);
    await h.waitFor(a.socket, 'room:member_left', (x) => x.userId === b.user.id);
    const join = await emitAck(b.socket, 'room:join', { roomId });
    h.assertAckError(join, 'forbidden', 'room:join while banned');
    assert.match(join.error.message, /banned in this room until .*: abuse/);
    await call('POST', '/admin/users/{userId}/unban', { userId: b.user.id }, { roomId });
    assertAckOk(await emitAck(b.socket, 'room:join', { roomId }), 'room:join after unban');

    await call('POST', '/admin/users/{userId}/ban', { userId: b.user.id }, {});
    assert.equal(await h.waitFor(b.socket, 'disconnect'), 'io server disconnect');
    assert.equal((await srv.connectError(b.token)).message, 'forbidden');
    await call('POST', '/admin/users/{userId}/unban', { userId: b.user.id }, {});
    (await srv.connect(b.token)).close();
});

test('mute refuses message:send in the room (or everywhere) until it ends or is lifted', async () => {
    const a = await member();
    const b = await member();
    const r1 = await emitAck(a.socket, 'room:create', { name: h.uniqueName('r'), type: 'group', participants: [b.user.id] });
    const r2 = await emitAck(a.socket, 'room:create', { name: h.uniqueName('r'), type: 'group', participants: [b.user.id] });
    await call('POST', '/admin/users/{userId}/mute', { userId: b.user.id }, { roomId: r1.room.id });
    assert.equal((await h.waitFor(b.socket, 'moderation')).action, 'muted');
    const refused = await h.sendAck(b.socket, r1.room.id, 'hello');
    h.assertAckError(refused, 'forbidden', 'muted');
    assert.match(refused.error.message, /muted in this room/);
    await send(b.socket, r2.room.id, 'elsewhere is fine');
    await call('POST', '/admin/users/{userId}/unmute', { userId: b.user.id }, { roomId: r1.room.id });
    await send(b.socket, r1.room.id, 'back');

    // everywhere, for one second: refused now, accepted once it ran out
    await call('POST', '/admin/users/{userId}/mute', { userId: b.user.id }, { seconds: 1 });
    h.assertAckError(await h.sendAck(b.socket, r2.room.id, 'x'), 'forbidden', 'muted everywhere');
    await h.eventually(async () => (await h.sendAck(b.socket, r2.room.id, 'after')).ok === true,
        'the mute ends after its second');
    const u = await call('GET', '/admin/users/{userId}', { userId: b.user.id });
    assert.deepEqual(u.body.sanctions, [], 'an ended mute is not listed');
});

test('POST /admin/reload: all or nothing, with file:line when a file does not load', async () => {
    const before = (await call('GET', '/admin/stats')).body.node;
    const ok = await call('POST', '/admin/reload');
    assert.equal(ok.body.confirmed, true);
    assert.equal(ok.body.version, before.scriptsVersion + 1);
    assert.equal(ok.body.nodes[0].id, before.id);
    fs.writeFileSync(path.join(scripts, 'broken.lua'), 'local chat = require "chat"\n\nthis is not lua\n');
    try {
        const bad = await call('POST', '/admin/reload');
        h.assertRestError(bad, 400, 'invalid_payload');
        assert.match(bad.body.error.message, /broken\.lua:3:/);
        assert.match(bad.body.nodes[0].error, /broken\.lua:3:/);
        const now = (await call('GET', '/admin/stats')).body.node;
        assert.equal(now.scriptsVersion, ok.body.version, 'the old version serves');
        assert.equal(now.scriptsHash, ok.body.nodes[0].hash);
    } finally {
        fs.rmSync(path.join(scripts, 'broken.lua'));
    }
    // the admin API is also off without tokens: its paths are 404 (the file says so)
    assert.match(SPEC.info.description, /answer 404/);
});

test('the admin API is off (404) without tokens', async () => {
    const off = await h.startServer({});
    try {
        h.assertRestError(await h.http(off, 'GET', '/admin/stats', undefined, 'x'), 404, 'not_found');
    } finally {
        await h.stopServer(off);
    }
});

test('CHAT_ADMIN_LISTEN: the admin API on its own address, and only there', async () => {
    const port = await new Promise((resolve) => {
        const s = require('node:net').createServer().listen(0, '127.0.0.1', () => {
            const p = s.address().port;
            s.close(() => resolve(p));
        });
    });
    const other = await h.startServer({ env: { CHAT_ADMIN_TOKEN: ROOT, CHAT_ADMIN_LISTEN: `127.0.0.1:${port}` } });
    const adminSide = { url: `http://127.0.0.1:${port}`, wsUrl: `ws://127.0.0.1:${port}` };
    try {
        assert.equal((await h.http(adminSide, 'GET', '/admin/stats', undefined, ROOT)).status, 200);
        assert.equal((await h.http(adminSide, 'GET', '/metrics')).status, 200);
        h.assertRestError(await h.http(other, 'GET', '/admin/stats', undefined, ROOT), 404, 'not_found');
        h.assertRestError(await h.http(adminSide, 'POST', '/auth/register', { email: 'a@b.c', username: 'abc', password: 'x' }), 404, 'not_found');
        h.assertRestError(await h.http(adminSide, 'GET', '/socket.io/?EIO=4&transport=polling'), 404, 'not_found');
        const ws = new (require('ws'))(`${adminSide.wsUrl}/socket.io/?EIO=4&transport=websocket`);
        const refused = await new Promise((resolve) => {
            ws.on('open', () => resolve(false));
            ws.on('error', () => resolve(true));
            ws.on('close', () => resolve(true));
        });
        assert.ok(refused, 'no websocket on the admin address');
        const u = await h.register(other); // clients are served on the client address
        assert.equal((await h.http(other, 'GET', '/me', undefined, u.token)).status, 200);
    } finally {
        await h.stopServer(other);
    }
});

test('sanctions outlive a restart (SQLite: <data_dir>/sanctions.json)', async () => {
    const u = await srv.register();
    await call('POST', '/admin/users/{userId}/disable', { userId: u.user.id }, {});
    await h.stopServer(srv.server, { keepData: true });
    srv.server = await h.startServer({ scripts, dataDir, secret: srv.server.secret, env: ENV });
    h.assertRestError(await srv.http('GET', '/me', undefined, u.token), 403, 'forbidden');
    await call('POST', '/admin/users/{userId}/enable', { userId: u.user.id }, {});
    assert.equal((await srv.http('GET', '/me', undefined, u.token)).status, 200);
});

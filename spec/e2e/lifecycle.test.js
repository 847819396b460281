'use strict';
// The process: graceful stop with clients connected, data that survives a restart, and a
// refusal to start on a bad setting. These tests start their own servers.
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { spawn } = require('node:child_process');
const { afterEach, after } = require('node:test');
const h = require('./helpers');
const { test, emitAck, assertAckOk } = h;

const started = [];
const dirs = [];

async function start(opts) {
    const s = await h.startServer(opts);
    started.push(s);
    return s;
}

afterEach(h.closeResources);
after(async () => {
    for (const s of started) {
        if (!s.exit) {
            s.proc.kill('SIGKILL');
            await s.exited;
        }
        fs.rmSync(s.dataDir, { recursive: true, force: true });
    }
    for (const d of dirs) {
        fs.rmSync(d, { recursive: true, force: true });
    }
});

h.forEachTransport('lifecycle', (tr) => {
    test('SIGTERM with clients connected: they are disconnected and chatd exits 0', async () => {
        const s = await start();
        const a = await h.register(s);
        const b = await h.register(s);
        const a1 = await h.connect(s, a.token, tr);
        const b1 = await h.connect(s, b.token, tr);
        const room = assertAckOk(await emitAck(a1, 'room:create',
            { name: 'bye', type: 'group', participants: [b.user.id] })).room;
        const m = assertAckOk(await emitAck(a1, 'message:send', { roomId: room.id, content: 'before stop' })).message;
        await h.waitFor(b1, 'message:new', (x) => x.id === m.id);
        await h.stopServer(s); // asserts exit code 0 and no sanitizer report
        await h.waitFor(a1, 'disconnect');
        await h.waitFor(b1, 'disconnect');
    });

    test('accounts, rooms, messages and tokens survive a restart on the same data dir', async () => {
        const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'chatd-e2e-restart-'));
        dirs.push(dataDir);
        const secret = crypto.randomBytes(32).toString('hex');
        const s1 = await start({ dataDir, secret });
        const a = await h.register(s1);
        const b = await h.register(s1);
        const a1 = await h.connect(s1, a.token, tr);
        const room = assertAckOk(await emitAck(a1, 'room:create',
            { name: 'durable', type: 'group', participants: [b.user.id] })).room;
        const m = assertAckOk(await emitAck(a1, 'message:send',
            { roomId: room.id, content: 'acknowledged means stored' })).message;
        await h.stopServer(s1, { keepData: true });

        const s2 = await start({ dataDir, secret });
        const login = await h.http(s2, 'POST', '/auth/login', { login: a.username, password: a.password });
        assert.equal(login.status, 200, login.text);
        assert.equal(login.body.user.id, a.user.id);
        const me = await h.http(s2, 'GET', '/me', undefined, b.token);
        assert.equal(me.status, 200, `a token issued before the restart still works: ${me.text}`);
        const rooms = await h.http(s2, 'GET', '/rooms', undefined, b.token);
        assert.deepEqual(rooms.body.rooms.map((r) => r.id), [room.id]);
        const hist = await h.http(s2, 'GET', `/messages?roomId=${room.id}`, undefined, b.token);
        assert.deepEqual(hist.body.messages.map((x) => [x.id, x.content]), [[m.id, m.content]]);
        const dup = await h.http(s2, 'POST', '/auth/register',
            { email: a.email, username: h.uniqueName('again'), password: h.PASSWORD });
        h.assertRestError(dup, 409, 'conflict');
        // Subscriptions come back from storage on connect.
        const a2 = await h.connect(s2, login.body.token, tr);
        const b2 = await h.connect(s2, b.token, tr);
        const m2 = assertAckOk(await emitAck(a2, 'message:send', { roomId: room.id, content: 'after restart' })).message;
        await h.waitFor(b2, 'message:new', (x) => x.id === m2.id);
        await h.stopServer(s2, { keepData: true });
    });
});

test('an invalid setting makes chatd refuse to start, naming the variable', async () => {
    const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'chatd-e2e-badcfg-'));
    dirs.push(dataDir);
    const bin = process.env.CHATD_BIN ? path.resolve(process.env.CHATD_BIN)
        : path.join(__dirname, '..', '..', 'build', 'chatd');
    const proc = spawn(bin, [], {
        env: {
            ...process.env,
            CHAT_LISTEN: '127.0.0.1:0',
            CHAT_DATA_DIR: dataDir,
            CHAT_JWT_SECRET: crypto.randomBytes(32).toString('hex'),
            CHAT_PING_INTERVAL_MS: 'soon',
        },
        stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    proc.stdout.on('data', (d) => { out += d; });
    proc.stderr.on('data', (d) => { out += d; });
    const [code] = await h.once(proc, 'exit', h.WAIT_MS * 2, 'chatd to exit on a bad setting')
        .catch((err) => {
            proc.kill('SIGKILL');
            throw err;
        });
    assert.notEqual(code, 0, `exit code for a bad setting: ${out}`);
    assert.match(out, /CHAT_PING_INTERVAL_MS/, `the message names the variable: ${out}`);
});

'use strict';
// chatctl, the operator's command line, against a real chatd: the address and token from
// flags or CHATCTL_URL / CHAT_ADMIN_TOKEN (flags win), readable text or --json, and exit
// codes that say what went wrong (1 refused, 2 usage, 3 unreachable).
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const fs = require('node:fs');
const path = require('node:path');
const { spawn } = require('node:child_process');
const h = require('./helpers');
const { test, emitAck, assertAckOk } = h;

const TOKEN = crypto.randomBytes(16).toString('hex');
const srv = h.useServer({ env: { CHAT_ADMIN_TOKENS: `ops=${TOKEN}` } });
const BIN = path.join(path.dirname(path.resolve(process.env.CHATD_BIN || path.join(__dirname, '..', '..', 'build', 'chatd'))), 'chatctl');

/** Runs chatctl; resolves {code, out, err}. env: extra variables (CHATCTL_URL etc. are
 * cleared unless given). */
function chatctl(args, env = {}) {
    assert.ok(fs.existsSync(BIN), `chatctl is built beside chatd: ${BIN}`);
    const base = { ...process.env };
    delete base.CHATCTL_URL;
    delete base.CHAT_ADMIN_TOKEN;
    return h.withTimeout(new Promise((resolve, reject) => {
        const p = spawn(BIN, args, { env: { ...base, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
        let out = '';
        let err = '';
        p.stdout.on('data', (d) => { out += d; });
        p.stderr.on('data', (d) => { err += d; });
        p.on('error', reject);
        p.on('exit', (code) => resolve({ code, out, err }));
    }), h.WAIT_MS * 3, `chatctl ${args.join(' ')}`);
}

const env = () => ({ CHATCTL_URL: srv.url, CHAT_ADMIN_TOKEN: TOKEN });

test('stats from the environment: readable text, and --json as the server said it', async () => {
    const text = await chatctl(['stats'], env());
    assert.equal(text.code, 0, text.err);
    const id = JSON.parse((await chatctl(['--json', 'stats'], env())).out).node.id;
    assert.match(text.out, new RegExp(`^node:\\n  id: ${id}$`, 'm'));
    assert.match(text.out, /^cluster:\n  nodes: 1$/m);
    assert.match(text.out, /^  id +connections +usersOnline/m, 'the nodes as a table');
    const json = await chatctl(['stats', '--json'], env());
    assert.equal(json.code, 0);
    const body = JSON.parse(json.out);
    assert.equal(body.ok, true);
    assert.equal(body.cluster.nodes, 1);
});

test('flags win over the environment; errors say why, with exit codes', async () => {
    const wrong = { CHATCTL_URL: 'http://127.0.0.1:1', CHAT_ADMIN_TOKEN: 'nope' };
    const flags = await chatctl(['--url', srv.url, `--token=${TOKEN}`, 'stats'], wrong);
    assert.equal(flags.code, 0, flags.err);
    const refused = await chatctl(['stats'], { ...env(), CHAT_ADMIN_TOKEN: 'nope' });
    assert.equal(refused.code, 1);
    assert.match(refused.err, /unauthorized \(HTTP 401\)/);
    assert.match(refused.err, /request id: [0-9a-f]{16}/);
    const down = await chatctl(['stats'], wrong);
    assert.equal(down.code, 3);
    assert.match(down.err, /cannot connect to 127\.0\.0\.1:1/);
    for (const args of [['frobnicate'], ['user'], ['ban', 'x', '--for', 'soon'], ['--url', 'ftp://x', 'stats'], []]) {
        const r = await chatctl(args, env());
        assert.equal(r.code, 2, `${args.join(' ')}: ${r.err}`);
        assert.match(r.err, /usage|unknown|takes|must/);
    }
    const help = await chatctl(['--help']);
    assert.equal(help.code, 0);
    for (const cmd of ['stats', 'rooms', 'room', 'users', 'user', 'disable', 'enable', 'kick', 'ban', 'unban', 'mute', 'unmute', 'say', 'announce', 'reload']) {
        assert.match(help.out, new RegExp(`^  ${cmd}\\b`, 'm'), `--help lists ${cmd}`);
    }
});

test('mute, user and unmute: what the user sees, and the sanction in chatctl user', async () => {
    const a = await srv.register();
    const b = await srv.register();
    const sa = await srv.connect(a.token);
    const sb = await srv.connect(b.token);
    const ack = await emitAck(sa, 'room:create', { name: h.uniqueName('r'), type: 'group', participants: [b.user.id] });
    assertAckOk(ack, 'room:create');
    const mute = await chatctl(['mute', b.user.id, '--room', ack.room.id, '--for', '10m', '--reason', 'cool down'], env());
    assert.equal(mute.code, 0, mute.err);
    const note = await h.waitFor(sb, 'moderation');
    assert.equal(note.action, 'muted');
    assert.equal(note.reason, 'cool down');
    assert.ok(note.until > Date.now() + 590e3 && note.until <= Date.now() + 600e3, 'for ten minutes');
    h.assertAckError(await h.sendAck(sb, ack.room.id, 'hi'), 'forbidden', 'muted');
    const user = await chatctl(['user', b.user.id], env());
    assert.match(user.out, /^  username: /m);
    assert.match(user.out, /^sanctions: 1\n  kind +roomId +userId/m);
    assert.match(user.out, new RegExp(`mute +${ack.room.id} +${b.user.id}`));
    assert.match(user.out, / ops /, 'by the token named ops');
    assert.equal((await chatctl(['unmute', b.user.id, '--room', ack.room.id], env())).code, 0);
    await h.send(sb, ack.room.id, 'back');
});

test('say and announce deliver system messages; reload reports each node', async () => {
    const a = await srv.register();
    const sa = await srv.connect(a.token);
    const ack = await emitAck(sa, 'room:create', { name: h.uniqueName('r'), type: 'group', participants: [] });
    assert.equal((await chatctl(['say', ack.room.id, 'hello room'], env())).code, 0);
    assert.equal((await h.waitFor(sa, 'system:message', (m) => m.content === 'hello room')).roomId, ack.room.id);
    assert.equal((await chatctl(['announce', 'hello all'], env())).code, 0);
    assert.equal((await h.waitFor(sa, 'system:message', (m) => m.content === 'hello all')).roomId, null);
    const reload = await chatctl(['reload'], env());
    assert.equal(reload.code, 0, reload.err);
    assert.match(reload.out, /^version: \d+$/m);
    assert.match(reload.out, /^nodes: 1\n  id +version +hash +ok/m);
    const missing = await chatctl(['say', h.randomHex24(), 'x'], env());
    assert.equal(missing.code, 1);
    assert.match(missing.err, /not_found \(HTTP 404\): no room has that id/);
});

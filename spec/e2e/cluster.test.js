'use strict';
// Three chatd nodes behind nginx (deploy/nginx.conf, the very file operators use), one Redis
// and one FerretDB (MongoDB wire protocol): clients on different nodes chat in one room,
// see each other's presence and typing, catch up after a reconnect, and when a node is
// SIGKILLed its clients come back through nginx on another node with every acknowledged
// message in the history. Needs the services: eval "$(tools/services.sh start)".
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { spawn, spawnSync } = require('node:child_process');
const { describe, before, after } = require('node:test');
const h = require('./helpers');
const { test, emitAck, assertAckOk } = h;

const REDIS = process.env.CHAT_TEST_REDIS_URL;
const MONGO = process.env.CHAT_TEST_MONGO_URI;
const NGINX_CONF = path.resolve(__dirname, '..', '..', 'deploy', 'nginx.conf');
const FRONT = { url: 'http://127.0.0.1:8080', wsUrl: 'ws://127.0.0.1:8080' };
const NODE_PORTS = { n1: 8081, n2: 8082, n3: 8083 };
/* what helpers.roomWithMembers wants: register and connect, through nginx */
const VIA_NGINX = {
    register: (...a) => h.register(FRONT, ...a),
    connect: (token, opts) => h.connect(FRONT, token, opts),
};

const nodes = {};
let nginx;

function nodeOf(socket) {
    return socket.io.engine.id.split('.')[0];
}

async function startNginx() {
    const prefix = fs.mkdtempSync(path.join(os.tmpdir(), 'chatd-nginx-'));
    // nothing else to make: nginx makes its temp folders in the prefix (deploy/nginx.conf)
    fs.chmodSync(prefix, 0o755); // workers may run as another user
    const proc = spawn('nginx', ['-p', prefix, '-c', NGINX_CONF, '-e', 'stderr',
        '-g', 'daemon off;'], { stdio: 'inherit' });
    const exited = new Promise((r) => proc.on('exit', r));
    await h.eventually(async () => {
        try {
            const res = await fetch(`${FRONT.url}/healthz`, { signal: AbortSignal.timeout(1000) });
            return res.status === 200;
        } catch {
            return false;
        }
    }, 'nginx on 127.0.0.1:8080');
    return { proc, exited, prefix };
}

/** Sockets through nginx until one lands on a node for which accept(node) is true. */
async function connectOn(token, accept, opts = {}) {
    for (let i = 0; i < 12; i++) {
        const s = await h.connect(FRONT, token, { transports: ['websocket'], ...opts });
        if (accept(nodeOf(s))) {
            return s;
        }
        s.disconnect();
    }
    throw new Error('nginx never sent a handshake to the node wanted');
}

async function history(token, roomId) {
    const ids = [];
    let before = '';
    for (let page = 0; page < 50; page++) {
        const res = await h.http(FRONT, 'GET',
            `/messages?roomId=${roomId}&limit=100${before ? `&before=${before}` : ''}`, undefined, token);
        assert.equal(res.status, 200, JSON.stringify(res.body));
        ids.push(...res.body.messages.map((m) => m.id));
        if (!res.body.nextBefore) {
            return ids;
        }
        before = res.body.nextBefore;
    }
    throw new Error('history did not end');
}

describe('three nodes behind nginx on Redis and FerretDB', () => {
    before(async () => {
        assert.ok(REDIS && MONGO,
            'the cluster test needs Redis and FerretDB: eval "$(tools/services.sh start)"');
        const db = `chatd_cluster_${crypto.randomBytes(4).toString('hex')}`;
        const mongo = MONGO.replace(/\/[^/?]*(\?|$)/, `/${db}$1`);
        const secret = crypto.randomBytes(32).toString('hex');
        for (const [id, port] of Object.entries(NODE_PORTS)) {
            nodes[id] = await h.startServer({
                port,
                secret,
                env: {
                    CHAT_NODE_ID: id,
                    CHAT_REDIS_URL: REDIS,
                    CHAT_MONGO_URI: mongo,
                    CHAT_TRUST_PROXY: '1',
                },
            });
        }
        nginx = await startNginx();
    });

    after(async () => {
        await h.closeResources();
        if (nginx) {
            nginx.proc.kill('SIGTERM');
            await nginx.exited;
        }
        for (const n of Object.values(nodes)) {
            if (!n.exit) {
                await h.stopServer(n);
            }
        }
    });

    test('clients on different nodes chat in one room, with typing and presence', async () => {
        const users = [];
        for (let i = 0; i < 3; i++) {
            users.push(await h.register(FRONT));
        }
        const seen = new Set();
        const sockets = [];
        for (const u of users) {
            const s = await connectOn(u.token, (n) => !seen.has(n));
            seen.add(nodeOf(s));
            sockets.push(s);
        }
        assert.equal(seen.size, 3, 'one socket on each node');
        const [a, b, c] = sockets;
        const created = await emitAck(a, 'room:create', {
            name: 'across', type: 'group', participants: users.slice(1).map((u) => u.user.id),
        });
        assertAckOk(created, 'room:create');
        const roomId = created.room.id;

        const sent = await emitAck(a, 'message:send', { roomId, content: 'hello, every node' });
        assertAckOk(sent, 'message:send');
        for (const s of [b, c]) {
            await h.waitFor(s, 'message:new', (m) => m.id === sent.message.id);
        }

        assertAckOk(await emitAck(b, 'typing:start', { roomId }), 'typing:start');
        for (const s of [a, c]) {
            await h.waitFor(s, 'typing', (t) => t.userId === users[1].user.id && t.typing === true);
        }

        // a polling client is routed by its sid to the node that holds its session
        const d = await h.connect(FRONT, users[2].token, { transports: ['polling'] });
        const again = await emitAck(b, 'message:send', { roomId, content: 'polling too?' });
        await h.waitFor(d, 'message:new', (m) => m.id === again.message.id);

        d.disconnect();
        c.disconnect(); // users[2]'s last socket
        await h.waitFor(a, 'presence:update',
            (p) => p.userId === users[2].user.id && p.status === 'offline');
    });

    test('a client that reconnects on another node catches up on what it missed', async () => {
        const { users, sockets: [a, b], room } = await h.roomWithMembers(VIA_NGINX, { transports: ['websocket'] }, 2);
        const last = await emitAck(a, 'message:send', { roomId: room.id, content: 'seen' });
        await h.waitFor(b, 'message:new', (m) => m.id === last.message.id);
        const away = nodeOf(b);
        b.disconnect();
        const missed = [];
        for (const text of ['one', 'two', 'three']) {
            const ack = await emitAck(a, 'message:send', { roomId: room.id, content: text });
            assertAckOk(ack, text);
            missed.push(ack.message.id);
        }
        const back = await connectOn(users[1].token, (n) => n !== away, {
            auth: { token: users[1].token, since: { [room.id]: last.message.id } },
        });
        await h.waitFor(back, 'message:new', (m) => m.id === missed[2]);
        assert.deepEqual(back.inbox.list('message:new').map((m) => m.id), missed);
    });

    test('SIGKILL of a node: its clients reconnect elsewhere and no acknowledged message is lost', async () => {
        const { users, sockets, room } = await h.roomWithMembers(VIA_NGINX, { transports: ['websocket'] }, 2);
        sockets.forEach((s) => s.disconnect());
        // the victim's client reconnects by itself; the sender sits on another node
        const victimSocket = await h.connect(FRONT, users[1].token, {
            transports: ['websocket'], reconnection: true, reconnectionDelay: 100,
            reconnectionDelayMax: 500,
        });
        const victim = nodeOf(victimSocket);
        const sender = await connectOn(users[0].token, (n) => n !== victim);

        const acked = [];
        const send = async (i) => {
            try {
                const ack = await emitAck(sender, 'message:send', {
                    roomId: room.id, content: `m${i}`, clientMsgId: `kill-${i}`,
                });
                if (ack.ok) {
                    acked.push(ack.message.id);
                }
            } catch {
                /* no ack: the client would retry with the same clientMsgId */
            }
        };
        for (let i = 0; i < 10; i++) {
            await send(i);
        }
        nodes[victim].proc.kill('SIGKILL');
        await nodes[victim].exited;
        for (let i = 10; i < 20; i++) {
            await send(i);
        }
        await h.eventually(() => victimSocket.connected && nodeOf(victimSocket) !== victim,
            'the victim client to reconnect on another node', 15000);
        const after = await emitAck(sender, 'message:send', { roomId: room.id, content: 'after' });
        assertAckOk(after, 'send after the kill');
        acked.push(after.message.id);
        await h.waitFor(victimSocket, 'message:new', (m) => m.id === after.message.id);

        assert.equal(acked.length, 21, 'the sender, on a live node, got every ack');
        const stored = new Set(await history(users[1].token, room.id));
        for (const id of acked) {
            assert.ok(stored.has(id), `acknowledged message ${id} is in the history`);
        }
    });
});

describe('readiness names the dependency that is down', () => {
    // nothing listens on port 1: Redis is down from the start; the store (SQLite) is fine
    const srv = h.useServer({ env: { CHAT_REDIS_URL: 'redis://127.0.0.1:1/0' } });

    test('/readyz answers 503 naming the Redis bus and kv, /healthz stays 200', async () => {
        const ready = await h.http(srv.server, 'GET', '/readyz');
        assert.equal(ready.status, 503, JSON.stringify(ready.body));
        assert.equal(ready.body.error.code, 'unavailable');
        assert.match(ready.body.error.message, /bus \(redis\)/);
        assert.match(ready.body.error.message, /kv \(redis\)/);
        assert.deepEqual(ready.body.checks, { store: 'ok', bus: 'down', kv: 'down' });
        assert.equal((await h.http(srv.server, 'GET', '/healthz')).status, 200);
    });

    test('with Redis down, clients on the same node still chat', async () => {
        const { sockets: [a, b], room } = await h.roomWithMembers(srv, { transports: ['websocket'] }, 2);
        const sent = await emitAck(a, 'message:send', { roomId: room.id, content: 'local still works' });
        assertAckOk(sent, 'message:send with Redis down');
        await h.waitFor(b, 'message:new', (m) => m.id === sent.message.id);
    });
});

describe('raw Redis commands for scripts', () => {
    const scripts = fs.mkdtempSync(path.join(os.tmpdir(), 'chatd-redis-'));
    fs.writeFileSync(path.join(scripts, 'counter.lua'), `
local chat = require "chat"
chat.hook("event/count", function(ev)
    local key = "counter:" .. ev.user.id
    local n = chat.redis("INCRBY", key, tostring(ev.args[1].by))
    local _, refused = chat.redis("SUBSCRIBE", "anything")
    return { n = n, stored = chat.redis("GET", key), refused = refused }
end)
`);
    const srv = h.useServer({ scripts, env: { CHAT_REDIS_URL: REDIS || 'redis://127.0.0.1:1/0' } });

    test('chat.redis runs commands on the configured Redis and refuses blocking ones', async () => {
        assert.ok(REDIS, 'needs Redis: eval "$(tools/services.sh start)"');
        const { token } = await srv.register();
        const s = await srv.connect(token, { transports: ['websocket'] });
        assert.deepEqual(await emitAck(s, 'count', { by: 5 }),
            { n: 5, stored: '5', refused: 'that command is not allowed from scripts' });
        const again = await emitAck(s, 'count', { by: 2 });
        assert.equal(again.n, 7);
    });

    test('the newest messages are cached in Redis at messages:{roomId}:recent, never stale', async () => {
        const { users, sockets: [a], room } = await h.roomWithMembers(srv, { transports: ['websocket'] }, 2);
        const ids = [];
        for (const text of ['one', 'two', 'three']) {
            ids.push((await emitAck(a, 'message:send', { roomId: room.id, content: text })).message.id);
        }
        const page = async (q) => {
            const res = await srv.http('GET', `/messages?roomId=${room.id}${q}`, undefined, users[1].token);
            assert.equal(res.status, 200, JSON.stringify(res.body));
            return res.body;
        };
        const first = await page('&limit=2');
        assert.deepEqual(first.messages.map((m) => m.id), [ids[2], ids[1]]);
        assert.equal(first.nextBefore, ids[1]);
        const key = `messages:${room.id}:recent`;
        const cached = spawnSync('redis-cli', ['-u', REDIS, 'GET', key], { encoding: 'utf8' });
        assert.match(cached.stdout, new RegExp(ids[2]), 'the page is in Redis');
        const ttl = Number(spawnSync('redis-cli', ['-u', REDIS, 'PTTL', key], { encoding: 'utf8' }).stdout);
        assert.ok(ttl > 3500 * 1000 && ttl <= 3600 * 1000, `TTL about 1 h, got ${ttl} ms`);
        // a served copy is never older than the newest message
        ids.push((await emitAck(a, 'message:send', { roomId: room.id, content: 'four' })).message.id);
        assert.deepEqual((await page('&limit=2')).messages.map((m) => m.id), [ids[3], ids[2]]);
        const rest = await page(`&limit=50&before=${ids[2]}`);
        assert.deepEqual(rest.messages.map((m) => m.id), [ids[1], ids[0]]);
        assert.equal(rest.nextBefore, null);
    });
});

describe('the store goes down and comes back', () => {
    const FERRETDB = process.env.CHAT_TEST_FERRETDB_BIN;
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'chatd-ferret-'));
    const port = 27100 + Math.floor(Math.random() * 800);
    let ferret;
    const startFerret = async () => {
        ferret = spawn(FERRETDB, ['--handler=sqlite', `--sqlite-url=file:${dir}/`, `--state-dir=${dir}`,
            `--listen-addr=127.0.0.1:${port}`, '--debug-addr=-', '--telemetry=disable',
            '--log-level=warn'], { stdio: 'ignore' });
        ferret.exited = new Promise((r) => ferret.on('exit', r));
    };
    const srv = h.useServer({
        env: {
            CHAT_MONGO_URI: `mongodb://127.0.0.1:${port}/chatd_down?serverSelectionTimeoutMS=1000`,
        },
    });
    before(async () => {
        assert.ok(FERRETDB, 'needs FerretDB: eval "$(tools/services.sh start)"');
        await startFerret();
        await h.eventually(async () => (await srv.http('GET', '/readyz')).status === 200,
            'chatd ready on its FerretDB', 20000);
    });
    after(async () => {
        if (ferret && ferret.exitCode === null) {
            ferret.kill('SIGKILL');
            await ferret.exited;
        }
    });

    test('message:send answers unavailable, stores nothing, and works again after', async () => {
        const { users, sockets: [a, b], room } = await h.roomWithMembers(srv, { transports: ['websocket'] }, 2);
        const ok = await emitAck(a, 'message:send', { roomId: room.id, content: 'up', clientMsgId: 'up-1' });
        assertAckOk(ok, 'send while the store is up');

        ferret.kill('SIGKILL');
        await ferret.exited;
        const down = await emitAck(a, 'message:send', { roomId: room.id, content: 'down', clientMsgId: 'down-1' });
        assert.equal(down.ok, false, JSON.stringify(down));
        assert.equal(down.error.code, 'unavailable');
        const ready = await srv.http('GET', '/readyz');
        assert.equal(ready.status, 503);
        assert.match(ready.body.error.message, /store/);

        await startFerret();
        await h.eventually(async () => (await srv.http('GET', '/readyz')).status === 200,
            'chatd ready again', 20000);
        // the client retries with the same clientMsgId: stored once, delivered once
        const retry = await emitAck(a, 'message:send', { roomId: room.id, content: 'down', clientMsgId: 'down-1' });
        assertAckOk(retry, 'the retry after the store came back');
        await h.waitFor(b, 'message:new', (m) => m.id === retry.message.id);
        const res = await srv.http('GET', `/messages?roomId=${room.id}&limit=10`, undefined, users[1].token);
        assert.deepEqual(res.body.messages.map((m) => m.content), ['down', 'up']);
    });
});

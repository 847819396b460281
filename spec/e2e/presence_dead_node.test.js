'use strict';
// Presence survives a dead node (issue 13 item 4): three chatd nodes on free ports share
// Redis and FerretDB (no load balancer: each client picks its node). When one node is killed
// with SIGKILL, a live node notices its expired presence record within a few seconds and
// announces its users offline, and online_users forgets them; a user who also has a socket on
// a live node stays online. Needs the services: eval "$(tools/services.sh start)".
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const { spawnSync } = require('node:child_process');
const { describe, before, after } = require('node:test');
const h = require('./helpers');
const { test, emitAck, assertAckOk } = h;

// A database of its own: the keys (not pub/sub, which spans databases) are this file's alone,
// so only these nodes reap these nodes, whatever other files run on the same Redis.
const REDIS = process.env.CHAT_TEST_REDIS_URL &&
    Object.assign(new URL(process.env.CHAT_TEST_REDIS_URL), { pathname: '/5' }).toString();
const MONGO = process.env.CHAT_TEST_MONGO_URI;
const HEARTBEAT_MS = 500;
const TTL_MS = 2000;
/* the bound: the record's TTL, a heartbeat to notice, and slack for a loaded ASan build */
const OFFLINE_WITHIN_MS = TTL_MS + HEARTBEAT_MS + 10000;

function redis(...args) {
    const url = new URL(REDIS);
    const db = url.pathname.replace('/', '') || '0';
    const r = spawnSync('redis-cli', ['-h', url.hostname, '-p', url.port || '6379', '-n', db,
        '--no-raw', ...args], { encoding: 'utf8', timeout: 5000 });
    assert.equal(r.status, 0, `redis-cli ${args.join(' ')}: ${r.stderr}`);
    return r.stdout;
}

const onlineUsers = () => redis('SMEMBERS', 'online_users');

describe('presence when a node dies (Redis)', {
    skip: !(REDIS && MONGO) && 'CHAT_TEST_REDIS_URL and CHAT_TEST_MONGO_URI are not set',
}, () => {
    const nodes = {};
    before(async () => {
        const mongo = new URL(MONGO);
        mongo.pathname = `/chatd_presence_${crypto.randomBytes(4).toString('hex')}`;
        const secret = crypto.randomBytes(32).toString('hex');
        for (const id of ['pa', 'pb', 'pc']) {
            nodes[id] = await h.startServer({
                secret,
                env: {
                    CHAT_NODE_ID: id,
                    CHAT_REDIS_URL: REDIS,
                    CHAT_MONGO_URI: mongo.toString(),
                    CHAT_PRESENCE_HEARTBEAT_MS: String(HEARTBEAT_MS),
                    CHAT_PRESENCE_TTL_MS: String(TTL_MS),
                },
            });
        }
    });
    after(async () => {
        await h.closeResources();
        for (const n of Object.values(nodes)) {
            if (!n.exit) {
                await h.stopServer(n);
            }
        }
    });

    test('SIGKILL of a node: its users go offline for the others within the bound; a user also on a live node stays online', async () => {
        const { pa, pb, pc } = nodes;
        const ws = { transports: ['websocket'] };
        const alice = await h.register(pa); // watches, on pa
        const bob = await h.register(pa); // only on pb, which dies
        const carol = await h.register(pa); // on pb and on pc
        const a = await h.connect(pa, alice.token, ws);
        const created = await emitAck(a, 'room:create', {
            name: 'presence', type: 'group', participants: [bob.user.id, carol.user.id],
        });
        assertAckOk(created, 'room:create');
        const roomId = created.room.id;

        const b = await h.connect(pb, bob.token, ws);
        const c1 = await h.connect(pb, carol.token, ws);
        const c2 = await h.connect(pc, carol.token, ws);
        for (const who of [bob, carol]) {
            await h.waitFor(a, 'presence:update', (p) => p.userId === who.user.id && p.status === 'online');
        }
        await h.eventually(() => onlineUsers().includes(bob.user.id) && onlineUsers().includes(carol.user.id),
            'bob and carol in online_users');
        await h.eventually(() => /pb\./.test(redis('HKEYS', `presence:${carol.user.id}`)) &&
            /pc\./.test(redis('HKEYS', `presence:${carol.user.id}`)), 'presence:{carol} names both nodes');

        const killedAt = Date.now();
        pb.proc.kill('SIGKILL');
        await pb.exited;
        const off = await h.waitFor(a, 'presence:update',
            (p) => p.userId === bob.user.id && p.status === 'offline', OFFLINE_WITHIN_MS)
            .catch((err) => {
                err.message += `\n${h.tail(pa.output, 30)}\n${h.tail(pc.output, 30)}`;
                throw err;
            });
        const tookMs = Date.now() - killedAt;
        h.assertTimeMs(off.lastSeen, 'lastSeen');
        // carol, on pc too, sees bob leave as well
        await h.waitFor(c2, 'presence:update', (p) => p.userId === bob.user.id && p.status === 'offline');
        assert.ok(b && c1, 'the killed node\'s sockets are simply gone');

        const online = onlineUsers();
        assert.ok(!online.includes(bob.user.id), `online_users forgot bob: ${online}`);
        assert.ok(online.includes(carol.user.id), `carol, still on pc, is online: ${online}`);
        assert.doesNotMatch(redis('HKEYS', `presence:${carol.user.id}`), /pb\./, 'the dead node left carol');
        assert.match(redis('HKEYS', `presence:${carol.user.id}`), /pc\./);
        assert.match(redis('GET', `user:${bob.user.id}:online`), /"?0"?/);
        assert.match(redis('GET', `user:${bob.user.id}:last_seen`), /\d{13}/);

        // a message sent after the announcement reaches alice after it: by then any offline
        // announcement for carol would have arrived too, and none did
        const sent = await emitAck(c2, 'message:send', { roomId, content: 'still here' });
        assertAckOk(sent, 'message:send');
        await h.waitFor(a, 'message:new', (m) => m.id === sent.message.id);
        assert.deepEqual(a.inbox.list('presence:update', (p) => p.userId === carol.user.id && p.status === 'offline'), [],
            'carol was never announced offline');

        const metrics = (await h.http(pa, 'GET', '/metrics')).text + (await h.http(pc, 'GET', '/metrics')).text;
        const reaped = [...metrics.matchAll(/^chatd_presence_users_reaped_total (\d+)$/gm)]
            .reduce((n, m) => n + Number(m[1]), 0);
        assert.equal(reaped, 1, 'one node announced bob, once');
        // a figure, not an assertion: how long the others believed a dead node's user online
        console.log(`# presence: bob announced offline ${tookMs} ms after SIGKILL ` +
            `(heartbeat ${HEARTBEAT_MS} ms, TTL ${TTL_MS} ms)`);
    });

    test('a user who disconnects goes offline at once, announced once', async () => {
        const { pa, pc } = nodes;
        const ws = { transports: ['websocket'] };
        const alice = await h.register(pa);
        const dave = await h.register(pa);
        const a = await h.connect(pa, alice.token, ws);
        const created = await emitAck(a, 'room:create', { name: 'p2', type: 'group', participants: [dave.user.id] });
        assertAckOk(created, 'room:create');
        const d = await h.connect(pc, dave.token, ws);
        await h.waitFor(a, 'presence:update', (p) => p.userId === dave.user.id && p.status === 'online');
        d.disconnect();
        await h.waitFor(a, 'presence:update', (p) => p.userId === dave.user.id && p.status === 'offline');
        assert.ok(!onlineUsers().includes(dave.user.id));
        assert.equal(a.inbox.list('presence:update', (p) => p.userId === dave.user.id).length, 2);
    });

    test('a node stalled past the TTL is taken for dead, and registers its users again when it wakes', async () => {
        const { pa, pc } = nodes;
        const ws = { transports: ['websocket'] };
        const alice = await h.register(pa);
        const erin = await h.register(pa);
        const a = await h.connect(pa, alice.token, ws);
        const created = await emitAck(a, 'room:create', { name: 'p3', type: 'group', participants: [erin.user.id] });
        assertAckOk(created, 'room:create');
        const e = await h.connect(pc, erin.token, ws);
        await h.waitFor(a, 'presence:update', (p) => p.userId === erin.user.id && p.status === 'online');
        pc.proc.kill('SIGSTOP');
        try {
            await h.waitFor(a, 'presence:update', (p) => p.userId === erin.user.id && p.status === 'offline',
                OFFLINE_WITHIN_MS);
            assert.ok(!onlineUsers().includes(erin.user.id));
        } finally {
            pc.proc.kill('SIGCONT');
        }
        // awake: its heartbeat finds its record gone and puts erin back
        const back = await h.waitFor(a, 'presence:update',
            (p) => p.userId === erin.user.id && p.status === 'online' &&
                a.inbox.list('presence:update', (q) => q.userId === erin.user.id).length === 3,
            OFFLINE_WITHIN_MS);
        h.assertTimeMs(back.lastSeen, 'lastSeen');
        await h.eventually(() => onlineUsers().includes(erin.user.id), 'erin in online_users again');
        // and her socket never noticed
        const sent = await emitAck(e, 'message:send', { roomId: created.room.id, content: 'was I away?' });
        assertAckOk(sent, 'message:send');
        await h.waitFor(a, 'message:new', (m) => m.id === sent.message.id);
    });
});

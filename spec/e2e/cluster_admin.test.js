'use strict';
// The admin API on three nodes sharing Redis and FerretDB: every node sees the others'
// stats; a sanction made through one node acts on the user's sockets on the others; and a
// reload is all-or-nothing across the cluster: the node that starts it (a file change,
// POST /admin/reload, SIGHUP) sends its scripts folder's files, every node loads them and all
// switch to one version with one hash, or (files that fail on one node, a node that does not
// answer) all keep the old one, with file:line per node; nodes whose folders differ converge.
// Clients keep chatting on every node through the reloads: no connection drops and every
// acknowledged message is in the history. Needs the services: eval "$(tools/services.sh start)".
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { spawnSync } = require('node:child_process');
const { describe, before, after } = require('node:test');
const h = require('./helpers');
const { test, emitAck, assertAckOk } = h;

const REDIS = process.env.CHAT_TEST_REDIS_URL;
const MONGO = process.env.CHAT_TEST_MONGO_URI;
const TOKEN = crypto.randomBytes(16).toString('hex');
const IDS = ['a1', 'a2', 'a3'];
const nodes = {};
const folders = {};

const VERSION_LUA = (tag) => `local chat = require "chat"
chat.hook("event/version", function(ev) return { version = "${tag}" } end)
`;

function admin(id, method, urlPath, body) {
    return h.http(nodes[id], method, urlPath, body === undefined && method === 'POST' ? {} : body, TOKEN);
}

async function statsOf(id) {
    const res = await admin(id, 'GET', '/admin/stats');
    assert.equal(res.status, 200, res.text);
    return res.body;
}

/** Every node's own view of its scripts: {id: {version, hash}}. */
async function versions() {
    const out = {};
    for (const id of IDS) {
        const { node } = await statsOf(id);
        out[id] = { version: node.scriptsVersion, hash: node.scriptsHash };
    }
    return out;
}

/** The published scripts live in Redis across runs: other tests' nodes must not load ours. */
function forgetPublished() {
    const u = new URL(REDIS);
    spawnSync('redis-cli', ['-h', u.hostname, '-p', u.port, '-n', u.pathname.slice(1) || '0',
        'DEL', 'chatd:scripts:published'], { stdio: 'ignore' });
}

function writeAll(file, text) {
    for (const id of IDS) {
        fs.writeFileSync(path.join(folders[id], file), text);
    }
}

describe('the admin API on three nodes over Redis', () => {
    before(async () => {
        assert.ok(REDIS && MONGO, 'needs Redis and FerretDB: eval "$(tools/services.sh start)"');
        forgetPublished();
        const db = `chatd_admin_${crypto.randomBytes(4).toString('hex')}`;
        const mongo = MONGO.replace(/\/[^/?]*(\?|$)/, `/${db}$1`);
        const secret = crypto.randomBytes(32).toString('hex');
        for (const id of IDS) {
            // each node its own folder, as on separate machines
            folders[id] = fs.mkdtempSync(path.join(os.tmpdir(), `chatd-${id}-scripts-`));
            fs.writeFileSync(path.join(folders[id], 'version.lua'), VERSION_LUA('v1'));
            nodes[id] = await h.startServer({
                secret,
                scripts: folders[id],
                env: {
                    CHAT_NODE_ID: id, CHAT_REDIS_URL: REDIS, CHAT_MONGO_URI: mongo, CHAT_ADMIN_TOKENS: `ops=${TOKEN}`,
                    CHAT_FAIL_LOAD: id === 'a3' ? 'yes' : 'no',
                },
            });
        }
        await h.eventually(async () => (await statsOf('a1')).cluster.nodes === 3, 'a1 sees three nodes');
    });

    after(async () => {
        forgetPublished();
        await h.closeResources();
        for (const n of Object.values(nodes)) {
            if (n.exit === null) {
                n.proc.kill('SIGCONT');
                await h.stopServer(n);
            }
        }
    });

    test('every node lists all three with their stats, and sums them', async () => {
        const u = await h.register(nodes.a2);
        const s = await h.connect(nodes.a2, u.token);
        for (const id of IDS) {
            const { cluster, nodes: list } = await statsOf(id);
            assert.equal(cluster.nodes, 3);
            assert.deepEqual(list.map((n) => n.id), IDS);
        }
        await h.eventually(async () => {
            const { nodes: list, cluster } = await statsOf('a3');
            return list.find((n) => n.id === 'a2').connections >= 1 && cluster.connections >= 1;
        }, 'a3 sees the connection on a2 (heartbeat within a second)');
        s.close();
    });

    test('rooms and users from the shared store (MongoDB): list and find on any node', async () => {
        const tag = crypto.randomBytes(3).toString('hex');
        const u = await h.register(nodes.a1, `Seek_${tag}`);
        await h.register(nodes.a2, `zz_${tag}`, { email: `seek_${tag}_mail@example.test` });
        const s = await h.connect(nodes.a1, u.token);
        const ack = await emitAck(s, 'room:create', { name: h.uniqueName('r'), type: 'group', participants: [] });
        assertAckOk(ack, 'room:create');
        const found = await admin('a3', 'GET', `/admin/users?q=SEEK_${tag}`);
        assert.equal(found.status, 200, found.text);
        assert.deepEqual(found.body.users.map((x) => x.username), [`Seek_${tag}`, `zz_${tag}`]);
        const ids = [];
        for (let after = '', page = 0; page < 200; page++) {
            const res = await admin('a2', 'GET', `/admin/rooms?limit=3${after ? `&after=${after}` : ''}`);
            assert.equal(res.status, 200, res.text);
            ids.push(...res.body.rooms.map((r) => r.id));
            if (!res.body.next) break;
            after = res.body.next;
        }
        assert.ok(ids.includes(ack.room.id));
        assert.deepEqual([...ids].sort(), ids);
        s.close();
    });

    test('a sanction made on one node acts on the user\'s sockets on the others', async () => {
        const u = await h.register(nodes.a1);
        const on2 = await h.connect(nodes.a2, u.token);
        const on3 = await h.connect(nodes.a3, u.token, { transports: ['polling'] });
        const other = await h.register(nodes.a1);
        const so = await h.connect(nodes.a1, other.token);
        const ack = await emitAck(so, 'room:create', { name: h.uniqueName('r'), type: 'group', participants: [u.user.id] });
        assertAckOk(ack, 'room:create');

        const mute = await admin('a1', 'POST', `/admin/users/${u.user.id}/mute`, { roomId: ack.room.id });
        assert.equal(mute.status, 200, mute.text);
        assert.equal(mute.body.allNodes, true);
        for (const s of [on2, on3]) {
            assert.equal((await h.waitFor(s, 'moderation')).action, 'muted');
        }
        h.assertAckError(await h.sendAck(on3, ack.room.id, 'x'), 'forbidden', 'muted on a3 by a1');
        await admin('a2', 'POST', `/admin/users/${u.user.id}/unmute`, { roomId: ack.room.id });
        await h.eventually(async () => (await h.sendAck(on3, ack.room.id, 'y')).ok, 'unmuted from a2 on a3');

        const dis = await admin('a1', 'POST', `/admin/users/${u.user.id}/disable`, { reason: 'stolen account' });
        assert.equal(dis.status, 200, dis.text);
        for (const s of [on2, on3]) {
            assert.equal((await h.waitFor(s, 'moderation', (n) => n.action === 'disabled')).reason, 'stolen account');
            assert.equal(await h.waitFor(s, 'disconnect'), 'io server disconnect');
        }
        for (const id of IDS) {
            h.assertRestError(await h.http(nodes[id], 'GET', '/me', undefined, u.token), 403, 'forbidden');
        }
        const user = await admin('a3', 'GET', `/admin/users/${u.user.id}`);
        assert.equal(user.body.sanctions[0].by, 'ops');
        await admin('a3', 'POST', `/admin/users/${u.user.id}/enable`);
        for (const id of IDS) {
            await h.eventually(async () => (await h.http(nodes[id], 'GET', '/me', undefined, u.token)).status === 200,
                `enabled on ${id}`);
        }
    });

    test('reload: one version everywhere, or none; no connection or message lost meanwhile', async (t) => {
        // chat traffic on every node through all the reloads below
        const u = [];
        const sockets = [];
        for (const id of IDS) {
            const user = await h.register(nodes[id]);
            u.push(user);
            sockets.push(await h.connect(nodes[id], user.token, { transports: [id === 'a2' ? 'polling' : 'websocket'] }));
        }
        const room = await emitAck(sockets[0], 'room:create', {
            name: h.uniqueName('r'), type: 'group', participants: u.slice(1).map((x) => x.user.id),
        });
        assertAckOk(room, 'room:create');
        const drops = [];
        sockets.forEach((s, i) => s.on('disconnect', (r) => drops.push(`${IDS[i]}: ${r}`)));
        const acked = [];
        let chatting = true;
        const loops = sockets.map(async (s, i) => {
            for (let n = 0; chatting; n++) {
                const ack = await h.sendAck(s, room.room.id, `${IDS[i]} #${n}`, `${IDS[i]}-${n}`);
                assert.equal(ack.ok, true, `message ${IDS[i]} #${n}: ${JSON.stringify(ack)}`);
                acked.push(ack.message.id);
            }
        });

        try {
        const v0 = await versions();
        assert.equal(new Set(Object.values(v0).map((v) => v.hash)).size, 1, 'the same files: one hash');

        // 1. a file changed in a1's folder only: a1's watcher reloads the cluster with a1's
        // files, so every node serves them, one version and one hash
        let mark = nodes.a1.output.length;
        fs.writeFileSync(path.join(folders.a1, 'version.lua'), VERSION_LUA('v2'));
        await h.eventually(() => /"event":"reload_done"[^\n]*"by":"watcher"/.test(nodes.a1.output.slice(mark)),
            'the watcher on a1 reloaded the cluster');
        const v1 = await versions();
        assert.equal(new Set(Object.values(v1).map((v) => `${v.version} ${v.hash}`)).size, 1, JSON.stringify(v1));
        assert.notEqual(v1.a1.hash, v0.a1.hash);
        for (const s of sockets) {
            assert.equal((await emitAck(s, 'version', {})).version, 'v2', 'a2 and a3 run a1\'s files');
        }

        // 2. POST /admin/reload on a1: the same files again, a new version everywhere
        const started = process.hrtime.bigint();
        const ok = await admin('a1', 'POST', '/admin/reload');
        t.diagnostic(`POST /admin/reload on three nodes under traffic answered in ${Number(process.hrtime.bigint() - started) / 1e6} ms`);
        assert.equal(ok.status, 200, ok.text);
        assert.equal(ok.body.confirmed, true);
        assert.deepEqual(ok.body.nodes.map((n) => n.id), IDS);
        assert.equal(ok.body.version, v1.a1.version + 1);
        const v2 = await versions();
        for (const id of IDS) {
            assert.deepEqual(v2[id], { version: ok.body.version, hash: v1.a1.hash }, id);
        }
        await h.eventually(async () => (await statsOf('a2')).cluster.scriptsConsistent,
            'a2 hears every node on one hash');

        // 3. files that do not load on a3 (its CHAT_FAIL_LOAD): refused everywhere, with
        // a3's file:line, by the watcher's reload and by POST /admin/reload
        mark = nodes.a1.output.length;
        fs.writeFileSync(path.join(folders.a1, 'version.lua'), `${VERSION_LUA('v3')}
if chat.setting("fail_load", "no") == "yes" then error("not on this node") end
`);
        await h.eventually(() => /"event":"reload_refused"[^\n]*"by":"watcher"/.test(nodes.a1.output.slice(mark)),
            'the watcher\'s reload was refused');
        const bad = await admin('a1', 'POST', '/admin/reload');
        h.assertRestError(bad, 400, 'invalid_payload');
        assert.match(bad.body.error.message, /node a3: .*version\.lua:4: not on this node/);
        assert.deepEqual(bad.body.nodes.map((n) => [n.id, n.ok]), [['a1', true], ['a2', true], ['a3', false]]);
        assert.deepEqual(await versions(), v2, 'every node keeps the old version');
        for (const s of sockets) {
            assert.equal((await emitAck(s, 'version', {})).version, 'v2');
        }

        // 4. a node that does not answer (stopped): refused everywhere
        nodes.a2.proc.kill('SIGSTOP');
        let stopped;
        try {
            stopped = await admin('a3', 'POST', '/admin/reload');
        } finally {
            nodes.a2.proc.kill('SIGCONT');
        }
        h.assertRestError(stopped, 503, 'unavailable', 'no answer in time from node a2;');
        assert.deepEqual(await versions(), v2, 'every node keeps the old version');

        // 5. SIGHUP on a3 reloads the whole cluster, with a3's files (still v1)
        nodes.a3.proc.kill('SIGHUP');
        await h.eventually(async () => {
            const v = await versions();
            return IDS.every((id) => v[id].version > v2[id].version && v[id].version === v.a3.version &&
                v[id].hash === v0.a3.hash);
        }, 'every node on the version SIGHUP on a3 started, with a3\'s files');
        for (const s of sockets) {
            assert.equal((await emitAck(s, 'version', {})).version, 'v1');
        }

        } finally {
            chatting = false;
            await Promise.allSettled(loops);
        }
        await Promise.all(loops);
        assert.deepEqual(drops, [], 'no connection dropped');
        assert.ok(acked.length > 3 * 5, `traffic flowed meanwhile (${acked.length} messages)`);
        const seen = new Set();
        let beforeId = '';
        for (;;) {
            const res = await h.http(nodes.a1, 'GET',
                `/messages?roomId=${room.room.id}&limit=100${beforeId ? `&before=${beforeId}` : ''}`, undefined, u[0].token);
            assert.equal(res.status, 200, res.text);
            res.body.messages.forEach((m) => seen.add(m.id));
            if (!res.body.nextBefore) break;
            beforeId = res.body.nextBefore;
        }
        assert.deepEqual(acked.filter((id) => !seen.has(id)), [], 'every acknowledged message is stored');
    });

    test('a node that starts later runs the version the cluster published, not its own folder\'s', async () => {
        const { node } = await statsOf('a1');
        const folder = fs.mkdtempSync(path.join(os.tmpdir(), 'chatd-a4-scripts-'));
        fs.writeFileSync(path.join(folder, 'version.lua'), VERSION_LUA('v0 (a4\'s own)'));
        nodes.a4 = await h.startServer({
            secret: nodes.a1.secret,
            scripts: folder,
            env: {
                CHAT_NODE_ID: 'a4', CHAT_REDIS_URL: REDIS, CHAT_MONGO_URI: nodes.a1.env.CHAT_MONGO_URI,
                CHAT_ADMIN_TOKENS: `ops=${TOKEN}`,
            },
        });
        await h.eventually(async () => {
            const s = (await h.http(nodes.a4, 'GET', '/admin/stats', undefined, TOKEN)).body.node;
            return s.scriptsHash === node.scriptsHash && s.scriptsVersion === node.scriptsVersion;
        }, 'a4 on the cluster\'s version and hash');
        const u = await h.register(nodes.a4);
        const s = await h.connect(nodes.a4, u.token);
        assert.equal((await emitAck(s, 'version', {})).version, 'v1');
        assert.match(nodes.a4.output, /"event":"scripts_published_loaded"/);
        s.close();
    });
});

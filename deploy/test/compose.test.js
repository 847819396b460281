'use strict';
// The compose cluster (deploy/compose.yaml) seen from clients, through its nginx: three nodes
// serve, Prometheus scrapes each of them, and when one chatd container is killed in the
// middle of a conversation its clients reconnect through nginx to the others, every
// acknowledged message is in the history, and the history has no duplicates.
// Run by tools/test-containers.sh, which brings the cluster up and passes
//   CHATD_FRONT_URL (nginx), PROMETHEUS_URL, COMPOSE_PROJECT (to find the containers).
const assert = require('node:assert/strict');
const { spawnSync } = require('node:child_process');
const { describe, after } = require('node:test');
const h = require('../../spec/e2e/helpers');
const { test, emitAck, assertAckOk } = h;

const URL_ = process.env.CHATD_FRONT_URL;
const FRONT = { url: URL_, wsUrl: URL_ && URL_.replace(/^http/, 'ws') };
const PROM = process.env.PROMETHEUS_URL;
const PROJECT = process.env.COMPOSE_PROJECT;
const SERVICE_OF = { n1: 'chatd1', n2: 'chatd2', n3: 'chatd3' };
const START_MS = 90000; // images are built; containers start, FerretDB and Redis come up

function nodeOf(socket) {
    return socket.io.engine.id.split('.')[0];
}

function containerOf(service) {
    const r = spawnSync('podman', ['ps', '-a', '--format', '{{.Names}}',
        '--filter', `label=io.podman.compose.project=${PROJECT}`,
        '--filter', `label=com.docker.compose.service=${service}`], { encoding: 'utf8' });
    const name = r.stdout.trim();
    assert.ok(name && !name.includes('\n'), `one container for ${service}: ${r.stdout}${r.stderr}`);
    return name;
}

// h.eventually with this file's argument order; a check that throws is a service not up yet
const waitUntil = (what, fn, ms = h.WAIT_MS) => h.eventually(fn, what, ms, { retryErrors: true, intervalMs: 200 });

/** Sockets through nginx until one lands on a node for which accept(node) is true. */
async function connectOn(token, accept, opts = {}) {
    for (let i = 0; i < 15; i++) {
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

describe('the compose cluster', { timeout: 240000 }, () => {
    after(() => h.closeResources());

    test('nginx reaches all three nodes and Prometheus scrapes each', async () => {
        assert.ok(URL_ && PROM && PROJECT, 'run by tools/test-containers.sh');
        await waitUntil('the cluster to answer /readyz through nginx', async () =>
            (await fetch(`${FRONT.url}/readyz`, { signal: AbortSignal.timeout(2000) })).status === 200, START_MS);
        const user = await h.register(FRONT);
        const seen = new Set();
        await waitUntil('handshakes on all three nodes', async () => {
            const s = await h.connect(FRONT, user.token, { transports: ['websocket'] });
            seen.add(nodeOf(s));
            s.disconnect();
            return seen.size === 3;
        }, START_MS);

        const up = await waitUntil('Prometheus to scrape three chatd targets', async () => {
            const res = await fetch(`${PROM}/api/v1/targets`, { signal: AbortSignal.timeout(2000) });
            const body = await res.json();
            const targets = body.data.activeTargets.filter((t) => t.labels.job === 'chatd');
            return targets.length === 3 && targets.every((t) => t.health === 'up') && targets;
        }, START_MS);
        assert.deepEqual(up.map((t) => t.labels.instance).sort(), ['chatd1:8080', 'chatd2:8080', 'chatd3:8080']);
        const q = await (await fetch(`${PROM}/api/v1/query?query=chatd_sessions_open`)).json();
        assert.equal(q.status, 'success');
        assert.equal(q.data.result.length, 3, 'a chatd_sessions_open series per node');
    });

    test('a chatd container killed mid-conversation: clients reconnect, nothing acknowledged is lost', async () => {
        const { users, sockets, room } = await h.roomWithMembers(
            { register: (...a) => h.register(FRONT, ...a), connect: (t, o) => h.connect(FRONT, t, o) },
            { transports: ['websocket'] }, 2);
        sockets.forEach((s) => s.disconnect());
        const reconnecting = { transports: ['websocket'], reconnection: true, reconnectionDelay: 100, reconnectionDelayMax: 1000 };
        // the victim's client asks, on every (re)connect, for what it missed since the last
        // message it saw (auth.since), as an application would
        let lastSeen = null;
        const victim = await h.connect(FRONT, users[1].token, {
            ...reconnecting,
            auth: (cb) => cb({ token: users[1].token, ...(lastSeen ? { since: { [room.id]: lastSeen } } : {}) }),
        });
        victim.on('message:new', (m) => {
            if (m.roomId === room.id) {
                lastSeen = m.id;
            }
        });
        const victimNode = nodeOf(victim);
        const sender = await connectOn(users[0].token, (n) => n !== victimNode, reconnecting);
        let disconnects = 0;
        victim.on('disconnect', () => disconnects++);

        // both talk; the victim's own sends that are in flight when its node dies may get no ack
        const acked = [];
        const senderAcked = [];
        const victimSends = [];
        const victimSend = (i) => emitAck(victim, 'message:send',
            { roomId: room.id, content: `v${i}`, clientMsgId: `victim-${i}` }, 15000)
            .then((ack) => ack.ok && acked.push(ack.message.id), () => { /* no ack: not promised */ });
        // 20 + 1 messages each: under the default policy's 30 per user per minute (scripts/ratelimit.lua)
        for (let i = 0; i < 20; i++) {
            if (i === 8) {
                const r = spawnSync('podman', ['kill', '--signal', 'KILL', containerOf(SERVICE_OF[victimNode])],
                    { encoding: 'utf8' });
                assert.equal(r.status, 0, r.stderr);
            }
            victimSends.push(victimSend(i));
            const ack = await emitAck(sender, 'message:send',
                { roomId: room.id, content: `s${i}`, clientMsgId: `sender-${i}` });
            assertAckOk(ack, `sender message ${i}: the sender's node is alive`);
            acked.push(ack.message.id);
            senderAcked.push(ack.message.id);
        }
        await waitUntil('the victim to reconnect on another node',
            () => victim.connected && nodeOf(victim) !== victimNode, 30000);
        assert.ok(disconnects >= 1, 'the victim saw its connection drop');

        const afterMsg = await emitAck(sender, 'message:send', { roomId: room.id, content: 'after' });
        assertAckOk(afterMsg, 'send after the kill');
        acked.push(afterMsg.message.id);
        await h.waitFor(victim, 'message:new', (m) => m.id === afterMsg.message.id, 10000);
        const back = await emitAck(victim, 'message:send', { roomId: room.id, content: 'back' });
        assertAckOk(back, 'the reconnected victim sends');
        acked.push(back.message.id);
        await h.waitFor(sender, 'message:new', (m) => m.id === back.message.id, 10000);
        await Promise.all(victimSends);

        // live or caught up after the reconnect, the victim has every message the sender sent
        const received = () => new Set(victim.inbox.list('message:new').map((m) => m.id));
        await waitUntil('the victim to have every message of the sender', () =>
            senderAcked.every((id) => received().has(id)), 10000).catch(() => {
            assert.deepEqual(senderAcked.filter((id) => !received().has(id)), [], 'messages the victim never got');
        });

        const stored = await history(users[1].token, room.id);
        assert.equal(new Set(stored).size, stored.length, 'no message twice in the history');
        const have = new Set(stored);
        const lost = acked.filter((id) => !have.has(id));
        assert.deepEqual(lost, [], 'every acknowledged message is in the history');
        assert.ok(acked.length >= 22, `the sender's 20 + after + back were acknowledged (${acked.length})`);
        victim.disconnect();
        sender.disconnect();
    });
});

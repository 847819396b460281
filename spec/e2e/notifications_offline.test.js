'use strict';
// Offline notifications through the job queue (issue 15 items 5 and 7): a mention of a user
// who has no socket on any node queues a notify.offline job, and the shipped handler
// (scripts/notify_offline.lua) POSTs it to CHAT_PUSH_WEBHOOK_URL, here a real local HTTP
// server; a mention of someone online queues nothing; a push service that fails is retried
// until it answers 2xx, and the notification is delivered once. On the SQLite queue (one
// node) and on Redis Streams (two nodes over MongoDB + Redis), where the mention is sent on
// node A for a user whose last socket was on node B.
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { after } = require('node:test');
const h = require('./helpers');
const { test, emitAck, send } = h;
const { forEachStack } = require('./stacks');

const REPO = path.resolve(__dirname, '..', '..');

// The push service, for the whole file: plan[userId] lists the statuses of that user's
// pushes, in order (then 200).
const plan = {};
let receiver;
function pushService() {
    receiver ??= h.hookServer((url, n, req) => {
        const uid = req.json && req.json.userId;
        return (plan[uid] && plan[uid].shift()) || 200;
    });
    return receiver;
}
after(async () => {
    if (receiver) {
        await (await receiver).close();
    }
});

const scripts = fs.mkdtempSync(path.join(os.tmpdir(), 'chatd-offline-scripts-'));
fs.copyFileSync(path.join(REPO, 'scripts', 'notify_offline.lua'), path.join(scripts, 'notify_offline.lua'));
// test only: socket.emitWithAck("bot:join", { roomId, name }) makes a bot a member of the room
fs.writeFileSync(path.join(scripts, 'bot_join.lua'), `
local chat = require "chat"
chat.hook("event/bot:join", function(ev)
    local bot = chat.bot(ev.args[1].name)
    local room, err, code = bot:join(ev.args[1].roomId)
    if not room then return chat.reject(code, err) end
    return { ok = true, id = bot.id }
end)
`);

async function pushesFor(userId) {
    return (await pushService()).seen.filter((r) => r.json && r.json.userId === userId);
}

/** The sum of a metric over the stack's nodes. */
async function total(st, name) {
    let sum = 0;
    for (let i = 0; i < st.nodes; i++) {
        sum += await h.metric(st.node(i).server, name);
    }
    return sum;
}

const OUTCOME = (o) => `chatd_offline_pushes_total{outcome="${o}"}`;

/** Every job pushed so far has finished (done or dead) on some node. */
async function queueIdle(st) {
    await h.eventually(async () => {
        const pushed = await total(st, 'chatd_jobs_pushed_total');
        const ended = await total(st, 'chatd_jobs_done_total') + await total(st, 'chatd_jobs_dead_total');
        return ended >= pushed;
    }, 'every queued job has run to its end', 15000);
}

/** a (on node 0) creates a room with the others; their sockets are up to the test. */
async function roomWith(st, tag, n) {
    const users = [];
    for (let i = 0; i <= n; i++) {
        users.push(await st.node(0).register(h.uniqueName(tag + i)));
    }
    const sa = await st.node(0).connect(users[0].token);
    const ack = await emitAck(sa, 'room:create', {
        name: h.uniqueName(tag), type: 'group', participants: users.slice(1).map((u) => u.user.id),
    });
    h.assertAckOk(ack, 'room:create');
    return { users, sa, room: ack.room };
}

/** Connects user on node i and waits until sa, a roommate, hears they are online. */
async function online(st, i, user, sa) {
    const s = await st.node(i).connect(user.token);
    await h.waitFor(sa, 'presence:update', (p) => p.userId === user.user.id && p.status === 'online');
    return s;
}

forEachStack('offline notifications (notify.offline job)', (st) => {
    test('a mention of someone offline is pushed once, with the notification and their profile', async () => {
        const { users: [a, d], sa, room } = await roomWith(st, 'off', 1);
        const text = `hello @${d.username}, see this`;
        const m = await send(sa, room.id, text);
        const [push] = await h.eventually(async () => {
            const p = await pushesFor(d.user.id);
            return p.length && p;
        }, 'a POST to the push service', 15000);
        assert.equal(push.path, '/push');
        assert.equal(push.headers['content-type'], 'application/json');
        assert.match(push.headers['x-chat-job'], h.HEX24);
        assert.equal(push.headers['x-chat-attempt'], '1');
        const { userId, user, notification } = push.json;
        assert.equal(userId, d.user.id);
        assert.equal(user.id, d.user.id);
        assert.equal(user.username, d.username);
        assert.ok(!('email' in user) && !('passwordHash' in user), JSON.stringify(user));
        assert.equal(notification.type, 'mention');
        assert.equal(notification.userId, d.user.id);
        assert.equal(notification.read, false);
        assert.deepEqual(notification.data,
            { roomId: room.id, messageId: m.id, senderId: a.user.id, excerpt: text });
        const list = await st.node(1).http('GET', '/notifications', undefined, d.token);
        assert.deepEqual(list.body.notifications.map((n) => n.id), [notification.id],
            'the pushed notification is the stored one');
        await queueIdle(st);
        assert.equal((await pushesFor(d.user.id)).length, 1, 'pushed once');
    });

    test('a mention of someone online queues nothing (someone offline in the same message does)', async () => {
        const { users: [, b, c], sa, room } = await roomWith(st, 'on', 2);
        const sb = await online(st, 1, b, sa);
        const before = {
            online: await h.metric(st.node(0).server, OUTCOME('online')),
            queued: await h.metric(st.node(0).server, OUTCOME('queued')),
            pushed: await h.metric(st.node(0).server, 'chatd_jobs_pushed_total'),
        };
        // one message: b's mention is decided before c's, so c's push is the sentinel
        const m = await send(sa, room.id, `@${b.username} and @${c.username}: lunch?`);
        await h.waitFor(sb, 'notification', (n) => n.data.messageId === m.id);
        await h.eventually(async () => (await pushesFor(c.user.id)).length, 'c is pushed', 15000);
        assert.equal(await h.metric(st.node(0).server, OUTCOME('online')), before.online + 1);
        assert.equal(await h.metric(st.node(0).server, OUTCOME('queued')), before.queued + 1);
        assert.equal(await h.metric(st.node(0).server, 'chatd_jobs_pushed_total'), before.pushed + 1,
            'one job: c\'s');
        await queueIdle(st);
        assert.deepEqual(await pushesFor(b.user.id), [], 'no push for b, who was online');
    });

    test('a mention of a bot queues nothing: nobody is behind it', async () => {
        const { users: [, c], sa, room } = await roomWith(st, 'bm', 1);
        const name = h.uniqueName('bot');
        const joined = await emitAck(sa, 'bot:join', { roomId: room.id, name });
        h.assertAckOk(joined, 'bot:join');
        const before = await h.metric(st.node(0).server, OUTCOME('bot'));
        await send(sa, room.id, `@${name} and @${c.username}, status?`);
        await h.eventually(async () => (await pushesFor(c.user.id)).length, 'c is pushed', 15000);
        assert.equal(await h.metric(st.node(0).server, OUTCOME('bot')), before + 1);
        await queueIdle(st);
        assert.deepEqual(await pushesFor(joined.id), [], 'no push for the bot');
    });

    test('a push service that answers 500 then 200: retried, and delivered once', async () => {
        const { users: [, e], sa, room } = await roomWith(st, 'retry', 1);
        plan[e.user.id] = [500, 200];
        const retried = await total(st, 'chatd_jobs_retried_total');
        await send(sa, room.id, `@${e.username} ping`);
        await h.eventually(async () => (await pushesFor(e.user.id)).length >= 2, 'two POSTs', 15000);
        await queueIdle(st);
        const pushes = await pushesFor(e.user.id);
        assert.deepEqual(pushes.map((p) => p.status), [500, 200]);
        assert.deepEqual(pushes.map((p) => p.headers['x-chat-attempt']), ['1', '2']);
        assert.equal(pushes[0].headers['x-chat-job'], pushes[1].headers['x-chat-job']);
        assert.deepEqual(pushes[1].json, pushes[0].json);
        assert.equal(await total(st, 'chatd_jobs_retried_total'), retried + 1);
    });

    test('the last socket, on node B, disconnects: a mention sent on node A is pushed', async () => {
        const { users: [, f], sa, room } = await roomWith(st, 'left', 1);
        const sf = await online(st, 1, f, sa);
        sf.disconnect();
        await h.waitFor(sa, 'presence:update', (p) => p.userId === f.user.id && p.status === 'offline');
        const queued = await h.metric(st.node(0).server, OUTCOME('queued'));
        const m = await send(sa, room.id, `@${f.username} you missed this`);
        const [push] = await h.eventually(async () => {
            const p = await pushesFor(f.user.id);
            return p.length && p;
        }, 'a POST for f', 15000);
        assert.equal(push.json.notification.data.messageId, m.id);
        assert.equal(await h.metric(st.node(0).server, OUTCOME('queued')), queued + 1,
            'node A queued it');
    });
}, {
    scripts,
    env: async () => ({
        CHAT_PUSH_WEBHOOK_URL: `${(await pushService()).url}/push`,
        CHAT_JOBS_POLL_MS: '50',
        CHAT_JOBS_BACKOFF_MS: '200',
    }),
});

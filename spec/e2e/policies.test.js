'use strict';
// The default policies in scripts/ as a user meets them: room rules (private rooms, member
// limits, read-only rooms), moderation (word filter, /mute /kick /ban with durations, flood
// control), rate limits (per user, per IP, slow mode) and the bots (welcome, help,
// announcements), all over real Socket.IO clients against chatd running the repo's scripts.
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { describe } = require('node:test');
const h = require('./helpers');
const { test, emitAck, assertAckOk, assertAckError, eventually, send, sendAck, roomOf } = h;

const SCRIPTS = path.join(__dirname, '..', '..', 'scripts');
const POLICY_ENV = {
    CHAT_RATELIMIT_USER: '8',
    CHAT_RATELIMIT_IP: '100000', // every client here is 127.0.0.1
    CHAT_RATELIMIT_WINDOW_S: '3600', // windows are aligned to the clock: a long one will not end mid-test
    CHAT_FLOOD_REPEATS: '2',
};

const srv = h.useServer({ scripts: SCRIPTS, env: POLICY_ENV });

async function history(server, token, roomId) {
    const res = await h.http(server, 'GET', `/messages?roomId=${roomId}&limit=100`, undefined, token);
    assert.equal(res.status, 200, res.text);
    return res.body.messages.reverse();
}

describe('room rules (scripts/rooms.lua)', () => {
    test('a private room refuses people who try to join, and its members stay as they were', async () => {
        const { sockets: [admin], room } = await roomOf(srv, 1, { private: true });
        const outsider = await srv.register();
        const s = await srv.connect(outsider.token);
        const ack = await emitAck(s, 'room:join', { roomId: room.id });
        assertAckError(ack, 'forbidden');
        assert.match(ack.error.message, /private/);
        const rooms = await srv.http('GET', '/rooms', undefined, outsider.token);
        assert.deepEqual(rooms.body.rooms, [], 'the outsider is in no room');
        assert.ok(admin.connected);
    });

    test('a room with maxMembers refuses the next person and says the limit; bots take no seat', async () => {
        const { sockets: [admin], room } = await roomOf(srv, 1, { maxMembers: 2 });
        const b = await srv.register();
        const bs = await srv.connect(b.token);
        assertAckOk(await emitAck(bs, 'room:join', { roomId: room.id }), 'second member joins');
        // the welcome bot greets b and so becomes a member, without taking the last seat
        await h.waitFor(admin, 'message:new', (m) => /^Welcome/.test(m.content));
        const c = await srv.register();
        const cs = await srv.connect(c.token);
        const ack = await emitAck(cs, 'room:join', { roomId: room.id });
        assertAckError(ack, 'forbidden');
        assert.match(ack.error.message, /full \(2 members\)/);
    });

    test('in a read-only room members cannot post; the admin can, and everyone gets it', async () => {
        const { sockets: [admin, member], room } = await roomOf(srv, 2, { readOnly: true });
        const ack = await sendAck(member, room.id, 'may I?');
        assertAckError(ack, 'forbidden');
        assert.match(ack.error.message, /read-only/);
        const m = await send(admin, room.id, 'announcement');
        await h.waitFor(member, 'message:new', (x) => x.id === m.id);
    });
});

describe('moderation (scripts/moderation.lua)', () => {
    test('blocked words are masked in what is stored and delivered', async () => {
        const { users: [a], sockets: [as, bs], room } = await roomOf(srv, 2);
        const m = await send(as, room.id, 'darn, this heck of a bug');
        assert.equal(m.content, 'd***, this h*** of a bug');
        const got = await h.waitFor(bs, 'message:new', (x) => x.id === m.id);
        assert.equal(got.content, 'd***, this h*** of a bug');
        const stored = (await history(srv.server, a.token, room.id)).find((x) => x.id === m.id);
        assert.equal(stored.content, 'd***, this h*** of a bug');
    });

    test('/mute @name 10m: the room sees a notice, the muted user is refused and told for how long', async () => {
        const { users: [, b], sockets: [as, bs, cs], room } = await roomOf(srv, 3);
        const notice = await send(as, room.id, `/mute @${b.username} 10m`);
        assert.equal(notice.content, `${b.username} was muted for 10 min`);
        await h.waitFor(cs, 'message:new', (x) => x.id === notice.id);
        await h.waitFor(bs, 'notify', (n) => n.type === 'muted' && n.roomId === room.id && n.seconds === 600);
        const refused = await sendAck(bs, room.id, 'but I have something to say');
        assertAckError(refused, 'forbidden');
        assert.equal(refused.error.message, 'you are muted in this room; you can post again in 10 min');
        await send(cs, room.id, 'the others still talk');
        await send(as, room.id, `/unmute @${b.username}`);
        await send(bs, room.id, 'thank you');
    });

    test('only the room admin may use the commands', async () => {
        const { users: [a], sockets: [, bs], room } = await roomOf(srv, 2);
        const ack = await sendAck(bs, room.id, `/kick @${a.username}`);
        assertAckError(ack, 'forbidden');
        assert.equal(ack.error.message, "only the room's admin can use /kick");
    });

    test('/kick removes the user from the room on every device; they may join again', async () => {
        const { users: [, b], sockets: [as, bs, cs], room } = await roomOf(srv, 3);
        const b2 = await srv.connect(b.token);
        const notice = await send(as, room.id, `/kick @${b.username}`);
        assert.equal(notice.content, `${b.username} was removed from the room`);
        for (const s of [bs, b2]) {
            await h.waitFor(s, 'notify', (n) => n.type === 'kicked' && n.roomId === room.id);
        }
        await h.waitFor(cs, 'room:member_left', (x) => x.userId === b.user.id);
        const ack = await sendAck(bs, room.id, 'still here?');
        assertAckError(ack, 'forbidden');
        assertAckOk(await emitAck(b2, 'room:join', { roomId: room.id }), 'join again after a kick');
    });

    test('/ban @name 1h removes the user and refuses them, saying when they may return; /unban lifts it', async () => {
        const { users: [, b], sockets: [as, bs], room } = await roomOf(srv, 2);
        const notice = await send(as, room.id, `/ban @${b.username} 1h`);
        assert.equal(notice.content, `${b.username} was banned for 1 h`);
        await h.waitFor(bs, 'notify', (n) => n.type === 'kicked' && n.roomId === room.id);
        const ack = await emitAck(bs, 'room:join', { roomId: room.id });
        assertAckError(ack, 'forbidden');
        assert.match(ack.error.message, /^you are banned from this room; you can join again in (1 h|60 min)$/);
        await send(as, room.id, `/unban @${b.username}`);
        assertAckOk(await emitAck(bs, 'room:join', { roomId: room.id }), 'join after the unban');
    });

    test('a ban with a short duration ends by itself', async () => {
        const { users: [, b], sockets: [as, bs], room } = await roomOf(srv, 2);
        await send(as, room.id, `/ban @${b.username} 1s`);
        await h.waitFor(bs, 'notify', (n) => n.type === 'kicked');
        assertAckError(await emitAck(bs, 'room:join', { roomId: room.id }), 'forbidden');
        await eventually(async () => (await emitAck(bs, 'room:join', { roomId: room.id })).ok,
            'the 1 s ban to end');
    });

    test('a command with a bad duration or an unknown user is refused with how to write it', async () => {
        const { users: [, b], sockets: [as], room } = await roomOf(srv, 2);
        const bad = await sendAck(as, room.id, `/mute @${b.username} forever`);
        assertAckError(bad, 'invalid_payload');
        assert.match(bad.error.message, /30s, 10m, 2h or 1d/);
        const unknown = await sendAck(as, room.id, `/ban @${h.uniqueName('ghost')}`);
        assertAckError(unknown, 'invalid_payload');
        assert.match(unknown.error.message, /usage: \/ban @username/);
    });

    test('flood control: the same text again and again is refused', async () => {
        const { sockets: [as, bs], room } = await roomOf(srv, 2);
        await send(as, room.id, 'BUY NOW');
        await send(as, room.id, 'BUY NOW');
        const ack = await sendAck(as, room.id, 'BUY NOW');
        assertAckError(ack, 'policy_rejected');
        assert.match(ack.error.message, /same message/);
        await send(as, room.id, 'sorry, something new');
        await send(bs, room.id, 'BUY NOW'); // counted per user
    });
});

describe('rate limits (scripts/ratelimit.lua)', () => {
    test('per user: past CHAT_RATELIMIT_USER messages in a window, rate_limited with "retry in N s"', async () => {
        const { sockets: [as, bs], room } = await roomOf(srv, 2);
        for (let i = 1; i <= 8; i++) {
            await send(as, room.id, `message ${i}`);
        }
        const ack = await sendAck(as, room.id, 'one too many');
        assertAckError(ack, 'rate_limited');
        const m = ack.error.message.match(/^8 messages per 3600 s; retry in (\d+) s$/);
        assert.ok(m, ack.error.message);
        assert.ok(Number(m[1]) >= 1 && Number(m[1]) <= 3600, ack.error.message);
        await send(bs, room.id, 'others are not limited'); // another user, same IP
    });

    test('slow mode: one message per slowMode seconds per user, then the next goes through', async () => {
        const { sockets: [as, bs], room } = await roomOf(srv, 2, { slowMode: 1 });
        await send(as, room.id, 'first');
        const ack = await sendAck(as, room.id, 'second, too soon');
        assertAckError(ack, 'rate_limited');
        assert.equal(ack.error.message, 'slow mode: one message per 1 s in this room; retry in 1 s');
        await send(bs, room.id, 'another member is not held up');
        // retry until the server lets the next one through, every 300 ms: each attempt
        // counts against the per-user limit (8), and four retries span the second for sure
        const refusals = [];
        const after = await eventually(async () => {
            const retry = await sendAck(as, room.id, 'after a second');
            if (retry.ok) {
                return retry.message;
            }
            refusals.push(retry);
            return false;
        }, 'the slow-mode second to pass', 3000, { intervalMs: 300 });
        assert.equal(after.content, 'after a second');
        for (const r of refusals) {
            assertAckError(r, 'rate_limited');
            assert.match(r.error.message, /^slow mode: one message per 1 s in this room; retry in 1 s$/);
        }
        assert.ok(refusals.length <= 4, `${refusals.length} refusals`);
    });

    describe('per IP address', () => {
        const ipSrv = h.useServer({
            scripts: SCRIPTS,
            env: { CHAT_RATELIMIT_IP: '3', CHAT_RATELIMIT_USER: '100', CHAT_RATELIMIT_WINDOW_S: '3600' },
        });

        test('all users behind one address share CHAT_RATELIMIT_IP messages per window', async () => {
            const { sockets: [as, bs, cs], room } = await roomOf(ipSrv, 3);
            await send(as, room.id, 'one');
            await send(bs, room.id, 'two');
            await send(cs, room.id, 'three');
            const ack = await sendAck(as, room.id, 'four');
            assertAckError(ack, 'rate_limited');
            assert.match(ack.error.message, /^3 messages per 3600 s; retry in \d+ s$/);
        });
    });
});

describe('bots (scripts/bots/)', () => {
    test('the welcome bot greets a joiner by name, in the history like anyone', async () => {
        const { users: [a], sockets: [as], room } = await roomOf(srv, 1);
        const b = await srv.register();
        const bs = await srv.connect(b.token);
        assertAckOk(await emitAck(bs, 'room:join', { roomId: room.id }), 'join');
        const greeting = await h.waitFor(bs, 'message:new', (m) => m.roomId === room.id);
        assert.equal(greeting.content,
            `Welcome to ${room.name}, ${b.username}! Type /help to see what I can do.`);
        assert.match(greeting.senderId, h.HEX24);
        assert.notEqual(greeting.senderId, a.user.id);
        assert.notEqual(greeting.senderId, b.user.id);
        await h.waitFor(as, 'message:new', (m) => m.id === greeting.id); // delivered to all
        const stored = await history(srv.server, b.token, room.id);
        assert.deepEqual(stored.map((m) => [m.id, m.senderId, m.content]),
            [[greeting.id, greeting.senderId, greeting.content]]);
        const members = (await srv.http('GET', '/rooms', undefined, a.token)).body.rooms
            .find((r) => r.id === room.id).participants;
        assert.ok(members.includes(greeting.senderId), 'the bot is a member, like a user');
    });

    test('the help bot answers /help in the room', async () => {
        const { users: [a], sockets: [as, bs], room } = await roomOf(srv, 2);
        const asked = await send(as, room.id, '/help');
        const answer = await h.waitFor(bs, 'message:new',
            (m) => m.roomId === room.id && m.id !== asked.id && /^Commands:/.test(m.content));
        assert.match(answer.content, /\/help, \/rules, \/time/);
        await h.waitFor(as, 'message:new', (m) => m.id === answer.id);
        const stored = await history(srv.server, a.token, room.id);
        assert.deepEqual(stored.map((m) => m.content), ['/help', answer.content]);
    });

    describe('announcements', () => {
        test('the announcement bot posts CHAT_ANNOUNCE_TEXT every CHAT_ANNOUNCE_EVERY_S to its rooms', async () => {
            const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'chatd-announce-'));
            const first = await h.startServer({ scripts: SCRIPTS, dataDir });
            let room;
            let user;
            try {
                user = await h.register(first);
                const s = await h.connect(first, user.token);
                const ack = await emitAck(s, 'room:create', { name: 'lobby', type: 'group' });
                assertAckOk(ack, 'room:create');
                room = ack.room;
                s.disconnect();
            } finally {
                await h.closeResources();
                await h.stopServer(first, { keepData: true });
            }
            // the operator names the room and the schedule, and starts chatd again
            const server = await h.startServer({
                scripts: SCRIPTS, dataDir, secret: first.secret,
                env: { CHAT_ANNOUNCE_ROOMS: room.id, CHAT_ANNOUNCE_TEXT: 'Standup in 5', CHAT_ANNOUNCE_EVERY_S: '0.3' },
            });
            try {
                const s = await h.connect(server, user.token);
                const one = await h.waitFor(s, 'message:new', (m) => m.content === 'Standup in 5');
                const two = await h.waitFor(s, 'message:new',
                    (m) => m.content === 'Standup in 5' && m.id !== one.id);
                const three = await h.waitFor(s, 'message:new',
                    (m) => m.content === 'Standup in 5' && m.id !== one.id && m.id !== two.id);
                assert.equal(one.senderId, two.senderId, 'one bot posts them');
                assert.equal(two.senderId, three.senderId, 'one bot posts them');
                assert.equal(one.roomId, room.id);
                // createdAt is stamped after a membership lookup whose time varies with load,
                // so the schedule is judged over two intervals rather than one
                assert.ok(three.createdAt - one.createdAt >= 2 * 250,
                    `posted on the schedule (${three.createdAt - one.createdAt} ms for two intervals)`);
                const stored = await history(server, user.token, room.id);
                assert.ok(stored.some((m) => m.id === one.id), 'stored like any message');
            } finally {
                await h.closeResources();
                await h.stopServer(server);
            }
        });
    });
});

'use strict';
// Rooms: create, join, leave, membership rules, over Socket.IO and REST.
const assert = require('node:assert/strict');
const { describe } = require('node:test');
const h = require('./helpers');
const { test, emitAck, assertAckOk, assertAckError, send } = h;

const srv = h.useServer();

function assertRoom(room, { name, type, admin, members }) {
    const where = JSON.stringify(room);
    assert.match(room.id, h.HEX24, `room.id is a 24-hex ObjectId: ${where}`);
    assert.equal(room.name, name, where);
    assert.equal(room.type, type, where);
    assert.equal(room.admin, admin, `admin is the creator: ${where}`);
    assert.ok(Array.isArray(room.participants), `participants is an array: ${where}`);
    assert.deepEqual([...room.participants].sort(), [...members].sort(),
        `participants are the creator and the listed users: ${where}`);
    assert.ok('settings' in room, `room has settings: ${where}`);
    h.assertTimeMs(room.createdAt, 'room.createdAt');
}

h.forEachTransport('room:create', (tr) => {
    test('group: ack {ok, room}; creator is admin and member; every listed user and device is subscribed', async () => {
        const a = await srv.register();
        const b = await srv.register();
        const c = await srv.register();
        const a1 = await srv.connect(a.token, tr);
        const a2 = await srv.connect(a.token, tr);
        const b1 = await srv.connect(b.token, tr);
        const name = 'Project room ✓';
        const ack = await emitAck(a1, 'room:create',
            { name, type: 'group', participants: [b.user.id, c.user.id] });
        assertAckOk(ack, 'room:create');
        assertRoom(ack.room, {
            name, type: 'group', admin: a.user.id, members: [a.user.id, b.user.id, c.user.id],
        });
        // c was offline: on connect it is subscribed to the room it now belongs to.
        const c1 = await srv.connect(c.token, tr);
        const m = await send(a1, ack.room.id, 'hello all');
        for (const [who, s] of [['b', b1], ['c', c1], ["a's second device", a2]]) {
            const got = await h.waitFor(s, 'message:new', (x) => x.id === m.id);
            assert.equal(got.content, 'hello all', who);
        }
    });

    test('direct: with exactly one other participant', async () => {
        const a = await srv.register();
        const b = await srv.register();
        const a1 = await srv.connect(a.token, tr);
        const b1 = await srv.connect(b.token, tr);
        const ack = await emitAck(a1, 'room:create',
            { name: 'dm', type: 'direct', participants: [b.user.id] });
        assertAckOk(ack, 'room:create direct');
        assertRoom(ack.room, { name: 'dm', type: 'direct', admin: a.user.id, members: [a.user.id, b.user.id] });
        const m = await send(a1, ack.room.id, 'just us');
        await h.waitFor(b1, 'message:new', (x) => x.id === m.id);
    });

    test('direct: with no other participant or with two -> invalid_payload', async () => {
        const a = await srv.register();
        const b = await srv.register();
        const c = await srv.register();
        const a1 = await srv.connect(a.token, tr);
        for (const participants of [[], [b.user.id, c.user.id]]) {
            const ack = await emitAck(a1, 'room:create', { name: 'dm', type: 'direct', participants });
            assertAckError(ack, 'invalid_payload');
        }
        const rooms = await srv.http('GET', '/rooms', undefined, a.token);
        assert.equal(rooms.status, 200, rooms.text);
        assert.deepEqual(rooms.body.rooms, [], 'no room was created');
    });
});

h.forEachTransport('room:join and room:leave', (tr) => {
    test('join: ack {ok, room}; members get room:member_joined; the joiner receives messages on every device', async () => {
        const { users: [a], sockets: [a1, b1], room } = await h.roomWithMembers(srv, tr, 2);
        const c = await srv.register();
        const c1 = await srv.connect(c.token, tr);
        const c2 = await srv.connect(c.token, tr);
        const ack = await emitAck(c1, 'room:join', { roomId: room.id });
        assertAckOk(ack, 'room:join');
        assert.equal(ack.room.id, room.id);
        assert.ok(ack.room.participants.includes(c.user.id), `joiner is a participant: ${JSON.stringify(ack.room)}`);
        assert.ok(ack.room.participants.includes(a.user.id));
        for (const s of [a1, b1]) {
            const ev = await h.waitFor(s, 'room:member_joined', (e) => e.roomId === room.id);
            assert.deepEqual(ev, { roomId: room.id, userId: c.user.id });
        }
        const m = await send(a1, room.id, 'welcome');
        await h.waitFor(c1, 'message:new', (x) => x.id === m.id);
        await h.waitFor(c2, 'message:new', (x) => x.id === m.id); // all of c's sockets
        const reply = await send(c2, room.id, 'thanks');
        await h.waitFor(b1, 'message:new', (x) => x.id === reply.id);
    });

    test('leave: ack {ok}; members get room:member_left; no more messages on any device; sending is forbidden', async () => {
        const { users: [, b], sockets: [a1, b1], room } = await h.roomWithMembers(srv, tr, 2);
        const b2 = await srv.connect(b.token, tr);
        // A second room a and b share, used to prove what b does not receive.
        const other = assertAckOk(await emitAck(a1, 'room:create',
            { name: 'other', type: 'group', participants: [b.user.id] })).room;
        const ack = await emitAck(b1, 'room:leave', { roomId: room.id });
        assert.deepEqual(ack, { ok: true });
        const left = await h.waitFor(a1, 'room:member_left', (e) => e.roomId === room.id);
        assert.deepEqual(left, { roomId: room.id, userId: b.user.id });
        const gone = await send(a1, room.id, 'b should not see this');
        const marker = await send(a1, other.id, 'but this');
        for (const s of [b1, b2]) {
            await h.waitFor(s, 'message:new', (x) => x.id === marker.id);
            assert.deepEqual(s.inbox.list('message:new', (x) => x.id === gone.id), [],
                'a left member receives nothing more from the room');
        }
        assertAckError(await emitAck(b2, 'message:send', { roomId: room.id, content: 'x' }), 'forbidden');
        const rooms = await srv.http('GET', '/rooms', undefined, b.token);
        assert.ok(!rooms.body.rooms.some((r) => r.id === room.id), 'the room left is not listed');
    });

    test('leave when not a member -> forbidden', async () => {
        const { room } = await h.roomWithMembers(srv, tr, 2);
        const c = await srv.register();
        const c1 = await srv.connect(c.token, tr);
        assertAckError(await emitAck(c1, 'room:leave', { roomId: room.id }), 'forbidden');
    });

    test('a non-member cannot send or type in a group room -> forbidden, and members get nothing', async () => {
        const { sockets: [a1, b1], room } = await h.roomWithMembers(srv, tr, 2);
        const c = await srv.register();
        const c1 = await srv.connect(c.token, tr);
        assertAckError(await emitAck(c1, 'message:send', { roomId: room.id, content: 'intruder' }), 'forbidden');
        assertAckError(await emitAck(c1, 'typing:start', { roomId: room.id }), 'forbidden');
        const marker = await send(b1, room.id, 'marker');
        await h.waitFor(a1, 'message:new', (x) => x.id === marker.id);
        assert.deepEqual(a1.inbox.list('message:new').map((x) => x.content), ['marker']);
        assert.deepEqual(a1.inbox.list('typing'), []);
    });

    test('joining a direct room one is not in -> forbidden, and it stays closed', async () => {
        const { sockets: [a1], room } = await h.roomWithMembers(srv, tr, 2, 'direct');
        assert.equal(room.type, 'direct');
        const c = await srv.register();
        const c1 = await srv.connect(c.token, tr);
        assertAckError(await emitAck(c1, 'room:join', { roomId: room.id }), 'forbidden');
        assertAckError(await emitAck(c1, 'message:send', { roomId: room.id, content: 'hi' }), 'forbidden');
        await send(a1, room.id, 'private'); // the members still can
        const hist = await srv.http('GET', `/messages?roomId=${room.id}`, undefined, c.token);
        h.assertRestError(hist, 403, 'forbidden');
    });

    test('a room that does not exist -> not_found for join, send and typing', async () => {
        const a = await srv.register();
        const a1 = await srv.connect(a.token, tr);
        const roomId = h.randomHex24();
        assertAckError(await emitAck(a1, 'room:join', { roomId }), 'not_found');
        assertAckError(await emitAck(a1, 'message:send', { roomId, content: 'hello?' }), 'not_found');
        assertAckError(await emitAck(a1, 'typing:start', { roomId }), 'not_found');
    });
});

describe('REST rooms', () => {
    test('POST /rooms -> 201 {room} like room:create, and connected participants are subscribed', async () => {
        const a = await srv.register();
        const b = await srv.register();
        const a1 = await srv.connect(a.token);
        const a2 = await srv.connect(a.token);
        const b1 = await srv.connect(b.token);
        const res = await srv.http('POST', '/rooms',
            { name: 'rest room', type: 'group', participants: [b.user.id] }, a.token);
        assert.equal(res.status, 201, res.text);
        assertRoom(res.body.room, {
            name: 'rest room', type: 'group', admin: a.user.id, members: [a.user.id, b.user.id],
        });
        const m = await send(a1, res.body.room.id, 'via rest room');
        await h.waitFor(b1, 'message:new', (x) => x.id === m.id);
        await h.waitFor(a2, 'message:new', (x) => x.id === m.id);
    });

    test('POST /rooms direct -> 201; bad bodies -> 400; no token -> 401', async () => {
        const a = await srv.register();
        const b = await srv.register();
        const dm = await srv.http('POST', '/rooms', { name: 'dm', type: 'direct', participants: [b.user.id] }, a.token);
        assert.equal(dm.status, 201, dm.text);
        assert.equal(dm.body.room.type, 'direct');
        const bad = [
            { name: 'x', type: 'bogus', participants: [] },
            { name: 'x', type: 'group', participants: 'nope' },
            { name: 'x', type: 'direct', participants: [] },
            'not json',
        ];
        for (const body of bad) {
            const res = await srv.http('POST', '/rooms', body, a.token);
            h.assertRestError(res, 400, 'invalid_payload');
        }
        const anon = await srv.http('POST', '/rooms', { name: 'x', type: 'group', participants: [] });
        h.assertRestError(anon, 401, 'unauthorized');
    });

    test('GET /rooms lists exactly the rooms the caller belongs to', async () => {
        const a = await srv.register();
        const b = await srv.register();
        const mk = async (u, name, participants = []) => {
            const res = await srv.http('POST', '/rooms', { name, type: 'group', participants }, u.token);
            assert.equal(res.status, 201, res.text);
            return res.body.room;
        };
        const r1 = await mk(a, 'a1');
        const r2 = await mk(a, 'a2', [b.user.id]);
        const r3 = await mk(b, 'b-only');
        const list = async (u) => {
            const res = await srv.http('GET', '/rooms', undefined, u.token);
            assert.equal(res.status, 200, res.text);
            assert.ok(Array.isArray(res.body.rooms), res.text);
            return res.body.rooms.map((r) => r.id).sort();
        };
        assert.deepEqual(await list(a), [r1.id, r2.id].sort());
        assert.deepEqual(await list(b), [r2.id, r3.id].sort());
        const b1 = await srv.connect(b.token);
        assertAckOk(await emitAck(b1, 'room:join', { roomId: r1.id }), 'room:join');
        assert.deepEqual(await list(b), [r1.id, r2.id, r3.id].sort());
        assertAckOk(await emitAck(b1, 'room:leave', { roomId: r2.id }), 'room:leave');
        assert.deepEqual(await list(b), [r1.id, r3.id].sort());
        const anon = await srv.http('GET', '/rooms');
        h.assertRestError(anon, 401, 'unauthorized');
    });
});

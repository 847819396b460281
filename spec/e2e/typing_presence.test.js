'use strict';
// Typing indicators and presence.
const assert = require('node:assert/strict');
const h = require('./helpers');
const { test, emitAck, assertAckOk, send } = h;

const srv = h.useServer();

async function restRoom(owner, participants, type = 'group') {
    const res = await srv.http('POST', '/rooms',
        { name: h.uniqueName('r'), type, participants: participants.map((u) => u.user.id) }, owner.token);
    assert.equal(res.status, 201, res.text);
    return res.body.room;
}

h.forEachTransport('typing', (tr) => {
    test('typing:start and typing:stop reach the other member as typing {roomId, userId, typing}', async () => {
        const { users: [a], sockets: [a1, b1], room } = await h.roomWithMembers(srv, tr, 2);
        assert.deepEqual(await emitAck(a1, 'typing:start', { roomId: room.id }), { ok: true });
        const on = await h.waitFor(b1, 'typing', (e) => e.typing === true);
        assert.deepEqual(on, { roomId: room.id, userId: a.user.id, typing: true });
        assert.deepEqual(await emitAck(a1, 'typing:stop', { roomId: room.id }), { ok: true });
        const off = await h.waitFor(b1, 'typing', (e) => e.typing === false);
        assert.deepEqual(off, { roomId: room.id, userId: a.user.id, typing: false });
        assert.equal(b1.inbox.list('typing').length, 2, 'one event per call');
    });

    test('typing works without an ack and never reaches the typing user\'s own sockets', async () => {
        const { users: [a, b], sockets: [a1, b1], room } = await h.roomWithMembers(srv, tr, 2);
        const a2 = await srv.connect(a.token, tr);
        a1.emit('typing:start', { roomId: room.id }); // no ack requested
        await h.waitFor(b1, 'typing', (e) => e.userId === a.user.id && e.typing === true);
        // Ordering marker: b types next; a's sockets must see b's event and nothing before it.
        assert.deepEqual(await emitAck(b1, 'typing:start', { roomId: room.id }), { ok: true });
        for (const s of [a1, a2]) {
            await h.waitFor(s, 'typing', (e) => e.userId === b.user.id);
            assert.deepEqual(s.inbox.list('typing'), [{ roomId: room.id, userId: b.user.id, typing: true }]);
        }
        assert.deepEqual(b1.inbox.list('typing', (e) => e.userId === b.user.id), [],
            'b does not get its own typing either');
    });
});

h.forEachTransport('presence', (tr) => {
    test('online on the first socket only, offline with lastSeen when the last socket goes', async () => {
        const a = await srv.register();
        const b = await srv.register();
        const c = await srv.register(); // shares the room; used for ordering markers
        const room = await restRoom(a, [b, c]);
        const a1 = await srv.connect(a.token, tr);
        const c1 = await srv.connect(c.token, tr);
        const aboutB = () => a1.inbox.list('presence:update', (p) => p.userId === b.user.id);

        const connectedAt = Date.now();
        const b1 = await srv.connect(b.token, tr);
        const online = await h.waitFor(a1, 'presence:update', (p) => p.userId === b.user.id);
        assert.equal(online.status, 'online');

        const b2 = await srv.connect(b.token, tr);
        // Marker: b2 is fully connected; a message sent after that reaches a after any presence
        // event b2's arrival could have caused.
        const m1 = await send(b2, room.id, 'second device here');
        await h.waitFor(a1, 'message:new', (x) => x.id === m1.id);
        assert.deepEqual(aboutB().map((p) => p.status), ['online'], 'a second socket is not a new "online"');

        b2.disconnect();
        const m2 = await send(c1, room.id, 'b still has one socket');
        await h.waitFor(a1, 'message:new', (x) => x.id === m2.id);
        await h.waitFor(b1, 'message:new', (x) => x.id === m2.id);
        assert.deepEqual(aboutB().map((p) => p.status), ['online'], 'b is online while one socket remains');

        b1.disconnect();
        const offline = await h.waitFor(a1, 'presence:update', (p) => p.userId === b.user.id && p.status === 'offline');
        h.assertTimeMs(offline.lastSeen, 'presence lastSeen');
        assert.ok(offline.lastSeen >= connectedAt - 1000, `lastSeen is after b connected: ${offline.lastSeen}`);
        const m3 = await send(c1, room.id, 'after b left');
        await h.waitFor(a1, 'message:new', (x) => x.id === m3.id);
        assert.deepEqual(aboutB().map((p) => p.status), ['online', 'offline']);
    });

    test('presence goes only to users who share a room', async () => {
        const a = await srv.register();
        const b = await srv.register();
        const c = await srv.register();
        const d = await srv.register();
        await restRoom(a, [b]);
        await restRoom(c, [d]); // c shares nothing with b
        const a1 = await srv.connect(a.token, tr);
        const c1 = await srv.connect(c.token, tr);
        await srv.connect(b.token, tr);
        await h.waitFor(a1, 'presence:update', (p) => p.userId === b.user.id && p.status === 'online');
        await srv.connect(d.token, tr); // after b: its event to c is an ordering marker
        await h.waitFor(c1, 'presence:update', (p) => p.userId === d.user.id && p.status === 'online');
        assert.deepEqual(c1.inbox.list('presence:update', (p) => p.userId === b.user.id), [],
            'c shares no room with b and hears nothing about b');
    });
});

'use strict';
// Read state (issue 15 item 4): room:read {roomId, messageId} moves the member's marker (never
// back); the room's other sockets on every node get room:read; GET /rooms carries unread,
// lastReadId and everyone's markers (reads); bad input changes nothing; room/read decides.
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const h = require('./helpers');
const { test, emitAck, assertAckOk, assertAckError, send } = h;
const { forEachStack } = require('./stacks');

async function setup(st) {
    const users = [];
    for (const n of ['da', 'db', 'dc']) {
        users.push(await st.node(0).register(h.uniqueName(n)));
    }
    const [a, b, c] = users;
    const sa = await st.node(0).connect(a.token);
    const sa2 = await st.node(1).connect(a.token); // alice's other device, on the other node
    const sb = await st.node(1).connect(b.token);
    const sc = await st.node(0).connect(c.token);
    const ack = await emitAck(sa, 'room:create', {
        name: h.uniqueName('reads'), type: 'group', participants: [b.user.id, c.user.id],
    });
    assertAckOk(ack, 'room:create');
    return { a, b, c, sa, sa2, sb, sc, room: ack.room };
}

async function roomOf(st, user, roomId, node = 1) {
    const res = await st.node(node).http('GET', '/rooms', undefined, user.token);
    assert.equal(res.status, 200, res.text);
    const r = res.body.rooms.find((x) => x.id === roomId);
    assert.ok(r, `room ${roomId} in GET /rooms: ${res.text}`);
    return r;
}

forEachStack('room:read and unread counts', (st) => {
    test('a marker moves forward, others see it live, GET /rooms counts what is unread', async () => {
        const { a, b, c, sa, sa2, sb, sc, room } = await setup(st);
        const m1 = await send(sb, room.id, 'one');
        const m2 = await send(sb, room.id, 'two');
        const m3 = await send(sb, room.id, 'three');
        await send(sa, room.id, 'mine do not count');
        let r = await roomOf(st, a, room.id);
        assert.equal(r.unread, 3);
        assert.equal(r.lastReadId, null);
        assert.deepEqual(r.reads, {});
        assert.equal((await roomOf(st, b, room.id, 0)).unread, 1, 'bob has alice\'s one unread');

        const ack = await emitAck(sa, 'room:read', { roomId: room.id, messageId: m2.id });
        assertAckOk(ack, 'room:read');
        assert.equal(ack.read.messageId, m2.id);
        assert.equal(ack.read.userId, a.user.id);
        h.assertTimeMs(ack.read.at, 'read.at');
        for (const s of [sb, sc, sa2]) {
            const ev = await h.waitFor(s, 'room:read', (x) => x.userId === a.user.id);
            assert.deepEqual(ev, { roomId: room.id, userId: a.user.id, messageId: m2.id, at: ack.read.at });
        }
        r = await roomOf(st, a, room.id);
        assert.equal(r.unread, 1);
        assert.equal(r.lastReadId, m2.id);
        assert.deepEqual(r.reads, { [a.user.id]: m2.id });

        // never back: an older message leaves the marker, and nobody is told
        const back = await emitAck(sa, 'room:read', { roomId: room.id, messageId: m1.id });
        assertAckOk(back);
        assert.equal(back.read.messageId, m2.id);
        assertAckOk(await emitAck(sa2, 'room:read', { roomId: room.id, messageId: m3.id }));
        await h.waitFor(sb, 'room:read', (x) => x.messageId === m3.id);
        assert.deepEqual(sb.inbox.list('room:read').map((x) => x.messageId), [m2.id, m3.id]);
        assertAckOk(await emitAck(sb, 'room:read', { roomId: room.id, messageId: m3.id }));
        r = await roomOf(st, a, room.id, 0);
        assert.equal(r.unread, 0);
        assert.deepEqual(r.reads, { [a.user.id]: m3.id, [b.user.id]: m3.id });
        void c;
    });

    test('bad input: the error shape, and the marker stays', async () => {
        const { a, sa, room } = await setup(st);
        const m = await send(sa, room.id, 'here');
        assertAckOk(await emitAck(sa, 'room:read', { roomId: room.id, messageId: m.id }));
        const other = await emitAck(sa, 'room:create', { name: h.uniqueName('other'), type: 'group', participants: [] });
        const elsewhere = await send(sa, other.room.id, 'elsewhere');
        assertAckError(await emitAck(sa, 'room:read', { roomId: room.id, messageId: elsewhere.id }), 'not_found');
        assertAckError(await emitAck(sa, 'room:read', { roomId: room.id, messageId: h.randomHex24() }), 'not_found');
        assertAckError(await emitAck(sa, 'room:read', { roomId: room.id }), 'invalid_payload');
        assertAckError(await emitAck(sa, 'room:read', { roomId: room.id, messageId: 7 }), 'invalid_payload');
        assertAckError(await emitAck(sa, 'room:read', { roomId: 'x', messageId: m.id }), 'invalid_payload');
        const d = await st.node(1).register(h.uniqueName('dd'));
        const sd = await st.node(1).connect(d.token);
        assertAckError(await emitAck(sd, 'room:read', { roomId: room.id, messageId: m.id }), 'forbidden');
        const r = await roomOf(st, a, room.id);
        assert.equal(r.lastReadId, m.id);
        assert.deepEqual(r.reads, { [a.user.id]: m.id }, 'the non-member left no marker');
    });
});

const scripts = fs.mkdtempSync(path.join(os.tmpdir(), 'chatd-read-scripts-'));
fs.writeFileSync(path.join(scripts, 'reads.lua'), `
local chat = require "chat"
chat.hook("room/read", function(ev)
  if ev.user.username:find("^private") then
    return chat.reject("forbidden", "read receipts are off for you")
  end
end)
`);

forEachStack('room:read with a policy', (st) => {
    test('room/read refuses a marker: nothing stored, nothing sent', async () => {
        const a = await st.node(0).register(h.uniqueName('private'));
        const b = await st.node(1).register(h.uniqueName('open'));
        const sa = await st.node(0).connect(a.token);
        const sb = await st.node(1).connect(b.token);
        const room = (await emitAck(sa, 'room:create', { name: 'p', type: 'group', participants: [b.user.id] })).room;
        const m = await send(sb, room.id, 'did you read this?');
        assertAckError(await emitAck(sa, 'room:read', { roomId: room.id, messageId: m.id }), 'forbidden');
        assertAckOk(await emitAck(sb, 'room:read', { roomId: room.id, messageId: m.id }));
        await h.waitFor(sa, 'room:read', (x) => x.userId === b.user.id);
        assert.equal(sb.inbox.list('room:read').length, 0);
        const r = await roomOf(st, a, room.id);
        assert.equal(r.unread, 1);
        assert.equal(r.lastReadId, null);
    });
}, { scripts });

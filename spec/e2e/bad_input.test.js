'use strict';
// Bad input over Socket.IO: unknown events, wrong payload types, oversized content, binary
// packets, and the `error` event for failures without an ack. None of it may cost the
// connection or reach other members.
const assert = require('node:assert/strict');
const h = require('./helpers');
const { test, emitAck, assertAckOk, assertAckError, NO_PAYLOAD, send } = h;

const MAX_CONTENT = 100;
const srv = h.useServer({ env: { CHAT_MESSAGE_MAX_BYTES: String(MAX_CONTENT) } });

/** The socket still works, and the other member got nothing but the marker it sends. */
async function assertStillWorks(sender, receiver, roomId) {
    assert.equal(sender.connected, true, 'the connection survived the bad input');
    const marker = await send(sender, roomId, `marker ${Date.now()}`);
    await h.waitFor(receiver, 'message:new', (x) => x.id === marker.id);
    assert.deepEqual(receiver.inbox.list('message:new').map((x) => x.id), [marker.id],
        'nothing from the refused events reached the other member');
}

h.forEachTransport('bad input', (tr) => {
    test('an unknown event with an ack -> invalid_payload', async () => {
        const { sockets: [a1, b1], room } = await h.roomWithMembers(srv, tr, 2);
        assertAckError(await emitAck(a1, 'no:such:event', { roomId: room.id }), 'invalid_payload');
        assertAckError(await emitAck(a1, 'message:new', { roomId: room.id, content: 'spoof' }), 'invalid_payload');
        await assertStillWorks(a1, b1, room.id);
    });

    const cases = [
        ['message:send with content a number', 'message:send', (r) => ({ roomId: r, content: 42 })],
        ['message:send without roomId', 'message:send', () => ({ content: 'hi' })],
        ['message:send with roomId a number', 'message:send', () => ({ roomId: 7, content: 'hi' })],
        ['message:send without content', 'message:send', (r) => ({ roomId: r })],
        ['message:send with clientMsgId an object', 'message:send', (r) => ({ roomId: r, content: 'hi', clientMsgId: {} })],
        ['message:send with attachments a string', 'message:send', (r) => ({ roomId: r, content: 'hi', attachments: 'x' })],
        ['message:send with the payload a string', 'message:send', (r) => `{"roomId":"${r}","content":"hi"}`],
        ['message:send with the payload an array', 'message:send', (r) => [r, 'hi']],
        ['message:send with the payload null', 'message:send', () => null],
        ['message:send with no payload', 'message:send', () => NO_PAYLOAD],
        ['room:create with type "bogus"', 'room:create', () => ({ name: 'x', type: 'bogus', participants: [] })],
        ['room:create with participants a string', 'room:create', () => ({ name: 'x', type: 'group', participants: 'all' })],
        ['room:create with a participant that is a number', 'room:create', () => ({ name: 'x', type: 'group', participants: [1] })],
        ['room:join with roomId a number', 'room:join', () => ({ roomId: 123 })],
        ['room:leave without roomId', 'room:leave', () => ({})],
        ['typing:start without roomId', 'typing:start', () => ({})],
        ['typing:stop with the payload a number', 'typing:stop', () => 5],
    ];
    for (const [what, event, make] of cases) {
        test(`${what} -> invalid_payload`, async () => {
            const { sockets: [a1, b1], room } = await h.roomWithMembers(srv, tr, 2);
            assertAckError(await emitAck(a1, event, make(room.id)), 'invalid_payload');
            await assertStillWorks(a1, b1, room.id);
        });
    }

    test(`content over CHAT_MESSAGE_MAX_BYTES (${MAX_CONTENT}) -> payload_too_large; bytes, not characters`, async () => {
        const { sockets: [a1, b1], room } = await h.roomWithMembers(srv, tr, 2);
        const tooLong = [
            'x'.repeat(MAX_CONTENT + 1),
            'é'.repeat(60), // 60 characters, 120 bytes of UTF-8
            '🎉'.repeat(26), // 52 UTF-16 units, 104 bytes
        ];
        for (const content of tooLong) {
            assertAckError(await emitAck(a1, 'message:send', { roomId: room.id, content }), 'payload_too_large');
        }
        const fits = [];
        for (const content of ['x'.repeat(MAX_CONTENT), 'é'.repeat(MAX_CONTENT / 2)]) {
            fits.push(await send(a1, room.id, content));
        }
        await h.waitFor(b1, 'message:new', (x) => x.id === fits[1].id);
        assert.deepEqual(b1.inbox.list('message:new').map((x) => x.id), fits.map((m) => m.id),
            'only the messages within the limit were delivered');
    });

    test('a Buffer inside the payload: the binary event is parsed and answered through its ack', async () => {
        const { sockets: [a1, b1], room } = await h.roomWithMembers(srv, tr, 2);
        const bin = Buffer.from([0x00, 0xff, 0x10, 0x80, 0x7f]);
        assertAckError(await emitAck(a1, 'message:send', { roomId: room.id, content: bin }), 'invalid_payload');
        assertAckError(await emitAck(a1, 'room:join', { roomId: Buffer.from(room.id) }), 'invalid_payload');
        // Two attachments in one packet, nested.
        assertAckError(await emitAck(a1, 'message:send',
            { roomId: room.id, content: { a: bin, b: [Buffer.alloc(3000, 1)] } }), 'invalid_payload');
        await assertStillWorks(a1, b1, room.id);
    });

    test('a failure without an ack gets an `error` event {event, error:{code, message}}', async () => {
        const { sockets: [a1, b1], room } = await h.roomWithMembers(srv, tr, 2);
        const c = await srv.register();
        const c1 = await srv.connect(c.token, tr);
        a1.emit('message:send', { roomId: room.id, content: 42 });
        const e1 = await h.waitFor(a1, 'error', (e) => e && e.event === 'message:send');
        h.assertErrorShape({ ok: false, ...e1 }, 'invalid_payload');
        assert.deepEqual(Object.keys(e1).sort(), ['error', 'event']);
        a1.emit('no:such:event', {});
        const e2 = await h.waitFor(a1, 'error', (e) => e && e.event === 'no:such:event');
        assert.equal(e2.error.code, 'invalid_payload');
        c1.emit('message:send', { roomId: room.id, content: 'not a member' });
        const e3 = await h.waitFor(c1, 'error', (e) => e && e.event === 'message:send');
        assert.equal(e3.error.code, 'forbidden');
        assert.equal(typeof e3.error.message, 'string');
        assert.equal(b1.inbox.list('error').length, 0, 'errors go only to the socket that caused them');
        await assertStillWorks(a1, b1, room.id);
    });

    test('a success without an ack: delivered, message:ack to the sender, no `error` event', async () => {
        const { sockets: [a1, b1], room } = await h.roomWithMembers(srv, tr, 2);
        const clientMsgId = `c-${Date.now()}`;
        a1.emit('message:send', { roomId: room.id, content: 'fire and forget', clientMsgId });
        const mack = await h.waitFor(a1, 'message:ack', (x) => x.clientMsgId === clientMsgId);
        assert.match(mack.id, h.HEX24);
        h.assertTimeMs(mack.createdAt, 'message:ack createdAt');
        const got = await h.waitFor(b1, 'message:new', (x) => x.id === mack.id);
        assert.equal(got.content, 'fire and forget');
        a1.emit('typing:start', { roomId: room.id });
        await h.waitFor(b1, 'typing', (e) => e.roomId === room.id);
        assert.deepEqual(a1.inbox.list('error'), []);
    });
});

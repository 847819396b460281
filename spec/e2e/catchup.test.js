'use strict';
// Catch-up on reconnect: a client that connects with auth.since = {roomId: last message id
// it saw} receives what it missed, oldest first, as message:new, exactly once.
const assert = require('node:assert/strict');
const h = require('./helpers');
const { test, emitAck, assertAckOk } = h;

const srv = h.useServer();

h.forEachTransport('catch-up on reconnect', (transportOpts) => {
    test('messages sent while a member was away arrive in order, once, after it reconnects', async () => {
        const { users, sockets: [a, b], room } = await h.roomWithMembers(srv, transportOpts, 2);
        const seen = await emitAck(a, 'message:send', { roomId: room.id, content: 'before' });
        assertAckOk(seen, 'first message');
        await h.waitFor(b, 'message:new', (m) => m.id === seen.message.id);
        b.disconnect();

        const missed = [];
        for (const text of ['one', 'two', 'three']) {
            const ack = await emitAck(a, 'message:send', { roomId: room.id, content: text });
            assertAckOk(ack, text);
            missed.push(ack.message.id);
        }
        const back = await srv.connect(users[1].token, {
            ...transportOpts,
            auth: { token: users[1].token, since: { [room.id]: seen.message.id } },
        });
        await h.waitFor(back, 'message:new', (m) => m.id === missed[2]);
        // a live message after the catch-up proves nothing more was queued behind it
        const live = await emitAck(a, 'message:send', { roomId: room.id, content: 'live' });
        await h.waitFor(back, 'message:new', (m) => m.id === live.message.id);
        const got = back.inbox.list('message:new').map((m) => m.id);
        assert.deepEqual(got, [...missed, live.message.id]);
    });

    test('since naming a room the user is not in delivers nothing from it', async () => {
        const outsider = await srv.register();
        const { sockets: [a], room } = await h.roomWithMembers(srv, transportOpts, 2);
        const first = await emitAck(a, 'message:send', { roomId: room.id, content: 'x' });
        const second = await emitAck(a, 'message:send', { roomId: room.id, content: 'y' });
        assertAckOk(second, 'second');
        const s = await srv.connect(outsider.token, {
            ...transportOpts,
            auth: { token: outsider.token, since: { [room.id]: first.message.id } },
        });
        // its own room's message arrives; the foreign room's never does
        const own = await emitAck(s, 'room:create', { name: 'own', type: 'group' });
        assertAckOk(own, 'own room');
        const other = await srv.connect(outsider.token, transportOpts);
        const mine = await emitAck(s, 'message:send', { roomId: own.room.id, content: 'me' });
        await h.waitFor(other, 'message:new', (m) => m.id === mine.message.id);
        assert.deepEqual(s.inbox.list('message:new'), []);
    });
});

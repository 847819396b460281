'use strict';
// Messages: send with ack, message:ack, fan-out to members and devices, clientMsgId
// de-duplication, and history paging over REST.
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const h = require('./helpers');
const { test, emitAck, assertAckOk, assertAckError, send } = h;

const srv = h.useServer();

const MESSAGE_KEYS = ['id', 'roomId', 'senderId', 'content', 'attachments', 'reactions',
    'clientMsgId', 'createdAt', 'updatedAt'];

function assertMessage(m, { roomId, senderId, content, clientMsgId }) {
    const where = JSON.stringify(m);
    for (const key of MESSAGE_KEYS) {
        assert.ok(key in m, `message has "${key}" (PROTOCOL.md Objects): ${where}`);
    }
    assert.match(m.id, h.HEX24, `message.id: ${where}`);
    assert.equal(m.roomId, roomId, where);
    assert.equal(m.senderId, senderId, where);
    assert.equal(m.content, content, where);
    if (clientMsgId !== undefined) {
        assert.equal(m.clientMsgId, clientMsgId, where);
    }
    assert.ok(Array.isArray(m.attachments), `attachments is an array: ${where}`);
    assert.ok(m.reactions !== null && typeof m.reactions === 'object', `reactions: ${where}`);
    h.assertTimeMs(m.createdAt, 'message.createdAt');
    h.assertTimeMs(m.updatedAt, 'message.updatedAt');
    assert.ok(m.updatedAt >= m.createdAt, `updatedAt >= createdAt: ${where}`);
}

/** The fields every copy of one message agrees on. */
function essence(m) {
    return {
        id: m.id, roomId: m.roomId, senderId: m.senderId, content: m.content,
        clientMsgId: m.clientMsgId, createdAt: m.createdAt,
    };
}

const cid = () => crypto.randomUUID();

h.forEachTransport('message:send', (tr) => {
    test('ack {ok, message} with every field; message:ack to the sender; message:new to the member', async () => {
        const { users: [a], sockets: [a1, b1], room } = await h.roomWithMembers(srv, tr, 2);
        const clientMsgId = cid();
        const ack = await emitAck(a1, 'message:send', { roomId: room.id, content: 'hello', clientMsgId });
        assertAckOk(ack, 'message:send');
        assertMessage(ack.message, { roomId: room.id, senderId: a.user.id, content: 'hello', clientMsgId });
        const mack = await h.waitFor(a1, 'message:ack', (x) => x.clientMsgId === clientMsgId);
        assert.deepEqual(mack, { clientMsgId, id: ack.message.id, createdAt: ack.message.createdAt });
        const got = await h.waitFor(b1, 'message:new', (x) => x.id === ack.message.id);
        assertMessage(got, { roomId: room.id, senderId: a.user.id, content: 'hello', clientMsgId });
        assert.deepEqual(essence(got), essence(ack.message));
    });

    test('each member gets message:new once; the sender\'s other device gets it; the sending socket does not', async () => {
        const { users: [a], sockets: [a1, b1], room } = await h.roomWithMembers(srv, tr, 2);
        const a2 = await srv.connect(a.token, tr);
        const m1 = await send(a1, room.id, 'one');
        await h.waitFor(b1, 'message:new', (x) => x.id === m1.id);
        await h.waitFor(a2, 'message:new', (x) => x.id === m1.id);
        const m2 = await send(b1, room.id, 'two');
        await h.waitFor(a1, 'message:new', (x) => x.id === m2.id);
        const m3 = await send(a1, room.id, 'three');
        await h.waitFor(b1, 'message:new', (x) => x.id === m3.id);
        await h.waitFor(a2, 'message:new', (x) => x.id === m3.id);
        const ids = (s) => s.inbox.list('message:new', (x) => x.roomId === room.id).map((x) => x.id);
        // Each list is complete up to its last entry: later messages were sent after earlier ones
        // were acknowledged, and one socket's events arrive in order.
        assert.deepEqual(ids(a1), [m2.id], 'the sending socket never gets its own messages');
        assert.deepEqual(ids(b1), [m1.id, m3.id], 'b gets each of a\'s messages once, not its own');
        assert.deepEqual(ids(a2), [m1.id, m2.id, m3.id], 'a\'s other device gets everything once');
    });

    test('a resend with the same clientMsgId returns the stored message and delivers nothing new', async () => {
        const { users: [a], sockets: [a1, b1], room } = await h.roomWithMembers(srv, tr, 2);
        const clientMsgId = cid();
        const first = await send(a1, room.id, 'only once', clientMsgId);
        const again = await send(a1, room.id, 'only once', clientMsgId);
        assert.equal(again.id, first.id, 'the retry is acknowledged with the stored message id');
        assert.deepEqual(essence(again), essence(first));
        const altered = await send(a1, room.id, 'changed on retry', clientMsgId);
        assert.equal(altered.id, first.id);
        assert.equal(altered.content, 'only once', 'the stored message is returned, not a new one');
        const next = await send(a1, room.id, 'the next one', cid());
        assert.notEqual(next.id, first.id);
        await h.waitFor(b1, 'message:new', (x) => x.id === next.id);
        assert.deepEqual(b1.inbox.list('message:new').map((x) => x.id), [first.id, next.id],
            'the retries produced no second message:new');
        const hist = await srv.http('GET', `/messages?roomId=${room.id}`, undefined, a.token);
        assert.equal(hist.status, 200, hist.text);
        assert.deepEqual(hist.body.messages.map((x) => x.id), [next.id, first.id],
            'history holds the message once');
    });

    test('the same clientMsgId from another sender is a different message', async () => {
        const { sockets: [a1, b1], room } = await h.roomWithMembers(srv, tr, 2);
        const clientMsgId = cid();
        const fromA = await send(a1, room.id, 'from a', clientMsgId);
        const fromB = await send(b1, room.id, 'from b', clientMsgId);
        assert.notEqual(fromA.id, fromB.id);
        assert.equal(fromB.content, 'from b');
        await h.waitFor(a1, 'message:new', (x) => x.id === fromB.id);
        await h.waitFor(b1, 'message:new', (x) => x.id === fromA.id);
    });

    test('content round-trips exactly: unicode, newlines, quotes, backslashes, U+2028', async () => {
        const { users: [a], sockets: [a1, b1], room } = await h.roomWithMembers(srv, tr, 2);
        const content = 'héllo 世界 🎉👩‍💻\nline two\t"quoted" \\back\\slash </script> \u2028 end';
        const m = await send(a1, room.id, content);
        assert.equal(m.content, content);
        const got = await h.waitFor(b1, 'message:new', (x) => x.id === m.id);
        assert.equal(got.content, content);
        const hist = await srv.http('GET', `/messages?roomId=${room.id}`, undefined, a.token);
        assert.equal(hist.body.messages[0].content, content);
    });
});

h.forEachTransport('GET /messages', (tr) => {
    test('pages newest first with limit and nextBefore, to the end, without gaps or repeats', async () => {
        const { users: [a, b], sockets: [a1, b1], room } = await h.roomWithMembers(srv, tr, 2);
        const sent = [];
        for (let i = 0; i < 7; i++) {
            sent.push(await send(i % 2 ? b1 : a1, room.id, `message ${i}`));
        }
        const newestFirst = sent.map((m) => m.id).reverse();

        const all = await srv.http('GET', `/messages?roomId=${room.id}`, undefined, b.token);
        assert.equal(all.status, 200, all.text);
        assert.deepEqual(all.body.messages.map((m) => m.id), newestFirst, 'default limit: all 7, newest first');
        assert.equal(all.body.nextBefore, null, 'nothing older: nextBefore is null');
        all.body.messages.forEach((m, i) => {
            const k = 6 - i;
            assertMessage(m, {
                roomId: room.id, senderId: (k % 2 ? b : a).user.id, content: `message ${k}`,
            });
        });

        const pages = [];
        let before = null;
        for (let guard = 0; guard < 10; guard++) {
            const q = `roomId=${room.id}&limit=3${before ? `&before=${before}` : ''}`;
            const res = await srv.http('GET', `/messages?${q}`, undefined, a.token);
            assert.equal(res.status, 200, res.text);
            assert.ok(res.body.messages.length <= 3, `a page holds at most limit: ${res.text}`);
            pages.push(res.body.messages.map((m) => m.id));
            before = res.body.nextBefore;
            if (before === null) {
                break;
            }
            assert.equal(typeof before, 'string', `nextBefore is a string or null: ${res.text}`);
        }
        assert.equal(before, null, 'paging ends with nextBefore null');
        assert.deepEqual(pages[0], newestFirst.slice(0, 3), 'the first page is the 3 newest');
        assert.deepEqual(pages.flat(), newestFirst, 'the pages together are every message once, in order');
    });

    test('limit must be 1..100; roomId is required; non-members get 403; no token 401', async () => {
        const { users: [a], sockets: [a1], room } = await h.roomWithMembers(srv, tr, 2);
        await send(a1, room.id, 'something');
        for (const limit of ['0', '101', '-1', 'abc']) {
            const res = await srv.http('GET', `/messages?roomId=${room.id}&limit=${limit}`, undefined, a.token);
            h.assertRestError(res, 400, 'invalid_payload');
        }
        for (const limit of ['1', '100']) {
            const res = await srv.http('GET', `/messages?roomId=${room.id}&limit=${limit}`, undefined, a.token);
            assert.equal(res.status, 200, `limit=${limit}: ${res.text}`);
            assert.equal(res.body.messages.length, 1);
        }
        h.assertRestError(await srv.http('GET', '/messages', undefined, a.token), 400, 'invalid_payload');
        const c = await srv.register();
        h.assertRestError(await srv.http('GET', `/messages?roomId=${room.id}`, undefined, c.token), 403, 'forbidden');
        h.assertRestError(await srv.http('GET', `/messages?roomId=${room.id}`), 401, 'unauthorized');
    });

    test('a message sent after history was read appears at the top of the next read', async () => {
        const { users: [, b], sockets: [a1], room } = await h.roomWithMembers(srv, tr, 2);
        const m1 = await send(a1, room.id, 'first');
        const before = await srv.http('GET', `/messages?roomId=${room.id}&limit=1`, undefined, b.token);
        assert.deepEqual(before.body.messages.map((m) => m.id), [m1.id]);
        const m2 = await send(a1, room.id, 'second');
        const after = await srv.http('GET', `/messages?roomId=${room.id}&limit=1`, undefined, b.token);
        assert.deepEqual(after.body.messages.map((m) => m.id), [m2.id]);
        const older = await srv.http('GET',
            `/messages?roomId=${room.id}&limit=1&before=${after.body.nextBefore}`, undefined, b.token);
        assert.deepEqual(older.body.messages.map((m) => m.id), [m1.id]);
    });
});

h.forEachTransport('message:send limits', (tr) => {
    test('content of exactly the default 10000 bytes is accepted; 10001 -> payload_too_large', async () => {
        const { sockets: [a1, b1], room } = await h.roomWithMembers(srv, tr, 2);
        const ok = await send(a1, room.id, 'x'.repeat(10000));
        await h.waitFor(b1, 'message:new', (x) => x.id === ok.id);
        assertAckError(await emitAck(a1, 'message:send', { roomId: room.id, content: 'x'.repeat(10001) }),
            'payload_too_large');
        const marker = await send(a1, room.id, 'after the refusal');
        await h.waitFor(b1, 'message:new', (x) => x.id === marker.id);
        assert.equal(b1.inbox.list('message:new').length, 2, 'the refused message was not delivered');
    });
});

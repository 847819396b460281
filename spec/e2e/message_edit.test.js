'use strict';
// Edit and delete (issue 15 item 1): message:edit {messageId, content} and message:delete
// {messageId}, by the sender or the room's admin; members on every node get message:updated /
// message:deleted; history shows updatedAt or a tombstone (also right after the change: the
// recent-messages cache is dropped); bad input changes nothing; message/edit and
// message/delete policies decide.
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const h = require('./helpers');
const { test, emitAck, assertAckOk, assertAckError, send } = h;
const { forEachStack, threeInARoom } = require('./stacks');

async function history(st, token, roomId) {
    const res = await st.node(1).http('GET', `/messages?roomId=${roomId}&limit=50`, undefined, token);
    assert.equal(res.status, 200, res.text);
    return res.body.messages;
}

forEachStack('message:edit and message:delete', (st) => {
    test('the sender edits: everyone sees message:updated, history shows the edit', async () => {
        const { b, sa, sb, sc, room } = await threeInARoom(st, 'e');
        const m = await send(sb, room.id, 'helo');
        await history(st, b.token, room.id); // the recent-messages cache now holds the old text
        const ack = await emitAck(sb, 'message:edit', { messageId: m.id, content: 'hello' });
        assertAckOk(ack, 'message:edit');
        assert.equal(ack.message.content, 'hello');
        assert.equal(ack.message.id, m.id);
        assert.equal(ack.message.createdAt, m.createdAt);
        assert.ok(ack.message.updatedAt > m.updatedAt, 'updatedAt moves on');
        for (const s of [sa, sc]) {
            const up = await h.waitFor(s, 'message:updated', (x) => x.id === m.id);
            assert.equal(up.content, 'hello');
            assert.equal(up.updatedAt, ack.message.updatedAt);
        }
        const hist = await history(st, b.token, room.id);
        const stored = hist.find((x) => x.id === m.id);
        assert.equal(stored.content, 'hello', 'history is not the cached old copy');
        assert.equal(stored.updatedAt, ack.message.updatedAt);
        assert.ok(!stored.deleted);
    });

    test('the room admin deletes someone else\'s message: a tombstone for everyone', async () => {
        const { b, sa, sb, sc, room } = await threeInARoom(st, 'e');
        const m = await send(sb, room.id, 'something regrettable');
        await history(st, b.token, room.id);
        const ack = await emitAck(sa, 'message:delete', { messageId: m.id });
        assertAckOk(ack, 'message:delete');
        assert.equal(ack.message.deleted, true);
        assert.equal(ack.message.content, '');
        for (const s of [sb, sc]) {
            const del = await h.waitFor(s, 'message:deleted', (x) => x.id === m.id);
            assert.equal(del.deleted, true);
            assert.equal(del.content, '', 'the content is gone from the event');
            assert.equal(del.roomId, room.id);
        }
        const stored = (await history(st, b.token, room.id)).find((x) => x.id === m.id);
        assert.equal(stored.deleted, true);
        assert.equal(stored.content, '');
        assert.ok(!JSON.stringify(await history(st, b.token, room.id)).includes('regrettable'));
    });

    test('bad input: the error shape, and nothing changes', async () => {
        const { a, b, sa, sb, sc, room } = await threeInARoom(st, 'e');
        const m = await send(sb, room.id, 'bob wrote this');
        const mine = await send(sa, room.id, 'alice wrote this');
        // someone else's message (carol is a member, not the sender or the admin)
        assertAckError(await emitAck(sc, 'message:edit', { messageId: m.id, content: 'carol was here' }), 'forbidden');
        assertAckError(await emitAck(sc, 'message:delete', { messageId: m.id }), 'forbidden');
        // bob is not the admin: alice's message is not his to change
        assertAckError(await emitAck(sb, 'message:delete', { messageId: mine.id }), 'forbidden');
        // an unknown message, wrong types, a missing id, too long
        assertAckError(await emitAck(sb, 'message:edit', { messageId: h.randomHex24(), content: 'x' }), 'not_found');
        assertAckError(await emitAck(sb, 'message:edit', { messageId: m.id, content: 5 }), 'invalid_payload');
        assertAckError(await emitAck(sb, 'message:edit', { messageId: m.id, content: '' }), 'invalid_payload');
        assertAckError(await emitAck(sb, 'message:edit', { messageId: 'nope', content: 'x' }), 'invalid_payload');
        assertAckError(await emitAck(sb, 'message:delete', {}), 'invalid_payload');
        assertAckError(await emitAck(sb, 'message:edit', { messageId: m.id, content: 'x'.repeat(70000) }),
            'payload_too_large');
        // a non-member
        const d = await st.node(0).register(h.uniqueName('ed'));
        const sd = await st.node(0).connect(d.token);
        assertAckError(await emitAck(sd, 'message:edit', { messageId: m.id, content: 'outsider' }), 'forbidden');
        assertAckError(await emitAck(sd, 'message:delete', { messageId: m.id }), 'forbidden');
        // without an ack: an error event
        sc.emit('message:delete', { messageId: m.id });
        const err = await h.waitFor(sc, 'error', (x) => x.event === 'message:delete');
        h.assertErrorShape({ ok: false, error: err.error }, 'forbidden');
        // a deleted message cannot be edited or deleted again
        assertAckOk(await emitAck(sb, 'message:delete', { messageId: m.id }));
        assertAckError(await emitAck(sb, 'message:edit', { messageId: m.id, content: 'back' }), 'not_found');
        assertAckError(await emitAck(sb, 'message:delete', { messageId: m.id }), 'not_found');

        const hist = await history(st, a.token, room.id);
        assert.equal(hist.find((x) => x.id === mine.id).content, 'alice wrote this');
        assert.equal(hist.find((x) => x.id === mine.id).updatedAt, mine.updatedAt, 'never touched');
        assert.equal(hist.find((x) => x.id === m.id).deleted, true);
        // nobody got a change event for the refused attempts
        assert.equal(sa.inbox.list('message:updated').length, 0);
        assert.equal(sa.inbox.list('message:deleted', (x) => x.id === mine.id).length, 0);
        void b;
    });
});

const scripts = fs.mkdtempSync(path.join(os.tmpdir(), 'chatd-edit-scripts-'));
fs.writeFileSync(path.join(scripts, 'edits.lua'), `
local chat = require "chat"
chat.hook("message/edit", function(ev)
  if ev.content:find("forbidden", 1, true) then
    return chat.reject("policy_rejected", "that word may not be edited in")
  end
  ev.content = ev.content .. " (edited)"
end)
chat.hook("message/delete", function(ev)
  if ev.message.content:find("keep", 1, true) then
    return chat.reject("policy_rejected", "messages that say keep stay")
  end
end)
`);

forEachStack('message:edit and message:delete with policies', (st) => {
    test('message/edit rejects or rewrites; message/delete rejects', async () => {
        const { b, sa, sb, room } = await threeInARoom(st, 'e');
        const m = await send(sb, room.id, 'keep this');
        const e1 = await emitAck(sb, 'message:edit', { messageId: m.id, content: 'forbidden words' });
        assertAckError(e1, 'policy_rejected');
        const e2 = await emitAck(sb, 'message:edit', { messageId: m.id, content: 'keep that' });
        assertAckOk(e2);
        assert.equal(e2.message.content, 'keep that (edited)');
        const up = await h.waitFor(sa, 'message:updated', (x) => x.id === m.id);
        assert.equal(up.content, 'keep that (edited)');
        assertAckError(await emitAck(sa, 'message:delete', { messageId: m.id }), 'policy_rejected');
        const stored = (await history(st, b.token, room.id)).find((x) => x.id === m.id);
        assert.equal(stored.content, 'keep that (edited)');
        assert.ok(!stored.deleted);
    });
}, { scripts });

'use strict';
// Mentions and notifications (issue 15 item 5): @username in a message notifies that member on
// every socket they have, on any node (user:{userId}:notify), with `notification`; a user who
// was offline gets the unread ones on connect; GET /notifications, POST /notifications/read;
// bad input changes nothing; notification/before decides.
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const h = require('./helpers');
const { test, emitAck, assertAckOk, send } = h;
const { forEachStack } = require('./stacks');

async function people(st, prefixes) {
    const out = [];
    for (const p of prefixes) {
        out.push(await st.node(0).register(h.uniqueName(p)));
    }
    return out;
}

forEachStack('mentions and notifications', (st) => {
    test('@username reaches every socket of a member on any node; nobody else', async () => {
        const [a, b, c, d] = await people(st, ['na', 'nb', 'nc', 'nd']);
        const sa = await st.node(0).connect(a.token);
        const sb0 = await st.node(0).connect(b.token);
        const sb1 = await st.node(1).connect(b.token);
        const sc = await st.node(1).connect(c.token);
        const room = (await emitAck(sa, 'room:create', {
            name: h.uniqueName('mentions'), type: 'group', participants: [b.user.id, d.user.id],
        })).room;
        const text = `hi @${b.username.toUpperCase()}, @${c.username} and @${a.username}; @nobody_here.`;
        const m = await send(sa, room.id, text);
        for (const s of [sb0, sb1]) {
            const n = await h.waitFor(s, 'notification', (x) => x.data && x.data.messageId === m.id);
            assert.equal(n.type, 'mention');
            assert.equal(n.userId, b.user.id);
            assert.equal(n.read, false);
            assert.match(n.id, h.HEX24);
            assert.deepEqual(n.data, { roomId: room.id, messageId: m.id, senderId: a.user.id, excerpt: text });
            h.assertTimeMs(n.createdAt, 'notification.createdAt');
        }
        // the same message twice in the list would be a second notification: one only
        await send(sb0, room.id, `thanks @${a.username}`);
        const back = await h.waitFor(sa, 'notification', (x) => x.data.senderId === b.user.id);
        assert.equal(back.userId, a.user.id);
        const res = await st.node(1).http('GET', '/notifications', undefined, b.token);
        assert.equal(res.status, 200, res.text);
        assert.equal(res.body.notifications.length, 1);
        assert.equal(res.body.unread, 1);
        // c is not a member (may not read the room) and a mentioned themselves: nothing
        const cn = await st.node(1).http('GET', '/notifications', undefined, c.token);
        assert.deepEqual(cn.body.notifications, []);
        assert.equal(sc.inbox.list('notification').length, 0);
        assert.equal(sa.inbox.list('notification').length, 1, 'only b\'s mention of a');
    });

    test('offline: the unread ones arrive on connect; read ones do not; reading over REST', async () => {
        const [a, d] = await people(st, ['oa', 'od']);
        const sa = await st.node(0).connect(a.token);
        const room = (await emitAck(sa, 'room:create', { name: 'x', type: 'group', participants: [d.user.id] })).room;
        const m1 = await send(sa, room.id, `@${d.username} one`);
        const m2 = await send(sa, room.id, `@${d.username} two`);
        let list;
        await h.eventually(async () => {
            list = await st.node(1).http('GET', '/notifications', undefined, d.token);
            return list.body.notifications.length === 2;
        }, 'two notifications stored');
        assert.deepEqual(list.body.notifications.map((n) => n.data.messageId), [m2.id, m1.id], 'newest first');
        assert.equal(list.body.unread, 2);
        const sd = await st.node(1).connect(d.token);
        const got = [];
        for (const mid of [m1.id, m2.id]) {
            got.push(await h.waitFor(sd, 'notification', (x) => x.data.messageId === mid));
        }
        assert.deepEqual(sd.inbox.list('notification').map((n) => n.data.messageId), [m1.id, m2.id],
            'oldest first, once each');
        sd.disconnect();

        let res = await st.node(0).http('POST', '/notifications/read', { ids: [got[0].id] }, d.token);
        assert.equal(res.status, 200, res.text);
        assert.equal(res.body.updated, 1);
        res = await st.node(0).http('POST', '/notifications/read', { ids: [got[0].id] }, d.token);
        assert.equal(res.body.updated, 0, 'already read');
        res = await st.node(1).http('GET', '/notifications?limit=1', undefined, d.token);
        assert.equal(res.body.unread, 1);
        assert.equal(res.body.notifications.length, 1);
        assert.equal(res.body.nextBefore, res.body.notifications[0].id);
        const older = await st.node(1).http('GET', `/notifications?limit=1&before=${res.body.nextBefore}`, undefined, d.token);
        assert.equal(older.body.notifications[0].id, got[0].id);
        assert.equal(older.body.notifications[0].read, true);
        assert.equal(older.body.nextBefore, null);

        // reconnect: only what is still unread (m2), then a new one live
        const sd2 = await st.node(0).connect(d.token);
        await h.waitFor(sd2, 'notification', (x) => x.data.messageId === m2.id);
        res = await st.node(0).http('POST', '/notifications/read', undefined, d.token);
        assert.equal(res.body.updated, 1, 'no body: all of them');
        const m3 = await send(sa, room.id, `and @${d.username} three`);
        await h.waitFor(sd2, 'notification', (x) => x.data.messageId === m3.id);
        assert.ok(!sd2.inbox.list('notification').some((n) => n.data.messageId === m1.id),
            'a read notification is not sent again');
    });

    test('bad input: the error shape, and nothing changes', async () => {
        const [a, b] = await people(st, ['ba', 'bb']);
        const sa = await st.node(0).connect(a.token);
        const room = (await emitAck(sa, 'room:create', { name: 'y', type: 'group', participants: [b.user.id] })).room;
        await send(sa, room.id, `@${b.username}`);
        let n;
        await h.eventually(async () => {
            n = await st.node(1).http('GET', '/notifications', undefined, b.token);
            return n.body.notifications.length === 1;
        }, 'stored');
        const id = n.body.notifications[0].id;
        h.assertRestError(await st.node(0).http('GET', '/notifications'), 401, 'unauthorized');
        h.assertRestError(await st.node(0).http('GET', '/notifications?limit=0', undefined, b.token), 400, 'invalid_payload');
        h.assertRestError(await st.node(0).http('GET', '/notifications?before=zz', undefined, b.token), 400, 'invalid_payload');
        h.assertRestError(await st.node(0).http('GET', `/notifications?before=${h.randomHex24()}`, undefined, b.token),
            404, 'not_found');
        h.assertRestError(await st.node(0).http('GET', `/notifications?before=${id}`, undefined, a.token),
            404, 'not_found', 'before');
        for (const body of [{ ids: id }, { ids: [id, 'x'] }, { ids: [1] }, '[1]', 'nope']) {
            h.assertRestError(await st.node(0).http('POST', '/notifications/read', body, b.token), 400, 'invalid_payload');
        }
        const res = await st.node(0).http('POST', '/notifications/read', { ids: [id] }, a.token);
        assert.equal(res.body.updated, 0, 'someone else\'s id changes nothing');
        n = await st.node(1).http('GET', '/notifications', undefined, b.token);
        assert.equal(n.body.unread, 1);
        assert.equal(n.body.notifications[0].read, false);
    });
});

const scripts = fs.mkdtempSync(path.join(os.tmpdir(), 'chatd-note-scripts-'));
fs.writeFileSync(path.join(scripts, 'notes.lua'), `
local chat = require "chat"
chat.hook("notification/before", function(ev)
  if ev.user.username:find("^dnd") then
    return chat.reject("policy_rejected", "do not disturb")
  end
  ev.notification.data.excerpt = "[" .. ev.notification.data.excerpt .. "]"
  ev.notification.userId = ev.room.id -- ignored: who gets it stays
end)
`);

forEachStack('notifications with a policy', (st) => {
    test('notification/before suppresses or rewrites', async () => {
        const [a, quiet, loud] = await people(st, ['pa', 'dnd', 'pl']);
        const sa = await st.node(0).connect(a.token);
        const sl = await st.node(1).connect(loud.token);
        const room = (await emitAck(sa, 'room:create', {
            name: 'z', type: 'group', participants: [quiet.user.id, loud.user.id],
        })).room;
        const m = await send(sa, room.id, `@${quiet.username} @${loud.username} look`);
        const n = await h.waitFor(sl, 'notification', (x) => x.data.messageId === m.id);
        assert.equal(n.data.excerpt, `[${m.content}]`);
        assert.equal(n.userId, loud.user.id);
        const q = await st.node(0).http('GET', '/notifications', undefined, quiet.token);
        assert.deepEqual(q.body.notifications, []);
    });
}, { scripts });

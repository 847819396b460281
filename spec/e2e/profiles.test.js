'use strict';
// Profiles and the user directory (issue 15 item 6): PATCH /me, GET /users/:id,
// GET /users?ids=, GET /users?q=, on both stacks; the cached copy (user:{id}:data on Redis)
// never outlives a change made on another node; a change is announced live (user:updated) to
// those who share a room with the user and to the user's own sockets, on every node; bad input
// changes and announces nothing; the user/update hook decides.
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const h = require('./helpers');
const { test } = h;
const { forEachStack } = require('./stacks');

const PUBLIC_KEYS = ['id', 'username', 'status', 'lastSeen', 'avatar', 'displayName', 'statusText'];

function assertPublic(u, where) {
    for (const k of PUBLIC_KEYS) {
        assert.ok(k in u, `user has "${k}": ${where}`);
    }
    assert.ok(!('email' in u), `no email of others: ${where}`);
    assert.ok(!('passwordHash' in u), `no password hash: ${where}`);
}

// A's first socket makes A online, and the store records it (lastSeen, status) a moment later.
// Profile changes wait for that: FerretDB's SQLite backend, standing in for MongoDB here, runs
// findAndModify as a read and then a write (FerretDB/FerretDB#3040), so PATCH /me and that
// $set of the same user at once can lose one of the two (seen here: 2 in 60 tries); MongoDB
// applies both.
async function settled(st, user, token) {
    await h.eventually(async () => {
        const r = await st.node(1).http('GET', `/users/${user.user.id}`, undefined, token);
        return r.body.user.status === 'online';
    }, 'the store has the user online');
}

forEachStack('profiles', (st) => {
    test('PATCH /me sets, keeps and clears fields; others read it through the directory', async () => {
        const a = await st.node(0).register(h.uniqueName('pa'));
        const b = await st.node(1).register(h.uniqueName('pb'));
        let res = await st.node(0).http('GET', '/me', undefined, a.token);
        assert.equal(res.status, 200, res.text);
        assert.equal(res.body.user.displayName, null);
        assert.equal(res.body.user.statusText, null);
        assert.equal(res.body.user.avatar, null);

        res = await st.node(0).http('PATCH', '/me',
            { displayName: 'Ada L.', avatar: 'https://example.com/ada.png' }, a.token);
        assert.equal(res.status, 200, res.text);
        assert.equal(res.body.user.displayName, 'Ada L.');
        assert.equal(res.body.user.email, a.email, 'my own email in my answer');
        res = await st.node(0).http('PATCH', '/me', { statusText: 'in a meeting', avatar: null }, a.token);
        assert.equal(res.status, 200, res.text);
        assert.equal(res.body.user.displayName, 'Ada L.', 'a field not sent stays');
        assert.equal(res.body.user.avatar, null, 'null clears');
        assert.equal(res.body.user.statusText, 'in a meeting');

        res = await st.node(1).http('GET', `/users/${a.user.id}`, undefined, b.token);
        assert.equal(res.status, 200, res.text);
        assertPublic(res.body.user, res.text);
        assert.equal(res.body.user.displayName, 'Ada L.');
        assert.equal(res.body.user.statusText, 'in a meeting');
        assert.equal(res.body.user.username, a.username);

        res = await st.node(1).http('GET', `/users?ids=${b.user.id},${h.randomHex24()},${a.user.id}`,
            undefined, b.token);
        assert.equal(res.status, 200, res.text);
        assert.deepEqual(res.body.users.map((u) => u.id), [b.user.id, a.user.id],
            'in the order asked, unknown ids left out');
        res.body.users.forEach((u) => assertPublic(u, res.text));
    });

    test('a change on one node is what the other node answers next (the cached copy is dropped)', async () => {
        const a = await st.node(0).register(h.uniqueName('pc'));
        const b = await st.node(1).register(h.uniqueName('pd'));
        for (let i = 1; i <= 3; i++) {
            // read through node 1 (fills the cache), change through node 0, read again
            let res = await st.node(1).http('GET', `/users/${a.user.id}`, undefined, b.token);
            assert.equal(res.status, 200, res.text);
            res = await st.node(0).http('PATCH', '/me', { displayName: `name ${i}` }, a.token);
            assert.equal(res.status, 200, res.text);
            res = await st.node(1).http('GET', `/users/${a.user.id}`, undefined, b.token);
            assert.equal(res.body.user.displayName, `name ${i}`, res.text);
            res = await st.node(1).http('GET', `/users?ids=${a.user.id}`, undefined, b.token);
            assert.equal(res.body.users[0].displayName, `name ${i}`, res.text);
        }
        // presence changes the directory's answer too
        let res = await st.node(1).http('GET', `/users/${a.user.id}`, undefined, b.token);
        assert.equal(res.body.user.status, 'offline', res.text);
        const sock = await st.node(0).connect(a.token);
        await h.eventually(async () => {
            const r = await st.node(1).http('GET', `/users/${a.user.id}`, undefined, b.token);
            return r.body.user.status === 'online';
        }, 'the directory shows the user online after they connect');
        sock.disconnect();
        await h.eventually(async () => {
            const r = await st.node(1).http('GET', `/users/${a.user.id}`, undefined, b.token);
            return r.body.user.status === 'offline' && typeof r.body.user.lastSeen === 'number';
        }, 'and offline with lastSeen after they leave');
    });

    test('user:updated reaches those who share a room and the user\'s own sockets, on every node; nobody else', async () => {
        // a and b share a room; a has a socket on each node; c (node 1) shares a room only
        // with x (node 0), whose message there is the barrier for "c got nothing"
        const a = await st.node(0).register(h.uniqueName('pu'));
        const b = await st.node(1).register(h.uniqueName('pv'));
        const c = await st.node(1).register(h.uniqueName('pw'));
        const x = await st.node(0).register(h.uniqueName('px'));
        const sa0 = await st.node(0).connect(a.token);
        const sa1 = await st.node(1).connect(a.token);
        const sb = await st.node(1).connect(b.token);
        const sc = await st.node(1).connect(c.token);
        const sx = await st.node(0).connect(x.token);
        h.assertAckOk(await h.emitAck(sa0, 'room:create',
            { name: h.uniqueName('pr'), type: 'group', participants: [b.user.id] }), 'room:create');
        const other = h.assertAckOk(await h.emitAck(sx, 'room:create',
            { name: h.uniqueName('pr'), type: 'group', participants: [c.user.id] }), 'room:create').room;
        await settled(st, a, b.token);
        // node 1 reads a's profile first: the cached copy is what could go stale
        let res = await st.node(1).http('GET', `/users/${a.user.id}`, undefined, b.token);
        assert.equal(res.body.user.displayName, null, res.text);

        res = await st.node(0).http('PATCH', '/me', { displayName: 'Ada Live', statusText: 'around' }, a.token);
        assert.equal(res.status, 200, res.text);
        const seen = await h.waitFor(sb, 'user:updated', (u) => u.displayName === 'Ada Live');
        // straight from the event to the directory, through the other node: the new profile
        res = await st.node(1).http('GET', `/users/${a.user.id}`, undefined, b.token);
        assert.equal(res.body.user.displayName, 'Ada Live', `a stale directory copy after the event: ${res.text}`);
        assertPublic(seen, JSON.stringify(seen));
        assert.equal(seen.id, a.user.id);
        assert.equal(seen.username, a.username);
        assert.equal(seen.statusText, 'around');
        for (const s of [sa0, sa1]) {
            const mine = await h.waitFor(s, 'user:updated', (u) => u.displayName === 'Ada Live');
            assert.ok(!('email' in mine), 'the event carries the public user');
        }

        // c shares no room with a: x's message, sent after the change from a's node, reaches c
        // after anything the change sent c
        h.assertAckOk(await h.emitAck(sx, 'message:send', { roomId: other.id, content: 'barrier' }), 'message:send');
        await h.waitFor(sc, 'message:new', (m) => m.content === 'barrier');
        assert.deepEqual(sc.inbox.list('user:updated'), [], 'no user:updated for someone who shares no room');

        // once per socket: a second change comes right after the first, and nothing between
        res = await st.node(0).http('PATCH', '/me', { displayName: 'Ada Again' }, a.token);
        assert.equal(res.status, 200, res.text);
        for (const s of [sb, sa0, sa1]) {
            await h.waitFor(s, 'user:updated', (u) => u.displayName === 'Ada Again');
            assert.deepEqual(s.inbox.list('user:updated').map((u) => u.displayName), ['Ada Live', 'Ada Again']);
        }
        res = await st.node(1).http('GET', `/users?ids=${a.user.id}`, undefined, b.token);
        assert.equal(res.body.users[0].displayName, 'Ada Again', res.text);
    });

    test('GET /users?q= finds usernames by prefix, any case, in name order, bounded', async () => {
        const stem = h.uniqueName('srch').replace(/_/g, 'x');
        const names = [`${stem}b`, `${stem.toUpperCase()}a`, `${stem}c`];
        const users = [];
        for (const n of names) {
            users.push(await st.node(0).register(n));
        }
        let res = await st.node(1).http('GET', `/users?q=${stem.toUpperCase()}`, undefined, users[0].token);
        assert.equal(res.status, 200, res.text);
        assert.deepEqual(res.body.users.map((u) => u.username), [names[1], names[0], names[2]]);
        res.body.users.forEach((u) => assertPublic(u, res.text));
        res = await st.node(1).http('GET', `/users?q=${stem}&limit=2`, undefined, users[0].token);
        assert.deepEqual(res.body.users.map((u) => u.username), [names[1], names[0]]);
        res = await st.node(1).http('GET', `/users?q=${stem}zz`, undefined, users[0].token);
        assert.deepEqual(res.body.users, []);
    });

    test('bad input gets the error shape and changes nothing', async () => {
        const a = await st.node(0).register(h.uniqueName('pe'));
        const b = await st.node(1).register(h.uniqueName('pe'));
        const room = await st.node(0).http('POST', '/rooms',
            { name: h.uniqueName('pe'), type: 'group', participants: [b.user.id] }, a.token);
        assert.equal(room.status, 201, room.text);
        const sb = await st.node(1).connect(b.token);
        const ok = await st.node(0).http('PATCH', '/me', { displayName: 'Before' }, a.token);
        assert.equal(ok.status, 200, ok.text);
        await h.waitFor(sb, 'user:updated', (u) => u.displayName === 'Before');
        const bad = [
            [{ displayName: 'After', nickname: 'x' }, 'displayName, avatar and statusText'],
            [{ displayName: 'After', avatar: 'javascript:alert(1)' }, 'avatar'],
            [{ displayName: 'x'.repeat(65) }, 'displayName'],
            [{ displayName: 'bad\nname' }, 'displayName'],
            [{ displayName: 7 }, 'displayName'],
            [{ statusText: 's'.repeat(141) }, 'statusText'],
            [{}, 'at least one'],
            ['[1,2]', 'JSON object'],
        ];
        for (const [body, words] of bad) {
            const res = await st.node(0).http('PATCH', '/me', body, a.token);
            h.assertRestError(res, 400, 'invalid_payload', words);
        }
        h.assertRestError(await st.node(0).http('PATCH', '/me', { displayName: 'x' }), 401, 'unauthorized');
        const me = await st.node(0).http('GET', '/me', undefined, a.token);
        assert.equal(me.body.user.displayName, 'Before', 'nothing was half-applied');
        assert.equal(me.body.user.avatar, null);
        // nothing was announced either: the next event b gets is the next good change
        assert.equal((await st.node(0).http('PATCH', '/me', { displayName: 'After' }, a.token)).status, 200);
        await h.waitFor(sb, 'user:updated', (u) => u.displayName === 'After');
        assert.deepEqual(sb.inbox.list('user:updated').map((u) => u.displayName), ['Before', 'After']);

        h.assertRestError(await st.node(1).http('GET', `/users/${h.randomHex24()}`, undefined, a.token),
            404, 'not_found');
        h.assertRestError(await st.node(1).http('GET', '/users/nothex', undefined, a.token), 404, 'not_found');
        h.assertRestError(await st.node(1).http('GET', `/users/${a.user.id}`), 401, 'unauthorized');
        h.assertRestError(await st.node(1).http('GET', '/users', undefined, a.token), 400, 'invalid_payload');
        h.assertRestError(await st.node(1).http('GET', `/users?ids=${a.user.id},zz`, undefined, a.token),
            400, 'invalid_payload', 'ids');
        h.assertRestError(await st.node(1).http('GET', `/users?ids=${a.user.id},`, undefined, a.token),
            400, 'invalid_payload', 'ids');
        const many = Array.from({ length: 101 }, () => h.randomHex24()).join(',');
        h.assertRestError(await st.node(1).http('GET', `/users?ids=${many}`, undefined, a.token),
            400, 'invalid_payload', 'ids');
        h.assertRestError(await st.node(1).http('GET', '/users?q=a%20b', undefined, a.token),
            400, 'invalid_payload', 'q must');
        h.assertRestError(await st.node(1).http('GET', '/users?q=ab&limit=0', undefined, a.token),
            400, 'invalid_payload', 'limit');
        h.assertRestError(await st.node(1).http('GET', `/users?q=ab&ids=${a.user.id}`, undefined, a.token),
            400, 'invalid_payload');
    });
});

// the user/update hook: an operator's say over profiles
const scripts = fs.mkdtempSync(path.join(os.tmpdir(), 'chatd-profile-scripts-'));
fs.writeFileSync(path.join(scripts, 'profiles.lua'), `
local chat = require "chat"
chat.hook("user/update", function(ev)
  local name = ev.changes.displayName
  if name and name:lower():find("admin", 1, true) then
    return chat.reject("policy_rejected", "display names may not pretend to be an admin")
  end
  if ev.changes.statusText then
    ev.changes.statusText = ev.changes.statusText:upper()
  end
end)
`);

forEachStack('profiles with a user/update policy', (st) => {
    test('a policy rejects or rewrites a profile change', async () => {
        const a = await st.node(0).register(h.uniqueName('pf'));
        const sa = await st.node(1).connect(a.token); // a's own other device
        await settled(st, a, a.token);
        let res = await st.node(0).http('PATCH', '/me', { displayName: 'The Admin', statusText: 'x' }, a.token);
        h.assertRestError(res, 422, 'policy_rejected', 'admin');
        res = await st.node(0).http('PATCH', '/me', { displayName: 'Fine', statusText: 'quiet please' }, a.token);
        assert.equal(res.status, 200, res.text);
        assert.equal(res.body.user.statusText, 'QUIET PLEASE');
        // the refused change was never announced; the rewritten one is, as stored
        await h.waitFor(sa, 'user:updated', (u) => u.displayName === 'Fine');
        assert.deepEqual(sa.inbox.list('user:updated').map((u) => [u.displayName, u.statusText]),
            [['Fine', 'QUIET PLEASE']]);
        res = await st.node(1).http('GET', `/users/${a.user.id}`, undefined, a.token);
        assert.equal(res.body.user.displayName, 'Fine');
        assert.equal(res.body.user.statusText, 'QUIET PLEASE');
    });
}, { scripts });

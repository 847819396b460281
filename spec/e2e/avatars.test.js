'use strict';
// Uploaded avatars (issue 15 items 3 and 6): PATCH /me takes avatar "/uploads/<id>" only for
// the caller's own picture (an image type, at most CHAT_AVATAR_MAX_BYTES); that file then
// downloads for every signed-in user, on any node, with no room shared; other uploads keep
// the room-member rule; a refused avatar changes nothing (the profile, and who may download).
const assert = require('node:assert/strict');
const h = require('./helpers');
const { test } = h;
const { forEachStack } = require('./stacks');

const AVATAR_MAX = 1024; // CHAT_AVATAR_MAX_BYTES for these servers
// a 1x1 PNG
const PNG = Buffer.from('iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==', 'base64');

async function upload(node, token, bytes, type, name) {
    const res = await node.http('POST', `/uploads?name=${encodeURIComponent(name)}`, bytes, token, { 'content-type': type });
    assert.equal(res.status, 201, res.text);
    return res.body.upload;
}

const { download } = h;

function refused(node, reason) {
    return h.metric(node.server, `chatd_uploads_refused_total{reason="${reason}"}`);
}

forEachStack('uploaded avatars', (st) => {
    test('my uploaded picture as my avatar: anyone signed in downloads it, on any node', async () => {
        const a = await st.node(0).register(h.uniqueName('av'));
        const b = await st.node(1).register(h.uniqueName('bv')); // shares no room with a
        const up = await upload(st.node(0), a.token, PNG, 'image/png', 'me.png');
        const other = await upload(st.node(0), a.token, PNG, 'image/png', 'holiday.png');
        assert.equal((await download(st.node(1), b.token, up.id)).status, 403, 'not shared yet');

        const res = await st.node(0).http('PATCH', '/me', { avatar: up.url }, a.token);
        assert.equal(res.status, 200, res.text);
        assert.equal(res.body.user.avatar, `/uploads/${up.id}`);
        const seen = await st.node(1).http('GET', `/users/${a.user.id}`, undefined, b.token);
        assert.equal(seen.body.user.avatar, up.url, 'the directory on the other node has it');

        const d = await download(st.node(1), b.token, seen.body.user.avatar.slice('/uploads/'.length));
        assert.equal(d.status, 200, d.text);
        assert.ok(d.body.equals(PNG), 'b gets the same bytes, sharing no room with a');
        assert.equal(d.headers.get('content-type'), 'image/png');
        assert.match(d.headers.get('content-disposition'), /^inline/);
        assert.equal((await download(st.node(1), null, up.id)).status, 401, 'still not without a token');

        // a's other picture keeps the room rule
        h.assertErrorShape((await download(st.node(1), b.token, other.id)).json, 'forbidden');
        // a moves on to another address: the old picture stays readable (others may show it)
        assert.equal((await st.node(0).http('PATCH', '/me', { avatar: 'https://example.com/x.png' }, a.token)).status, 200);
        assert.equal((await download(st.node(0), b.token, up.id)).status, 200);
        // setting it again is fine (already shared)
        assert.equal((await st.node(1).http('PATCH', '/me', { avatar: up.url }, a.token)).status, 200);
    });

    test("someone else's upload, a file that is not a picture, a too large one: refused, nothing changes", async () => {
        const a = await st.node(0).register(h.uniqueName('aw'));
        const b = await st.node(1).register(h.uniqueName('bw'));
        const c = await st.node(1).register(h.uniqueName('cw'));
        const mine = await upload(st.node(0), a.token, PNG, 'image/png', 'a.png');
        const theirs = await upload(st.node(1), b.token, PNG, 'image/png', 'b.png');
        const text = await upload(st.node(0), a.token, Buffer.from('hello'), 'text/plain', 'a.txt');
        const big = await upload(st.node(0), a.token, Buffer.concat([PNG, Buffer.alloc(AVATAR_MAX)]), 'image/png', 'big.png');
        let res = await st.node(0).http('PATCH', '/me', { displayName: 'Before', avatar: mine.url }, a.token);
        assert.equal(res.status, 200, res.text);
        const count = await refused(st.node(0), 'avatar');

        const cases = [
            [{ displayName: 'After', avatar: theirs.url }, 403, 'forbidden', 'you uploaded'],
            [{ displayName: 'After', avatar: text.url }, 400, 'invalid_payload', 'picture'],
            [{ displayName: 'After', avatar: big.url }, 413, 'payload_too_large', String(AVATAR_MAX)],
            [{ displayName: 'After', avatar: `/uploads/${h.randomHex24()}` }, 404, 'not_found', 'upload'],
            [{ displayName: 'After', avatar: '/uploads/../etc/passwd' }, 400, 'invalid_payload', 'avatar'],
        ];
        for (const [body, status, code, words] of cases) {
            h.assertRestError(await st.node(0).http('PATCH', '/me', body, a.token), status, code, words);
        }
        assert.equal(await refused(st.node(0), 'avatar'), count + 3, 'theirs, the text, the big one');
        res = await st.node(1).http('GET', `/users/${a.user.id}`, undefined, c.token);
        assert.equal(res.body.user.displayName, 'Before', 'nothing half-applied');
        assert.equal(res.body.user.avatar, mine.url);
        // none of the refused files became readable to others
        for (const f of [theirs, text, big]) {
            h.assertErrorShape((await download(st.node(1), c.token, f.id)).json, 'forbidden');
        }
        assert.equal((await download(st.node(1), c.token, mine.id)).status, 200);
    });
}, { env: { CHAT_AVATAR_MAX_BYTES: String(AVATAR_MAX) } });

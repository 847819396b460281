'use strict';
// Attachments (issue 15 item 3): POST /uploads (size and media type limited by settings,
// stored under the data directory; upload/before may veto), a message refers to {uploadId}
// and carries {uploadId, name, type, size, url}; GET /uploads/:id serves the uploader and the
// members of a room where it was posted, on any node; bad input changes nothing.
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const h = require('./helpers');
const { test, emitAck, assertAckOk, assertAckError, send } = h;
const { forEachStack } = require('./stacks');

const MAX = 4096; // CHAT_UPLOAD_MAX_BYTES for these servers
// a 1x1 PNG
const PNG = Buffer.from('iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==', 'base64');

async function upload(node, token, bytes, type, name) {
    const q = name === undefined ? '' : `?name=${encodeURIComponent(name)}`;
    return node.http('POST', `/uploads${q}`, bytes, token, type ? { 'content-type': type } : {});
}

const { download } = h;

async function threeUsers(st) {
    const out = [];
    for (const p of ['ua', 'ub', 'uc']) {
        out.push(await st.node(0).register(h.uniqueName(p)));
    }
    return out;
}

const env = { CHAT_UPLOAD_MAX_BYTES: String(MAX) };

/** chatd_uploads_refused_total{reason} on one node. */
function refused(node, reason) {
    return h.metric(node.server, `chatd_uploads_refused_total{reason="${reason}"}`);
}

forEachStack('uploads and attachments', (st) => {
    test('upload, attach, and members download it on any node; others may not', async () => {
        const [a, b, c] = await threeUsers(st);
        const notMember = await refused(st.node(1), 'not_member');
        const sa = await st.node(0).connect(a.token);
        const sb = await st.node(1).connect(b.token);
        const room = (await emitAck(sa, 'room:create', { name: 'files', type: 'group', participants: [b.user.id] })).room;
        const res = await upload(st.node(0), a.token, PNG, 'image/png', 'cat.png');
        assert.equal(res.status, 201, res.text);
        const up = res.body.upload;
        assert.match(up.id, h.HEX24);
        assert.equal(up.name, 'cat.png');
        assert.equal(up.type, 'image/png');
        assert.equal(up.size, PNG.length);
        assert.equal(up.url, `/uploads/${up.id}`);

        let d = await download(st.node(0), a.token, up.id);
        assert.equal(d.status, 200, d.text);
        assert.ok(d.body.equals(PNG), 'the uploader gets the same bytes');
        assert.equal(d.headers.get('content-type'), 'image/png');
        assert.equal(d.headers.get('x-content-type-options'), 'nosniff');
        h.assertErrorShape((await download(st.node(1), b.token, up.id)).json, 'forbidden');

        const ack = await emitAck(sa, 'message:send', { roomId: room.id, content: 'a cat', attachments: [{ uploadId: up.id }] });
        assertAckOk(ack, 'message:send');
        const meta = { uploadId: up.id, name: 'cat.png', type: 'image/png', size: PNG.length, url: up.url };
        assert.deepEqual(ack.message.attachments, [meta]);
        const got = await h.waitFor(sb, 'message:new', (x) => x.id === ack.message.id);
        assert.deepEqual(got.attachments, [meta]);
        d = await download(st.node(1), b.token, up.id);
        assert.equal(d.status, 200, d.text);
        assert.ok(d.body.equals(PNG), 'a member gets it, on the other node too');
        const hist = await st.node(1).http('GET', `/messages?roomId=${room.id}`, undefined, b.token);
        assert.deepEqual(hist.body.messages[0].attachments, [meta]);

        h.assertErrorShape((await download(st.node(1), c.token, up.id)).json, 'forbidden');
        assert.equal((await download(st.node(1), c.token, up.id)).status, 403);
        assert.equal((await download(st.node(1), null, up.id)).status, 401);
        assert.equal(await refused(st.node(1), 'not_member'), notMember + 3,
            'b before the file was posted, then c twice');
        const none = await download(st.node(0), a.token, h.randomHex24());
        assert.equal(none.status, 404);
        h.assertErrorShape(none.json, 'not_found');
    });

    test('bad input: the error shape, and nothing is stored or linked', async () => {
        const [a, b] = await threeUsers(st);
        const sa = await st.node(0).connect(a.token);
        const sb = await st.node(1).connect(b.token);
        const room = (await emitAck(sa, 'room:create', { name: 'bad', type: 'group', participants: [b.user.id] })).room;
        const before = { large: await refused(st.node(0), 'too_large'), type: await refused(st.node(0), 'type') };
        h.assertRestError(await upload(st.node(0), a.token, crypto.randomBytes(MAX + 1), 'image/png', 'big.png'),
            413, 'payload_too_large', String(MAX));
        h.assertRestError(await upload(st.node(0), a.token, PNG, 'application/x-msdownload', 'x.exe'),
            400, 'invalid_payload', 'Content-Type');
        h.assertRestError(await upload(st.node(0), a.token, PNG, undefined, 'x.png'), 400, 'invalid_payload');
        h.assertRestError(await upload(st.node(0), a.token, PNG, 'image/png'), 400, 'invalid_payload', 'name');
        h.assertRestError(await upload(st.node(0), a.token, PNG, 'image/png', '../etc/passwd'), 400, 'invalid_payload');
        h.assertRestError(await upload(st.node(0), a.token, Buffer.alloc(0), 'image/png', 'empty.png'), 400, 'invalid_payload');
        h.assertRestError(await upload(st.node(0), undefined, PNG, 'image/png', 'x.png'), 401, 'unauthorized');
        assert.equal(await refused(st.node(0), 'too_large'), before.large + 1);
        assert.equal(await refused(st.node(0), 'type'), before.type + 2, 'an .exe and no Content-Type');

        const mine = (await upload(st.node(0), a.token, PNG, 'image/png', 'mine.png')).body.upload;
        const theirs = (await upload(st.node(1), b.token, Buffer.from('hello'), 'text/plain', 'b.txt')).body.upload;
        // someone else's file, an unknown one, a bad id: refused, and mine is not linked either
        assertAckError(await emitAck(sa, 'message:send', {
            roomId: room.id, content: 'x', attachments: [{ uploadId: mine.id }, { uploadId: theirs.id }],
        }), 'forbidden');
        assertAckError(await emitAck(sa, 'message:send', {
            roomId: room.id, content: 'x', attachments: [{ uploadId: mine.id }, { uploadId: h.randomHex24() }],
        }), 'not_found');
        assertAckError(await emitAck(sa, 'message:send', {
            roomId: room.id, content: 'x', attachments: [{ uploadId: 'nope' }],
        }), 'invalid_payload');
        assert.equal((await download(st.node(1), b.token, mine.id)).status, 403, 'not linked to the room');
        const hist = await st.node(0).http('GET', `/messages?roomId=${room.id}`, undefined, a.token);
        assert.deepEqual(hist.body.messages, [], 'no message stored');
        assert.equal(sb.inbox.list('message:new').length, 0);
        // a non-member cannot post it into a room it is not in
        const [, , c] = await threeUsers(st);
        const mineC = (await upload(st.node(0), c.token, PNG, 'image/png', 'c.png')).body.upload;
        const sc = await st.node(0).connect(c.token);
        assertAckError(await emitAck(sc, 'message:send', { roomId: room.id, content: 'x', attachments: [{ uploadId: mineC.id }] }), 'forbidden');
        assert.equal((await download(st.node(1), b.token, mineC.id)).status, 403);
    });
}, { env });

const scripts = fs.mkdtempSync(path.join(os.tmpdir(), 'chatd-upload-scripts-'));
fs.writeFileSync(path.join(scripts, 'uploads.lua'), `
local chat = require "chat"
chat.hook("upload/before", function(ev)
  if ev.upload.type == "application/pdf" then
    return chat.reject("policy_rejected", "no PDFs here")
  end
  ev.upload.name = "renamed-" .. ev.upload.name
end)
`);

forEachStack('uploads with a policy', (st) => {
    test('upload/before vetoes or renames', async () => {
        const a = await st.node(0).register(h.uniqueName('up'));
        const vetoed = await refused(st.node(0), 'policy');
        h.assertRestError(await upload(st.node(0), a.token, Buffer.from('%PDF-1.4'), 'application/pdf', 'a.pdf'),
            422, 'policy_rejected', 'PDF');
        assert.equal(await refused(st.node(0), 'policy'), vetoed + 1);
        const res = await upload(st.node(1), a.token, PNG, 'image/png', 'p.png');
        assert.equal(res.status, 201, res.text);
        assert.equal(res.body.upload.name, 'renamed-p.png');
        const d = await download(st.node(0), a.token, res.body.upload.id);
        assert.match(d.headers.get('content-disposition'), /renamed-p\.png/);
    });
}, { scripts, env });

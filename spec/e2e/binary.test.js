'use strict';
// Binary from and to scripts: a client's Buffer reaches an "event/<name>" handler as bytes
// (chat.binary), and chat.binary values in emits arrive at clients as Buffers, to one socket
// and to a whole room.
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const h = require('./helpers');
const { test, emitAck, assertAckOk } = h;

const scripts = fs.mkdtempSync(path.join(os.tmpdir(), 'chatd-binary-'));
fs.writeFileSync(path.join(scripts, 'files.lua'), `
local chat = require "chat"
chat.hook("event/upload", function(ev)
    local blob = ev.args[1].data
    local bytes = tostring(blob)
    chat.emit_socket(ev.socket.id, "echo", { name = ev.args[1].name, data = chat.binary(bytes:reverse()) })
    return { ok = true, size = #blob, first = bytes:byte(1) }
end)
chat.hook("event/share", function(ev)
    chat.emit_room(ev.args[1].roomId, "shared", { data = chat.binary("\\0\\1\\2\\255") })
    return { ok = true }
end)
`);

const srv = h.useServer({ scripts });

h.forEachTransport('binary with scripts', (transportOpts) => {
    test('a Buffer reaches the handler as bytes and a binary emit comes back as a Buffer', async () => {
        const { token } = await srv.register();
        const s = await srv.connect(token, transportOpts);
        const payload = Buffer.from([7, 0, 200, 13, 10, 255]);
        const ack = await emitAck(s, 'upload', { name: 'a.bin', data: payload });
        assert.deepEqual(ack, { ok: true, size: 6, first: 7 });
        const echo = await h.waitFor(s, 'echo');
        assert.equal(echo.name, 'a.bin');
        assert.ok(Buffer.isBuffer(echo.data) || echo.data instanceof ArrayBuffer, 'binary arrives as binary');
        assert.deepEqual([...Buffer.from(echo.data)], [...payload].reverse());
    });

    test('a binary emit to a room reaches every member as a Buffer', async () => {
        const { sockets: [a, b], room } = await h.roomWithMembers(srv, transportOpts, 2);
        assertAckOk(await emitAck(a, 'share', { roomId: room.id }), 'share');
        for (const s of [a, b]) {
            const got = await h.waitFor(s, 'shared');
            assert.deepEqual([...Buffer.from(got.data)], [0, 1, 2, 255]);
        }
    });
});

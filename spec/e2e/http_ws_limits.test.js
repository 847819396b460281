'use strict';
// A websocket message over maxPayload closes that connection with 1009 (message too big),
// with a close frame the client sees, not a dropped TCP connection (1006). Issue 10 item 12.
// And a websocket chatd closes for another reason (here: no pong) gets a close frame too.
const assert = require('node:assert/strict');
const { describe } = require('node:test');
const WebSocket = require('ws');
const h = require('./helpers');
const { test } = h;

const MAX = 10000;
const PING_INTERVAL = 1500;
const PING_TIMEOUT = 1000;
const srv = h.useServer({ env: { CHAT_MAX_PAYLOAD: String(MAX),
    CHAT_PING_INTERVAL_MS: String(PING_INTERVAL), CHAT_PING_TIMEOUT_MS: String(PING_TIMEOUT) } });

function openWs(bound = h.WAIT_MS) {
    const ws = new WebSocket(`${srv.server.wsUrl}/socket.io/?EIO=4&transport=websocket`);
    const closed = h.withTimeout(new Promise((resolve) => {
        ws.on('close', (code, reason) => resolve({ code, reason: reason.toString() }));
    }), bound, 'the close');
    ws.on('error', () => {});
    const opened = h.once(ws, 'open');
    return { ws, closed, opened };
}

describe('oversized websocket messages', () => {
    for (const [name, size] of [['just over maxPayload', MAX + 100], ['ten times maxPayload', MAX * 10],
        ['a megabyte', 1 << 20]]) {
        test(`${name}: closed with 1009`, async () => {
            const { ws, closed, opened } = openWs();
            await opened;
            ws.send(`6${'x'.repeat(size)}`); // a noop with data: only its size is wrong
            const info = await closed;
            assert.equal(info.code, 1009, `close code ${info.code} (1006: no close frame)`);
            srv.assertAlive();
        });
    }

    test('a message of maxPayload bytes in fragments is fine; one byte more is 1009', async () => {
        const { ws, closed, opened } = openWs();
        await opened;
        ws.send('6' + 'x'.repeat(MAX - 2), { fin: false });
        ws.send('x', { fin: true });
        ws.send('6' + 'x'.repeat(MAX - 1), { fin: false });
        ws.send('xx', { fin: true });
        const info = await closed;
        assert.equal(info.code, 1009);
    });
});

describe('closes chatd starts', () => {
    test('no pong: the client gets a close frame (1000), not a dropped connection (1006)', async () => {
        // lws 4.1.6 sent no close frame when the close started from SERVER_WRITEABLE
        const { closed, opened } = openWs(PING_INTERVAL + PING_TIMEOUT + h.WAIT_MS);
        await opened;
        const info = await closed;
        assert.equal(info.code, 1000, `close code ${info.code}`);
    });
});

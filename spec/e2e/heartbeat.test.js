'use strict';
// Server-driven heartbeat with small settings: silent peers are dropped after about
// pingInterval + pingTimeout; answering peers (and every socket.io-client) stay.
const assert = require('node:assert/strict');
const { describe } = require('node:test');
const h = require('./helpers');
const { test, emitAck, assertAckOk } = h;

const PING_INTERVAL = 300;
const PING_TIMEOUT = 200;
const CLOSE_BOUND_MS = 3000;
const srv = h.useServer({
    env: { CHAT_PING_INTERVAL_MS: String(PING_INTERVAL), CHAT_PING_TIMEOUT_MS: String(PING_TIMEOUT) },
});

describe('raw peers', () => {
    test('a websocket that never answers pings is closed after about pingInterval + pingTimeout', async () => {
        const conn = srv.rawWs({ autoPong: false });
        await conn.opened;
        const openedAt = Date.now();
        const info = await conn.waitClosed(CLOSE_BOUND_MS);
        const elapsed = info.at - openedAt;
        assert.ok(conn.pings >= 1, `the server pinged before giving up (pings: ${conn.pings})`);
        assert.ok(elapsed >= PING_INTERVAL - 50,
            `closed for the missing pong, not at once (${elapsed} ms)`);
        assert.ok(elapsed < CLOSE_BOUND_MS, `closed within ${CLOSE_BOUND_MS} ms (${elapsed} ms)`);
    });

    test('a websocket that answers pings stays open across several intervals', async () => {
        const { token } = await srv.register();
        const conn = await srv.rawWsConnected(token, { autoPong: true });
        await h.withTimeout(new Promise((resolve, reject) => {
            const check = () => {
                if (conn.pings >= 4) {
                    resolve();
                }
            };
            conn.ws.on('message', check);
            conn.closed.then(() => reject(new Error(`closed after ${conn.pings} pings`)));
            check();
        }), 10 * PING_INTERVAL + h.WAIT_MS, '4 pings answered');
        assert.equal(conn.closeInfo, null);
        conn.send(`421${JSON.stringify(['room:create', { name: 'alive', type: 'group', participants: [] }])}`);
        const ack = await conn.next((m) => typeof m === 'string' && m.startsWith('431'));
        assert.equal(JSON.parse(ack.slice(3))[0].ok, true);
    });

    test('a polling session that never answers pings is closed', async () => {
        const { sid } = await srv.eioOpen();
        const deadline = Date.now() + CLOSE_BOUND_MS;
        let sawPing = false;
        let gone = null;
        while (Date.now() < deadline) {
            let res;
            try {
                res = await srv.eioGet(sid, CLOSE_BOUND_MS);
            } catch {
                res = await srv.eioGet(sid); // the held poll was cut: ask once more
            }
            if (res.status === 400) {
                gone = res;
                break;
            }
            assert.equal(res.status, 200, res.text);
            sawPing = sawPing || res.packets.includes('2');
            if (res.packets.includes('1')) { // the close packet: the next poll must fail
                const next = await srv.eioGet(sid);
                assert.equal(next.status, 400, next.text);
                gone = next;
                break;
            }
        }
        assert.ok(sawPing, 'the server sent a ping first');
        assert.ok(gone, `the session was closed within ${CLOSE_BOUND_MS} ms`);
        assert.deepEqual(JSON.parse(gone.text), { code: 1, message: 'Session ID unknown' });
    });
});

h.forEachTransport('socket.io-client heartbeat', (tr) => {
    test('stays connected across several ping intervals and keeps working', async () => {
        const { sockets: [a1, b1], room } = await h.roomWithMembers(srv, tr, 2);
        let pings = 0;
        a1.io.engine.on('ping', () => {
            pings++;
        });
        const enough = new Promise((resolve) => {
            a1.io.engine.on('ping', () => {
                if (pings >= 5) {
                    resolve();
                }
            });
        });
        await h.withTimeout(enough, 10 * PING_INTERVAL + h.WAIT_MS, '5 pings');
        for (const s of [a1, b1]) {
            assert.equal(s.connected, true);
            assert.deepEqual(s.inbox.list('disconnect'), [], 'no disconnect between pings');
        }
        const ack = await emitAck(a1, 'message:send', { roomId: room.id, content: 'after pings' });
        assertAckOk(ack);
        await h.waitFor(b1, 'message:new', (x) => x.id === ack.message.id);
    });
});

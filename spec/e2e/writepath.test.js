'use strict';
// The websocket write path (runtime/src/session.c): chatd writes a socket's queued frames
// itself, several per send(), pre-framed, and arms writability only when the socket is full.
// What a client must still see: every frame, whole, in order; a reader that stops reading is
// either caught up when it reads again or cut off, never sent a torn frame; a frame larger
// than one write batch arrives intact; after the client's close frame, nothing but the echo.
const assert = require('node:assert/strict');
const net = require('node:net');
const crypto = require('node:crypto');
const { describe } = require('node:test');
const h = require('./helpers');
const { test } = h;

const BIG = 100000;
const srv = h.useServer({ env: {
    CHAT_MESSAGE_MAX_BYTES: String(BIG),
    CHAT_RATELIMIT_USER: '1000000',
    CHAT_RATELIMIT_IP: '1000000',
    CHAT_SESSION_QUEUE_MAX_BYTES: String(256 << 20),
} });

/** Socket.IO events a raw websocket received: [{ name, data }] for 42[...] text frames. */
function events(conn, name) {
    return conn.received
        .filter((m) => typeof m === 'string' && m.startsWith('42'))
        .map((m) => JSON.parse(m.slice(2)))
        .filter((a) => a[0] === name)
        .map((a) => a[1]);
}

/** A member of a fresh room over a raw websocket, and the room's creator over socket.io. */
async function roomWithRawMember() {
    const owner = await srv.register();
    const member = await srv.register();
    const sender = await srv.connect(owner.token);
    const ack = await h.emitAck(sender, 'room:create', {
        name: h.uniqueName('room'), type: 'group', participants: [member.user.id],
    });
    h.assertAckOk(ack, 'room:create');
    const raw = await srv.rawWsConnected(member.token);
    return { sender, raw, room: ack.room, owner };
}

async function metric(name) {
    const res = await srv.http('GET', '/metrics');
    const m = new RegExp(`^${name} (\\d+)$`, 'm').exec(res.text);
    assert.ok(m, `/metrics has ${name}`);
    return Number(m[1]);
}

/** Sends n messages without waiting between them; resolves with the acks, in send order. */
function burst(socket, roomId, n, content) {
    const acks = [];
    for (let i = 0; i < n; i++) {
        acks.push(h.sendAck(socket, roomId, content(i), `c${i}`));
    }
    return Promise.all(acks);
}

describe('websocket writes', () => {
    test('the sender gets message:ack then its ack, for each message in order; members get every message in order', async () => {
        const { room, owner } = await roomWithRawMember();
        const raw = await srv.rawWsConnected(owner.token); // the sender, raw: frame order visible
        const member = await roomWithRawMember(); // unrelated traffic meanwhile
        const N = 200;
        for (let i = 0; i < N; i++) {
            raw.send(`42${i}["message:send",${JSON.stringify({ roomId: room.id, content: `m${i}`, clientMsgId: `k${i}` })}]`);
        }
        await h.eventually(() => raw.received.filter((m) => typeof m === 'string' && m.startsWith('43')).length === N,
            `${N} acks`);
        // per message: message:ack, then the ack with the message; acks in send order
        const seq = raw.received.filter((m) => typeof m === 'string' && (m.startsWith('43') || m.startsWith('42["message:ack"')));
        assert.equal(seq.length, 2 * N);
        for (let i = 0; i < N; i++) {
            const mack = JSON.parse(seq[2 * i].slice(2))[1];
            const ack = JSON.parse(seq[2 * i + 1].slice(2 + String(i).length))[0];
            assert.ok(seq[2 * i + 1].startsWith(`43${i}[`), `ack ${i} in order: ${seq[2 * i + 1].slice(0, 40)}`);
            assert.equal(ack.ok, true);
            assert.equal(ack.message.content, `m${i}`);
            assert.equal(mack.clientMsgId, `k${i}`);
            assert.equal(mack.id, ack.message.id);
        }
        assert.equal(member.raw.closeInfo, null);
    });

    test('a reader that stops reading gets every frame, whole and in order, once it reads again', async () => {
        const { sender, raw, room } = await roomWithRawMember();
        const partialBefore = await metric('chatd_ws_partial_writes_total');
        raw.ws._socket.pause(); // stop reading: the kernel buffers fill, then chatd's queue
        const N = 1500;
        const pad = 'x'.repeat(8000); // 12 MB in all: more than loopback's socket buffers hold
        const acks = await burst(sender, room.id, N, (i) => `${i} ${pad}`);
        acks.forEach((a, i) => h.assertAckOk(a, `message ${i}`));
        // the socket filled up: some write went out only in part and lws kept the rest
        await h.eventually(async () => (await metric('chatd_ws_partial_writes_total')) > partialBefore,
            'a partial write counted in /metrics');
        raw.ws._socket.resume();
        await h.eventually(() => events(raw, 'message:new').length === N || raw.closeInfo,
            `${N} messages or a close`);
        const got = events(raw, 'message:new');
        // whatever arrived is a prefix of what was sent, each message whole (JSON parsed it)
        got.forEach((m, i) => assert.equal(m.content, `${i} ${pad}`, `message ${i} whole and in order`));
        if (got.length < N) {
            // cut off as a slow client: a close, never a torn or reordered frame
            assert.ok(raw.closeInfo, 'missing messages only with the connection closed');
        } else {
            assert.equal(raw.closeInfo, null, 'caught up and still connected');
        }
    });

    test('a message larger than one write batch (64 KB) arrives intact among small ones', async () => {
        const { sender, raw, room } = await roomWithRawMember();
        const big = crypto.randomBytes(BIG / 2).toString('hex').slice(0, BIG - 10); // ~100 KB
        const contents = ['small 1', big, 'small 2', `${big.slice(0, 70000)}!`, 'small 3'];
        const acks = await Promise.all(contents.map((c, i) => h.sendAck(sender, room.id, c, `b${i}`)));
        acks.forEach((a, i) => h.assertAckOk(a, `message ${i}`));
        await h.eventually(() => events(raw, 'message:new').length === contents.length, 'all five');
        assert.deepEqual(events(raw, 'message:new').map((m) => m.content), contents);
    });
});

/** A websocket over a plain TCP socket, to see the server's frames exactly as sent. */
function tcpWs(port) {
    return new Promise((resolve, reject) => {
        const sock = net.connect(port, '127.0.0.1');
        const key = crypto.randomBytes(16).toString('base64');
        let buf = Buffer.alloc(0);
        let upgraded = false;
        const conn = { sock, frames: [], ended: false };
        sock.on('connect', () => sock.write(
            'GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: 127.0.0.1\r\n' +
            `Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ${key}\r\n` +
            'Sec-WebSocket-Version: 13\r\n\r\n'));
        sock.on('data', (d) => {
            buf = Buffer.concat([buf, d]);
            if (!upgraded) {
                const end = buf.indexOf('\r\n\r\n');
                if (end < 0) {
                    return;
                }
                if (!/^HTTP\/1\.1 101/.test(buf.subarray(0, end).toString('latin1'))) {
                    reject(new Error(`no upgrade: ${buf.toString('latin1').slice(0, 200)}`));
                    return;
                }
                upgraded = true;
                buf = buf.subarray(end + 4);
                resolve(conn);
            }
            for (;;) { // server frames: never masked
                if (buf.length < 2) {
                    break;
                }
                let len = buf[1] & 0x7f;
                let off = 2;
                if (len === 126) {
                    if (buf.length < 4) break;
                    len = buf.readUInt16BE(2);
                    off = 4;
                } else if (len === 127) {
                    if (buf.length < 10) break;
                    len = Number(buf.readBigUInt64BE(2));
                    off = 10;
                }
                if (buf.length < off + len) {
                    break;
                }
                conn.frames.push({ opcode: buf[0] & 0x0f, fin: !!(buf[0] & 0x80), masked: !!(buf[1] & 0x80),
                    payload: buf.subarray(off, off + len) });
                buf = buf.subarray(off + len);
            }
        });
        sock.on('end', () => { conn.ended = true; });
        sock.on('close', () => { conn.ended = true; });
        sock.on('error', () => { conn.ended = true; });
        h.track(() => sock.destroy());
    });
}

/** A client frame (masked, as RFC 6455 requires). */
function clientFrame(opcode, payload) {
    const mask = crypto.randomBytes(4);
    const data = Buffer.from(payload);
    const masked = Buffer.from(data.map((b, i) => b ^ mask[i % 4]));
    assert.ok(data.length < 65536);
    const head = data.length < 126 ? Buffer.from([0x80 | opcode, 0x80 | data.length])
        : Buffer.from([0x80 | opcode, 0x80 | 126, data.length >> 8, data.length & 0xff]);
    return Buffer.concat([head, mask, masked]);
}

describe('the client closes while frames are on their way', () => {
    test('after its close frame the client gets the echo and no data frame after it', async () => {
        const owner = await srv.register();
        const member = await srv.register();
        const sender = await srv.connect(owner.token);
        const ack = await h.emitAck(sender, 'room:create', {
            name: h.uniqueName('room'), type: 'group', participants: [member.user.id],
        });
        h.assertAckOk(ack, 'room:create');
        const port = Number(new URL(srv.url).port);
        const conn = await tcpWs(port);
        await h.eventually(() => conn.frames.length >= 1, 'the open packet');
        conn.sock.write(clientFrame(1, `40${JSON.stringify({ token: member.token })}`));
        await h.eventually(() => conn.frames.some((f) => f.payload.toString().startsWith('40')), 'CONNECT answered');
        // a stream of messages to the room, and the close in the middle of it
        const sending = burst(sender, ack.room.id, 300, (i) => `during close ${i}`);
        await h.eventually(() => conn.frames.filter((f) => f.payload.toString().startsWith('42["message:new"')).length >= 20,
            'some messages arrived');
        conn.sock.write(clientFrame(8, Buffer.from([0x03, 0xe8]))); // close, 1000
        await h.eventually(() => conn.ended || conn.frames.some((f) => f.opcode === 8), 'the close echo');
        await sending;
        await h.eventually(() => conn.ended, 'the server ends the TCP connection');
        const close = conn.frames.findIndex((f) => f.opcode === 8);
        assert.ok(close >= 0, 'the close was echoed');
        assert.equal(conn.frames.length, close + 1, 'nothing after the close frame');
        for (const f of conn.frames) {
            assert.equal(f.masked, false, 'server frames are not masked');
            assert.equal(f.fin, true, 'chatd sends whole messages');
        }
        srv.assertAlive();
    });
});

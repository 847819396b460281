'use strict';
// Raw Engine.IO v4 and Socket.IO v5 over fetch and ws: handshake, error answers, malformed
// input, limits, namespaces and the polling -> websocket upgrade.
const assert = require('node:assert/strict');
const { describe } = require('node:test');
const { Manager } = require('socket.io-client');
const h = require('./helpers');
const { test, emitAck, assertAckOk, SEP } = h;

const PING_INTERVAL = 2000;
const PING_TIMEOUT = 1500;
const MAX_PAYLOAD = 4096;
const srv = h.useServer({
    env: {
        CHAT_PING_INTERVAL_MS: String(PING_INTERVAL),
        CHAT_PING_TIMEOUT_MS: String(PING_TIMEOUT),
        CHAT_MAX_PAYLOAD: String(MAX_PAYLOAD),
    },
});

/** Two socket.io-client users in one room: proof that other connections are unaffected. */
async function bystanders() {
    const pair = await h.roomWithMembers(srv, { transports: ['websocket'] }, 2);
    const pollingUser = await srv.connect(pair.users[1].token, { transports: ['polling'] });
    return { ...pair, pollingUser };
}

async function assertBystandersFine({ sockets: [a1, b1], pollingUser, room }) {
    srv.assertAlive();
    const ack = await emitAck(a1, 'message:send', { roomId: room.id, content: `still here ${Date.now()}` });
    assertAckOk(ack, 'bystander message:send');
    await h.waitFor(b1, 'message:new', (x) => x.id === ack.message.id);
    await h.waitFor(pollingUser, 'message:new', (x) => x.id === ack.message.id);
    for (const s of [a1, b1, pollingUser]) {
        assert.deepEqual(s.inbox.list('disconnect'), [], 'no bystander was disconnected');
    }
}

describe('Engine.IO handshake and session errors', () => {
    test('polling handshake: open packet with sid, upgrades and the configured numbers', async () => {
        const res = await srv.http('GET', '/socket.io/?EIO=4&transport=polling');
        assert.equal(res.status, 200, res.text);
        assert.equal(res.text[0], '0', res.text);
        const open = JSON.parse(res.text.slice(1));
        assert.equal(typeof open.sid, 'string');
        assert.ok(open.sid.length > 0);
        assert.deepEqual(open.upgrades, ['websocket']);
        assert.equal(open.pingInterval, PING_INTERVAL);
        assert.equal(open.pingTimeout, PING_TIMEOUT);
        assert.equal(open.maxPayload, MAX_PAYLOAD);
        const second = await srv.eioOpen();
        assert.notEqual(second.sid, open.sid, 'every session gets its own sid');
    });

    test('websocket handshake: the first frame is the open packet', async () => {
        const conn = await srv.rawWsConnected(undefined);
        assert.equal(typeof conn.open.sid, 'string');
        assert.equal(conn.open.pingInterval, PING_INTERVAL);
        assert.equal(conn.open.pingTimeout, PING_TIMEOUT);
        assert.equal(conn.open.maxPayload, MAX_PAYLOAD);
    });

    test('a whole Socket.IO exchange over raw polling: CONNECT, EVENT with ack id, ACK', async () => {
        const { token, user } = await srv.register();
        const session = await srv.rawPolling();
        const post = await session.post(`40${JSON.stringify({ token })}`);
        assert.equal(post.status, 200, post.text);
        const connected = await session.next((p) => p.startsWith('40'));
        assert.equal(typeof JSON.parse(connected.slice(2)).sid, 'string');
        const ev = ['room:create', { name: 'raw', type: 'group', participants: [] }];
        assert.equal((await session.post(`4217${JSON.stringify(ev)}`)).status, 200);
        const ack = await session.next((p) => p.startsWith('4317'));
        const [answer] = JSON.parse(ack.slice(4));
        assert.equal(answer.ok, true, ack);
        assert.equal(answer.room.admin, user.id);
    });

    test('two packets in one POST are both handled, in order', async () => {
        const { token } = await srv.register();
        const session = await srv.rawPolling();
        assert.equal((await session.post(`40${JSON.stringify({ token })}`)).status, 200);
        await session.next((p) => p.startsWith('40'));
        const ev = (n) => JSON.stringify(['room:create', { name: `r${n}`, type: 'group', participants: [] }]);
        assert.equal((await session.post(`421${ev(1)}${SEP}422${ev(2)}`)).status, 200);
        const a1 = await session.next((p) => p.startsWith('431'));
        const a2 = await session.next((p) => p.startsWith('432'));
        assert.equal(JSON.parse(a1.slice(3))[0].room.name, 'r1');
        assert.equal(JSON.parse(a2.slice(3))[0].room.name, 'r2');
    });

    test('EIO=3 -> 400 {"code":5,"message":"Unsupported protocol version"}', async () => {
        const res = await srv.http('GET', '/socket.io/?EIO=3&transport=polling');
        assert.equal(res.status, 400, res.text);
        assert.deepEqual(res.body, { code: 5, message: 'Unsupported protocol version' });
    });

    test('transport=foo -> 400 {"code":0,"message":"Transport unknown"}', async () => {
        const res = await srv.http('GET', '/socket.io/?EIO=4&transport=foo');
        assert.equal(res.status, 400, res.text);
        assert.deepEqual(res.body, { code: 0, message: 'Transport unknown' });
    });

    test('an unknown sid -> 400 {"code":1,"message":"Session ID unknown"} for GET and POST', async () => {
        const sid = 'AAAAAAAAAAAAAAAAAAAA';
        const get = await srv.http('GET', `/socket.io/?EIO=4&transport=polling&sid=${sid}`);
        assert.equal(get.status, 400, get.text);
        assert.deepEqual(get.body, { code: 1, message: 'Session ID unknown' });
        const post = await srv.http('POST', `/socket.io/?EIO=4&transport=polling&sid=${sid}`, '3');
        assert.equal(post.status, 400, post.text);
        assert.deepEqual(post.body, { code: 1, message: 'Session ID unknown' });
    });

    test('a second concurrent GET poll on one sid -> 400 and the session is closed', async () => {
        const { sid } = await srv.eioOpen();
        const [r1, r2] = await Promise.all([srv.eioGet(sid), srv.eioGet(sid)]);
        const statuses = [r1.status, r2.status].sort();
        assert.ok(statuses.includes(400), `one of the two polls is refused: ${JSON.stringify([r1, r2])}`);
        for (const r of [r1, r2]) {
            if (r.status === 200) {
                assert.ok(r.packets.includes('1') || r.packets.includes('6') || r.packets.includes('2'),
                    `the held poll ends with a close (or noop/ping) packet: ${r.text}`);
            }
        }
        const after = await srv.eioGet(sid);
        assert.equal(after.status, 400, `the session is gone: ${after.text}`);
        assert.deepEqual(JSON.parse(after.text), { code: 1, message: 'Session ID unknown' });
    });
});

describe('malformed and oversized input', () => {
    const badBodies = [
        ['an unknown packet type "9xyz"', '9xyz'],
        ['an empty body', ''],
        ['bad base64 "b!!!"', 'b!!!'],
        ['invalid UTF-8 in a text packet', Buffer.from([0x34, 0x32, 0xff, 0xfe, 0x80])],
    ];
    for (const [what, bodyText] of badBodies) {
        test(`a polling POST with ${what} -> 400; other sessions unaffected`, async () => {
            const others = await bystanders();
            const { sid } = await srv.eioOpen();
            const res = await srv.eioPost(sid, bodyText);
            assert.equal(res.status, 400, `${res.status} ${res.text}`);
            await assertBystandersFine(others);
        });
    }

    test(`a polling POST larger than maxPayload (${MAX_PAYLOAD}) -> 413`, async () => {
        const others = await bystanders();
        const { sid } = await srv.eioOpen();
        const res = await srv.eioPost(sid, `4${'x'.repeat(MAX_PAYLOAD + 1000)}`);
        assert.equal(res.status, 413, `${res.status} ${res.text.slice(0, 200)}`);
        await assertBystandersFine(others);
    });

    const badSio = [
        ['"42[broken"', '42[broken'],
        ['an EVENT whose data is an object', '42{"a":1}'],
        ['an EVENT with an empty array', '42[]'],
        ['JSON followed by junk', '42["room:join"]junk'],
        ['an unknown Socket.IO type', '49'],
        ['an unknown Engine.IO type', '9'],
        ['an empty text frame', ''],
        ['a binary frame no packet announced', Buffer.from([1, 2, 3])],
    ];
    for (const [what, frame] of badSio) {
        test(`raw websocket: ${what} -> that connection is closed, others keep working`, async () => {
            const others = await bystanders();
            const { token } = await srv.register();
            const conn = await srv.rawWsConnected(token);
            conn.send(frame, { binary: Buffer.isBuffer(frame) });
            await conn.waitClosed();
            await assertBystandersFine(others);
        });
    }

    test('raw websocket: a placeholder beyond the attachments sent -> closed', async () => {
        const others = await bystanders();
        const { token } = await srv.register();
        const conn = await srv.rawWsConnected(token);
        conn.send('451-["message:send",{"_placeholder":true,"num":5}]');
        conn.send(Buffer.from([1, 2, 3]), { binary: true });
        await conn.waitClosed();
        await assertBystandersFine(others);
    });

    test('raw websocket: text where an announced binary attachment should be -> closed', async () => {
        const others = await bystanders();
        const { token } = await srv.register();
        const conn = await srv.rawWsConnected(token);
        conn.send('451-["message:send",{"_placeholder":true,"num":0}]');
        conn.send('42["typing:start",{}]');
        await conn.waitClosed();
        await assertBystandersFine(others);
    });

    test('raw websocket: a malformed packet before CONNECT -> closed', async () => {
        const others = await bystanders();
        const conn = await srv.rawWsConnected(undefined);
        conn.send('40{not json');
        await conn.waitClosed();
        await assertBystandersFine(others);
    });

    test('raw websocket: a text frame with invalid UTF-8 -> closed', async () => {
        const others = await bystanders();
        const { token } = await srv.register();
        const conn = await srv.rawWsConnected(token);
        conn.send(Buffer.from([0x34, 0x32, 0x5b, 0x22, 0xff, 0xfe, 0x22, 0x5d]), { binary: false });
        await conn.waitClosed();
        await assertBystandersFine(others);
    });

    test(`raw websocket: a frame larger than maxPayload (${MAX_PAYLOAD}) -> closed`, async () => {
        const others = await bystanders();
        const { token } = await srv.register();
        const conn = await srv.rawWsConnected(token);
        conn.send(`42${JSON.stringify(['message:send', { roomId: h.randomHex24(), content: 'x'.repeat(MAX_PAYLOAD) }])}`);
        await conn.waitClosed();
        await assertBystandersFine(others);
    });

    test('raw websocket: a frame just under maxPayload is served', async () => {
        const { token } = await srv.register();
        const conn = await srv.rawWsConnected(token);
        const ev = ['room:create', { name: 'n'.repeat(MAX_PAYLOAD - 200), type: 'group', participants: [] }];
        conn.send(`427${JSON.stringify(ev)}`);
        const ack = await conn.next((m) => typeof m === 'string' && m.startsWith('437'));
        assert.equal(conn.closeInfo, null);
        assert.ok(ack.length > 3);
    });
});

describe('namespaces', () => {
    h.forEachTransport('an unknown namespace', (tr) => {
        test('CONNECT to "/nope" -> connect_error "Invalid namespace"', async () => {
            const { token } = await srv.register();
            const err = await srv.connectError(token, { ...tr, nsp: '/nope' });
            assert.equal(err.message, 'Invalid namespace');
        });
    });

    h.forEachTransport('one connection, two namespaces', (tr) => {
        test('a refused "/nope" on a shared connection leaves "/" connected and working', async () => {
            const { token } = await srv.register();
            const manager = new Manager(srv.url, { reconnection: false, ...tr });
            h.track(() => manager.engine && manager.engine.close());
            const main = manager.socket('/', { auth: { token } });
            const nope = manager.socket('/nope', { auth: { token } });
            h.attachInbox(main);
            h.attachInbox(nope);
            const [mainUp, refused] = await Promise.all([
                h.once(main, 'connect', h.WAIT_MS, '"/" connect'),
                h.once(nope, 'connect_error', h.WAIT_MS, '"/nope" connect_error'),
            ]);
            assert.ok(mainUp);
            assert.equal(refused[0].message, 'Invalid namespace');
            const ack = await emitAck(main, 'room:create', { name: 'mux', type: 'group', participants: [] });
            assertAckOk(ack, 'room:create on "/" after "/nope" was refused');
            assert.equal(main.connected, true);
            assert.deepEqual(main.inbox.list('disconnect'), []);
        });
    });

    test('raw: CONNECT to "/nope" is answered 44/nope,{"message":"Invalid namespace"}', async () => {
        const { token } = await srv.register();
        const conn = await srv.rawWsConnected(undefined);
        conn.send(`40/nope,${JSON.stringify({ token })}`);
        const reply = await conn.next((m) => typeof m === 'string' && m.startsWith('4'));
        assert.equal(reply, '44/nope,{"message":"Invalid namespace"}');
        // The default namespace on the same connection still works.
        conn.send(`40${JSON.stringify({ token })}`);
        const ok = await conn.next((m) => typeof m === 'string' && m.startsWith('40'));
        assert.equal(typeof JSON.parse(ok.slice(2)).sid, 'string');
    });
});

describe('the polling -> websocket upgrade', () => {
    test('raw: 2probe / 3probe / 5, then Socket.IO over the websocket', async () => {
        const { token, user } = await srv.register();
        const { sid } = await srv.eioOpen();
        const heldPoll = srv.eioGet(sid);
        const conn = srv.rawWs({ query: `EIO=4&transport=websocket&sid=${sid}` });
        await conn.opened;
        conn.send('2probe');
        assert.equal(await conn.next((m) => m !== '6'), '3probe');
        const poll = await heldPoll; // released so the client can finish the upgrade
        assert.equal(poll.status, 200, poll.text);
        conn.send('5');
        conn.send(`40${JSON.stringify({ token })}`);
        await conn.next((m) => typeof m === 'string' && m.startsWith('40'));
        conn.send(`423${JSON.stringify(['room:create', { name: 'up', type: 'group', participants: [] }])}`);
        const ack = await conn.next((m) => typeof m === 'string' && m.startsWith('433'));
        assert.equal(JSON.parse(ack.slice(3))[0].room.admin, user.id);
    });

    test('socket.io-client: the default transport upgrades to websocket; messages flow through it', async () => {
        const a = await srv.register();
        const b = await srv.register();
        const room = (await srv.http('POST', '/rooms',
            { name: 'upgrade', type: 'group', participants: [b.user.id] }, a.token)).body.room;
        const b1 = await srv.connect(b.token, {});
        const a1 = await srv.connect(a.token, {});
        // Messages sent straight away travel while the upgrade is in progress.
        const early = await Promise.all([0, 1, 2, 3, 4].map((i) =>
            emitAck(a1, 'message:send', { roomId: room.id, content: `early ${i}` })));
        early.forEach((ack) => assertAckOk(ack));
        for (const s of [a1, b1]) {
            if (s.io.engine.transport.name !== 'websocket') {
                await h.once(s.io.engine, 'upgrade', h.WAIT_MS, 'the websocket upgrade');
            }
            assert.equal(s.io.engine.transport.name, 'websocket');
        }
        const late = await emitAck(a1, 'message:send', { roomId: room.id, content: 'late' });
        assertAckOk(late);
        await h.waitFor(b1, 'message:new', (x) => x.id === late.message.id);
        const fromB = await emitAck(b1, 'message:send', { roomId: room.id, content: 'reply' });
        assertAckOk(fromB);
        await h.waitFor(a1, 'message:new', (x) => x.id === fromB.message.id);
        const got = b1.inbox.list('message:new').map((x) => x.id).sort();
        assert.deepEqual(got, [...early.map((x) => x.message.id), late.message.id].sort(),
            'every message arrived exactly once across the upgrade');
    });
});

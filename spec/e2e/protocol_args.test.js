'use strict';
// Socket.IO events and acks carry any number of arguments, both ways, and binary values
// anywhere in them travel as attachments (BINARY_EVENT / BINARY_ACK), never as JSON text.
// Real socket.io-client sockets on every transport, then raw packets for what clients never
// send (wrong placeholders, attachments nobody announced, too many of them).
const assert = require('node:assert/strict');
const h = require('./helpers');
const { protocolScripts } = require('./protocol_scripts');
const { test, waitArgs } = h;

// the handlers: protocol_scripts/args.lua (echo, inspect, fanout, reverse, blobs, ...)
const scripts = protocolScripts();

const srv = h.useServer({ scripts });

/** Emits with an ack callback and resolves with every argument of the ack. */
function emitAckAll(socket, event, ...args) {
    return h.withTimeout(new Promise((resolve) => {
        socket.emit(event, ...args, (...answer) => resolve(answer));
    }), h.WAIT_MS, `ack for ${event}`);
}

const bytes = (b) => [...Buffer.from(b)];
const isBinary = (b) => Buffer.isBuffer(b) || b instanceof ArrayBuffer;

h.forEachTransport('arguments', (tr) => {
    test('an ack carries every value the handler returns', async () => {
        const { token } = await srv.register();
        const s = await srv.connect(token, tr);
        assert.deepEqual(await emitAckAll(s, 'echo', 1, '2', { three: [true] }),
            [1, '2', { three: [true] }]);
        assert.deepEqual(await emitAckAll(s, 'echo', 'only'), ['only']);
        assert.deepEqual(await emitAckAll(s, 'echo', null, null, 'x'), [null, null, 'x']);
    });

    test('the documented divide example answers two values', async () => {
        const { token } = await srv.register();
        const s = await srv.connect(token, tr);
        assert.deepEqual(await emitAckAll(s, 'divide', 7, 2), [3, 1]);
        const [err] = await emitAckAll(s, 'divide', 7, 0);
        h.assertAckError(err, 'invalid_payload');
    });

    test('a handler sees every argument (ev.args) and the first as ev.data', async () => {
        const { token } = await srv.register();
        const s = await srv.connect(token, tr);
        const [seen] = await emitAckAll(s, 'inspect', { a: 1 }, 'two', 3, [4], false);
        assert.deepEqual(seen, { n: 5, data: { a: 1 }, kinds: ['table', 'string', 'number', 'table', 'boolean'] });
        const [none] = await emitAckAll(s, 'inspect');
        assert.deepEqual(none, { n: 0, kinds: [] });
    });

    test('emits from scripts carry several arguments to a socket, a user and a room', async () => {
        const { sockets: [a, b], room } = await h.roomWithMembers(srv, tr, 2);
        const [ok] = await emitAckAll(a, 'fanout', room.id);
        assert.deepEqual(ok, { ok: true });
        assert.deepEqual(await waitArgs(a, 'to:socket'), [1, 'two', { three: [true] }]);
        assert.deepEqual(await waitArgs(a, 'to:user'), ['a', null, 3]);
        assert.deepEqual(await waitArgs(a, 'to:bare'), []);
        for (const s of [a, b]) {
            assert.deepEqual(await waitArgs(s, 'to:room'), [{ room: room.id }, 42]);
        }
    });

    test('binary arguments reach the handler in place and come back as binary', async () => {
        const { token } = await srv.register();
        const s = await srv.connect(token, tr);
        const answer = await emitAckAll(s, 'reverse', Buffer.from([1, 2, 3]), 'text',
            { nested: [Buffer.from('ab'), { deeper: Buffer.from([9, 8]) }] }, Buffer.alloc(0));
        assert.equal(answer.length, 4);
        assert.ok(isBinary(answer[0]), `ack argument 1 is binary: ${JSON.stringify(answer[0])}`);
        assert.deepEqual(bytes(answer[0]), [3, 2, 1]);
        assert.equal(answer[1], 'text');
        assert.deepEqual(bytes(answer[2].nested[0]), [...Buffer.from('ba')]);
        assert.deepEqual(bytes(answer[2].nested[1].deeper), [8, 9]);
        assert.ok(isBinary(answer[3]));
        assert.equal(bytes(answer[3]).length, 0);
    });

    test('binary values nested in an emit and an ack all arrive as binary', async () => {
        const { token } = await srv.register();
        const s = await srv.connect(token, tr);
        const answer = await emitAckAll(s, 'blobs');
        assert.ok(isBinary(answer[0]), `the ack's binary is binary, not ${JSON.stringify(answer[0])}`);
        assert.equal(Buffer.from(answer[0]).toString(), 'ack-bytes');
        assert.deepEqual(bytes(answer[1].more), [0]);
        const [head, obj, last] = await waitArgs(s, 'blobs');
        assert.equal(head, 'head');
        assert.deepEqual(bytes(obj.a), [1, 2]);
        assert.deepEqual(bytes(obj.list[0]), [3]);
        assert.ok(isBinary(obj.list[1].deep));
        assert.deepEqual(bytes(obj.list[1].deep), []);
        assert.deepEqual(bytes(last), [255]);
    });

    test('binary emits to a room and a user carry several attachments', async () => {
        const { sockets: [a, b], room } = await h.roomWithMembers(srv, tr, 2);
        await emitAckAll(a, 'room-blobs', room.id);
        for (const s of [a, b]) {
            const [x, y] = await waitArgs(s, 'room:blobs');
            assert.deepEqual(bytes(x), [...Buffer.from('x')]);
            assert.deepEqual(bytes(y.y), [...Buffer.from('yy')]);
        }
        const [u1, u2] = await waitArgs(a, 'user:blobs');
        assert.equal(Buffer.from(u1).toString(), 'u1');
        assert.equal(Buffer.from(u2).toString(), 'u2');
    });
});

// ---- raw packets: exactly what goes on the wire, and what clients never send --------------

async function rawClient() {
    const { token } = await srv.register();
    return srv.rawWsConnected(token);
}

test('raw: a binary ack is a BINARY_ACK with placeholders followed by the attachments', async () => {
    const conn = await rawClient();
    conn.send('427["blobs"]');
    // the emit comes first: its packet and its four attachments (numbered in the order the
    // server walked the object, which Lua does not fix), then the ack
    const emit = await conn.next();
    assert.match(emit, /^454-\["blobs","head",/);
    const parts = [];
    for (let i = 0; i < 4; i++) {
        parts.push(bytes(await conn.next()));
    }
    const fill = (v) => (v && v._placeholder === true ? parts[v.num]
        : Array.isArray(v) ? v.map(fill)
            : v && typeof v === 'object' ? Object.fromEntries(Object.entries(v).map(([k, x]) => [k, fill(x)]))
                : v);
    assert.deepEqual(fill(JSON.parse(emit.slice(4))),
        ['blobs', 'head', { a: [1, 2], list: [[3], { deep: [] }] }, [255]]);
    const head = await conn.next();
    assert.equal(head, '462-7[{"_placeholder":true,"num":0},{"more":{"_placeholder":true,"num":1}}]');
    const first = await conn.next((m) => typeof m !== 'string');
    const second = await conn.next((m) => typeof m !== 'string');
    assert.equal(Buffer.from(first).toString(), 'ack-bytes');
    assert.deepEqual(bytes(second), [0]);
});

test('raw: an ack of several values is one ACK packet with several arguments', async () => {
    const conn = await rawClient();
    conn.send('423["echo",1,"2",{"three":[true]}]');
    assert.equal(await conn.next((m) => typeof m === 'string' && m.startsWith('43')),
        '433[1,"2",{"three":[true]}]');
});

test('raw: two attachments in a client BINARY_EVENT reach the handler in place', async () => {
    const conn = await rawClient();
    conn.send('452-9["reverse",{"_placeholder":true,"num":1},"t",{"_placeholder":true,"num":0}]');
    conn.send(Buffer.from('AB'));
    conn.send(Buffer.from('cd'));
    const head = await conn.next((m) => typeof m === 'string' && m.startsWith('46'));
    assert.equal(head, '462-9[{"_placeholder":true,"num":0},"t",{"_placeholder":true,"num":1}]');
    assert.equal(Buffer.from(await conn.next((m) => typeof m !== 'string')).toString(), 'dc');
    assert.equal(Buffer.from(await conn.next((m) => typeof m !== 'string')).toString(), 'BA');
});

const broken = {
    'a placeholder number past the attachments': ['451-1["echo",{"_placeholder":true,"num":1}]', ['x']],
    'a negative placeholder number': ['451-1["echo",{"_placeholder":true,"num":-1}]', ['x']],
    'a placeholder number that is a string': ['451-1["echo",{"_placeholder":true,"num":"0"}]', ['x']],
    'more attachments than announced': ['451-1["echo",{"_placeholder":true,"num":0}]', ['x', 'y'], true],
    'an attachment nobody announced': [null, ['x']],
    'a text packet while attachments are owed': ['452-1["echo",{"_placeholder":true,"num":0}]', ['x', '42["echo"]']],
    'more attachments than the server takes': [`4517-1["echo",{"_placeholder":true,"num":0}]`, []],
    'attachments that together pass maxPayload': ['452-1["echo",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]',
        ['x'.repeat(600000), 'y'.repeat(600000)]],
    'a BINARY_ACK for an ack the server never asked': ['461-1[{"_placeholder":true,"num":0}]', ['x', 'y']],
};
for (const [what, [head, then, complete]] of Object.entries(broken)) {
    test(`raw: ${what} closes that connection and no other`, async () => {
        const bystander = await rawClient();
        const conn = await rawClient();
        if (head) {
            conn.send(head);
        }
        for (const part of then) {
            conn.send(part.startsWith('4') ? part : Buffer.from(part));
        }
        const closed = await conn.waitClosed();
        assert.ok(closed, 'the server closed the connection');
        if (!complete) { // the packet before the stray attachment was whole: it was answered
            assert.ok(!conn.received.some((m) => typeof m === 'string' && m.startsWith('43')),
                `no ack was sent: ${JSON.stringify(conn.received)}`);
        }
        bystander.send('421["echo","still here"]');
        assert.equal(await bystander.next((m) => typeof m === 'string' && m.startsWith('43')),
            '431["still here"]');
        srv.assertAlive();
    });
}

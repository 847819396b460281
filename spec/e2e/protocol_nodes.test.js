'use strict';
// Emits with several arguments and binary values reach sockets on other nodes: two chatd
// processes (free ports) on the test Redis and FerretDB, a member of one room on each. The
// room's emits go over the bus as the encoded packet (text) or "B" + the event (binary); a
// user's as a notify message with every argument.
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const { describe, before, after } = require('node:test');
const h = require('./helpers');
const { protocolScripts } = require('./protocol_scripts');
const { test, waitArgs } = h;

const REDIS = process.env.CHAT_TEST_REDIS_URL;
const MONGO = process.env.CHAT_TEST_MONGO_URI;

function emitAckAll(socket, event, ...args) {
    return h.withTimeout(new Promise((resolve) => {
        socket.emit(event, ...args, (...answer) => resolve(answer));
    }), h.WAIT_MS, `ack for ${event}`);
}

const bytes = (b) => [...Buffer.from(b)];

describe('several arguments and binary values across nodes', () => {
    const nodes = [];
    before(async () => {
        assert.ok(REDIS && MONGO,
            'this test needs Redis and FerretDB: eval "$(tools/services.sh start)"');
        const db = `chatd_protocol_${crypto.randomBytes(4).toString('hex')}`;
        const mongo = MONGO.replace(/\/[^/?]*(\?|$)/, `/${db}$1`);
        const secret = crypto.randomBytes(32).toString('hex');
        const scripts = protocolScripts();
        for (const id of ['pa', 'pb']) {
            nodes.push(await h.startServer({
                secret,
                scripts,
                env: { CHAT_NODE_ID: id, CHAT_REDIS_URL: REDIS, CHAT_MONGO_URI: mongo },
            }));
        }
    });

    after(async () => {
        await h.closeResources();
        for (const n of nodes) {
            await h.stopServer(n);
        }
    });

    test('a room emit, a binary room emit and a user emit reach the other node whole', async () => {
        const [one, two] = nodes;
        const a = await h.register(one);
        const b = await h.register(one);
        const sa = await h.connect(one, a.token, { transports: ['websocket'] });
        const sb = await h.connect(two, b.token, { transports: ['websocket'] });
        const created = await h.emitAck(sa, 'room:create',
            { name: 'across', type: 'group', participants: [b.user.id] });
        h.assertAckOk(created);
        const room = created.room;
        // b's node learns of the membership over the bus; wait until b's socket gets room events
        await h.eventually(async () => {
            h.assertAckOk(await h.emitAck(sa, 'typing:start', { roomId: room.id }));
            return h.waitFor(sb, 'typing', (t) => t.roomId === room.id, 300).then(() => true, () => false);
        }, "b's node delivers the room's events");

        await emitAckAll(sa, 'fanout', room.id);
        assert.deepEqual(await waitArgs(sb, 'to:room'), [{ room: room.id }, 42]);

        await emitAckAll(sa, 'room-blobs', room.id);
        const [x, y] = await waitArgs(sb, 'room:blobs');
        assert.deepEqual(bytes(x), bytes('x'));
        assert.deepEqual(bytes(y.y), bytes('yy'));

        await emitAckAll(sa, 'poke', b.user.id);
        const [from, who, blob] = await waitArgs(sb, 'poked');
        assert.equal(from, 'from');
        assert.equal(who, a.user.id);
        assert.deepEqual(bytes(blob.bytes), [1, 2]);
    });
});

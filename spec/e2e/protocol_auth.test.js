'use strict';
// Authentication is a policy: "connect/auth" handlers decide for any namespace, "/" included
// (accept as a user they name, accept anonymously, refuse with their own message and data),
// with the handshake's auth object whole; when none decides, the built-in JWT check applies,
// so a policy that answers nothing never lets everyone in. examples/auth_session.lua (opaque
// session tokens in the kv, anonymous visitors) is the policy under test, with a few more
// handlers for the corner cases.
const assert = require('node:assert/strict');
const h = require('./helpers');
const { protocolScripts } = require('./protocol_scripts');
const { test } = h;

// examples/auth_session.lua and protocol_scripts/corners.lua (the corner cases, /members)
const scripts = protocolScripts();

const srv = h.useServer({ scripts });

/** connect_error for these auth options; asserts no connection was made. */
async function refused(auth, tr, nsp) {
    return srv.connectError(undefined, { ...tr, auth, ...(nsp ? { nsp } : {}) });
}

h.forEachTransport('authentication policy', (tr) => {
    test('no handler decides: a valid JWT connects, a missing or bad one is refused', async () => {
        const { token, user } = await srv.register();
        const s = await srv.connect(token, tr);
        assert.deepEqual(await h.emitAck(s, 'whoami', {}), { user: user.id, namespace: '/' });
        for (const auth of [{}, { token: 'garbage' }, { token: 42 }, { app: '2.0' }]) {
            const err = await refused(auth, tr);
            assert.equal(err.message, 'unauthorized', JSON.stringify(auth));
            assert.equal(err.data, undefined);
        }
    });

    test('an opaque session token kept in the kv signs the socket in as its user', async () => {
        const { token, user } = await srv.register();
        const first = await srv.connect(token, tr);
        const { session } = h.assertAckOk(await h.emitAck(first, 'session:create', {}));
        assert.match(session, /^[0-9a-f]{64}$/);
        const s = await srv.connect(undefined, { ...tr, auth: { session } });
        assert.deepEqual(await h.emitAck(s, 'whoami', {}), { user: user.id, namespace: '/' });
        // a full member of the chat: its rooms and events are the user's
        const ack = h.assertAckOk(await h.emitAck(s, 'room:create',
            { name: 'by-session', type: 'group', participants: [] }));
        assert.equal(ack.room.admin, user.id);
        h.assertAckOk(await h.emitAck(s, 'session:end', { session }));
        const err = await refused({ session }, tr);
        assert.equal(err.message, 'the session has ended; sign in again');
        assert.deepEqual(err.data, { reason: 'expired' });
    });

    test('a refusal carries the policy\'s message and data', async () => {
        const err = await refused({ session: 'not-hex' }, tr);
        assert.equal(err.message, 'that is not a session token');
        assert.deepEqual(err.data, { reason: 'malformed' });
    });

    test('the policy sees the handshake auth object whole, token included', async () => {
        const auth = { case: 'echo', token: 'abc.def.ghi', nested: { list: [1, 'two', null] } };
        const err = await refused(auth, tr);
        assert.equal(err.message, 'echo');
        assert.deepEqual(err.data, { auth, namespace: '/' });
    });

    test('anonymous visitors connect to "/"; the chat\'s own events answer "unauthorized"', async () => {
        const s = await srv.connect(undefined, { ...tr, auth: { guest: true } });
        assert.deepEqual(await h.emitAck(s, 'whoami', {}), { user: 'anonymous', namespace: '/' });
        for (const [event, payload] of [
            ['room:create', { name: 'nope', type: 'group', participants: [] }],
            ['room:join', { roomId: h.randomHex24() }],
            ['message:send', { roomId: h.randomHex24(), content: 'hi' }],
            ['typing:start', { roomId: h.randomHex24() }],
        ]) {
            h.assertAckError(await h.emitAck(s, event, payload), 'unauthorized');
        }
        s.emit('message:send', { roomId: h.randomHex24(), content: 'no ack' });
        const note = await h.waitFor(s, 'error');
        assert.equal(note.event, 'message:send');
        assert.equal(note.error.code, 'unauthorized');
    });

    test('a policy that answers nothing, true or a plain table authenticates nobody', async () => {
        const { user } = await srv.register();
        for (const auth of [{ case: 'true' }, { case: 'table', as: user.id },
            { case: 'table', as: user.id, token: 'garbage' }, { guest: true, token: 'garbage' }]) {
            const err = await refused(auth, tr);
            assert.equal(err.message, 'unauthorized', JSON.stringify(auth));
        }
        // and a valid JWT still works next to such answers
        const { token } = await srv.register();
        const s = await srv.connect(undefined, { ...tr, auth: { case: 'true', token } });
        assert.equal(s.connected, true);
    });

    test('a policy that fails or names no user refuses the connection', async () => {
        const broke = await refused({ case: 'raise' }, tr);
        assert.match(broke.message, /script failed/);
        const nobody = await refused({ case: 'nobody' }, tr);
        assert.equal(nobody.message, 'unauthorized');
    });

    test('chat.accept(userId) signs in as the user it names', async () => {
        const { user } = await srv.register();
        const s = await srv.connect(undefined, { ...tr, auth: { case: 'as', as: user.id } });
        assert.deepEqual(await h.emitAck(s, 'whoami', {}), { user: user.id, namespace: '/' });
    });

    test('the connect policy runs after authentication and refuses with its data', async () => {
        const { token, user } = await srv.register();
        const err = await refused({ token, app: '1.0' }, tr);
        assert.equal(err.message, 'this version of the app is retired');
        assert.deepEqual(err.data, { minimum: '2.0', user: user.id, token: true });
    });

    test('the policy decides for other namespaces too', async () => {
        const err = await refused({}, tr, '/members');
        assert.equal(err.message, 'unauthorized');
        const s = await srv.connect(undefined, { ...tr, nsp: '/members', auth: { case: 'members-guest' } });
        assert.deepEqual(await h.emitAck(s, 'whoami', {}), { user: 'anonymous', namespace: '/members' });
        const { token, user } = await srv.register();
        const m = await srv.connect(token, { ...tr, nsp: '/members' });
        assert.deepEqual(await h.emitAck(m, 'whoami', {}), { user: user.id, namespace: '/members' });
    });
});

test('raw: a refusal is exactly CONNECT_ERROR {message, data}', async () => {
    const conn = await srv.rawWsConnected(undefined);
    conn.send(`40${JSON.stringify({ session: 'x' })}`);
    assert.equal(await conn.next((m) => typeof m === 'string' && m.startsWith('44')),
        '44{"message":"that is not a session token","data":{"reason":"malformed"}}');
    conn.send(`40${JSON.stringify({ token: 'garbage' })}`);
    assert.equal(await conn.next((m) => typeof m === 'string' && m.startsWith('44')),
        '44{"message":"unauthorized"}');
});

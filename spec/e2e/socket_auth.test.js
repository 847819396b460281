'use strict';
// Authentication in the Socket.IO CONNECT packet.
const assert = require('node:assert/strict');
const h = require('./helpers');
const { test } = h;

const srv = h.useServer();

h.forEachTransport('connect', (tr) => {
    test('a valid token connects and the socket can act as its user', async () => {
        const a = await srv.register();
        const socket = await srv.connect(a.token, tr);
        assert.equal(socket.connected, true);
        assert.equal(typeof socket.id, 'string');
        const ack = await h.emitAck(socket, 'room:create',
            { name: 'mine', type: 'group', participants: [] });
        h.assertAckOk(ack, 'room:create');
        assert.equal(ack.room.admin, a.user.id, 'the server knows who this socket is');
    });

    test('a token from POST /auth/login connects', async () => {
        const a = await srv.register();
        const login = await srv.http('POST', '/auth/login', { login: a.username, password: a.password });
        assert.equal(login.status, 200, login.text);
        const socket = await srv.connect(login.body.token, tr);
        assert.equal(socket.connected, true);
    });

    test('a token we sign with the server secret connects (control for the refusals)', async () => {
        const { user } = await srv.register();
        const token = h.makeJwt(srv.secret, { sub: user.id, iat: h.nowS(), exp: h.nowS() + 600 });
        const socket = await srv.connect(token, tr);
        assert.equal(socket.connected, true);
    });

    const refusals = {
        'no auth at all': () => ({ opts: { auth: undefined } }),
        'an auth object without a token': () => ({ opts: { auth: {} } }),
        'an empty token': () => ({ token: '' }),
        'a token that is a number': () => ({ opts: { auth: { token: 12345 } } }),
        'a garbage token': () => ({ token: 'garbage.garbage.garbage' }),
        'an expired token': (user) => ({
            token: h.makeJwt(srv.secret, { sub: user.id, iat: h.nowS() - 7200, exp: h.nowS() - 30 }),
        }),
        'a token signed with another secret': (user) => ({
            token: h.makeJwt('another-secret-another-secret-!!', { sub: user.id, exp: h.nowS() + 600 }),
        }),
        'an alg none token': (user) => ({
            token: h.makeJwt(srv.secret, { sub: user.id, exp: h.nowS() + 600 }, { alg: 'none', typ: 'JWT' }),
        }),
        'an HS512 token signed with the server secret': (user) => ({
            token: h.makeJwt(srv.secret, { sub: user.id, exp: h.nowS() + 600 }, { alg: 'HS512', typ: 'JWT' }),
        }),
        'a token whose signature was altered': (user) => {
            const good = h.makeJwt(srv.secret, { sub: user.id, exp: h.nowS() + 600 });
            const last = good.slice(-1) === 'A' ? 'B' : 'A';
            return { token: `${good.slice(0, -2)}${last}${last}` };
        },
        'a token without exp': (user) => ({ token: h.makeJwt(srv.secret, { sub: user.id }) }),
    };
    for (const [what, make] of Object.entries(refusals)) {
        test(`${what} -> connect_error "unauthorized" and no connection`, async () => {
            const { user } = await srv.register();
            const { token, opts = {} } = make(user);
            const err = await srv.connectError(token, { ...tr, ...opts });
            assert.equal(err.message, 'unauthorized');
        });
    }
});

test('raw websocket: a bad token gets exactly CONNECT_ERROR {"message":"unauthorized"}', async () => {
    const conn = await srv.rawWsConnected(undefined);
    conn.send(`40${JSON.stringify({ token: 'garbage' })}`);
    const reply = await conn.next((m) => typeof m === 'string' && m[0] === '4');
    assert.equal(reply, '44{"message":"unauthorized"}');
    assert.ok(!conn.received.some((m) => typeof m === 'string' && m.startsWith('40')),
        `no CONNECT ack was sent: ${JSON.stringify(conn.received)}`);
});

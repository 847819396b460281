'use strict';
// The log an operator follows: a line per connection opened and closed, a line per failed
// authentication that never holds the secret, a request id carried from X-Request-Id (or
// made up) into the REST line and back in the answer, and each line's time in RFC 3339.
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const h = require('./helpers');
const { test, eventually } = h;

const ADMIN_TOKEN = crypto.randomBytes(16).toString('hex');
const srv = h.useServer({ env: { CHAT_ADMIN_TOKEN: ADMIN_TOKEN } });

/** The JSON log lines written since mark (an offset into the server's output). */
function lines(mark = 0) {
    return srv.server.output.slice(mark).split('\n').filter((l) => l.startsWith('{'))
        .map((l) => JSON.parse(l));
}

function since() {
    return srv.server.output.length;
}

async function waitLine(mark, pred, what) {
    return eventually(() => lines(mark).find(pred), what);
}

test('every line has ts and the same instant as RFC 3339 time', async () => {
    await srv.http('GET', '/healthz');
    const all = lines();
    assert.ok(all.length > 0);
    for (const l of all) {
        assert.match(l.time, /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/, JSON.stringify(l));
        assert.equal(Date.parse(l.time), l.ts, `time and ts agree: ${JSON.stringify(l)}`);
    }
});

for (const [label, opts] of h.TRANSPORTS) {
    test(`a connection's open and close are logged with its peer and user [${label}]`, async () => {
        const mark = since();
        const user = await srv.register();
        const socket = await srv.connect(user.token, opts);
        const open = await waitLine(mark, (l) => l.event === 'connection_open', 'connection_open');
        assert.equal(open.peer, '127.0.0.1');
        assert.match(open.transport, /^(polling|websocket)$/);
        assert.ok(open.conn && !srv.server.output.slice(mark).includes(socket.io.engine.id),
            'the whole sid (a polling credential) is never logged');
        socket.close();
        const close = await waitLine(mark, (l) => l.event === 'connection_close' && l.conn === open.conn,
            'connection_close');
        assert.equal(close.user, user.user.id);
        assert.equal(close.peer, '127.0.0.1');
        assert.equal(typeof close.reason, 'string');
        assert.ok(close.reason.length > 0);
        assert.ok(Number.isInteger(close.duration_ms) && close.duration_ms >= 0);
    });
}

test('a failed login is logged with the login, never the password', async () => {
    const user = await srv.register();
    const mark = since();
    const password = `wrong-${crypto.randomBytes(8).toString('hex')}`;
    const res = await srv.http('POST', '/auth/login', { login: user.user.username, password });
    assert.equal(res.status, 401);
    const line = await waitLine(mark, (l) => l.event === 'auth_failed' && l.door === 'login', 'auth_failed');
    assert.equal(line.login, user.user.username);
    assert.equal(line.peer, '127.0.0.1');
    assert.equal(line.request_id, res.headers.get('x-request-id'));
    assert.ok(!srv.server.output.slice(mark).includes(password), 'the password is not in the log');
});

test('a bad bearer token on REST, the admin API and a socket CONNECT is logged without the token', async () => {
    const mark = since();
    const badJwt = h.makeJwt('not-the-secret-0123456789abcdefghijkl', { sub: h.randomHex24(), exp: h.nowS() + 600 });
    assert.equal((await srv.http('GET', '/me', undefined, badJwt)).status, 401);
    const wrongAdmin = crypto.randomBytes(16).toString('hex');
    assert.equal((await srv.http('POST', '/admin/reload', '', wrongAdmin)).status, 401);
    const err = await srv.connectError(badJwt);
    assert.equal(err.message, 'unauthorized');
    for (const door of ['rest', 'admin', 'socket']) {
        const l = await waitLine(mark, (x) => x.event === 'auth_failed' && x.door === door, `auth_failed ${door}`);
        assert.equal(l.peer, '127.0.0.1');
        assert.equal(typeof l.reason, 'string');
    }
    const out = srv.server.output.slice(mark);
    assert.ok(!out.includes(badJwt) && !out.includes(badJwt.split('.')[2]), 'the token is not in the log');
    assert.ok(!out.includes(wrongAdmin), 'the admin token tried is not in the log');
    assert.ok(!out.includes(ADMIN_TOKEN), 'the admin token is not in the log');
});

test('X-Request-Id: kept from the client, made up otherwise, and on the REST log line', async () => {
    const user = await srv.register();
    let mark = since();
    const mine = `req-${crypto.randomBytes(6).toString('hex')}`;
    const res = await srv.http('GET', '/me', undefined, user.token, { 'x-request-id': mine });
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('x-request-id'), mine);
    const line = await waitLine(mark, (l) => l.event === 'http_request' && l.request_id === mine, 'http_request');
    assert.equal(line.method, 'GET');
    assert.equal(line.path, '/me');
    assert.equal(line.status, 200);
    assert.equal(typeof line.ms, 'number');

    mark = since();
    const made = await srv.http('GET', '/rooms', undefined, user.token);
    const id = made.headers.get('x-request-id');
    assert.match(id, /^[0-9a-f]{16}$/);
    await waitLine(mark, (l) => l.event === 'http_request' && l.request_id === id && l.path === '/rooms', 'line');

    // an id that is not safe to log (spaces, quotes, too long) is replaced
    for (const bad of ['a b', 'x"y', 'z'.repeat(65)]) {
        const r = await srv.http('GET', '/healthz', undefined, undefined, { 'x-request-id': bad });
        assert.match(r.headers.get('x-request-id'), /^[0-9a-f]{16}$/, `replaced: ${bad}`);
    }
    // errors carry it too
    const missing = await srv.http('GET', '/no/such/path', undefined, undefined, { 'x-request-id': 'abc-123' });
    assert.equal(missing.status, 404);
    assert.equal(missing.headers.get('x-request-id'), 'abc-123');
});

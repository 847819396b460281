'use strict';
// REST: accounts, tokens, GET /me, health and metrics, and the error shape for bad bodies.
const assert = require('node:assert/strict');
const { describe } = require('node:test');
const h = require('./helpers');
const { test } = h;

const MAX_PAYLOAD = 8192;
const TOKEN_TTL_S = 3600;
const srv = h.useServer({
    env: { CHAT_MAX_PAYLOAD: String(MAX_PAYLOAD), CHAT_TOKEN_TTL_S: String(TOKEN_TTL_S) },
});

function body(username, extra = {}) {
    return {
        email: `${username.toLowerCase()}@example.test`,
        username,
        password: h.PASSWORD,
        ...extra,
    };
}

function assertPublicUser(user, username) {
    assert.match(user.id, h.HEX24, `user.id is a 24-hex ObjectId: ${JSON.stringify(user)}`);
    assert.equal(user.username, username);
    for (const key of ['status', 'lastSeen', 'avatar']) {
        assert.ok(key in user, `user has "${key}" (PROTOCOL.md Objects): ${JSON.stringify(user)}`);
    }
    assert.ok(!('passwordHash' in user), 'user never carries passwordHash');
    assert.ok(!('password' in user), 'user never carries the password');
}

describe('POST /auth/register', () => {
    test('creates an account: 201 {user, token} with a public user and an HS256 token', async () => {
        const username = h.uniqueName('reg');
        const res = await srv.http('POST', '/auth/register', body(username));
        assert.equal(res.status, 201, res.text);
        assert.match(res.headers.get('content-type') || '', /application\/json/);
        assertPublicUser(res.body.user, username);
        assert.equal(typeof res.body.token, 'string');
        const { header, payload } = h.decodeJwt(res.body.token);
        assert.equal(header.alg, 'HS256');
        assert.equal(payload.sub, res.body.user.id, 'token sub is the user id');
        const expectedExp = h.nowS() + TOKEN_TTL_S;
        assert.ok(Math.abs(payload.exp - expectedExp) <= 60,
            `exp is now + CHAT_TOKEN_TTL_S (${TOKEN_TTL_S} s): exp=${payload.exp}`);
    });

    test('the token from register authenticates GET /me, which returns the same user', async () => {
        const { user, token, username } = await srv.register();
        const me = await srv.http('GET', '/me', undefined, token);
        assert.equal(me.status, 200, me.text);
        assertPublicUser(me.body.user, username);
        assert.equal(me.body.user.id, user.id);
    });

    test('a taken email is refused with 409 conflict', async () => {
        const first = await srv.register();
        const res = await srv.http('POST', '/auth/register',
            body(h.uniqueName('dup'), { email: first.email }));
        h.assertRestError(res, 409, 'conflict');
    });

    test('a taken username is refused with 409 conflict and the first account is kept', async () => {
        const first = await srv.register();
        const res = await srv.http('POST', '/auth/register', {
            email: `${h.uniqueName('other')}@example.test`,
            username: first.username,
            password: 'another password 123',
        });
        h.assertRestError(res, 409, 'conflict');
        const ok = await srv.http('POST', '/auth/login',
            { login: first.username, password: first.password });
        assert.equal(ok.status, 200, `the original password still works: ${ok.text}`);
        assert.equal(ok.body.user.id, first.user.id);
        const bad = await srv.http('POST', '/auth/login',
            { login: first.username, password: 'another password 123' });
        h.assertRestError(bad, 401, 'unauthorized');
    });

    test('boundary values are accepted: username of 3 and 32 chars, password of 8 and 72 bytes', async () => {
        const short = `a${h.randomHex24().slice(0, 2)}`;
        const long = `L${h.randomHex24()}-_.abcdef`.padEnd(32, 'x').slice(0, 32);
        assert.equal(long.length, 32);
        for (const [username, password] of [[short, '12345678'], [long, 'p'.repeat(72)]]) {
            const res = await srv.http('POST', '/auth/register', body(username, { password }));
            assert.equal(res.status, 201, `${username}: ${res.text}`);
            const login = await srv.http('POST', '/auth/login', { login: username, password });
            assert.equal(login.status, 200, `login ${username}: ${login.text}`);
        }
    });

    const badBodies = [
        ['username missing', (u) => ({ email: `${u}@example.test`, password: h.PASSWORD }), 'username'],
        ['email missing', (u) => ({ username: u, password: h.PASSWORD }), 'email'],
        ['password missing', (u) => ({ email: `${u}@example.test`, username: u }), 'password'],
        ['username a number', (u) => body(u, { username: 12345 }), 'username'],
        ['email a number', (u) => body(u, { email: 42 }), 'email'],
        ['password an array', (u) => body(u, { password: ['secret123'] }), 'password'],
        ['username too short (2)', (u) => body(u, { username: 'ab' }), 'username'],
        ['username too long (33)', (u) => body(u, { username: 'x'.repeat(33) }), 'username'],
        ['username with a space', (u) => body(u, { username: 'has space' }), 'username'],
        ['username with a slash', (u) => body(u, { username: 'bad/name' }), 'username'],
        ['email without @', (u) => body(u, { email: 'not-an-email' }), 'email'],
        ['password too short (7)', (u) => body(u, { password: '1234567' }), 'password'],
        ['password too long (73 bytes)', (u) => body(u, { password: 'p'.repeat(73) }), 'password'],
    ];
    for (const [what, make, field] of badBodies) {
        test(`${what} -> 400 invalid_payload naming "${field}", and no account is created`, async () => {
            const username = h.uniqueName('bad');
            const res = await srv.http('POST', '/auth/register', make(username));
            h.assertRestError(res, 400, 'invalid_payload', field);
            // Nothing was stored: the same username registers afterwards.
            const again = await srv.http('POST', '/auth/register', body(username));
            assert.equal(again.status, 201, `username still free after the refusal: ${again.text}`);
        });
    }

    const badJson = [
        ['not JSON', '{"email": "a@example.test", "username": '],
        ['empty', ''],
        ['a JSON array', '[]'],
        ['a JSON string', '"hello"'],
        ['JSON null', 'null'],
        ['JSON with trailing garbage', '{"email":"x@example.test"} trailing'],
    ];
    for (const [what, raw] of badJson) {
        test(`a body that is ${what} -> 400 invalid_payload`, async () => {
            const res = await srv.http('POST', '/auth/register', raw);
            h.assertRestError(res, 400, 'invalid_payload');
        });
    }

    test('a body with invalid UTF-8 bytes -> 400 invalid_payload', async () => {
        const username = h.uniqueName('utf');
        const raw = Buffer.concat([
            Buffer.from(`{"email":"${username}@example.test","username":"${username}","password":"pa`),
            Buffer.from([0xff, 0xfe, 0xc3, 0x28]), // never valid UTF-8
            Buffer.from('ssword123"}'),
        ]);
        const res = await srv.http('POST', '/auth/register', raw);
        h.assertRestError(res, 400, 'invalid_payload');
    });

    test(`a body larger than CHAT_MAX_PAYLOAD (${MAX_PAYLOAD}) -> 413; one just under it is served`, async () => {
        const username = h.uniqueName('big');
        const json = JSON.stringify(body(username));
        // JSON allows whitespace anywhere between tokens: pad to just under the limit.
        const under = `${json.slice(0, -1)}${' '.repeat(MAX_PAYLOAD - json.length - 16)}}`;
        assert.ok(under.length < MAX_PAYLOAD);
        const over = `${json.slice(0, -1)}${' '.repeat(MAX_PAYLOAD * 3)}}`;
        const big = await srv.http('POST', '/auth/register', over);
        h.assertRestError(big, 413, 'payload_too_large');
        const ok = await srv.http('POST', '/auth/register', under);
        assert.equal(ok.status, 201, `a body under the limit registers: ${ok.text.slice(0, 300)}`);
        assert.equal(ok.body.user.username, username);
    });
});

describe('POST /auth/login', () => {
    test('by email -> 200 {user, token}; the token works', async () => {
        const u = await srv.register();
        const res = await srv.http('POST', '/auth/login', { login: u.email, password: u.password });
        assert.equal(res.status, 200, res.text);
        assertPublicUser(res.body.user, u.username);
        assert.equal(res.body.user.id, u.user.id);
        const me = await srv.http('GET', '/me', undefined, res.body.token);
        assert.equal(me.status, 200, me.text);
        assert.equal(me.body.user.id, u.user.id);
    });

    test('by username -> 200 {user, token}', async () => {
        const u = await srv.register();
        const res = await srv.http('POST', '/auth/login', { login: u.username, password: u.password });
        assert.equal(res.status, 200, res.text);
        assert.equal(res.body.user.id, u.user.id);
        assert.equal(h.decodeJwt(res.body.token).payload.sub, u.user.id);
    });

    test('a wrong password -> 401 unauthorized, and so does an unknown login', async () => {
        const u = await srv.register();
        const wrong = await srv.http('POST', '/auth/login', { login: u.email, password: 'wrong password' });
        h.assertRestError(wrong, 401, 'unauthorized');
        assert.ok(!('token' in wrong.body), 'no token on a failed login');
        const unknown = await srv.http('POST', '/auth/login',
            { login: h.uniqueName('nobody'), password: u.password });
        h.assertRestError(unknown, 401, 'unauthorized');
    });

    const badLogin = [
        ['not JSON', 'login=alice&password=x', null],
        ['login missing', { password: h.PASSWORD }, 'login'],
        ['password missing', { login: 'someone' }, 'password'],
        ['login a number', { login: 7, password: h.PASSWORD }, 'login'],
        ['password an object', { login: 'someone', password: { a: 1 } }, 'password'],
    ];
    for (const [what, b, field] of badLogin) {
        test(`${what} -> 400 invalid_payload${field ? ` naming "${field}"` : ''}`, async () => {
            const res = await srv.http('POST', '/auth/login', b);
            h.assertRestError(res, 400, 'invalid_payload', field || undefined);
        });
    }
});

describe('GET /me', () => {
    test('without a token -> 401 unauthorized', async () => {
        const res = await srv.http('GET', '/me');
        h.assertRestError(res, 401, 'unauthorized');
    });

    test('with a garbage, non-Bearer, forged, expired, alg none or HS512 token -> 401', async () => {
        const { user } = await srv.register();
        const exp = h.nowS() + 3600;
        const tokens = {
            garbage: 'not.a.jwt',
            'other secret': h.makeJwt('a-different-secret-of-32-bytes!!', { sub: user.id, exp }),
            expired: h.makeJwt(srv.secret, { sub: user.id, iat: h.nowS() - 7200, exp: h.nowS() - 60 }),
            'alg none': h.makeJwt(srv.secret, { sub: user.id, exp }, { alg: 'none', typ: 'JWT' }),
            HS512: h.makeJwt(srv.secret, { sub: user.id, exp }, { alg: 'HS512', typ: 'JWT' }),
            'no sub': h.makeJwt(srv.secret, { exp }),
        };
        for (const [what, token] of Object.entries(tokens)) {
            const res = await srv.http('GET', '/me', undefined, token);
            assert.equal(res.status, 401, `${what} token: ${res.text}`);
            h.assertRestError(res, 401, 'unauthorized');
        }
        const basic = await srv.http('GET', '/me', undefined, undefined,
            { authorization: `Basic ${Buffer.from('a:b').toString('base64')}` });
        h.assertRestError(basic, 401, 'unauthorized');
    });

    test('a token we sign with the server secret is accepted (control for the cases above)', async () => {
        const { user } = await srv.register();
        const token = h.makeJwt(srv.secret, { sub: user.id, iat: h.nowS(), exp: h.nowS() + 3600 });
        const res = await srv.http('GET', '/me', undefined, token);
        assert.equal(res.status, 200, res.text);
        assert.equal(res.body.user.id, user.id);
    });
});

describe('health and metrics', () => {
    test('GET /healthz and GET /readyz answer 200', async () => {
        for (const p of ['/healthz', '/readyz']) {
            const res = await srv.http('GET', p);
            assert.equal(res.status, 200, `${p}: ${res.text}`);
        }
    });

    test('GET /metrics answers 200 in the Prometheus text format', async () => {
        const res = await srv.http('GET', '/metrics');
        assert.equal(res.status, 200, res.text);
        assert.match(res.headers.get('content-type') || '', /^text\/plain/);
        const samples = res.text.split('\n').filter((l) => l && !l.startsWith('#'));
        assert.ok(samples.length > 0, 'at least one sample');
        for (const line of samples) {
            assert.match(line,
                /^[a-zA-Z_:][a-zA-Z0-9_:]*(\{[^}]*\})? [-+]?([0-9.]+([eE][-+]?[0-9]+)?|NaN|[-+]?Inf)( -?[0-9]+)?$/,
                `a Prometheus sample line: ${line}`);
        }
    });
});

'use strict';
// Authentication bounds (issue 10 item 12 and the login limits): tokens that are not valid
// yet, passwords longer than bcrypt reads, registration per address, and failed logins per
// account and per address, on the in-process kv and, across two nodes, on Redis.
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const { describe, before, after } = require('node:test');
const h = require('./helpers');
const { test, metric } = h;

const REDIS = process.env.CHAT_TEST_REDIS_URL;
const MONGO = process.env.CHAT_TEST_MONGO_URI;

/** Asserts a 429 rate_limited in the PROTOCOL.md shape whose message says when to retry. */
function assertLimited(res, what) {
    h.assertRestError(res, 429, 'rate_limited', what);
    const m = res.body.error.message.match(/retry in (\d+) s/);
    assert.ok(m, `the message says when to retry: ${res.body.error.message}`);
    assert.ok(Number(m[1]) >= 1, `a positive retry hint: ${res.body.error.message}`);
    assert.equal(res.headers.get('retry-after'), m[1], 'Retry-After repeats the hint');
}

const login = (server, who, password, headers) =>
    h.http(server, 'POST', '/auth/login', { login: who, password }, undefined, headers);

describe('tokens: nbf (not before)', () => {
    const srv = h.useServer();

    const tokenFor = (sub, claims) => h.makeJwt(srv.secret,
        { sub, iat: h.nowS(), exp: h.nowS() + 3600, ...claims });

    test('a token whose nbf is an hour ahead is refused on REST and on CONNECT', async () => {
        const { user } = await srv.register();
        const token = tokenFor(user.id, { nbf: h.nowS() + 3600 });
        h.assertRestError(await srv.http('GET', '/me', undefined, token), 401, 'unauthorized');
        const err = await srv.connectError(token, { transports: ['websocket'] });
        assert.equal(err.message, 'unauthorized');
    });

    test('nbf within the clock-skew allowance (30 s) or in the past is accepted', async () => {
        const { user } = await srv.register();
        for (const nbf of [h.nowS() - 60, h.nowS(), h.nowS() + 10]) {
            const res = await srv.http('GET', '/me', undefined, tokenFor(user.id, { nbf }));
            assert.equal(res.status, 200, `nbf now${nbf - h.nowS()} s: ${res.text}`);
        }
        const s = await srv.connect(tokenFor(user.id, { nbf: h.nowS() + 10 }), { transports: ['websocket'] });
        assert.ok(s.connected);
    });

    test('an nbf that is not an integer is refused', async () => {
        const { user } = await srv.register();
        for (const nbf of [String(h.nowS()), h.nowS() + 0.5, null]) {
            const res = await srv.http('GET', '/me', undefined, tokenFor(user.id, { nbf }));
            h.assertRestError(res, 401, 'unauthorized');
        }
    });
});

describe('passwords: bcrypt reads 72 bytes', () => {
    const srv = h.useServer();

    test('register refuses a password over 72 bytes with invalid_payload, counted in bytes', async () => {
        for (const password of ['p'.repeat(73), 'p'.repeat(256), 'é'.repeat(37) /* 74 bytes */]) {
            const username = h.uniqueName('long');
            const res = await srv.http('POST', '/auth/register',
                { email: `${username}@example.test`, username, password });
            h.assertRestError(res, 400, 'invalid_payload', '72 bytes');
            // nothing was stored
            const again = await srv.http('POST', '/auth/register',
                { email: `${username}@example.test`, username, password: h.PASSWORD });
            assert.equal(again.status, 201, again.text);
        }
    });

    test('a password of exactly 72 bytes registers and logs in', async () => {
        const password = 'é'.repeat(36); // 72 bytes
        const reg = await srv.register(h.uniqueName('p72'), { password });
        assert.equal((await login(srv.server, reg.username, password)).status, 200);
        h.assertRestError(await login(srv.server, reg.username, `${password.slice(1)}e`), 401, 'unauthorized');
    });

    test('an account made when long passwords were cut to 72 bytes still logs in with the whole one', async () => {
        // Before this bound, a 100-byte password was stored as the hash of its first 72
        // bytes; its owner still types all 100, and login accepts up to 256 bytes.
        const whole = crypto.randomBytes(50).toString('hex');
        const reg = await srv.register(h.uniqueName('legacy'), { password: whole.slice(0, 72) });
        const res = await login(srv.server, reg.username, whole);
        assert.equal(res.status, 200, res.text);
        assert.equal(res.body.user.id, reg.user.id);
    });
});

describe('register: bounded per address', () => {
    const PER_IP = 3;
    const srv = h.useServer({ env: { CHAT_REGISTER_PER_IP: String(PER_IP) } });

    test(`the ${PER_IP + 1}th registration from one address in a window is 429 with a retry hint`, async () => {
        const before = await metric(srv.server, 'chatd_register_rate_limited_total');
        const first = await srv.register();
        // a conflict counts too: probing for taken addresses spends the same budget
        const dup = await srv.http('POST', '/auth/register',
            { email: first.email, username: h.uniqueName('dup'), password: h.PASSWORD });
        h.assertRestError(dup, 409, 'conflict');
        await srv.register();
        const username = h.uniqueName('over');
        const res = await srv.http('POST', '/auth/register',
            { email: `${username}@example.test`, username, password: h.PASSWORD });
        assertLimited(res, 'registrations');
        assert.equal(await metric(srv.server, 'chatd_register_rate_limited_total'), before + 1);
        // the refused one was not created: logging in as it fails
        h.assertRestError(await login(srv.server, username, h.PASSWORD), 401, 'unauthorized');
    });
});

describe('login: failed attempts bounded per account and per address', () => {
    const PER_ACCOUNT = 5;
    const PER_IP = 12;
    const srv = h.useServer({
        env: {
            CHAT_LOGIN_FAIL_ACCOUNT: String(PER_ACCOUNT),
            CHAT_LOGIN_FAIL_IP: String(PER_IP),
            CHAT_TRUST_PROXY: '1',
        },
    });
    const fromIp = () => ({ 'x-forwarded-for': `198.51.100.${crypto.randomInt(1, 255)}, 10.${crypto.randomInt(0, 255)}.${crypto.randomInt(0, 255)}.${crypto.randomInt(1, 255)}` });

    test('50 wrong passwords in a row: after the bound every attempt is 429, the right one too', async () => {
        const who = await srv.register();
        const before = await metric(srv.server, 'chatd_login_rate_limited_total{scope="account"}');
        const answers = [];
        for (let i = 0; i < 50; i++) {
            // a fresh address each time: only the account's own bound can stop this
            answers.push((await login(srv.server, who.username, `wrong ${i}`, fromIp())).status);
        }
        assert.deepEqual(answers.slice(0, PER_ACCOUNT), Array(PER_ACCOUNT).fill(401));
        assert.deepEqual(answers.slice(PER_ACCOUNT), Array(50 - PER_ACCOUNT).fill(429));
        assertLimited(await login(srv.server, who.username, who.password, fromIp()), 'this account');
        // by email too: the account is the login as typed, lower-cased
        assertLimited(await login(srv.server, who.username.toUpperCase(), who.password, fromIp()),
            'this account');
        assert.equal(await metric(srv.server, 'chatd_login_rate_limited_total{scope="account"}'),
            before + 50 - PER_ACCOUNT + 2);
    });

    test('successful logins do not count', async () => {
        const who = await srv.register();
        const ip = fromIp();
        for (let i = 0; i < PER_ACCOUNT + PER_IP; i++) {
            const res = await login(srv.server, who.username, who.password, ip);
            assert.equal(res.status, 200, `login ${i}: ${res.text}`);
        }
        // and failures below the bound leave the account usable
        for (let i = 0; i < PER_ACCOUNT - 1; i++) {
            assert.equal((await login(srv.server, who.username, 'wrong', ip)).status, 401);
        }
        assert.equal((await login(srv.server, who.username, who.password, ip)).status, 200);
    });

    test('one address trying many accounts is stopped after its bound', async () => {
        const ip = fromIp();
        const before = await metric(srv.server, 'chatd_login_rate_limited_total{scope="ip"}');
        const statuses = [];
        for (let i = 0; i < PER_IP + 3; i++) {
            statuses.push((await login(srv.server, `nobody_${crypto.randomBytes(4).toString('hex')}`, 'guess', ip)).status);
        }
        assert.deepEqual(statuses, [...Array(PER_IP).fill(401), 429, 429, 429]);
        const someone = await srv.register();
        assertLimited(await login(srv.server, someone.username, someone.password, ip), 'this address');
        // another address is not affected
        assert.equal((await login(srv.server, someone.username, someone.password, fromIp())).status, 200);
        assert.equal(await metric(srv.server, 'chatd_login_rate_limited_total{scope="ip"}'), before + 4);
    });

    test('without CHAT_TRUST_PROXY, X-Forwarded-For does not pick the address that is counted', async () => {
        const direct = await h.startServer({ env: { CHAT_LOGIN_FAIL_IP: '3', CHAT_LOGIN_FAIL_ACCOUNT: '100' } });
        try {
            const statuses = [];
            for (let i = 0; i < 5; i++) {
                statuses.push((await login(direct, `nobody_${i}`, 'guess', fromIp())).status);
            }
            assert.deepEqual(statuses, [401, 401, 401, 429, 429]);
        } finally {
            await h.stopServer(direct);
        }
    });
});

describe('login bounds across nodes (Redis)', {
    skip: !(REDIS && MONGO) && 'CHAT_TEST_REDIS_URL and CHAT_TEST_MONGO_URI are not set',
}, () => {
    const servers = [];
    before(async () => {
        // one store and one secret for both nodes: a token or account works on either
        const mongo = new URL(MONGO);
        mongo.pathname = `/chatd_authlimits_${crypto.randomBytes(4).toString('hex')}`;
        const secret = crypto.randomBytes(32).toString('hex');
        const env = {
            CHAT_REDIS_URL: REDIS,
            CHAT_MONGO_URI: mongo.toString(),
            CHAT_LOGIN_FAIL_ACCOUNT: '4',
            CHAT_TRUST_PROXY: '1',
        };
        servers.push(await h.startServer({ env, secret }));
        servers.push(await h.startServer({ env, secret }));
    });
    after(async () => {
        for (const s of servers) {
            await h.stopServer(s);
        }
    });

    test('failures on one node count on the other', async () => {
        const [a, b] = servers;
        const who = await h.register(a);
        const ip = { 'x-forwarded-for': `203.0.113.${crypto.randomInt(1, 255)}` };
        for (const s of [a, b, a, b]) {
            h.assertRestError(await login(s, who.username, 'wrong', ip), 401, 'unauthorized');
        }
        assertLimited(await login(b, who.username, who.password, ip), 'this account');
        assertLimited(await login(a, who.username, who.password, ip), 'this account');
        assert.equal(await metric(b, 'chatd_login_rate_limited_total{scope="account"}'), 1);
    });
});

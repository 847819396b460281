'use strict';
// Logins must not starve everything else (issue 10 item 5): bcrypt runs on its own bounded
// pool of threads (CHAT_BCRYPT_THREADS, CHAT_BCRYPT_QUEUE), so a flood of logins neither
// delays another user's message:send (which needs the store, on the uv thread pool) nor
// queues without bound. No timing assertions: the proof is an ordering (the ack arrives
// while most of the flood is still unanswered) and counts.
const assert = require('node:assert/strict');
const h = require('./helpers');
const { test, emitAck, assertAckOk, metric } = h;

const FLOOD = 40;

// The flood is many logins to one account from one address: the failed-login bounds
// (auth_limits.test.js) would stop most of it before bcrypt, so they are out of the way here.
const NO_LOGIN_BOUNDS = { CHAT_LOGIN_FAIL_ACCOUNT: '1000000', CHAT_LOGIN_FAIL_IP: '1000000' };
// One bcrypt thread at a real cost: the flood takes a while to drain, one login at a time.
const srv = h.useServer({
    env: { CHAT_BCRYPT_COST: '10', CHAT_BCRYPT_THREADS: '1', CHAT_BCRYPT_QUEUE: '1000', ...NO_LOGIN_BOUNDS },
});
// The same, with room for two waiting jobs only.
const small = h.useServer({
    env: { CHAT_BCRYPT_COST: '10', CHAT_BCRYPT_THREADS: '1', CHAT_BCRYPT_QUEUE: '2', ...NO_LOGIN_BOUNDS },
});

// A login of the flood may wait behind all the others: its own generous bound, not WAIT_MS.
async function login(server, login, password) {
    const res = await fetch(`${server.url}/auth/login`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ login, password }),
        signal: AbortSignal.timeout(120000),
    });
    const text = await res.text();
    let body = null;
    try {
        body = JSON.parse(text);
    } catch {
        /* not JSON */
    }
    return { status: res.status, body, text };
}

test('a message:send during a flood of logins is acknowledged and stored before the flood ends', async () => {
    const a = await srv.register();
    const { users: [b], sockets: [b1], room } = await h.roomWithMembers(srv, {}, 1);

    let answered = 0;
    const statuses = [];
    let first;
    const firstAnswered = new Promise((resolve) => { first = resolve; });
    const flood = [];
    for (let i = 0; i < FLOOD; i++) {
        // half right, half wrong passwords: both cost one bcrypt run
        flood.push(login(srv.server, a.username, i % 2 ? a.password : 'wrong password!').then((res) => {
            answered++;
            statuses.push(res.status);
            first();
            return res;
        }));
    }
    // The flood is flowing (one login answered, the rest waiting for bcrypt): now B sends.
    await h.withTimeout(firstAnswered, 60000, 'the first login of the flood');
    const ack = await emitAck(b1, 'message:send', { roomId: room.id, content: 'not starved' });
    const answeredAtAck = answered;
    assertAckOk(ack, 'message:send');
    assert.ok(answeredAtAck < FLOOD / 2,
        `the ack came after ${answeredAtAck} of ${FLOOD} logins were answered: it waited behind bcrypt`);

    // the message is stored: it is in the room's history, also while the flood still runs
    const hist = await srv.http('GET', `/messages?roomId=${room.id}`, undefined, b.token);
    assert.equal(hist.status, 200, hist.text);
    assert.ok(hist.body.messages.some((m) => m.id === ack.message.id), hist.text);

    const results = await Promise.all(flood);
    assert.equal(answered, FLOOD);
    assert.equal(results.filter((r) => r.status === 200).length, FLOOD / 2, statuses.join(','));
    assert.equal(results.filter((r) => r.status === 401).length, FLOOD / 2, statuses.join(','));
    assert.equal(await metric(srv, 'chatd_bcrypt_rejected_total'), 0);
    assert.ok(await metric(srv, 'chatd_bcrypt_done_total') >= FLOOD + 2);
    assert.equal(await metric(srv, 'chatd_bcrypt_queued'), 0);
});

test('a full bcrypt queue refuses logins at once with 503 unavailable, counted in /metrics', async () => {
    const a = await small.register();
    const before = await metric(small, 'chatd_bcrypt_rejected_total');
    const results = await Promise.all(
        Array.from({ length: 12 }, () => login(small.server, a.username, a.password)));
    const ok = results.filter((r) => r.status === 200);
    const busy = results.filter((r) => r.status === 503);
    assert.equal(ok.length + busy.length, 12, results.map((r) => r.status).join(','));
    assert.ok(ok.length >= 1, 'some logins got through');
    assert.ok(busy.length >= 1, 'the queue of 2 refused some of 12 logins at once');
    for (const r of busy) {
        h.assertRestError(r, 503, 'unavailable', 'busy');
    }
    assert.equal(await metric(small, 'chatd_bcrypt_rejected_total') - before, busy.length);
    // an unknown login still costs one bcrypt check (the dummy hash) and answers 401
    const unknown = await login(small.server, 'nobody-' + h.uniqueName(), 'whatever password');
    h.assertRestError(unknown, 401, 'unauthorized');
    small.assertAlive();
});

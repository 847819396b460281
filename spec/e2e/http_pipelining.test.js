'use strict';
// HTTP framing on libwebsockets 4.1.6 (issue 10 items 1, 2, 8, 12): requests pipelined in
// one TCP write, smuggling attempts, chunked and body-less requests, oversized headers. Each
// attack must leave the server serving everyone else; the attacker's connection alone ends,
// and when chatd ends it, its last answer says Connection: close. The workarounds are
// described at the top of runtime/src/net.c (D1-D4).
const assert = require('node:assert/strict');
const { describe } = require('node:test');
const h = require('./helpers');
const { exchange } = require('./http_raw');
const { test } = h;

const srv = h.useServer({ env: { CHAT_ADMIN_TOKEN: 'admin-secret-token' } });
const port = () => srv.server.port;

/** The server still answers a fresh connection at once (it is not spinning or stuck). */
async function assertServing() {
    srv.assertAlive();
    const res = await srv.http('GET', '/healthz');
    assert.equal(res.status, 200);
}

function post(path, body, extra = '') {
    return `POST ${path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n${extra}` +
        `Content-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`;
}

describe('pipelined requests in one write (D1)', () => {
    // Before the fix each of these left chatd at 100% CPU, deaf to SIGTERM.
    const first = {
        'GET /healthz': 'GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n',
        'a static 404': 'GET /no-such-file.html HTTP/1.1\r\nHost: x\r\n\r\n',
        'GET /': 'GET / HTTP/1.1\r\nHost: x\r\n\r\n',
    };
    for (const [name, req] of Object.entries(first)) {
        test(`${name} then a POST: both answered in order, then the connection closes`, async () => {
            const r = await exchange(port(), [req + 'POST /auth/login HTTP/1.1\r\nHost: x\r\n' +
                'Content-Length: 5\r\n\r\n0\r\n\r\n']);
            assert.equal(r.responses.length, 2, r.raw);
            assert.notEqual(r.responses[0].status, 0);
            assert.equal(r.responses[1].status, 400, 'the POST body is not JSON');
            assert.equal(r.responses[1].headers.connection, 'close', r.raw);
            assert.equal(r.closed, true);
            await assertServing();
        });
    }

    test('two POSTs with bodies in one write: the first answered, then close', async () => {
        const r = await exchange(port(), [post('/auth/login', '{}') + post('/auth/login', '{}')]);
        assert.ok(r.responses.length >= 1, r.raw);
        assert.equal(r.responses[0].status, 400);
        assert.equal(r.responses.at(-1).headers.connection, 'close', r.raw);
        assert.equal(r.closed, true);
        await assertServing();
    });

    test('GETs pipelined in one write are all answered, in order, on a live connection', async () => {
        const reqs = ['/healthz', '/readyz', '/healthz'].map((p) => `GET ${p} HTTP/1.1\r\nHost: x\r\n\r\n`);
        const r = await exchange(port(), [reqs.join('')], { count: 3 });
        assert.deepEqual(r.responses.map((x) => x.status), [200, 200, 200]);
        assert.equal(r.closed, false, 'keep-alive: the connection stays open');
        await assertServing();
    });

    test('a register whose answer is pending with a request behind it: the connection ends, the server does not spin', async () => {
        const body = JSON.stringify({ username: h.uniqueName('pipe'), email: `${h.uniqueName('p')}@example.test`,
            password: h.PASSWORD });
        const r = await exchange(port(), [post('/auth/register', body) + 'GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n']);
        assert.equal(r.closed, true);
        for (const res of r.responses) {
            assert.equal(res.headers.connection, 'close', 'an answer before the close says so');
        }
        await assertServing();
    });
});

describe('use after free with a pipelined body (issue 10 item 2)', () => {
    test('the exact bytes, then the socket closes: no sanitizer report, still serving', async () => {
        const bytes = 'POST /auth/register HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}GET /healthz ' +
            'HTTP/1.1\r\n\r\nPOST /auth/register HTTP/1.1\r\nHost: x\rContent-Length: 3\r\n\nContent-' +
            'Length: 2\r\n\r\n{}GE';
        const r = await exchange(port(), [bytes], { closeAfterWrite: true });
        assert.equal(r.closed, true);
        await assertServing();
        assert.doesNotMatch(srv.server.output, /AddressSanitizer/);
    });
});

describe('request framing (D3)', () => {
    test('Content-Length and Transfer-Encoding together: 400 and close, the tail is never a request', async () => {
        const smuggled = 'POST /auth/login HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n' +
            'Transfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /healthz HTTP/1.1\r\nHost: x\r\n\r\n';
        const r = await exchange(port(), [smuggled]);
        assert.equal(r.responses.length, 1, `only one answer: ${r.raw}`);
        assert.equal(r.responses[0].status, 400);
        assert.equal(r.responses[0].headers.connection, 'close');
        h.assertErrorShape(JSON.parse(r.responses[0].body), 'invalid_payload');
        assert.equal(r.closed, true);
    });

    test('a chunked body is answered at once with 411 and close', async () => {
        const r = await exchange(port(), ['POST /auth/login HTTP/1.1\r\nHost: x\r\n' +
            'Transfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n']);
        assert.equal(r.responses.length, 1, r.raw);
        assert.equal(r.responses[0].status, 411);
        assert.equal(r.responses[0].headers.connection, 'close');
        h.assertErrorShape(JSON.parse(r.responses[0].body), 'invalid_payload');
        assert.equal(r.closed, true);
    });

    test('a Content-Length that is not one number: 400 and close', async () => {
        for (const cl of ['2, 2', '-1', '0x2', '1e3', '']) {
            const r = await exchange(port(), [`POST /auth/login HTTP/1.1\r\nHost: x\r\nContent-Length: ${cl}\r\n\r\n{}`]);
            assert.equal(r.responses.length, 1, `${cl}: ${r.raw}`);
            assert.equal(r.responses[0].status, 400, `Content-Length: ${cl}`);
            assert.equal(r.closed, true);
        }
    });

    test('a POST without a body is answered at once (curl -X POST)', async () => {
        const r = await exchange(port(), ['POST /admin/reload HTTP/1.1\r\nHost: x\r\n' +
            'Authorization: Bearer admin-secret-token\r\n\r\n']);
        assert.equal(r.responses.length, 1, r.raw);
        assert.equal(r.responses[0].status, 200, r.raw);
        // D4: lws 4.1.6 would swallow the next request on this connection, so chatd ends it
        assert.equal(r.responses[0].headers.connection, 'close');
    });

    test('Content-Length: 0 keeps the connection for the next request', async () => {
        const reload = 'POST /admin/reload HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer admin-secret-token\r\n' +
            'Content-Length: 0\r\n\r\n';
        const r = await exchange(port(), [reload], { count: 1 });
        assert.equal(r.responses[0].status, 200);
        assert.equal(r.closed, false);
    });

    test('a GET with Content-Length: 0 is answered at once, and the connection kept', async () => {
        // PROTOCOL.md: Content-Length: 0 is no body, whatever the method (chatctl sent it)
        const get = 'GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n';
        const r = await exchange(port(), [get, 'GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n'], { count: 2 });
        assert.equal(r.responses.length, 2, r.raw);
        assert.equal(r.responses[0].status, 200);
        assert.equal(r.responses[1].status, 200);
        assert.equal(r.closed, false);
    });

    test('DELETE and PUT without a body are answered at once', async () => {
        for (const m of ['DELETE', 'PUT', 'PATCH']) {
            const r = await exchange(port(), [`${m} /healthz HTTP/1.1\r\nHost: x\r\n\r\n`]);
            assert.equal(r.responses.length, 1, `${m}: ${r.raw}`);
            assert.equal(r.responses[0].status, 400, `${m}: method not allowed`);
        }
    });

    test('a body larger than maxPayload: 413 and close', async () => {
        const big = 'x'.repeat(1_100_000);
        const r = await exchange(port(), [post('/auth/login', big)]);
        assert.equal(r.responses[0].status, 413);
        assert.equal(r.responses[0].headers.connection, 'close');
    });
});

describe('oversized headers (issue 10 item 12)', () => {
    for (const [name, req] of [
        ['a 9 KB Cookie', `GET /healthz HTTP/1.1\r\nHost: x\r\nCookie: ${'a'.repeat(9000)}\r\n\r\n`],
        ['a 9 KB URL', `GET /healthz?${'a'.repeat(9000)} HTTP/1.1\r\nHost: x\r\n\r\n`],
        ['a 9 KB Authorization', `GET /me HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${'a'.repeat(9000)}\r\n\r\n`],
    ]) {
        test(`${name}: 431 with the error shape, then close`, async () => {
            const r = await exchange(port(), [req]);
            assert.equal(r.responses.length, 1, r.raw.slice(0, 300));
            assert.equal(r.responses[0].status, 431);
            assert.equal(r.responses[0].headers.connection, 'close');
            h.assertErrorShape(JSON.parse(r.responses[0].body), 'payload_too_large');
            await assertServing();
        });
    }
    test('7 KB of headers are fine', async () => {
        const r = await exchange(port(), [`GET /healthz HTTP/1.1\r\nHost: x\r\nCookie: ${'a'.repeat(7000)}\r\n\r\n`],
            { count: 1 });
        assert.equal(r.responses[0].status, 200);
    });
});

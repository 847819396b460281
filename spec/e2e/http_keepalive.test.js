'use strict';
// HTTP/1.1 persistent connections with unmodified clients (issue 11 items 1-3): Node's
// keep-alive agent for REST and long-polling, Connection: close as node-fetch sends it,
// curl with several URLs on one connection, HTTP/1.0, body-less POSTs, and the polling
// close sequence of the reference server (pending GET answered with a noop).
const assert = require('node:assert/strict');
const http = require('node:http');
const { execFile } = require('node:child_process');
const { describe } = require('node:test');
const h = require('./helpers');
const { test } = h;

const ADMIN = 'keepalive-admin-token';
const srv = h.useServer({ env: { CHAT_ADMIN_TOKEN: ADMIN } });

/** One request through `agent`; resolves { status, headers, text, reused }. */
function request(agent, method, path, { body, headers = {} } = {}) {
    return h.withTimeout(new Promise((resolve, reject) => {
        const req = http.request({ host: '127.0.0.1', port: srv.server.port, method, path, agent,
            headers: body === undefined ? headers
                : { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), ...headers } },
        (res) => {
            let text = '';
            res.setEncoding('utf8');
            res.on('data', (d) => { text += d; });
            res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, text,
                reused: req.reusedSocket }));
        });
        req.on('error', reject);
        req.end(body);
    }), h.WAIT_MS, `${method} ${path}`);
}

function curl(args) {
    return new Promise((resolve) => {
        execFile('curl', ['-sS', '-m', String(h.WAIT_MS / 1000), ...args], (err, stdout, stderr) =>
            resolve({ code: err ? err.code : 0, stdout, stderr }));
    });
}

describe('keep-alive agent (one socket, several requests in turn)', () => {
    test('REST: register, login, /me, /rooms all on one connection', async () => {
        const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
        try {
            const name = h.uniqueName('ka');
            const reg = await request(agent, 'POST', '/auth/register', { body: JSON.stringify({
                username: name, email: `${name}@example.test`, password: h.PASSWORD }) });
            assert.equal(reg.status, 201, reg.text);
            const login = await request(agent, 'POST', '/auth/login',
                { body: JSON.stringify({ login: name, password: h.PASSWORD }) });
            assert.equal(login.status, 200, login.text);
            assert.equal(login.reused, true, 'the login reused the register connection');
            const auth = { authorization: `Bearer ${JSON.parse(login.text).token}` };
            const me = await request(agent, 'GET', '/me', { headers: auth });
            const rooms = await request(agent, 'GET', '/rooms', { headers: auth });
            assert.equal(me.status, 200);
            assert.equal(rooms.status, 200);
            assert.equal(me.reused && rooms.reused, true);
            for (const r of [reg, login, me, rooms]) {
                assert.notEqual(r.headers.connection, 'close');
            }
        } finally {
            agent.destroy();
        }
    });

    test('long-polling: handshake, connect, poll, heartbeat and close on one connection', async () => {
        const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
        try {
            const { token } = await srv.register();
            const open = await request(agent, 'GET', '/socket.io/?EIO=4&transport=polling');
            assert.equal(open.status, 200);
            const sid = JSON.parse(open.text.slice(1)).sid;
            const url = `/socket.io/?EIO=4&transport=polling&sid=${sid}`;
            const post = (body) => request(agent, 'POST', url,
                { body, headers: { 'content-type': 'text/plain;charset=UTF-8' } });
            assert.equal((await post(`40${JSON.stringify({ token })}`)).text, 'ok');
            const connected = await request(agent, 'GET', url);
            assert.match(connected.text, /^40\{"sid":/);
            assert.equal((await post('3')).text, 'ok', 'a stray pong is accepted');
            assert.equal((await post('1')).text, 'ok', 'the close packet is accepted');
            const after = await request(agent, 'GET', url);
            assert.equal(after.status, 400);
            assert.deepEqual(JSON.parse(after.text), { code: 1, message: 'Session ID unknown' });
            for (const r of [connected, after]) {
                assert.equal(r.reused, true, 'every request went over the first connection');
            }
        } finally {
            agent.destroy();
        }
    });
});

describe('Connection: close (node-fetch sends it even over a keep-alive agent)', () => {
    for (const [name, make] of [
        ['the handshake', async () => ({ method: 'GET', path: '/socket.io/?EIO=4&transport=polling' })],
        ['a heartbeat POST', async () => {
            const { sid } = await srv.eioOpen();
            return { method: 'POST', path: `/socket.io/?EIO=4&transport=polling&sid=${sid}`, body: '3' };
        }],
        ['a close POST', async () => {
            const { sid } = await srv.eioOpen();
            return { method: 'POST', path: `/socket.io/?EIO=4&transport=polling&sid=${sid}`, body: '1' };
        }],
        ['a REST call', async () => ({ method: 'GET', path: '/healthz' })],
    ]) {
        test(`${name}: honoured, said back, and the agent's next request works`, async () => {
            const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
            try {
                const { method, path, body } = await make();
                const first = await request(agent, method, path,
                    { body, headers: { connection: 'close', ...(body ? { 'content-type': 'text/plain' } : {}) } });
                assert.equal(first.status, 200, first.text);
                assert.equal(first.headers.connection, 'close', 'the answer says the connection closes');
                // before the fix the agent reused the dead socket: "socket hang up"
                const next = await request(agent, 'GET', '/healthz');
                assert.equal(next.status, 200);
                assert.equal(next.reused, false, 'a new connection, since the last one was closed');
            } finally {
                agent.destroy();
            }
        });
    }
});

describe('curl', () => {
    test('several URLs on one connection: "Re-using existing connection"', async () => {
        const u = srv.server.url;
        const r = await curl(['-v', '-o', '/dev/null', '-o', '/dev/null', '-o', '/dev/null',
            `${u}/healthz`, `${u}/readyz`, `${u}/socket.io/?EIO=4&transport=polling`]);
        assert.equal(r.code, 0, r.stderr);
        assert.equal((r.stderr.match(/Re-using existing connection/g) || []).length, 2, r.stderr);
    });

    test('HTTP/1.0: answered, with Connection: close', async () => {
        const r = await curl(['--http1.0', '-i', `${srv.server.url}/healthz`]);
        assert.equal(r.code, 0, r.stderr);
        assert.match(r.stdout, /^HTTP\/1\.[01] 200/);
        assert.match(r.stdout, /\r\nconnection: close\r\n/i);
        assert.match(r.stdout, /\{"ok":true\}$/);
    });

    test('curl -X POST without a body (the scripting guide\'s reload) answers at once', async () => {
        const r = await curl(['-X', 'POST', '-H', `Authorization: Bearer ${ADMIN}`, '-w', '\n%{http_code}',
            `${srv.server.url}/admin/reload`]);
        assert.equal(r.code, 0, `curl failed (before the fix: 20 s, then an empty reply): ${r.stderr}`);
        assert.match(r.stdout, /"ok":true/);
        assert.match(r.stdout, /\n200$/);
    });

    test('a POST with Content-Length: 0 answers at once too', async () => {
        const r = await curl(['-X', 'POST', '-d', '', '-H', `Authorization: Bearer ${ADMIN}`, '-w', '\n%{http_code}',
            `${srv.server.url}/admin/reload`]);
        assert.equal(r.code, 0, r.stderr);
        assert.match(r.stdout, /\n200$/);
    });
});

describe('polling close sequence (like engine.io 6)', () => {
    /** A polling GET, sent in full before this resolves: { finished, done }. */
    function heldGet(sid) {
        const agent = new http.Agent({ keepAlive: false });
        let finished;
        const sent = new Promise((r) => { finished = r; });
        const done = new Promise((resolve, reject) => {
            const req = http.get({ host: '127.0.0.1', port: srv.server.port, agent,
                path: `/socket.io/?EIO=4&transport=polling&sid=${sid}` }, (res) => {
                let text = '';
                res.on('data', (d) => { text += d; });
                res.on('end', () => resolve({ status: res.statusCode, text }));
            });
            req.on('finish', finished);
            req.on('error', reject);
        });
        return { sent, done: h.withTimeout(done, h.WAIT_MS, 'the pending GET') };
    }

    test('the close packet while a GET is pending: the GET gets a noop, the session ends, the sid is unknown', async () => {
        // The GET and the POST travel on two connections; when the POST happens to be read
        // first, the GET rightly finds the session gone (400): then try again, a bounded
        // number of times. A GET answered with anything but 6 or that 400 fails at once.
        for (let attempt = 1; ; attempt++) {
            const { sid } = await srv.eioOpen();
            const get = heldGet(sid);
            await get.sent;
            const closed = await srv.eioPost(sid, '1');
            assert.equal(closed.status, 200);
            assert.equal(closed.text, 'ok', 'the close POST is answered ok');
            const got = await get.done;
            if (got.status === 400 && attempt < 10) {
                assert.deepEqual(JSON.parse(got.text), { code: 1, message: 'Session ID unknown' });
                continue;
            }
            assert.equal(got.status, 200, got.text);
            assert.equal(got.text, '6', 'the pending GET is answered with a noop, not 1');
            const after = await srv.eioGet(sid);
            assert.equal(after.status, 400);
            assert.deepEqual(JSON.parse(after.text), { code: 1, message: 'Session ID unknown' });
            const post = await srv.eioPost(sid, '2');
            assert.equal(post.status, 400);
            assert.deepEqual(JSON.parse(post.text), { code: 1, message: 'Session ID unknown' });
            break;
        }
    });
});

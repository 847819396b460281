'use strict';
// Bounds on what one client can make a node hold (issue 10 items 4 and 7, issue 11 item 7):
// bytes queued to a client that never reads, TCP connections in total and per address,
// Engine.IO sessions that never connect a namespace (and connectTimeout), and accept()
// errors at the open-file limit. Each bound trips for the attacker alone: the server keeps
// serving and other clients keep chatting.
const assert = require('node:assert/strict');
const fs = require('node:fs');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');
const { describe } = require('node:test');
const h = require('./helpers');
const { test, emitAck, assertAckOk, waitFor, withTimeout, WAIT_MS } = h;

// ---- helpers ------------------------------------------------------------------------------

/** chatd's counters, parsed from /metrics over a connection that is closed afterwards. */
async function metrics(server) {
    const text = await rawHttp(server, 'GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
    assert.match(text, /^HTTP\/1\.1 200/, `metrics: ${text.slice(0, 200)}`);
    return h.parseMetrics(text.slice(text.indexOf('\r\n\r\n') + 4));
}

/** Writes a raw request on a fresh TCP connection; resolves with all it read until the end. */
function rawHttp(server, request) {
    return withTimeout(new Promise((resolve, reject) => {
        const s = net.connect(server.port, '127.0.0.1');
        let data = '';
        s.on('connect', () => s.write(request));
        s.on('data', (d) => {
            data += d.toString('latin1');
        });
        s.on('error', reject);
        s.on('close', () => resolve(data));
        h.track(() => s.destroy());
    }), WAIT_MS, `raw HTTP ${request.split('\r\n')[0]}`);
}

/** An idle TCP connection: opened, sends nothing. data collects what the server says. */
function idleConn(server, localAddress) {
    const s = net.connect({ port: server.port, host: '127.0.0.1', localAddress });
    const c = { s, data: '', ended: false };
    c.connected = withTimeout(new Promise((resolve, reject) => {
        s.once('connect', resolve);
        s.once('error', reject);
    }), WAIT_MS, 'tcp connect');
    c.closed = new Promise((resolve) => s.on('close', () => {
        c.ended = true;
        resolve(c.data);
    }));
    s.on('data', (d) => {
        c.data += d.toString('latin1');
    });
    s.on('error', () => {});
    h.track(() => s.destroy());
    return c;
}

/** Resolves once the server has written a line matching re (bounded). */
function waitOutput(server, re, what) {
    return withTimeout(new Promise((resolve) => {
        const check = () => {
            if (re.test(server.output)) {
                server.proc.stdout.off('data', check);
                server.proc.stderr.off('data', check);
                resolve();
            }
        };
        server.proc.stdout.on('data', check);
        server.proc.stderr.on('data', check);
        check();
    }), WAIT_MS, what);
}

/** Asks /healthz until it answers 200 (the server may still be closing what we closed). */
async function healthyAgain(server) {
    await h.eventually(async () => /^HTTP\/1\.1 200/.test(
        await rawHttp(server, 'GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n')),
    '/healthz to answer 200', WAIT_MS, { retryErrors: true, intervalMs: 20 });
}

function rssKb(pid, field = 'VmHWM') {
    const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
    const m = status.match(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm'));
    assert.ok(m, `${field} in /proc/${pid}/status`);
    return Number(m[1]);
}

/** Two users in a room, chatting over websocket: resolves when b received a's message. */
async function chatRoundTrip(srv, pair) {
    const content = `still here ${h.uniqueName()}`;
    const ack = await emitAck(pair.sockets[0], 'message:send', { roomId: pair.room.id, content });
    assertAckOk(ack, 'message:send');
    await waitFor(pair.sockets[1], 'message:new', (m) => m && m.content === content);
}

/** A wrapper that starts chatd with a low open-file limit (the pid stays chatd's: exec). */
function lowFdBin(limit) {
    const bin = path.resolve(process.env.CHATD_BIN || path.join(__dirname, '..', '..', 'build', 'chatd'));
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'chatd-ulimit-'));
    const wrapper = path.join(dir, 'chatd');
    fs.writeFileSync(wrapper, `#!/bin/sh\nulimit -n ${limit} || exit 111\nexec "${bin}" "$@"\n`,
        { mode: 0o755 });
    return wrapper;
}

/** Starts chatd through the low-ulimit wrapper (helpers' startServer reads CHATD_BIN). */
async function startLowFd(limit, env) {
    const saved = process.env.CHATD_BIN;
    process.env.CHATD_BIN = lowFdBin(limit);
    try {
        return await h.startServer({ env });
    } finally {
        if (saved === undefined) {
            delete process.env.CHATD_BIN;
        } else {
            process.env.CHATD_BIN = saved;
        }
    }
}

function handleFor(server) {
    return {
        register: (...a) => h.register(server, ...a),
        connect: (...a) => h.connect(server, ...a),
    };
}

// ---- bytes queued per session (issue 10 item 4) --------------------------------------------

describe('a client that never reads', () => {
    const srv = h.useServer();

    test('a pong flood closes that connection alone; memory stays bounded; others chat on', async (t) => {
        const pair = await h.roomWithMembers(srv, { transports: ['websocket'] });
        const pid = srv.server.proc.pid;
        const before = rssKb(pid, 'VmRSS');

        const conn = srv.rawWs({ autoPong: false });
        await conn.opened;
        await conn.next((m) => typeof m === 'string' && m[0] === '0');
        conn.ws.pause(); // never read again: every pong stays queued on the server
        const ping = `2${'x'.repeat(1000000 - 16)}`; // one Engine.IO ping just under maxPayload
        const FLOOD = 1000; // 1,000 pongs of 1 MB: about 1 GB if the server kept them all
        let sent = 0;
        let failed = null;
        await withTimeout(new Promise((resolve) => {
            const next = () => {
                if (sent >= FLOOD || failed || conn.closeInfo) {
                    resolve();
                    return;
                }
                conn.ws.send(ping, (err) => {
                    if (err) {
                        failed = err;
                    } else {
                        sent++;
                    }
                    next();
                });
            };
            next();
        }), 60000, 'the flood to end');

        // the server did not hold the flood: the attacker is cut off, and counted
        const peakMb = rssKb(pid) / 1024;
        const grewMb = peakMb - before / 1024;
        // 1,000 MB of pongs would be needed to hold the flood; the queue bound is 4 MiB
        assert.ok(grewMb < 250, `peak RSS grew by ${grewMb.toFixed(0)} MB (peak ${peakMb.toFixed(0)} MB)`);
        assert.ok(sent < FLOOD, `the server stopped the flood (${sent} pings written)`);
        const m = await metrics(srv.server);
        assert.ok(m.chatd_slow_clients_total >= 1,
            `counted as a slow client: ${JSON.stringify(m)}`);
        t.diagnostic(`pong flood: ${sent} pings of 1 MB written before the close; ` +
            `RSS ${(before / 1024).toFixed(0)} MB before, peak ${peakMb.toFixed(0)} MB`);
        // once it reads again, it finds the connection closed
        conn.ws.resume();
        await conn.waitClosed();
        // everyone else chats on
        await chatRoundTrip(srv, pair);
        srv.assertAlive();
        assert.match(srv.server.output, /slow_client/);
    });

    test('over polling too: pongs piling up with no GET to carry them close the session', async () => {
        const { sid } = await srv.eioOpen();
        const ping = `2${'p'.repeat(1000000 - 16)}`; // one ping per POST body (maxPayload)
        let closedAt = -1;
        for (let i = 0; i < 20; i++) {
            const res = await srv.eioPost(sid, ping);
            if (res.status !== 200) {
                closedAt = i;
                break;
            }
        }
        assert.ok(closedAt > 0, `a POST was refused once the session was closed (${closedAt})`);
        const after = await srv.eioGet(sid);
        assert.equal(after.status, 400, `the session is gone: ${after.text}`);
        const m = await metrics(srv.server);
        assert.ok(m.chatd_slow_clients_total >= 1, JSON.stringify(m));
    });

    test('a broadcast counts toward each reader\'s queue: a silent member is cut off', async () => {
        const pair = await h.roomWithMembers(srv, { transports: ['websocket'] }, 3);
        // the third member stops reading; the others keep sending 64 KB messages
        const silent = pair.sockets[2];
        silent.io.engine.transport.ws.pause();
        const before = (await metrics(srv.server)).chatd_slow_clients_total;
        const big = 'y'.repeat(9000);
        const disconnected = withTimeout(new Promise((resolve) => {
            const check = async () => {
                const m = await metrics(srv.server);
                if (m.chatd_slow_clients_total > before) {
                    resolve(m);
                } else {
                    await Promise.all(Array.from({ length: 50 }, () => emitAck(pair.sockets[0],
                        'message:send', { roomId: pair.room.id, content: big })));
                    setImmediate(check);
                }
            };
            check();
        }), 60000, 'the silent member to be cut off');
        const m = await disconnected;
        assert.ok(m.chatd_slow_clients_total > before);
        await chatRoundTrip(srv, pair);
    });
});

// ---- connectTimeout (issue 11 item 7) -------------------------------------------------------

describe('connectTimeout', () => {
    const srv = h.useServer({
        env: { CHAT_CONNECT_TIMEOUT_MS: '300', CHAT_PING_INTERVAL_MS: '600', CHAT_PING_TIMEOUT_MS: '5000' },
    });

    test('a websocket session that never sends CONNECT is closed after connectTimeout', async () => {
        const conn = srv.rawWs({ autoPong: true });
        await conn.opened;
        await conn.next((m) => typeof m === 'string' && m[0] === '0');
        const info = await conn.waitClosed();
        assert.equal(conn.pings, 0, 'closed by the connect timeout, before any ping');
        assert.ok(info);
        const m = await metrics(srv.server);
        assert.ok(m.chatd_connect_timeouts_total >= 1, JSON.stringify(m));
        assert.equal(m.chatd_sessions_unconnected, 0);
    });

    test('a polling session that never sends CONNECT is closed after connectTimeout', async () => {
        const { sid } = await srv.eioOpen();
        const res = await srv.eioGet(sid); // held until the session ends
        if (res.status === 200) {
            assert.ok(res.packets.includes('1'), `the close packet: ${res.text}`);
        } else {
            assert.equal(res.status, 400, `already gone: ${res.text}`); // a slow poll came late
        }
        const again = await srv.eioGet(sid);
        assert.equal(again.status, 400, 'the session is gone');
    });

    test('a session that connected a namespace stays past connectTimeout', async () => {
        const { token } = await srv.register();
        const conn = await srv.rawWsConnected(token, { autoPong: true });
        // two pings at 600 ms intervals: well past the 300 ms connect timeout
        await withTimeout(new Promise((resolve, reject) => {
            const check = () => conn.pings >= 2 && resolve();
            conn.ws.on('message', check);
            conn.closed.then(() => reject(new Error(`closed after ${conn.pings} pings`)));
        }), WAIT_MS, 'two pings');
        assert.equal(conn.closeInfo, null);
    });
});

// ---- sessions without a CONNECT, per address and in total (issue 10 item 7) -----------------

describe('sessions that never connect a namespace', () => {
    // behind a trusted proxy the client address is X-Forwarded-For's last entry
    const srv = h.useServer({
        env: {
            CHAT_TRUST_PROXY: '1',
            CHAT_MAX_UNCONNECTED_SESSIONS_PER_IP: '2',
            CHAT_MAX_UNCONNECTED_SESSIONS: '3',
        },
    });
    const open = (ip) => srv.http('GET', '/socket.io/?EIO=4&transport=polling', undefined, null,
        { 'x-forwarded-for': ip });

    test('are bounded per client address and in total; a CONNECT frees the slot', async () => {
        const { token } = await srv.register();
        const a1 = await open('10.0.0.1');
        const a2 = await open('10.0.0.1');
        assert.equal(a1.status, 200);
        assert.equal(a2.status, 200);
        const a3 = await open('10.0.0.1');
        h.assertRestError(a3, 503, 'unavailable', 'too many sessions');
        const b1 = await open('10.0.0.2');
        assert.equal(b1.status, 200, 'another address still gets in');
        const c1 = await open('10.0.0.3');
        h.assertRestError(c1, 503, 'unavailable', 'too many sessions');
        let m = await metrics(srv.server);
        assert.equal(m['chatd_sessions_refused_total{limit="max_unconnected_sessions_per_ip"}'], 1);
        assert.equal(m['chatd_sessions_refused_total{limit="max_unconnected_sessions"}'], 1);
        assert.equal(m.chatd_sessions_unconnected, 3);

        // a1 connects the main namespace: no longer counted, so 10.0.0.1 may open one more
        const sid = JSON.parse(a1.text.slice(1)).sid;
        const post = await srv.eioPost(sid, `40${JSON.stringify({ token })}`);
        assert.equal(post.status, 200);
        const got = await srv.eioGet(sid);
        assert.ok(got.packets.some((p) => p.startsWith('40{')), `CONNECT answered: ${got.text}`);
        m = await metrics(srv.server);
        assert.equal(m.chatd_sessions_unconnected, 2);
        const a4 = await open('10.0.0.1');
        assert.equal(a4.status, 200, a4.text);
    });
});

// ---- every Engine.IO session per address, connected or not (review H2) ----------------------

describe('sessions per address, connected ones included', () => {
    const srv = h.useServer({ env: { CHAT_TRUST_PROXY: '1', CHAT_MAX_SESSIONS_PER_IP: '3' } });
    const open = (ip) => srv.http('GET', '/socket.io/?EIO=4&transport=polling', undefined, null,
        { 'x-forwarded-for': ip });
    const connect = async (res, token) => {
        assert.equal(res.status, 200, res.text);
        const sid = JSON.parse(res.text.slice(1)).sid;
        assert.equal((await srv.eioPost(sid, `40${JSON.stringify({ token })}`)).status, 200);
        const got = await srv.eioGet(sid);
        assert.ok(got.packets.some((p) => p.startsWith('40{')), `CONNECT answered: ${got.text}`);
        return sid;
    };

    test('a client cannot hold more polling sessions than max_sessions_per_ip by connecting them', async () => {
        const { token } = await srv.register();
        const sids = [];
        for (let i = 0; i < 3; i++) {
            sids.push(await connect(await open('10.0.1.1'), token));
        }
        const refused = await open('10.0.1.1');
        h.assertRestError(refused, 503, 'unavailable', 'too many sessions');
        assert.equal((await open('10.0.1.2')).status, 200, 'another address still gets in');
        const m = await metrics(srv.server);
        assert.equal(m['chatd_sessions_refused_total{limit="max_sessions_per_ip"}'], 1);

        // closing one (the Engine.IO close packet) frees its slot
        assert.equal((await srv.eioPost(sids[0], '1')).status, 200);
        await h.eventually(async () => (await open('10.0.1.1')).status === 200, 'a slot again');
    });
});

// ---- TCP connections per address (issue 10 item 7) -------------------------------------------

describe('connections per address', () => {
    const srv = h.useServer({ env: { CHAT_MAX_CONNECTIONS_PER_IP: '3' } });

    test('past the bound a connection is answered 503 and closed; closing one lets another in', async () => {
        // from an address of its own (127.0.0.2), so no other connection counts toward it
        const ADDR = '127.0.0.2';
        const c1 = idleConn(srv.server, ADDR);
        const c2 = idleConn(srv.server, ADDR);
        const c3 = idleConn(srv.server, ADDR);
        await Promise.all([c1.connected, c2.connected, c3.connected]);
        const c4 = idleConn(srv.server, ADDR);
        const said = await withTimeout(c4.closed, WAIT_MS, 'the fourth connection to be closed');
        assert.match(said, /^HTTP\/1\.1 503 /, `answered 503: ${JSON.stringify(said)}`);
        const body = JSON.parse(said.slice(said.indexOf('\r\n\r\n') + 4));
        h.assertErrorShape(body, 'unavailable');
        assert.equal(c3.ended, false, 'the third connection is still open');
        // another address is not affected
        await healthyAgain(srv.server);
        const m = await metrics(srv.server);
        assert.equal(m['chatd_connections_refused_total{limit="max_connections_per_ip"}'], 1,
            JSON.stringify(m));
        // one closes: that address may connect again
        c1.s.destroy();
        const deadline = Date.now() + WAIT_MS;
        for (;;) {
            const c = idleConn(srv.server, ADDR);
            await c.connected;
            const r = await Promise.race([c.closed, new Promise((res) => {
                // an accepted connection answers a request; a refused one is closed first
                c.s.write('GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n', () => res(null));
            }).then(() => c.closed)]);
            if (/^HTTP\/1\.1 200/.test(r)) {
                break;
            }
            assert.ok(Date.now() < deadline, `no connection from ${ADDR} was let in again: ${r.slice(0, 100)}`);
        }
    });
});

// ---- the open-file limit (issue 10 item 7) -------------------------------------------------

describe('at the open-file limit', () => {
    const FD_LIMIT = 64;

    test('max_connections defaults below the limit: the extra connections get 503, chat goes on', async () => {
        const server = await startLowFd(FD_LIMIT, { CHAT_MAX_CONNECTIONS_PER_IP: '1000' });
        try {
            const pair = await h.roomWithMembers(handleFor(server), { transports: ['websocket'] });
            const m0 = await metrics(server);
            assert.ok(m0.chatd_connections_max < FD_LIMIT, JSON.stringify(m0));
            const conns = [];
            for (let i = 0; i < FD_LIMIT; i++) {
                conns.push(idleConn(server));
                await conns[i].connected; // in turn: the server accepts them in this order
            }
            // the ones past the bound are answered and closed; the rest stay open
            const refused = await withTimeout(
                Promise.all(conns.slice(m0.chatd_connections_max).map((c) => c.closed)),
                WAIT_MS, 'the connections past max_connections to be closed');
            assert.ok(refused.every((d) => /^HTTP\/1\.1 503 /.test(d)), JSON.stringify(refused.slice(0, 3)));
            await chatRoundTrip(null, pair);
            for (const c of conns) {
                c.s.destroy();
            }
            await healthyAgain(server);
            const m = await metrics(server);
            assert.ok(m['chatd_connections_refused_total{limit="max_connections"}'] >= 1, JSON.stringify(m));
            assert.equal(m.chatd_accept_errors_total, 0);
        } finally {
            await h.closeResources();
            await h.stopServer(server);
        }
    });

    test('accept() failing with EMFILE backs off and logs a few lines, not millions', async () => {
        // a max_connections above the limit: accept() itself runs out of descriptors
        const server = await startLowFd(FD_LIMIT, {
            CHAT_MAX_CONNECTIONS: '100000',
            CHAT_MAX_CONNECTIONS_PER_IP: '100000',
        });
        try {
            const pair = await h.roomWithMembers(handleFor(server), { transports: ['websocket'] });
            const conns = [];
            for (let i = 0; i < FD_LIMIT + 16; i++) {
                conns.push(idleConn(server)); // the kernel completes them; chatd cannot accept all
            }
            await Promise.all(conns.map((c) => c.connected));
            await waitOutput(server, /accept/, 'the accept failure to be logged');
            // the existing client is unaffected while the descriptors are exhausted
            await chatRoundTrip(null, pair);
            await chatRoundTrip(null, pair);
            for (const c of conns) {
                c.s.destroy();
            }
            await healthyAgain(server);
            const m = await metrics(server);
            assert.ok(m.chatd_accept_errors_total >= 1, JSON.stringify(m));
            // One line stands for every error since the one before (its count), so the lines
            // add up to the errors without repeating any, and a line waits for the next
            // second of the server's own clock (ts; 100 ms allowed between the loop's clock
            // and the wall clock that stamps it).
            const lines = server.output.split('\n').filter((l) => /accept/i.test(l));
            const logged = lines.map((l) => JSON.parse(l)).filter((l) => l.event === 'accept_failed');
            const dump = lines.slice(0, 5).join('\n');
            assert.equal(logged.length, lines.length, `every accept line is an accept_failed line:\n${dump}`);
            assert.ok(logged.length >= 1 && logged.length <= m.chatd_accept_errors_total, dump);
            let sum = 0;
            logged.forEach((l, i) => {
                sum += l.count;
                assert.equal(l.total, sum, `line ${i} counts the errors since the line before:\n${dump}`);
                if (i > 0) {
                    assert.ok(l.ts - logged[i - 1].ts >= 900, `line ${i} came a second after the one before:\n${dump}`);
                }
            });
            assert.ok(sum <= m.chatd_accept_errors_total, `${sum} logged, ${m.chatd_accept_errors_total} counted`);
            await chatRoundTrip(null, pair);
        } finally {
            await h.closeResources();
            await h.stopServer(server);
        }
    });
});

'use strict';
const REPO_ROOT = require('node:path').resolve(__dirname, '..', '..');
// End-to-end helpers: one chatd process per test file, real Socket.IO clients, raw
// Engine.IO over fetch and ws, and HS256 tokens made with node:crypto.
//
// Every wait is bounded (WAIT_MS) and fails the test when it runs out; nothing sleeps to
// let the server "catch up".

const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const fs = require('node:fs');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');
const { spawn } = require('node:child_process');
const nodeTest = require('node:test');
const { io } = require('socket.io-client');
const WebSocket = require('ws');

const REPO = path.resolve(__dirname, '..', '..');
/** Upper bound for any single wait on the server (an event, an ack, a response). */
const WAIT_MS = Number(process.env.E2E_WAIT_MS || 5000);
/** Backstop for one whole test. */
const TEST_TIMEOUT_MS = Number(process.env.E2E_TEST_TIMEOUT_MS || 60000);
const START_TIMEOUT_MS = Number(process.env.E2E_START_TIMEOUT_MS || 20000);
const STOP_TIMEOUT_MS = Number(process.env.E2E_STOP_TIMEOUT_MS || 20000);

const HEX24 = /^[0-9a-f]{24}$/;
const SANITIZER_REPORT =
    /ERROR: (AddressSanitizer|LeakSanitizer|ThreadSanitizer|MemorySanitizer)|runtime error:|SUMMARY: \w+Sanitizer/;

/** The three client transport settings every connecting test runs under. */
const TRANSPORTS = [
    ['default (polling then upgrade)', {}],
    ['websocket only', { transports: ['websocket'] }],
    ['polling only', { transports: ['polling'] }],
];

function chatdBin() {
    const bin = process.env.CHATD_BIN
        ? path.resolve(process.env.CHATD_BIN)
        : path.join(REPO, 'build', 'chatd');
    if (!fs.existsSync(bin)) {
        throw new Error(`chatd binary not found at ${bin}: build it or set CHATD_BIN`);
    }
    return bin;
}

function freePort() {
    return new Promise((resolve, reject) => {
        const s = net.createServer();
        s.unref();
        s.on('error', reject);
        s.listen(0, '127.0.0.1', () => {
            const { port } = s.address();
            s.close(() => resolve(port));
        });
    });
}

function withTimeout(promise, ms, what) {
    let timer;
    const t = new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
    });
    return Promise.race([promise, t]).finally(() => clearTimeout(timer));
}

/** A unique valid username: [A-Za-z0-9_.-], 3..32 chars. */
function uniqueName(prefix = 'u') {
    return `${prefix.slice(0, 12)}_${crypto.randomBytes(6).toString('hex')}`;
}

function randomHex24() {
    return crypto.randomBytes(12).toString('hex');
}

// ---- the server process ---------------------------------------------------------------

const running = new Set(); // servers started by this process, killed on exit as a last resort

process.on('exit', () => {
    for (const s of running) {
        try {
            s.proc.kill('SIGKILL');
        } catch {
            /* already gone */
        }
    }
});

/**
 * Starts chatd on a free loopback port with a fresh data dir (unless opts.dataDir) and a
 * random JWT secret (unless opts.secret). opts.env adds or overrides CHAT_* variables.
 * Resolves once GET /healthz answers 200.
 */
async function startServer(opts = {}) {
    const bin = chatdBin();
    let lastErr;
    for (let attempt = 0; attempt < 3; attempt++) {
        const port = opts.port || await freePort(); // a fixed port (the cluster test's nodes)
        try {
            return await startOnce(bin, port, opts);
        } catch (err) {
            lastErr = err;
            // The port may have been taken between probing and binding: try another one.
            if (!err.exitedEarly || !/in use|EADDRINUSE|bind/i.test(err.message)) {
                throw err;
            }
        }
    }
    throw lastErr;
}

async function startOnce(bin, port, opts) {
    const dataDir = opts.dataDir || fs.mkdtempSync(path.join(os.tmpdir(), 'chatd-e2e-'));
    const secret = opts.secret || crypto.randomBytes(32).toString('hex');
    const env = {
        ...process.env,
        CHAT_LISTEN: `127.0.0.1:${port}`,
        CHAT_DATA_DIR: dataDir,
        CHAT_JWT_SECRET: secret,
        CHAT_BCRYPT_COST: '4',
        // Every test registers its users from 127.0.0.1, many per file (and, on a shared
        // Redis, across files): the per-address register bound is off unless a test sets it
        // (auth_limits.test.js does).
        CHAT_REGISTER_PER_IP: '1000000000',
        // The protocol tests run the core alone: no policies or bots unless a test asks for
        // them (opts.scripts: a scripts folder, e.g. the repo's default scripts/).
        CHAT_SCRIPTS_DIR: opts.scripts || fs.mkdtempSync(path.join(os.tmpdir(), 'chatd-noscripts-')),
        CHAT_LUA_DIR: path.join(REPO_ROOT, 'lua'),
        ...(opts.env || {}),
    };
    const proc = spawn(bin, [], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    const server = {
        proc,
        port,
        url: `http://127.0.0.1:${port}`,
        wsUrl: `ws://127.0.0.1:${port}`,
        dataDir,
        secret,
        env,
        output: '',
        exit: null, // {code, signal} once the process has exited
        stopping: false,
    };
    const append = (chunk) => {
        server.output += chunk.toString('utf8');
    };
    proc.stdout.on('data', append);
    proc.stderr.on('data', append);
    server.exited = new Promise((resolve) => {
        proc.on('exit', (code, signal) => {
            server.exit = { code, signal };
            running.delete(server);
            resolve(server.exit);
        });
    });
    proc.on('error', (err) => {
        server.output += `\n[spawn error] ${err.message}\n`;
    });
    running.add(server);

    const deadline = Date.now() + START_TIMEOUT_MS;
    for (;;) {
        if (server.exit) {
            const err = new Error(
                `chatd exited during startup (code ${server.exit.code}, signal ` +
                    `${server.exit.signal})\n${tail(server.output)}`);
            err.exitedEarly = true;
            throw err;
        }
        // Ready once this chatd said it listens and the port answers: /healthz alone could be
        // answered by another server that took the port between freePort() and the bind.
        if (server.output.includes('"event":"listening"')) {
            try {
                const res = await fetch(`${server.url}/healthz`, { signal: AbortSignal.timeout(1000) });
                await res.arrayBuffer();
                if (res.status === 200) {
                    break;
                }
            } catch {
                /* not listening yet */
            }
        }
        if (Date.now() > deadline) {
            proc.kill('SIGKILL');
            await server.exited;
            throw new Error(
                `chatd did not answer GET /healthz with 200 within ${START_TIMEOUT_MS} ms\n` +
                    tail(server.output));
        }
        await new Promise((r) => setTimeout(r, 50)); // poll interval of a bounded readiness wait
    }
    return server;
}

function tail(text, lines = 80) {
    const all = text.split('\n');
    const shown = all.slice(-lines).join('\n');
    return `--- chatd output (last ${Math.min(lines, all.length)} lines) ---\n${shown}`;
}

/**
 * SIGTERM, then asserts a clean exit: code 0, no signal, no sanitizer report. Removes the
 * data dir unless keepData.
 */
async function stopServer(server, { keepData = false } = {}) {
    server.stopping = true;
    if (!server.exit) {
        server.proc.kill('SIGTERM');
        try {
            await withTimeout(server.exited, STOP_TIMEOUT_MS, 'chatd exit after SIGTERM');
        } catch (err) {
            server.proc.kill('SIGKILL');
            await server.exited;
            throw new Error(`chatd did not exit within ${STOP_TIMEOUT_MS} ms of SIGTERM\n` +
                tail(server.output));
        }
    }
    if (!keepData && server.dataDir.startsWith(os.tmpdir())) {
        fs.rmSync(server.dataDir, { recursive: true, force: true });
    }
    const report = server.output.match(SANITIZER_REPORT);
    if (report) {
        throw new Error(`chatd printed a sanitizer report (${report[0]})\n` +
            tail(server.output, 200));
    }
    if (server.exit.code !== 0 || server.exit.signal !== null) {
        throw new Error(`chatd exited with code ${server.exit.code}, signal ` +
            `${server.exit.signal} after SIGTERM (expected 0)\n${tail(server.output)}`);
    }
}

// ---- per-test resources -----------------------------------------------------------------

const resources = new Set(); // sockets and raw connections opened by the running test

function track(closeFn) {
    const r = { close: closeFn };
    resources.add(r);
    return r;
}

async function closeResources() {
    const all = [...resources];
    resources.clear();
    for (const r of all) {
        try {
            r.close();
        } catch {
            /* already closed */
        }
    }
}

// ---- HTTP -------------------------------------------------------------------------------

/**
 * One HTTP request. body: undefined (none), a string or Buffer (sent as is), anything else
 * (sent as JSON). Returns { status, body (parsed JSON or null), text, headers }.
 */
async function http(server, method, urlPath, body, token, headers = {}) {
    const h = { ...headers };
    let payload;
    if (body !== undefined) {
        if (typeof body === 'string' || Buffer.isBuffer(body) || body instanceof Uint8Array) {
            payload = body;
        } else {
            payload = JSON.stringify(body);
        }
        if (!Object.keys(h).some((k) => k.toLowerCase() === 'content-type')) {
            h['content-type'] = 'application/json';
        }
    }
    if (token !== undefined && token !== null) {
        h.authorization = `Bearer ${token}`;
    }
    const res = await fetch(server.url + urlPath, {
        method,
        headers: h,
        body: payload,
        signal: AbortSignal.timeout(WAIT_MS),
    });
    const text = await res.text();
    let parsed = null;
    try {
        parsed = JSON.parse(text);
    } catch {
        /* not JSON */
    }
    return { status: res.status, body: parsed, text, headers: res.headers };
}

/** Asserts the PROTOCOL.md error shape and REST status. */
function assertRestError(res, status, code, messageIncludes) {
    const where = `${res.status} ${res.text.slice(0, 500)}`;
    assert.equal(res.status, status, `HTTP status: ${where}`);
    assertErrorShape(res.body, code, where);
    if (messageIncludes) {
        assert.match(res.body.error.message, new RegExp(messageIncludes, 'i'),
            `error message should name "${messageIncludes}": ${where}`);
    }
}

function assertErrorShape(body, code, where = JSON.stringify(body)) {
    assert.ok(body && typeof body === 'object', `error body is an object: ${where}`);
    assert.equal(body.ok, false, `ok:false: ${where}`);
    assert.ok(body.error && typeof body.error === 'object', `error object: ${where}`);
    assert.equal(body.error.code, code, `error code: ${where}`);
    assert.equal(typeof body.error.message, 'string', `error message is a string: ${where}`);
    assert.ok(body.error.message.length > 0, `error message is not empty: ${where}`);
}

const PASSWORD = 'correct horse battery';

/** Registers a fresh user. Returns { user, token, username, email, password }. */
async function register(server, username = uniqueName(), extra = {}) {
    const email = extra.email || `${username.toLowerCase()}@example.test`;
    const password = extra.password || PASSWORD;
    const res = await http(server, 'POST', '/auth/register', { email, username, password });
    assert.equal(res.status, 201, `register ${username}: ${res.status} ${res.text}`);
    assert.ok(res.body && res.body.user && typeof res.body.token === 'string',
        `register answer has user and token: ${res.text}`);
    return { user: res.body.user, token: res.body.token, username, email, password };
}

// ---- Socket.IO clients ------------------------------------------------------------------

/**
 * Every connected socket gets an inbox that records each server event (and disconnect)
 * from the moment it was created, so a test can wait for an event that may already have
 * arrived and can check what else arrived, in order.
 */
function attachInbox(socket) {
    const entries = [];
    const waiters = new Set();
    const push = (event, args) => {
        entries.push({ event, data: args[0], args, at: Date.now() });
        for (const w of [...waiters]) {
            w.check();
        }
    };
    socket.onAny((event, ...args) => push(event, args));
    socket.on('disconnect', (reason) => push('disconnect', [reason]));
    const inbox = {
        entries,
        /** Payloads (first argument) of every recorded `event` matching pred, in order. */
        list(event, pred = () => true) {
            return entries.filter((e) => e.event === event && pred(e.data)).map((e) => e.data);
        },
        /** The first recorded (or future) `event` whose payload matches pred. */
        wait(event, pred = () => true, timeoutMs = WAIT_MS) {
            return new Promise((resolve, reject) => {
                const w = {
                    check() {
                        const hit = entries.find((e) => e.event === event && pred(e.data));
                        if (hit) {
                            waiters.delete(w);
                            clearTimeout(w.timer);
                            resolve(hit.data);
                            return true;
                        }
                        return false;
                    },
                };
                if (w.check()) {
                    return;
                }
                w.timer = setTimeout(() => {
                    waiters.delete(w);
                    const seen = entries.map((e) => `${e.event} ${JSON.stringify(e.data)}`);
                    reject(new Error(`timed out after ${timeoutMs} ms waiting for "${event}"` +
                        ` matching ${pred.toString().slice(0, 200)}; received:\n  ` +
                        (seen.join('\n  ') || '(nothing)')));
                }, timeoutMs);
                waiters.add(w);
            });
        },
    };
    socket.inbox = inbox;
    return inbox;
}

function makeSocket(server, token, opts = {}) {
    const { nsp = '', ...rest } = opts;
    const options = {
        forceNew: true,
        reconnection: false,
        timeout: WAIT_MS,
        ...rest,
    };
    if (token !== undefined && !('auth' in rest)) {
        options.auth = { token };
    }
    const socket = io(server.url + nsp, options);
    attachInbox(socket);
    track(() => socket.disconnect());
    return socket;
}

/**
 * A connected socket.io-client socket; rejects with the connect_error (err.message is the
 * server's CONNECT_ERROR message) or on timeout.
 */
function connect(server, token, opts = {}) {
    const socket = makeSocket(server, token, opts);
    return withTimeout(new Promise((resolve, reject) => {
        socket.once('connect', () => resolve(socket));
        socket.once('connect_error', (err) => {
            socket.disconnect();
            reject(err);
        });
    }), WAIT_MS + 1000, 'socket.io connect').catch((err) => {
        socket.disconnect();
        throw err;
    });
}

/**
 * Expects the connection to be refused: resolves with the connect_error and asserts the
 * socket never connected.
 */
async function connectError(server, token, opts = {}) {
    const socket = makeSocket(server, token, opts);
    let connected = false;
    socket.on('connect', () => {
        connected = true;
    });
    const err = await withTimeout(new Promise((resolve) => {
        socket.once('connect_error', resolve);
    }), WAIT_MS + 1000, 'connect_error');
    assert.equal(connected, false, 'the socket must not have connected');
    assert.equal(socket.connected, false, 'socket.connected is false after connect_error');
    assert.equal(socket.id, undefined, 'no Socket.IO session id was given');
    socket.disconnect();
    return err;
}

const NO_PAYLOAD = Symbol('no payload');

/** Emits with an ack and resolves with the ack's first argument; rejects on timeout. */
async function emitAck(socket, event, payload, timeoutMs = WAIT_MS) {
    const args = payload === NO_PAYLOAD ? [] : [payload];
    try {
        return await socket.timeout(timeoutMs).emitWithAck(event, ...args);
    } catch (err) {
        throw new Error(`no ack for "${event}" within ${timeoutMs} ms (${err.message})`);
    }
}

/** Asserts an ack is { ok: false, error: { code, message } } with the given code. */
function assertAckError(ack, code) {
    assertErrorShape(ack, code, `ack ${JSON.stringify(ack)}`);
}

/** Asserts ok:true and returns the ack. */
function assertAckOk(ack, what = '') {
    assert.ok(ack && ack.ok === true, `expected {ok:true} ${what}, got ${JSON.stringify(ack)}`);
    return ack;
}

/**
 * Waits for `event` on a socket whose payload matches predicate: considers everything the
 * socket received since it was created (its inbox), then what arrives, up to timeoutMs.
 */
function waitFor(socket, event, predicate = () => true, timeoutMs = WAIT_MS) {
    return socket.inbox.wait(event, predicate, timeoutMs);
}

/** Waits until `emitter` emits `event` (any EventEmitter-like with once/on/off). */
function once(emitter, event, timeoutMs = WAIT_MS, what = event) {
    return withTimeout(new Promise((resolve) => {
        emitter.once(event, (...args) => resolve(args));
    }), timeoutMs, what);
}

// ---- tokens -----------------------------------------------------------------------------

function b64url(v) {
    const buf = Buffer.isBuffer(v) ? v : Buffer.from(typeof v === 'string' ? v : JSON.stringify(v));
    return buf.toString('base64url');
}

/**
 * A JWT signed with node:crypto. header.alg: HS256 (default), HS384, HS512 or none (empty
 * signature).
 */
function makeJwt(secret, payload, header = { alg: 'HS256', typ: 'JWT' }) {
    const input = `${b64url(header)}.${b64url(payload)}`;
    const algs = { HS256: 'sha256', HS384: 'sha384', HS512: 'sha512' };
    let sig = '';
    if (algs[header.alg]) {
        sig = crypto.createHmac(algs[header.alg], secret).update(input).digest('base64url');
    } else if (header.alg !== 'none') {
        throw new Error(`makeJwt: unsupported alg ${header.alg}`);
    }
    return `${input}.${sig}`;
}

function decodeJwt(token) {
    const [h, p] = token.split('.');
    return {
        header: JSON.parse(Buffer.from(h, 'base64url').toString('utf8')),
        payload: JSON.parse(Buffer.from(p, 'base64url').toString('utf8')),
    };
}

function nowS() {
    return Math.floor(Date.now() / 1000);
}

// ---- raw Engine.IO ----------------------------------------------------------------------

const SEP = '\x1e';

/** GET /socket.io/?EIO=4&transport=polling; asserts 200 and returns the open packet data. */
async function eioOpen(server) {
    const res = await http(server, 'GET', '/socket.io/?EIO=4&transport=polling');
    assert.equal(res.status, 200, `handshake: ${res.status} ${res.text}`);
    assert.equal(res.text[0], '0', `handshake starts with an open packet: ${res.text}`);
    const open = JSON.parse(res.text.split(SEP)[0].slice(1));
    return open;
}

async function eioGet(server, sid, timeoutMs = WAIT_MS) {
    let res;
    try {
        res = await fetch(`${server.url}/socket.io/?EIO=4&transport=polling&sid=${sid}`,
            { signal: AbortSignal.timeout(timeoutMs) });
    } catch (err) {
        throw new Error(`polling GET for ${sid} failed: ${err.name} ${err.message}`);
    }
    const text = await res.text();
    return { status: res.status, text, packets: res.status === 200 ? text.split(SEP) : [] };
}

/**
 * A raw polling session: the handshake, then next(pred) polls (answering pings) and
 * returns the first packet matching pred, keeping the others queued in order.
 */
async function rawPolling(server) {
    const open = await eioOpen(server);
    const queue = [];
    const session = {
        sid: open.sid,
        open,
        seen: [],
        post: (body) => eioPost(server, open.sid, body),
        async next(pred = () => true, timeoutMs = WAIT_MS) {
            const deadline = Date.now() + timeoutMs;
            for (;;) {
                const i = queue.findIndex((p) => pred(p));
                if (i >= 0) {
                    return queue.splice(i, 1)[0];
                }
                const left = deadline - Date.now();
                if (left <= 0) {
                    throw new Error(`no matching polling packet within ${timeoutMs} ms; ` +
                        `received ${JSON.stringify(session.seen).slice(0, 500)}`);
                }
                const res = await eioGet(server, open.sid, left);
                assert.equal(res.status, 200, `poll: ${res.status} ${res.text}`);
                for (const p of res.packets) {
                    session.seen.push(p);
                    if (p === '2') {
                        const pong = await eioPost(server, open.sid, '3');
                        assert.equal(pong.status, 200, `pong: ${pong.status} ${pong.text}`);
                    } else {
                        queue.push(p);
                    }
                }
            }
        },
    };
    return session;
}

async function eioPost(server, sid, body, headers = {}) {
    const res = await fetch(`${server.url}/socket.io/?EIO=4&transport=polling&sid=${sid}`, {
        method: 'POST',
        headers: { 'content-type': 'text/plain;charset=UTF-8', ...headers },
        body,
        signal: AbortSignal.timeout(WAIT_MS),
    });
    const text = await res.text();
    return { status: res.status, text };
}

/**
 * A raw WebSocket to /socket.io/ with a queue of received messages. autoPong answers the
 * server's "2" pings with "3" (and pings are not queued for next()).
 */
function rawWs(server, { query = 'EIO=4&transport=websocket', autoPong = true } = {}) {
    const ws = new WebSocket(`${server.wsUrl}/socket.io/?${query}`);
    const queue = [];
    const waiters = new Set();
    const conn = {
        ws,
        pings: 0,
        received: [],
        closeInfo: null,
        opened: null,
    };
    const wake = () => {
        for (const w of [...waiters]) {
            w();
        }
    };
    ws.on('message', (data, isBinary) => {
        const msg = isBinary ? data : data.toString('utf8');
        conn.received.push(msg);
        if (msg === '2') {
            conn.pings++;
            if (autoPong) {
                ws.send('3');
                wake();
                return;
            }
        }
        queue.push(msg);
        wake();
    });
    conn.opened = withTimeout(new Promise((resolve, reject) => {
        ws.once('open', resolve);
        ws.once('error', reject);
        ws.once('unexpected-response', (req, res) => {
            reject(new Error(`websocket refused with HTTP ${res.statusCode}`));
        });
    }), WAIT_MS, 'websocket open');
    conn.opened.catch(() => {}); // inspected by callers that care
    conn.closed = new Promise((resolve) => {
        ws.on('close', (code, reason) => {
            conn.closeInfo = { code, reason: reason.toString(), at: Date.now() };
            wake();
            resolve(conn.closeInfo);
        });
    });
    ws.on('error', () => {}); // a refused or reset connection shows up as close
    /** Next queued message matching pred (consumed), or rejects on timeout or close. */
    conn.next = (pred = () => true, timeoutMs = WAIT_MS) => new Promise((resolve, reject) => {
        let timer;
        const w = () => {
            const i = queue.findIndex((m) => pred(m));
            if (i >= 0) {
                const [m] = queue.splice(i, 1);
                waiters.delete(w);
                clearTimeout(timer);
                resolve(m);
            } else if (conn.closeInfo) {
                waiters.delete(w);
                clearTimeout(timer);
                reject(new Error(`websocket closed (${conn.closeInfo.code}) while waiting; ` +
                    `received ${JSON.stringify(conn.received).slice(0, 500)}`));
            }
        };
        timer = setTimeout(() => {
            waiters.delete(w);
            reject(new Error(`timed out after ${timeoutMs} ms waiting for a websocket message;` +
                ` received ${JSON.stringify(conn.received).slice(0, 500)}`));
        }, timeoutMs);
        waiters.add(w);
        w();
    });
    /** Resolves with the close info, or rejects if still open after timeoutMs. */
    conn.waitClosed = (timeoutMs = WAIT_MS) =>
        withTimeout(conn.closed, timeoutMs, 'the server to close the websocket');
    conn.send = (data, opts) => ws.send(data, opts);
    track(() => ws.terminate());
    return conn;
}

/** A raw websocket that completed the Engine.IO open and, with token, the Socket.IO CONNECT. */
async function rawWsConnected(server, token, opts = {}) {
    const conn = rawWs(server, opts);
    await conn.opened;
    const open = await conn.next((m) => typeof m === 'string' && m[0] === '0');
    conn.open = JSON.parse(open.slice(1));
    if (token !== undefined) {
        conn.send(`40${JSON.stringify({ token })}`);
        const ack = await conn.next((m) => typeof m === 'string' && m.startsWith('40'));
        conn.sioSid = JSON.parse(ack.slice(2)).sid;
    }
    return conn;
}

// ---- the per-file server fixture -------------------------------------------------------

/**
 * Registers hooks that start one chatd for the file (before), stop it with the exit checks
 * (after), close every socket a test opened and, when a test failed, print the server
 * output written during that test. Returns a handle whose methods are bound to the server.
 */
function useServer(opts = {}) {
    const handle = {
        server: null,
        get url() {
            return handle.server.url;
        },
        get secret() {
            return handle.server.secret;
        },
        http: (...a) => http(handle.server, ...a),
        register: (...a) => register(handle.server, ...a),
        connect: (...a) => connect(handle.server, ...a),
        connectError: (...a) => connectError(handle.server, ...a),
        rawWs: (...a) => rawWs(handle.server, ...a),
        rawWsConnected: (...a) => rawWsConnected(handle.server, ...a),
        eioOpen: (...a) => eioOpen(handle.server, ...a),
        eioGet: (...a) => eioGet(handle.server, ...a),
        eioPost: (...a) => eioPost(handle.server, ...a),
        rawPolling: (...a) => rawPolling(handle.server, ...a),
        /** Asserts the process is still running (it must not crash on bad input). */
        assertAlive() {
            const s = handle.server;
            assert.equal(s.exit, null, `chatd exited: ${JSON.stringify(s.exit)}\n${tail(s.output)}`);
        },
    };
    let mark = 0;
    nodeTest.before(async () => {
        handle.server = await startServer(opts);
    });
    nodeTest.beforeEach(() => {
        mark = handle.server ? handle.server.output.length : 0;
    });
    nodeTest.afterEach(async (t) => {
        await closeResources();
        const s = handle.server;
        if (s && t && t.passed === false) {
            const out = s.output.slice(mark);
            t.diagnostic(`chatd output during this test${s.exit ? ` (exited ${JSON.stringify(s.exit)})` : ''}:`);
            for (const line of (out || '(none)').split('\n').slice(-100)) {
                t.diagnostic(line);
            }
        }
    });
    nodeTest.after(async () => {
        await closeResources();
        if (handle.server) {
            await stopServer(handle.server);
        }
    });
    return handle;
}

/**
 * Registers n users, connects each (with the transport options), and has the first create
 * a room of the given type with the others as participants (none with members: false) and
 * the given settings. Returns { users, sockets, room }.
 */
async function roomWithMembers(h, transportOpts, n = 2, type = 'group', { settings, members = true } = {}) {
    const users = [];
    const sockets = [];
    for (let i = 0; i < n; i++) {
        users.push(await h.register());
    }
    for (const u of users) {
        sockets.push(await h.connect(u.token, transportOpts));
    }
    const ack = await emitAck(sockets[0], 'room:create', {
        name: uniqueName('room'),
        type,
        participants: members ? users.slice(1).map((u) => u.user.id) : [],
        ...(settings && { settings }),
    });
    assertAckOk(ack, 'room:create');
    return { users, sockets, room: ack.room };
}

/** roomWithMembers for a group room with settings, on the default transports. */
function roomOf(server, n, settings = {}, { members = true } = {}) {
    return roomWithMembers(server, {}, n, 'group', { settings, members });
}

/** Waits for an event (or finds it in socket.inbox) and resolves with all of its arguments. */
function waitArgs(socket, event) {
    return withTimeout(new Promise((resolve) => {
        const hit = socket.inbox.entries.find((e) => e.event === event);
        if (hit) {
            resolve(hit.args);
            return;
        }
        socket.once(event, (...args) => resolve(args));
    }), WAIT_MS, `event ${event}`);
}

/** The samples of a Prometheus text page: { 'name' or 'name{labels}': number }. */
function parseMetrics(text) {
    const out = {};
    for (const line of text.split('\n')) {
        const m = line.match(/^([a-zA-Z_:][\w:]*(?:\{[^}]*\})?) (\S+)$/);
        if (m) {
            out[m[1]] = Number(m[2]);
        }
    }
    return out;
}

/** One sample of the server's /metrics (a server, a useServer handle or anything with a url). */
async function metric(server, name) {
    const res = await http(server, 'GET', '/metrics');
    assert.equal(res.status, 200, res.text);
    const all = parseMetrics(res.text);
    assert.ok(name in all, `/metrics has ${name}:\n${res.text}`);
    return all[name];
}

/**
 * Polls an async (or plain) check until it returns a truthy value, which it returns; throws
 * naming `what` when that does not happen within timeoutMs. With retryErrors a check that
 * throws counts as not yet (a service still starting).
 */
async function eventually(check, what, timeoutMs = WAIT_MS, { retryErrors = false, intervalMs = 50 } = {}) {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
        let v;
        try {
            v = await check();
        } catch (err) {
            if (!retryErrors) {
                throw err;
            }
            v = false;
        }
        if (v) {
            return v;
        }
        if (Date.now() > deadline) {
            throw new Error(`not true within ${timeoutMs} ms: ${what}`);
        }
        await new Promise((r) => setTimeout(r, intervalMs)); // poll interval of a bounded wait
    }
}

/** message:send; resolves with the ack, whatever it says. */
function sendAck(socket, roomId, content, clientMsgId) {
    const payload = { roomId, content };
    if (clientMsgId !== undefined) {
        payload.clientMsgId = clientMsgId;
    }
    return emitAck(socket, 'message:send', payload);
}

/** message:send that must succeed; resolves with the stored message. */
async function send(socket, roomId, content, clientMsgId) {
    const ack = await sendAck(socket, roomId, content, clientMsgId);
    assertAckOk(ack, `message:send "${String(content).slice(0, 40)}" to ${roomId}`);
    return ack.message;
}

/** `it` with the suite's backstop timeout. */
function test(name, fn) {
    return nodeTest.it(name, { timeout: TEST_TIMEOUT_MS }, fn);
}

/** One describe block per client transport setting. */
function forEachTransport(title, fn) {
    for (const [label, transportOpts] of TRANSPORTS) {
        nodeTest.describe(`${title} [${label}]`, () => fn(transportOpts, label));
    }
}

/**
 * A local HTTP server standing in for a webhook or push service: it records every request as
 * { path, query, body (text), json (parsed, or undefined), headers, status, at } in `seen`;
 * answer(url, n, req) gives the status of the n-th request (1-based) to url.pathname, where
 * req is that record without its status. close() stops it.
 */
async function hookServer(answer = () => 200) {
    const httpm = require('node:http');
    const seen = [];
    const counts = {};
    const srv = httpm.createServer((req, res) => {
        let body = '';
        req.on('data', (c) => { body += c; });
        req.on('end', () => {
            const url = new URL(req.url, 'http://x');
            counts[url.pathname] = (counts[url.pathname] || 0) + 1;
            let json;
            try {
                json = JSON.parse(body);
            } catch {
                json = undefined;
            }
            const rec = { path: url.pathname, query: Object.fromEntries(url.searchParams), body,
                json, headers: req.headers, at: Date.now() };
            rec.status = answer(url, counts[url.pathname], rec);
            seen.push(rec);
            res.writeHead(rec.status, { 'content-type': 'text/plain' });
            res.end(rec.status < 300 ? 'ok' : 'no');
        });
    });
    await new Promise((resolve) => srv.listen(0, '127.0.0.1', resolve));
    return { seen, url: `http://127.0.0.1:${srv.address().port}`,
        close: () => new Promise((resolve) => srv.close(resolve)) };
}

/** Asserts a value is an integer number of milliseconds since the epoch, near now. */
function assertTimeMs(v, what, slackMs = 10 * 60 * 1000) {
    assert.equal(typeof v, 'number', `${what} is a number: ${v}`);
    assert.ok(Number.isInteger(v), `${what} is an integer (ms): ${v}`);
    assert.ok(Math.abs(v - Date.now()) < slackMs, `${what} is near now (ms since epoch): ${v}`);
}

/** GET /uploads/:id on a node (the bytes, and the JSON when the answer is an error). */
async function download(node, token, id) {
    const res = await fetch(`${node.url}/uploads/${id}`, {
        headers: token ? { authorization: `Bearer ${token}` } : {},
        signal: AbortSignal.timeout(WAIT_MS),
    });
    const body = Buffer.from(await res.arrayBuffer());
    let json = null;
    try {
        json = JSON.parse(body.toString('utf8'));
    } catch {
        /* the file */
    }
    return { status: res.status, body, json, headers: res.headers, text: body.toString('utf8').slice(0, 300) };
}

module.exports = {
    HEX24,
    NO_PAYLOAD,
    PASSWORD,
    SEP,
    TRANSPORTS,
    WAIT_MS,
    assertAckError,
    assertAckOk,
    assertErrorShape,
    assertRestError,
    assertTimeMs,
    attachInbox,
    closeResources,
    connect,
    connectError,
    decodeJwt,
    emitAck,
    eventually,
    eioGet,
    eioOpen,
    eioPost,
    forEachTransport,
    download,
    hookServer,
    http,
    makeJwt,
    metric,
    nowS,
    once,
    parseMetrics,
    randomHex24,
    rawPolling,
    rawWs,
    rawWsConnected,
    register,
    roomOf,
    roomWithMembers,
    send,
    sendAck,
    startServer,
    stopServer,
    tail,
    test,
    track,
    uniqueName,
    useServer,
    waitArgs,
    waitFor,
    withTimeout,
};

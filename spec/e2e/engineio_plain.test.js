'use strict';
// The plain Engine.IO endpoint the scripts serve (CHAT_EIO_PATH, default /engine.io/): the
// real engine.io-client in its three transport modes against a script that answers through
// chat.eio, and raw packets for what that client never sends (docs/PROTOCOL.md, "Plain
// Engine.IO for scripts").
const assert = require('node:assert/strict');
const fs = require('node:fs');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');
const { describe } = require('node:test');
const { Socket } = require('engine.io-client');
const WebSocket = require('ws');
const h = require('./helpers');
const { test, SEP, WAIT_MS } = h;

// The script under test: greets each session, echoes text and binary, closes on request,
// and remembers why each session closed so a test can ask from another session.
const SCRIPT = `
local chat = require("chat")
local closed = {}
chat.hook("eio/open", function(ev)
    chat.eio.send(ev.sid, "hello " .. ev.sid)
end)
chat.hook("eio/message", function(ev)
    if type(ev.data) ~= "string" then
        local bytes = tostring(ev.data)
        chat.eio.send(ev.sid, chat.binary(bytes:reverse()))
        return
    end
    local cmd, arg = ev.data:match("^(%S+)%s*(.*)$")
    if cmd == "close" then
        chat.eio.close(ev.sid)
    elseif cmd == "why" then
        chat.eio.send(ev.sid, "why " .. arg .. " " .. (closed[arg] or "open"))
    elseif cmd == "send" then
        local ok, err, code = chat.eio.send(arg, "to you")
        chat.eio.send(ev.sid, "send " .. tostring(ok) .. " " .. tostring(code))
    else
        chat.eio.send(ev.sid, "echo:" .. ev.data)
    end
end)
chat.hook("eio/close", function(ev)
    closed[ev.sid] = ev.reason
end)
`;

function scriptsDir() {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'chatd-eio-scripts-'));
    fs.writeFileSync(path.join(dir, 'eio_echo.lua'), SCRIPT);
    return dir;
}

const PING_INTERVAL = 800;
const PING_TIMEOUT = 600;
const srv = h.useServer({
    scripts: scriptsDir(),
    env: {
        CHAT_PING_INTERVAL_MS: String(PING_INTERVAL),
        CHAT_PING_TIMEOUT_MS: String(PING_TIMEOUT),
        CHAT_MAX_PAYLOAD: '4096',
    },
});

const EIO = '/engine.io/';

/** An engine.io-client socket with an inbox of the messages it received. */
function eioClient(opts = {}) {
    const socket = new Socket(srv.url, { path: EIO, ...opts });
    const inbox = [];
    const waiters = new Set();
    const wake = () => {
        for (const w of [...waiters]) {
            w();
        }
    };
    socket.on('message', (m) => {
        inbox.push(m);
        wake();
    });
    socket.on('close', (reason) => {
        socket.closedWith = reason;
        wake();
    });
    h.track(() => socket.close());
    socket.inbox = inbox;
    socket.next = (pred, what) => new Promise((resolve, reject) => {
        const w = () => {
            const i = inbox.findIndex(pred);
            if (i >= 0) {
                waiters.delete(w);
                clearTimeout(timer);
                resolve(inbox.splice(i, 1)[0]);
            }
        };
        const timer = setTimeout(() => {
            waiters.delete(w);
            reject(new Error(`timed out waiting for ${what}; inbox ${JSON.stringify(inbox)}`));
        }, WAIT_MS);
        waiters.add(w);
        w();
    });
    socket.opened = h.once(socket, 'open', WAIT_MS, 'engine.io-client open');
    return socket;
}

const MODES = [
    ['polling then upgrade', {}],
    ['websocket only', { transports: ['websocket'] }],
    ['polling only', { transports: ['polling'] }],
];

for (const [label, opts] of MODES) {
    describe(`engine.io-client at ${EIO} [${label}]`, () => {
        test('the script greets, echoes text and binary, and closes on request', async () => {
            const socket = eioClient(opts);
            await socket.opened;
            const hello = await socket.next((m) => typeof m === 'string' && m.startsWith('hello '),
                'the greeting from eio/open');
            assert.equal(hello, `hello ${socket.id}`, 'eio/open saw the sid the client got');

            socket.send('héllo wörld');
            assert.equal(await socket.next((m) => typeof m === 'string' && m.startsWith('echo:'),
                'the text echo'), 'echo:héllo wörld');

            const bytes = Buffer.from([0, 1, 2, 250, 255]);
            socket.send(bytes);
            const back = await socket.next((m) => typeof m !== 'string', 'the binary echo');
            assert.deepEqual(Buffer.from(back), Buffer.from([255, 250, 2, 1, 0]),
                'binary reached the script as bytes and came back as binary');

            if (opts.transports === undefined) {
                if (socket.transport.name !== 'websocket') {
                    await h.once(socket, 'upgrade', WAIT_MS, 'the upgrade to websocket');
                }
                assert.equal(socket.transport.name, 'websocket', 'the client upgraded');
                socket.send('after upgrade');
                assert.equal(await socket.next((m) => m === 'echo:after upgrade', 'echo after upgrade'),
                    'echo:after upgrade');
            }

            const sid = socket.id;
            const closed = h.once(socket, 'close', WAIT_MS, 'the close chat.eio.close sent');
            socket.send('close');
            await closed;

            // eio/close ran, with the reason, and the sid is gone
            const other = eioClient({ transports: ['websocket'] });
            await other.opened;
            other.send(`why ${sid}`);
            assert.equal(await other.next((m) => String(m).startsWith('why '), 'why'),
                `why ${sid} server close`);
            other.send(`send ${sid}`);
            assert.equal(await other.next((m) => String(m).startsWith('send '), 'send'),
                'send nil not_found', 'chat.eio.send to a closed session: nil, msg, not_found');
        });

        test('heartbeats keep an idle session open past several ping intervals', async () => {
            const socket = eioClient(opts);
            await socket.opened;
            let pings = 0;
            socket.on('ping', () => {
                pings++;
            });
            await h.eventually(() => pings >= 3, 'three pings answered');
            assert.equal(socket.readyState, 'open');
            socket.send('still');
            assert.equal(await socket.next((m) => m === 'echo:still', 'echo'), 'echo:still');
        });

        test('a client close runs eio/close with the reason', async () => {
            const socket = eioClient(opts);
            await socket.opened;
            const sid = socket.id;
            socket.close();
            const other = eioClient({ transports: ['polling'] });
            await other.opened;
            const reason = await h.eventually(async () => {
                other.send(`why ${sid}`);
                const m = await other.next((x) => String(x).startsWith(`why ${sid}`), 'why');
                return m.endsWith(' open') ? null : m.slice(`why ${sid} `.length);
            }, 'eio/close for the closed client');
            assert.match(reason, /client close|transport close/);
        });
    });
}

// ---- raw packets ------------------------------------------------------------------------

async function get(query, init = {}) {
    const res = await fetch(`${srv.url}${EIO}?${query}`, { signal: AbortSignal.timeout(WAIT_MS), ...init });
    return { status: res.status, text: await res.text() };
}

async function open() {
    const res = await get('EIO=4&transport=polling');
    assert.equal(res.status, 200, res.text);
    const [first, ...rest] = res.text.split(SEP);
    assert.equal(first[0], '0', res.text);
    return { open: JSON.parse(first.slice(1)), rest };
}

/** A keep-alive TCP connection to the server that has answered one GET /healthz. */
async function rawConnection() {
    const sock = net.connect(srv.server.port, '127.0.0.1');
    h.track(() => sock.destroy());
    let buf = '';
    sock.on('data', (d) => {
        buf += d.toString();
    });
    await h.once(sock, 'connect');
    sock.write('GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n');
    await h.eventually(() => /\r\n\r\n\{[^}]*\}/.test(buf), 'the first answer on the raw connection');
    return sock;
}

async function poll(sid, init) {
    return get(`EIO=4&transport=polling&sid=${sid}`, init);
}

async function post(sid, body) {
    const res = await fetch(`${srv.url}${EIO}?EIO=4&transport=polling&sid=${sid}`, {
        method: 'POST', body, signal: AbortSignal.timeout(WAIT_MS),
    });
    return { status: res.status, text: await res.text() };
}

/** Polls until a packet matching pred arrives (answering pings); returns it. */
async function pollFor(sid, pred, what) {
    const deadline = Date.now() + WAIT_MS;
    while (Date.now() < deadline) {
        const res = await poll(sid);
        assert.equal(res.status, 200, res.text);
        for (const p of res.text.split(SEP)) {
            if (p === '2') {
                await post(sid, '3');
            } else if (pred(p)) {
                return p;
            }
        }
    }
    throw new Error(`no ${what} within ${WAIT_MS} ms`);
}

describe(`raw Engine.IO v4 at ${EIO}`, () => {
    test('handshake: open packet fields, then the greeting', async () => {
        const { open: o, rest } = await open();
        assert.match(o.sid, /^[a-z0-9-]+\.[A-Za-z0-9_-]{20}$/);
        assert.deepEqual(o.upgrades, ['websocket']);
        assert.equal(o.pingInterval, PING_INTERVAL);
        assert.equal(o.pingTimeout, PING_TIMEOUT);
        assert.equal(o.maxPayload, 4096);
        const hello = rest.length ? rest[0] : await pollFor(o.sid, (p) => p.startsWith('4'), 'greeting');
        assert.equal(hello, `4hello ${o.sid}`);
    });

    test('payload framing: several packets in one POST, text and base64 binary, in order', async () => {
        const { open: o } = await open();
        await pollFor(o.sid, (p) => p.startsWith('4hello'), 'greeting');
        const bin = Buffer.from('abc').toString('base64');
        const res = await post(o.sid, ['4one', `b${bin}`, '4two'].join(SEP));
        assert.equal(res.status, 200, res.text);
        const got = [];
        while (got.length < 3) {
            const r = await poll(o.sid);
            assert.equal(r.status, 200, r.text);
            got.push(...r.text.split(SEP).filter((p) => p !== '2'));
        }
        assert.deepEqual(got, ['4echo:one', `b${Buffer.from('cba').toString('base64')}`, '4echo:two']);
    });

    test('error answers: version, transport, unknown sid, bad method, bad packet', async () => {
        const cases = [
            ['EIO=3&transport=polling', 5],
            ['EIO=4&transport=carrier-pigeon', 0],
            ['EIO=4&transport=polling&sid=nope.nopenopenopenopenope', 1],
        ];
        for (const [q, code] of cases) {
            const r = await get(q);
            assert.equal(r.status, 400, `${q}: ${r.text}`);
            assert.equal(JSON.parse(r.text).code, code, `${q}: ${r.text}`);
        }
        const r = await fetch(`${srv.url}${EIO}?EIO=4&transport=polling`, { method: 'POST', body: '4x' });
        assert.equal(r.status, 400);
        assert.equal((await r.json()).code, 2, 'a handshake must be a GET');

        const { open: o } = await open();
        const bad = await post(o.sid, '9nonsense');
        assert.equal(bad.status, 400, bad.text);
        assert.equal((await poll(o.sid)).status, 400, 'a bad packet ends the session');
    });

    test('a Socket.IO session is not usable here, nor the other way round', async () => {
        const sio = await srv.eioOpen(); // /socket.io/
        const r = await poll(sio.sid);
        assert.equal(r.status, 400);
        assert.equal(JSON.parse(r.text).code, 1);
        const { open: o } = await open();
        const back = await srv.eioGet(o.sid);
        assert.equal(back.status, 400, back.text);
    });

    test('duplicate poll: one GET is refused, the held one is answered with a close', async () => {
        const { open: o } = await open();
        await pollFor(o.sid, (p) => p.startsWith('4hello'), 'greeting');
        // whichever reaches the server first is held; the other overlaps it
        const both = await Promise.all([poll(o.sid), poll(o.sid)]);
        const refused = both.filter((r) => r.status === 400);
        const held = both.filter((r) => r.status === 200);
        assert.equal(refused.length, 1, JSON.stringify(both));
        assert.equal(held.length, 1, JSON.stringify(both));
        assert.ok(held[0].text.split(SEP).includes('1'), `the held poll got the close packet: ${held[0].text}`);
        assert.equal((await poll(o.sid)).status, 400, 'the session is over');
    });

    test('cancelled poll: the session ends (eio/close) and its sid is refused after', async () => {
        const { open: o } = await open();
        await pollFor(o.sid, (p) => p.startsWith('4hello'), 'greeting');
        // The poll goes out on a raw connection that has already answered one request, so
        // the server has accepted it; a request on a second connection, answered after, is
        // read after the poll (it waits to be accepted). Then the poll is surely held.
        const raw = await rawConnection();
        raw.write(`GET ${EIO}?EIO=4&transport=polling&sid=${o.sid} HTTP/1.1\r\nHost: x\r\n\r\n`);
        assert.equal((await srv.http('GET', '/healthz')).status, 200);
        raw.destroy(); // the client gives up on its poll
        const watcher = eioClient({ transports: ['websocket'] });
        await watcher.opened;
        const reason = await h.eventually(async () => {
            watcher.send(`why ${o.sid}`);
            const m = await watcher.next((x) => String(x).startsWith(`why ${o.sid}`), 'why');
            return m.endsWith(' open') ? null : m.slice(`why ${o.sid} `.length);
        }, 'eio/close after the cancelled poll');
        assert.equal(reason, 'transport close');
        const after = await poll(o.sid);
        assert.equal(after.status, 400, after.text);
    });

    test('ping timeout: a client that never answers is closed, and eio/close says so', async () => {
        const ws = new WebSocket(`${srv.server.wsUrl}${EIO}?EIO=4&transport=websocket`);
        h.track(() => ws.terminate());
        const msgs = [];
        ws.on('message', (d) => msgs.push(d.toString()));
        await h.eventually(() => msgs.length > 0, 'open packet');
        const sid = JSON.parse(msgs[0].slice(1)).sid;
        await h.eventually(() => msgs.includes('2'), 'a ping');
        await h.once(ws, 'close', PING_INTERVAL + PING_TIMEOUT + WAIT_MS, 'the ping timeout close');
        const watcher = eioClient({ transports: ['websocket'] });
        await watcher.opened;
        watcher.send(`why ${sid}`);
        assert.equal(await watcher.next((m) => String(m).startsWith('why '), 'why'), `why ${sid} ping timeout`);
    });

    test('websocket upgrade by hand: 2probe, 3probe, the held poll gets a noop, 5', async () => {
        const { open: o } = await open();
        await pollFor(o.sid, (p) => p.startsWith('4hello'), 'greeting');
        const held = poll(o.sid);
        const ws = new WebSocket(`${srv.server.wsUrl}${EIO}?EIO=4&transport=websocket&sid=${o.sid}`);
        h.track(() => ws.terminate());
        const msgs = [];
        ws.on('message', (d) => msgs.push(d.toString()));
        await h.once(ws, 'open');
        ws.send('2probe');
        await h.eventually(() => msgs.includes('3probe'), '3probe');
        const r = await held;
        assert.equal(r.status, 200);
        assert.equal(r.text, '6', 'the held poll is released with a noop');
        ws.send('5');
        ws.send('4over ws');
        await h.eventually(() => msgs.includes('4echo:over ws'), 'echo over the upgraded websocket');
    });
});

describe('CHAT_EIO_PATH', () => {
    const other = h.useServer({ scripts: scriptsDir(), env: { CHAT_EIO_PATH: '/rt' } });
    test('moves the endpoint; the default path is then not served', async () => {
        const socket = new Socket(other.url, { path: '/rt/', transports: ['websocket'] });
        h.track(() => socket.close());
        const hello = h.once(socket, 'message', WAIT_MS, 'the greeting');
        await h.once(socket, 'open');
        assert.equal((await hello)[0], `hello ${socket.id}`);
        const res = await other.http('GET', '/engine.io/?EIO=4&transport=polling');
        assert.equal(res.status, 404, res.text);
    });
});

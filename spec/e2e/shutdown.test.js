'use strict';
// The graceful stop (SIGTERM): /readyz 503 and no new sessions while the calls in flight
// finish; every ack a client got is for a stored message and every stored message was
// acknowledged; websocket clients get the Engine.IO close packet and a close frame 1001, a
// held long-poll its answer; the process exits within CHAT_SHUTDOWN_TIMEOUT_MS, cutting what
// is left (logged). Each test starts its own chatd, since it ends it.
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { describe } = require('node:test');
const h = require('./helpers');
const { test, SEP, WAIT_MS } = h;

// message/before: "slow <ms>" is held in the hook for that long, after telling the sender, so
// a test knows the write is in flight before it sends SIGTERM.
const SCRIPT = `
local chat = require("chat")
chat.hook("message/before", function(ev)
    local ms = tonumber(ev.message.content:match("^slow (%d+)$"))
    if ms then
        chat.emit_socket(ev.socket.id, "slow:started", { content = ev.message.content })
        chat.timer.sleep(ms)
    end
end)
`;

function scriptsDir() {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'chatd-stop-scripts-'));
    fs.writeFileSync(path.join(dir, 'slow.lua'), SCRIPT);
    return dir;
}

const started = new Set();
require('node:test').afterEach(async () => {
    await h.closeResources();
    for (const s of started) {
        if (!s.exit) {
            s.proc.kill('SIGKILL');
            await s.exited;
        }
    }
    started.clear();
});

async function start(opts = {}) {
    const server = await h.startServer(opts);
    started.add(server);
    return server;
}

/** The fixture helpers (register, connect) bound to one server, as roomWithMembers wants. */
function bound(server) {
    return {
        register: (...a) => h.register(server, ...a),
        connect: (...a) => h.connect(server, ...a),
    };
}

/** Waits for the exit (after the SIGTERM a test sent) and asserts it was clean. */
async function exited(server) {
    await h.once({ once: (e, f) => server.exited.then(f) }, 'exit', 30000, 'chatd exit');
    await h.stopServer(server, { keepData: true }); // the exit checks: code 0, no sanitizer report
}

/** SIGTERM; resolves with the milliseconds until the process exited, asserting a clean exit. */
async function term(server) {
    const t0 = Date.now();
    server.proc.kill('SIGTERM');
    await exited(server);
    return Date.now() - t0;
}

/** Every message of a room, oldest first, through REST. */
async function allMessages(server, token, roomId) {
    const out = [];
    let before;
    for (;;) {
        const q = `/messages?roomId=${roomId}&limit=100${before ? `&before=${before}` : ''}`;
        const res = await h.http(server, 'GET', q, undefined, token);
        assert.equal(res.status, 200, res.text);
        out.push(...res.body.messages);
        if (!res.body.nextBefore || res.body.messages.length === 0) {
            break;
        }
        before = res.body.nextBefore;
    }
    return out.reverse();
}

/** A raw polling Socket.IO session connected with token; poll() holds a GET. */
async function rawPollingConnected(server, token) {
    const s = await h.rawPolling(server);
    const res = await s.post(`40${JSON.stringify({ token })}`);
    assert.equal(res.status, 200, res.text);
    await s.next((p) => p.startsWith('40'));
    return s;
}

describe('graceful stop on SIGTERM', () => {
    test('an in-flight write holds the drain: readyz 503, no new sessions, then ack, close packet, 1001', async () => {
        const server = await start({
            scripts: scriptsDir(),
            env: { CHAT_LUA_HOOK_WAIT_MS: '60000', CHAT_SHUTDOWN_TIMEOUT_MS: '20000' },
        });
        const { users, room } = await h.roomWithMembers(bound(server), { transports: ['websocket'] }, 2);
        assert.equal((await h.http(server, 'GET', '/readyz')).status, 200);

        // a websocket client whose message is held in the hook, and a polling member
        const ws = await h.rawWsConnected(server, users[0].token);
        const poller = await rawPollingConnected(server, users[1].token);
        const HOLD_MS = 3000;
        ws.send(`420${JSON.stringify(['message:send', { roomId: room.id, content: `slow ${HOLD_MS}`, clientMsgId: 'held-1' }])}`);
        await ws.next((m) => typeof m === 'string' && m.startsWith('42["slow:started"'));
        // the poller holds a GET (answered by the stop, or by the message it will get)
        const polls = (async () => {
            const answers = [];
            for (;;) {
                const r = await h.eioGet(server, poller.sid, 30000);
                answers.push(r);
                if (r.status !== 200 || r.packets.includes('1')) {
                    return answers;
                }
                if (r.packets.includes('2')) {
                    await poller.post('3');
                }
            }
        })();

        server.proc.kill('SIGTERM');
        const t0 = Date.now();
        const ready = await h.eventually(async () => {
            const r = await h.http(server, 'GET', '/readyz');
            return r.status === 503 ? r : null;
        }, '/readyz answering 503 once SIGTERM arrived');
        h.assertErrorShape(ready.body, 'unavailable');
        // no new session while draining, over either transport
        const hs = await h.http(server, 'GET', '/socket.io/?EIO=4&transport=polling');
        assert.equal(hs.status, 503, hs.text);
        const late = h.rawWs(server);
        const lateClose = await late.waitClosed();
        assert.notEqual(lateClose.code, 1006, 'a refused websocket is closed with a code');
        assert.ok(Date.now() - t0 < HOLD_MS, 'these checks ran while the write was held (else raise HOLD_MS)');
        assert.equal(ws.closeInfo, null, 'the sender is not closed while its write is in flight');

        // the write finishes and is acknowledged, then the close packet, then 1001
        const ack = await ws.next((m) => typeof m === 'string' && m.startsWith('430'), HOLD_MS + WAIT_MS);
        const answer = JSON.parse(ack.slice(3))[0];
        h.assertAckOk(answer, 'the held message:send');
        const closePacket = await ws.next((m) => m === '1');
        assert.equal(closePacket, '1', 'the Engine.IO close packet');
        const info = await ws.waitClosed();
        assert.equal(info.code, 1001, `websocket close code: ${JSON.stringify(info)}`);
        assert.ok(ws.received.indexOf(ack) < ws.received.indexOf('1'), 'the ack came before the close');

        // the polling member: every GET answered 200, the last with the close packet
        const answers = await polls;
        for (const r of answers) {
            assert.equal(r.status, 200, `a held poll is answered, not cut: ${r.status} ${r.text}\n` +
                `${JSON.stringify(answers)}\n${h.tail(server.output, 20)}`);
        }
        assert.ok(answers.at(-1).packets.includes('1'), `last poll: ${answers.at(-1).text}`);
        assert.ok(answers.some((r) => r.packets.some((p) => p.includes(answer.message.id))),
            'the poller got the message before the close');

        await exited(server);
        console.log(`# drain with a ${HOLD_MS} ms write in flight: exited ${Date.now() - t0} ms after SIGTERM`);
        assert.match(server.output, /"event":"stopped","msg":"stopped cleanly"/);

        // after a restart the acknowledged message is there
        const again = await start({ dataDir: server.dataDir, secret: server.secret });
        const stored = await allMessages(again, users[0].token, room.id);
        assert.deepEqual(stored.map((m) => m.id), [answer.message.id]);
        await h.stopServer(again);
    });

    test('clients sending while SIGTERM arrives: acked == stored, clean closes, exit 0', async () => {
        const server = await start();
        const modes = [
            { transports: ['websocket'] }, { transports: ['polling'] }, {}, { transports: ['websocket'] },
        ];
        const { users, sockets, room } = await h.roomWithMembers(bound(server), modes[0], modes.length);
        for (let i = 1; i < modes.length; i++) {
            sockets[i].disconnect();
            sockets[i] = await h.connect(server, users[i].token, modes[i]);
        }
        const acked = new Map(); // clientMsgId -> message id
        const sent = new Set();
        let total = 0;
        let signalled = false;
        const SIGNAL_AFTER = 40;
        const senders = sockets.map(async (socket, i) => {
            for (let n = 0; socket.connected; n++) {
                const clientMsgId = `c${i}-${n}`;
                sent.add(clientMsgId);
                let ack;
                try {
                    ack = await socket.timeout(WAIT_MS).emitWithAck('message:send',
                        { roomId: room.id, content: `m ${clientMsgId}`, clientMsgId });
                } catch {
                    return; // disconnected before the ack: not acknowledged
                }
                if (ack && ack.ok) {
                    acked.set(clientMsgId, ack.message.id);
                } else {
                    assert.equal(ack.error.code, 'unavailable', JSON.stringify(ack));
                }
                if (++total === SIGNAL_AFTER && !signalled) {
                    signalled = true;
                    server.proc.kill('SIGTERM');
                }
            }
        });
        const disconnects = sockets.map((s) => h.once(s, 'disconnect', 30000, 'disconnect'));
        await Promise.all(senders);
        const reasons = (await Promise.all(disconnects)).map(([r]) => r);
        for (const r of reasons) {
            assert.equal(r, 'transport close', `each client was closed by the server: ${reasons}`);
        }
        await exited(server);
        console.log(`# ${acked.size} acked of ${sent.size} sent by ${sockets.length} clients`);
        assert.ok(acked.size >= SIGNAL_AFTER);

        const again = await start({ dataDir: server.dataDir, secret: server.secret });
        const stored = await allMessages(again, users[0].token, room.id);
        const storedIds = new Map(stored.map((m) => [m.clientMsgId, m.id]));
        for (const [cid, id] of acked) {
            assert.equal(storedIds.get(cid), id, `acked ${cid} is stored under the id the ack gave`);
        }
        for (const cid of storedIds.keys()) {
            assert.ok(acked.has(cid), `stored ${cid} was acknowledged to its sender\n${h.tail(server.output, 30)}`);
        }
        await h.stopServer(again);
    });

    test('the bound: a write held past CHAT_SHUTDOWN_TIMEOUT_MS is cut and logged, exit 0', async () => {
        const server = await start({
            scripts: scriptsDir(),
            env: { CHAT_LUA_HOOK_WAIT_MS: '120000', CHAT_SHUTDOWN_TIMEOUT_MS: '1000' },
        });
        const { users, room } = await h.roomWithMembers(bound(server), { transports: ['websocket'] }, 1);
        const ws = await h.rawWsConnected(server, users[0].token);
        const HOLD_MS = 60000;
        ws.send(`420${JSON.stringify(['message:send', { roomId: room.id, content: `slow ${HOLD_MS}` }])}`);
        await ws.next((m) => typeof m === 'string' && m.startsWith('42["slow:started"'));
        const ms = await term(server);
        console.log(`# bound 1000 ms, write held ${HOLD_MS} ms: exited after ${ms} ms`);
        assert.ok(ms < HOLD_MS, 'the stop did not wait for the held write');
        assert.match(server.output, /"event":"stop_cut"/, 'what was cut is logged');
        assert.ok(!ws.received.some((m) => typeof m === 'string' && m.startsWith('430')),
            'nothing was acknowledged for the write that was cut');
        const info = await ws.waitClosed();
        assert.notEqual(info.code, 1006, `even cut, the websocket gets a close frame: ${JSON.stringify(info)}`);
    });
});

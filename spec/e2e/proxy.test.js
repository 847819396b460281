'use strict';
// Behind a reverse proxy (CHAT_TRUST_PROXY=1) the client address that per-IP policies see is
// the last X-Forwarded-For entry; without it, a client cannot pick its own address.
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { describe } = require('node:test');
const h = require('./helpers');
const { test, emitAck } = h;

const scripts = fs.mkdtempSync(path.join(os.tmpdir(), 'chatd-proxy-'));
fs.writeFileSync(path.join(scripts, 'whoami.lua'), `
local chat = require "chat"
chat.hook("event/whoami", function(ev) return { ip = ev.socket.ip } end)
`);
const forwarded = { extraHeaders: { 'X-Forwarded-For': '203.0.113.7, 198.51.100.23' } };

describe('client address behind a trusted proxy', () => {
    const srv = h.useServer({ scripts, env: { CHAT_TRUST_PROXY: '1' } });
    for (const transports of [['websocket'], ['polling']]) {
        test(`the last X-Forwarded-For entry is the address (${transports[0]})`, async () => {
            const { token } = await srv.register();
            const s = await srv.connect(token, { transports, ...forwarded });
            assert.deepEqual(await emitAck(s, 'whoami', {}), { ip: '198.51.100.23' });
        });
    }
});

describe('client address without a trusted proxy', () => {
    const srv = h.useServer({ scripts });
    test('X-Forwarded-For from a client is ignored', async () => {
        const { token } = await srv.register();
        const s = await srv.connect(token, { transports: ['websocket'], ...forwarded });
        assert.deepEqual(await emitAck(s, 'whoami', {}), { ip: '127.0.0.1' });
    });
});

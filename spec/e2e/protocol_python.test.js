'use strict';
// The same protocol points with python-socketio (PyPI, unmodified; tools/test.sh installs it
// into spec/e2e/.venv from py/requirements.txt): events and acks with several arguments,
// binary values nested in them both ways, and authentication as a policy (an opaque session
// token, an anonymous visitor, refusals with the policy's message and data). The client runs
// py/sio_client.py and prints what it saw; the assertions are here.
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { execFile } = require('node:child_process');
const h = require('./helpers');
const { protocolScripts } = require('./protocol_scripts');
const { test } = h;

const PYTHON = path.join(__dirname, '.venv', 'bin', 'python');
const CLIENT = path.join(__dirname, 'py', 'sio_client.py');

const srv = h.useServer({ scripts: protocolScripts() });

function runPython(scenario, transport, opts) {
    assert.ok(fs.existsSync(PYTHON), `python-socketio is not installed: run tools/test.sh, or ` +
        `python3 -m venv spec/e2e/.venv && spec/e2e/.venv/bin/pip install -r spec/e2e/py/requirements.txt`);
    return new Promise((resolve, reject) => {
        execFile(PYTHON, [CLIENT, scenario, srv.url, transport, JSON.stringify(opts)],
            { timeout: 60000 }, (err, stdout, stderr) => {
                if (err) {
                    reject(new Error(`python client failed (${err.message}):\n${stderr}\n${stdout}`));
                    return;
                }
                resolve(JSON.parse(stdout.trim().split('\n').pop()));
            });
    });
}

const B = (s) => ({ bytes: [...Buffer.from(s)] });

for (const transport of ['both', 'websocket', 'polling']) {
    test(`python-socketio [${transport}]: several arguments and binary values, both ways`, async () => {
        const { sockets: [a], users: [u], room } = await h.roomWithMembers(srv, {}, 2);
        a.disconnect();
        const out = await runPython('args', transport, { token: u.token, roomId: room.id });
        assert.deepEqual(out.echo, [1, '2', { three: [true] }]);
        assert.equal(out.echo_one, 'only');
        assert.deepEqual(out.inspect, { n: 3, data: { a: 1 }, kinds: ['table', 'string', 'number'] });
        assert.deepEqual(out.reverse, [{ bytes: [3, 2, 1] }, 'text',
            { nested: [B('ba'), { deeper: { bytes: [8, 9] } }] }]);
        assert.deepEqual(out.blobs_ack, [B('ack-bytes'), { more: { bytes: [0] } }]);
        assert.deepEqual(out.blobs, ['head',
            { a: { bytes: [1, 2] }, list: [{ bytes: [3] }, { deep: { bytes: [] } }] }, { bytes: [255] }]);
        assert.deepEqual(out.fanout_ack, { ok: true });
        assert.deepEqual(out.to_socket, [1, 'two', { three: [true] }]);
        assert.deepEqual(out.to_user, ['a', null, 3]);
        assert.deepEqual(out.to_room, [{ room: room.id }, 42]);
    });

    test(`python-socketio [${transport}]: authentication decided by the policy`, async () => {
        const { token, user } = await srv.register();
        const out = await runPython('auth', transport, { token });
        assert.deepEqual(out.session_whoami, { user: user.id, namespace: '/' });
        assert.deepEqual(out.guest_whoami, { user: 'anonymous', namespace: '/' });
        h.assertAckError(out.guest_create, 'unauthorized');
        assert.deepEqual(out.refused_session,
            [{ message: 'that is not a session token', data: { reason: 'malformed' } }]);
        assert.deepEqual(out.refused_token, [{ message: 'unauthorized' }]);
        assert.deepEqual(out.refused_echo, [{ message: 'echo',
            data: { auth: { case: 'echo', token: 't', n: [1, null] }, namespace: '/' } }]);
    });
}

'use strict';
// Scripts from a Kubernetes ConfigMap volume: kubelet lays the folder out as
//   ..2026_12_01_00_00_00.123/<files>     the current version of every file
//   ..data -> ..2026_12_01_00_00_00.123   the version in use
//   policy.lua -> ..data/policy.lua       what chatd lists and loads
// and applies an edit by writing a new timestamped folder, pointing a new symlink at it and
// renaming that over ..data (one atomic swap), then deleting the old folder. No file named
// *.lua changes in the watched folder itself, so chatd must react to the ..data swap: the
// new policy acts for connected clients, with no reconnect. (deploy/k8s mounts the scripts
// this way; tools/test-containers.sh plays it in podman too.)
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { describe } = require('node:test');
const h = require('./helpers');
const { test, emitAck } = h;

const policy = (version) => `local chat = require "chat"
chat.hook("event/whichpolicy", function(ev) return { version = "${version}" } end)
`;

let stamp = 0;
/** Writes a kubelet-style version folder and makes ..data point at it, as kubelet does. */
function kubeletWrite(dir, files) {
    const version = `..2026_12_01_00_00_0${stamp++}.${process.pid}`;
    fs.mkdirSync(path.join(dir, version));
    for (const [name, text] of Object.entries(files)) {
        fs.writeFileSync(path.join(dir, version, name), text);
    }
    const data = path.join(dir, '..data');
    const old = fs.existsSync(data) ? fs.readlinkSync(data) : null;
    fs.symlinkSync(version, path.join(dir, '..data_tmp'));
    fs.renameSync(path.join(dir, '..data_tmp'), data);
    for (const name of Object.keys(files)) {
        const link = path.join(dir, name);
        if (!fs.existsSync(link)) {
            fs.symlinkSync(path.join('..data', name), link);
        }
    }
    if (old) {
        fs.rmSync(path.join(dir, old), { recursive: true });
    }
}

const scripts = fs.mkdtempSync(path.join(os.tmpdir(), 'chatd-configmap-'));
kubeletWrite(scripts, { 'policy.lua': policy('one') });

describe('scripts from a ConfigMap volume', () => {
    const srv = h.useServer({ scripts });

    test('a ..data symlink swap reloads the scripts for connected clients, no reconnect', async () => {
        const { token } = await srv.register();
        const s = await srv.connect(token, { transports: ['websocket'] });
        const id = s.id;
        let disconnects = 0;
        s.on('disconnect', () => disconnects++);
        assert.deepEqual(await emitAck(s, 'whichpolicy', {}), { version: 'one' });

        kubeletWrite(scripts, { 'policy.lua': policy('two') });
        const got = await h.eventually(async () => {
            const ack = await emitAck(s, 'whichpolicy', {});
            return ack.version === 'two' && ack;
        }, 'the swapped-in policy to answer');
        assert.deepEqual(got, { version: 'two' }, 'the swapped-in policy answers');
        assert.equal(s.id, id, 'the same socket');
        assert.equal(disconnects, 0, 'no reconnect');
        assert.match(srv.server.output, /scripts_changed/);
    });
});

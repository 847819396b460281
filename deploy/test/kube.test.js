'use strict';
// deploy/k8s played by podman (tools/test-containers.sh: `podman kube play` of the Deployment
// with its ConfigMaps, one replica on the host network): the pod is ready, the scripts come
// from the ConfigMap, and an edit of the scripts ConfigMap, applied to the mounted folder the
// way kubelet does it (a new timestamped folder, a new ..data symlink renamed over the old
// one), changes the policy for clients already connected, without dropping them.
// Env: KUBE_URL (the pod's chatd), SCRIPTS_VOLUME (the ConfigMap volume's folder on the host).
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { describe, after } = require('node:test');
const h = require('../../spec/e2e/helpers');
const { test, emitAck, assertAckOk, assertAckError } = h;

const URL_ = process.env.KUBE_URL;
const POD = { url: URL_, wsUrl: URL_ && URL_.replace(/^http/, 'ws') };
const DIR = process.env.SCRIPTS_VOLUME;
const MARK = 'kubelet-swap-test';
// the edit: moderation.lua refuses one more word (put first: the file ends with a return)
const EDIT = `local chat = require "chat"
chat.hook("message/before", function(ev)
    if ev.message.content:find("${MARK}", 1, true) then
        return chat.reject("forbidden", "refused by the edited ConfigMap")
    end
end)

`;

const metric = (name) => h.metric(POD, name);
// h.eventually with this file's argument order and a 100 ms poll
const waitUntil = (what, fn, ms = 10000) => h.eventually(fn, what, ms, { intervalMs: 100 });

let stamp = 0;
/** kubelet's atomic writer: files into a new ..<timestamp> folder, then the ..data swap. */
function kubeletWrite(files) {
    const version = `..2026_12_01_00_00_0${stamp++}.${process.pid}`;
    fs.mkdirSync(path.join(DIR, version), { mode: 0o755 });
    for (const [name, text] of Object.entries(files)) {
        fs.writeFileSync(path.join(DIR, version, name), text, { mode: 0o644 });
    }
    const data = path.join(DIR, '..data');
    const old = fs.existsSync(data) ? fs.readlinkSync(data) : null;
    fs.symlinkSync(version, path.join(DIR, '..data_tmp'));
    fs.renameSync(path.join(DIR, '..data_tmp'), data);
    if (old) {
        fs.rmSync(path.join(DIR, old), { recursive: true });
    }
}

describe('deploy/k8s in podman kube play', { timeout: 120000 }, () => {
    after(() => h.closeResources());

    test('the pod is ready and runs the ConfigMap\'s scripts', async () => {
        assert.ok(URL_ && DIR, 'run by tools/test-containers.sh');
        await waitUntil('/readyz', async () => {
            try {
                return (await fetch(`${URL_}/readyz`, { signal: AbortSignal.timeout(2000) })).status === 200;
            } catch {
                return false;
            }
        }, 60000);
        assert.equal((await h.http(POD, 'GET', '/healthz')).status, 200);
        const names = fs.readdirSync(DIR).filter((n) => n.endsWith('.lua')).sort();
        assert.ok(names.includes('bot-help.lua') && names.includes('moderation.lua'), names.join());
        // the help bot, a file of the ConfigMap, answers in a room
        const { sockets: [a], room } = await h.roomWithMembers(
            { register: (...x) => h.register(POD, ...x), connect: (t, o) => h.connect(POD, t, o) },
            { transports: ['websocket'] }, 2);
        assertAckOk(await emitAck(a, 'message:send', { roomId: room.id, content: '/rules' }), '/rules');
        await h.waitFor(a, 'message:new', (m) => m.roomId === room.id && /Be kind/.test(m.content));
    });

    test('an edit of the scripts ConfigMap reaches the running pod without a dropped connection', async () => {
        // as kubelet mounts it: the files live in ..<timestamp>/, the names are symlinks
        const files = Object.fromEntries(fs.readdirSync(DIR).filter((n) => n.endsWith('.lua'))
            .map((n) => [n, fs.readFileSync(path.join(DIR, n), 'utf8')]));
        let reloads = await metric('chatd_scripts_reloads_total');
        kubeletWrite(files);
        for (const name of Object.keys(files)) {
            const tmp = path.join(DIR, `.${name}.link`);
            fs.symlinkSync(path.join('..data', name), tmp);
            fs.renameSync(tmp, path.join(DIR, name));
        }
        const settled = await waitUntil('the reload after the layout change',
            async () => (await metric('chatd_scripts_reloads_total')) > reloads && metric('chatd_scripts_reloads_total'));
        reloads = settled;

        const { sockets: [a, b], room } = await h.roomWithMembers(
            { register: (...x) => h.register(POD, ...x), connect: (t, o) => h.connect(POD, t, o) },
            { transports: ['websocket'] }, 2);
        const ids = [a.id, b.id];
        let drops = 0;
        a.on('disconnect', () => drops++);
        b.on('disconnect', () => drops++);
        const before = await emitAck(a, 'message:send', { roomId: room.id, content: `${MARK} before the edit` });
        assertAckOk(before, 'the old policy lets it through');
        await h.waitFor(b, 'message:new', (m) => m.id === before.message.id);

        // the edit: only ..data changes in the folder chatd watches
        const version = await metric('chatd_scripts_version');
        kubeletWrite({ ...files, 'moderation.lua': EDIT + files['moderation.lua'] });
        await waitUntil('the new scripts version', async () => (await metric('chatd_scripts_version')) > version);
        assert.ok(await metric('chatd_scripts_reloads_total') > reloads);

        const refused = await emitAck(a, 'message:send', { roomId: room.id, content: `${MARK} after the edit` });
        assertAckError(refused, 'forbidden');
        const fine = await emitAck(b, 'message:send', { roomId: room.id, content: 'other words still pass' });
        assertAckOk(fine, 'the rest of the policy is unchanged');
        await h.waitFor(a, 'message:new', (m) => m.id === fine.message.id);
        assert.deepEqual([a.id, b.id], ids, 'the same sockets');
        assert.equal(drops, 0, 'no connection dropped');
        assert.ok(a.connected && b.connected);
    });
});

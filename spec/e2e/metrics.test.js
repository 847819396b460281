'use strict';
// /metrics answers an operator's questions: how long a message takes to be stored and
// acknowledged, how long store calls and hooks take, how far broadcasts reach, which errors
// clients get, what the process uses and which build runs. The page passes
// `promtool check metrics`, no two families share a name, and the alert rules and Grafana
// dashboard in deploy/ name only metrics the page has.
const assert = require('node:assert/strict');
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const h = require('./helpers');
const { test, send } = h;

const REPO = path.join(__dirname, '..', '..');
const scripts = fs.mkdtempSync(path.join(os.tmpdir(), 'chatd-metrics-scripts-'));
fs.writeFileSync(path.join(scripts, 'count.lua'),
    'local chat = require "chat"\nchat.hook("message/before", function(ev) return nil end)\n');
const srv = h.useServer({ scripts });

function promtool(args, input) {
    const r = spawnSync('promtool', args, { input, encoding: 'utf8' });
    assert.ok(!r.error, `promtool runs (Debian package prometheus; tools/deps.sh installs it): ${r.error}`);
    return r;
}

/** {name -> {type, samples: [{name, labels, value}]}} from the text format. */
function parse(text) {
    const families = new Map();
    let current = null;
    for (const line of text.split('\n')) {
        let m;
        if ((m = line.match(/^# TYPE (\S+) (\S+)$/))) {
            assert.ok(!families.has(m[1]), `one TYPE line for ${m[1]}`);
            current = { name: m[1], type: m[2], samples: [] };
            families.set(m[1], current);
        } else if (line && !line.startsWith('#')) {
            m = line.match(/^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/);
            assert.ok(m, `a sample line: ${line}`);
            const labels = {};
            for (const [, k, v] of (m[2] || '').matchAll(/([a-zA-Z_]\w*)="((?:[^"\\]|\\.)*)"/g)) {
                labels[k] = v;
            }
            assert.ok(current && m[1].startsWith(current.name), `${m[1]} follows its TYPE line`);
            current.samples.push({ name: m[1], labels, value: Number(m[3]) });
        }
    }
    return families;
}

async function page() {
    const res = await srv.http('GET', '/metrics');
    assert.equal(res.status, 200, res.text);
    assert.match(res.headers.get('content-type'), /^text\/plain; version=0\.0\.4/);
    return res.text;
}

function value(families, name, labels = {}) {
    for (const f of families.values()) {
        for (const s of f.samples) {
            if (s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v)) {
                return s.value;
            }
        }
    }
    return undefined;
}

test('the page passes promtool check metrics and no two families share a name', async () => {
    const text = await page();
    const r = promtool(['check', 'metrics'], text);
    assert.equal(r.status, 0, `promtool check metrics:\n${r.stdout}${r.stderr}`);
    assert.equal(`${r.stdout}${r.stderr}`.trim(), '', 'no lint findings');
    // OpenMetrics names a counter's family without _total: x and x_total are one family
    const families = parse(text);
    const seen = new Map();
    for (const f of families.values()) {
        const names = [f.name];
        if (f.type === 'counter') names.push(f.name.replace(/_total$/, ''));
        if (f.type === 'histogram') names.push(`${f.name}_bucket`, `${f.name}_sum`, `${f.name}_count`);
        for (const n of names) {
            assert.ok(!seen.has(n), `${n} is claimed by both ${seen.get(n)} and ${f.name}`);
            seen.set(n, f.name);
        }
    }
});

test('README\'s metrics table names every chatd_ family the page serves', async () => {
    const readme = fs.readFileSync(path.join(REPO, 'README.md'), 'utf8');
    const missing = [...parse(await page()).keys()]
        .filter((name) => name.startsWith('chatd_') && !readme.includes(`\`${name}`));
    assert.deepEqual(missing, [], 'documented in README.md\'s /metrics table');
});

test('a message:send shows in the ack latency, store, hook and broadcast histograms', async () => {
    const before = parse(await page());
    const { sockets, room } = await h.roomWithMembers(srv, {}, 3);
    const n = 5;
    for (let i = 0; i < n; i++) {
        await send(sockets[0], room.id, `m${i}`);
    }
    const after = parse(await page());
    const count = (f, name, labels) => (value(f, name, labels) || 0);
    for (const stage of ['stored', 'acknowledged']) {
        assert.equal(count(after, 'chatd_message_latency_seconds_count', { stage }) -
            count(before, 'chatd_message_latency_seconds_count', { stage }), n, `stage ${stage}`);
        assert.equal(count(after, 'chatd_message_latency_seconds_bucket', { stage, le: '+Inf' }),
            count(after, 'chatd_message_latency_seconds_count', { stage }));
    }
    assert.ok(count(after, 'chatd_store_call_seconds_count', { op: 'message_insert' }) -
        count(before, 'chatd_store_call_seconds_count', { op: 'message_insert' }) >= n);
    assert.ok(count(after, 'chatd_store_call_seconds_count', { op: 'room_create' }) >= 1);
    assert.ok(count(after, 'chatd_hook_seconds_count', { hook: 'message/before' }) -
        count(before, 'chatd_hook_seconds_count', { hook: 'message/before' }) >= n);
    // each message reaches the two other members' sockets on this node
    assert.ok(count(after, 'chatd_broadcast_recipients_count') -
        count(before, 'chatd_broadcast_recipients_count') >= n);
    assert.ok(count(after, 'chatd_broadcast_recipients_bucket', { le: '2' }) -
        count(after, 'chatd_broadcast_recipients_bucket', { le: '1' }) >= n,
        'the message broadcasts reached 2 sockets each');
});

test('errors are counted by code, from REST and from sockets', async () => {
    const before = parse(await page());
    const res = await srv.http('GET', '/me', undefined, 'not-a-token');
    assert.equal(res.status, 401);
    const user = await srv.register();
    const socket = await srv.connect(user.token);
    const ack = await h.emitAck(socket, 'room:join', { roomId: h.randomHex24() });
    assert.equal(ack.ok, false);
    const after = parse(await page());
    const diff = (code) => (value(after, 'chatd_errors_total', { code }) || 0) -
        (value(before, 'chatd_errors_total', { code }) || 0);
    assert.equal(diff('unauthorized'), 1);
    assert.ok(diff(ack.error.code) >= 1, `code ${ack.error.code}`);
});

test('process_* and chatd_build_info describe the process and its build', async () => {
    const f = parse(await page());
    const pkg = fs.readFileSync(path.join(REPO, 'CMakeLists.txt'), 'utf8').match(/project\(chatd VERSION (\S+)/)[1];
    const info = f.get('chatd_build_info');
    assert.equal(info.samples.length, 1);
    assert.equal(info.samples[0].value, 1);
    assert.equal(info.samples[0].labels.version, pkg);
    assert.match(info.samples[0].labels.lua, /^5\.4\.\d+$/);
    assert.match(info.samples[0].labels.libwebsockets, /^\d+\.\d+/);
    assert.ok(value(f, 'process_open_fds') > 3);
    assert.ok(value(f, 'process_max_fds') >= value(f, 'process_open_fds'));
    assert.ok(value(f, 'process_resident_memory_bytes') > 1 << 20);
    assert.ok(value(f, 'process_cpu_seconds_total') > 0);
    const start = value(f, 'process_start_time_seconds');
    assert.ok(Math.abs(start - Date.now() / 1000) < 600, `started recently: ${start}`);
    assert.equal(typeof value(f, 'chatd_sessions_open'), 'number');
    assert.equal(f.get('chatd_sessions'), undefined, 'the old gauge name is gone');
});

test('deploy/prometheus/alerts.yml passes promtool check rules and names metrics the page has', async () => {
    const file = path.join(REPO, 'deploy', 'prometheus', 'alerts.yml');
    const r = promtool(['check', 'rules', file]);
    assert.equal(r.status, 0, `promtool check rules:\n${r.stdout}${r.stderr}`);
    const f = parse(await page());
    const known = new Set();
    for (const fam of f.values()) {
        for (const s of fam.samples) known.add(s.name);
        known.add(fam.name);
    }
    const rules = fs.readFileSync(file, 'utf8');
    for (const [name] of rules.matchAll(/\b(?:chatd|process)_[a-z_]+\b/g)) {
        assert.ok(known.has(name), `alerts.yml names ${name}, which /metrics has`);
    }
});

test('the compose cluster\'s Prometheus loads the alert rules (promtool check config)', () => {
    // compose.yaml mounts both files side by side in /etc/prometheus
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'chatd-prom-'));
    fs.copyFileSync(path.join(REPO, 'deploy', 'compose', 'prometheus.yml'), path.join(dir, 'prometheus.yml'));
    fs.copyFileSync(path.join(REPO, 'deploy', 'prometheus', 'alerts.yml'), path.join(dir, 'alerts.yml'));
    const compose = fs.readFileSync(path.join(REPO, 'deploy', 'compose.yaml'), 'utf8');
    assert.match(compose, /\.\/prometheus\/alerts\.yml:\/etc\/prometheus\/alerts\.yml/);
    const r = promtool(['check', 'config', path.join(dir, 'prometheus.yml')]);
    assert.equal(r.status, 0, `${r.stdout}${r.stderr}`);
    assert.match(r.stdout, /SUCCESS: \d+ rules found/);
});

test('deploy/grafana/dashboards/chatd.json is a dashboard whose queries name metrics the page has', async () => {
    const file = path.join(REPO, 'deploy', 'grafana', 'dashboards', 'chatd.json');
    const dash = JSON.parse(fs.readFileSync(file, 'utf8'));
    assert.equal(typeof dash.title, 'string');
    assert.ok(Array.isArray(dash.panels) && dash.panels.length >= 6);
    const f = parse(await page());
    const known = new Set();
    for (const fam of f.values()) {
        for (const s of fam.samples) known.add(s.name);
    }
    let queries = 0;
    for (const panel of dash.panels) {
        for (const t of panel.targets || []) {
            queries++;
            for (const [name] of t.expr.matchAll(/\b(?:chatd|process)_[a-z_]+\b/g)) {
                assert.ok(known.has(name), `panel "${panel.title}" queries ${name}, which /metrics has`);
            }
        }
    }
    assert.ok(queries >= 6);
});

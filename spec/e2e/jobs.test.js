'use strict';
// The job queue (chat.jobs) end to end: the shipped webhook job against a real local HTTP
// server (retries with backoff until it succeeds; a URL that always fails ends on the
// dead-letter list, read through GET /admin/jobs/dead), durability of the SQLite queue across
// a restart, and, on Redis Streams, a job whose node is SIGKILLed mid-run completed by
// another node.
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { describe, before, after } = require('node:test');
const h = require('./helpers');

const REPO = path.resolve(__dirname, '..', '..');
const REDIS = process.env.CHAT_TEST_REDIS_URL;
const ADMIN = 'admin-token-for-jobs-tests';

// A test-only event that pushes a job: socket.emitWithAck("job:push", name, payload, opts)
const PUSH_LUA = `
local chat = require "chat"
chat.hook("event/job:push", function(ev)
    local id, err, code = chat.jobs.push(ev.args[1], ev.args[2], ev.args[3])
    if not id then return chat.reject(code, err) end
    return { ok = true, id = id }
end)
`;

function scriptsDir(files) {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'chatd-jobs-scripts-'));
    fs.copyFileSync(path.join(REPO, 'scripts', 'webhook.lua'), path.join(dir, 'webhook.lua'));
    fs.writeFileSync(path.join(dir, 'push.lua'), PUSH_LUA);
    for (const [name, text] of Object.entries(files || {})) {
        fs.writeFileSync(path.join(dir, name), text);
    }
    return dir;
}

async function pushJob(server, name, payload, opts) {
    const { token } = await h.register(server);
    const socket = await h.connect(server, token);
    const args = opts === undefined ? [name, payload] : [name, payload, opts];
    const ack = await socket.timeout(h.WAIT_MS).emitWithAck('job:push', ...args);
    socket.close();
    return ack;
}

function metric(text, name) {
    const m = text.match(new RegExp(`^${name.replace(/[{}"]/g, (c) => `\\${c}`)} (\\d+)`, 'm'));
    return m ? Number(m[1]) : NaN;
}

describe('jobs: the webhook job, retries and the dead-letter list (SQLite queue)', () => {
    let hooks, srv;
    before(async () => {
        hooks = await h.hookServer((url, n) => (url.pathname === '/flaky' ? (n <= 2 ? 500 : 200)
            : url.pathname === '/down' ? 503 : 200));
        srv = await h.startServer({
            scripts: scriptsDir(),
            env: { CHAT_ADMIN_TOKEN: ADMIN, CHAT_JOBS_BACKOFF_MS: '200', CHAT_JOBS_POLL_MS: '50',
                CHAT_JOBS_ATTEMPTS: '4' },
        });
    });
    after(async () => {
        await h.closeResources();
        await h.stopServer(srv);
        await hooks.close();
    });

    h.test('a webhook that fails twice is retried with growing waits and then succeeds once', async () => {
        const ack = await pushJob(srv, 'webhook', { url: `${hooks.url}/flaky`, body: { text: 'hi' } });
        assert.match(ack.id, /^[0-9a-f]{24}$/, JSON.stringify(ack));
        await h.eventually(() => hooks.seen.filter((r) => r.path === '/flaky').length >= 3,
            'three POSTs to /flaky', 15000);
        const tries = hooks.seen.filter((r) => r.path === '/flaky');
        assert.deepEqual(tries.map((r) => r.status), [500, 500, 200]);
        assert.deepEqual(tries.map((r) => r.headers['x-chat-attempt']), ['1', '2', '3']);
        assert.ok(tries.every((r) => r.headers['x-chat-job'] === ack.id));
        assert.deepEqual(JSON.parse(tries[2].body), { text: 'hi' });
        assert.equal(tries[2].headers['content-type'], 'application/json');
        // the backoff doubles: the second wait is longer than the first
        assert.ok(tries[2].at - tries[1].at > tries[1].at - tries[0].at,
            `waits ${tries[1].at - tries[0].at} ms then ${tries[2].at - tries[1].at} ms`);
        const metrics = await (await fetch(`${srv.url}/metrics`)).text();
        await h.eventually(async () => metric(await (await fetch(`${srv.url}/metrics`)).text(),
            'chatd_jobs_done_total') >= 1, 'chatd_jobs_done_total counts it');
        assert.ok(metric(metrics, 'chatd_jobs_retried_total') >= 2, metrics);
        // done means done: no fourth POST
        const dead = await h.http(srv, 'GET', '/admin/jobs/dead', undefined, ADMIN);
        assert.equal(dead.status, 200);
        assert.ok(!dead.body.jobs.some((j) => j.id === ack.id), JSON.stringify(dead.body));
        assert.equal(hooks.seen.filter((r) => r.path === '/flaky').length, 3);
    });

    h.test('a URL that always fails ends on the dead-letter list after its attempts', async () => {
        const ack = await pushJob(srv, 'webhook', { url: `${hooks.url}/down`, body: [1] },
            { max_attempts: 3 });
        const job = await h.eventually(async () => {
            const res = await h.http(srv, 'GET', '/admin/jobs/dead', undefined, ADMIN);
            return res.body.jobs && res.body.jobs.find((j) => j.id === ack.id);
        }, 'the job on GET /admin/jobs/dead', 15000);
        assert.equal(hooks.seen.filter((r) => r.path === '/down').length, 3);
        assert.equal(job.name, 'webhook');
        assert.equal(job.attempt, 3);
        assert.equal(job.maxAttempts, 3);
        assert.deepEqual(job.payload, { url: `${hooks.url}/down`, body: [1] });
        assert.match(job.error, /answered 503/);
        assert.equal(typeof job.diedAt, 'number');
        const metrics = await (await fetch(`${srv.url}/metrics`)).text();
        assert.ok(metric(metrics, 'chatd_jobs_dead_total') >= 1, metrics);
    });

    h.test('the dead-letter list needs the admin token', async () => {
        const res = await h.http(srv, 'GET', '/admin/jobs/dead', undefined, 'wrong');
        h.assertRestError(res, 401, 'unauthorized');
    });

    h.test('a payload over CHAT_JOBS_PAYLOAD_MAX and a bad job name are refused', async () => {
        const big = await pushJob(srv, 'webhook', { url: 'http://x', pad: 'x'.repeat(70000) });
        h.assertAckError(big, 'payload_too_large');
        const bad = await pushJob(srv, 'no spaces', {});
        h.assertAckError(bad, 'internal'); // misuse raises in the script: the client gets internal
        const metrics = await (await fetch(`${srv.url}/metrics`)).text();
        assert.ok(metric(metrics, 'chatd_jobs_refused_total{reason="too_big"}') >= 1, metrics);
    });
});

describe('jobs: bounds', () => {
    let srv;
    before(async () => {
        srv = await h.startServer({ scripts: scriptsDir(), env: { CHAT_JOBS_MAX: '2' } });
    });
    after(async () => {
        await h.closeResources();
        await h.stopServer(srv);
    });

    h.test('past CHAT_JOBS_MAX queued jobs a push is refused and counted', async () => {
        // no handler for "later": they stay queued (delayed for an hour)
        for (let i = 0; i < 2; i++) {
            h.assertAckOk(await pushJob(srv, 'later', { i }, { delay_ms: 3600000 }));
        }
        h.assertAckError(await pushJob(srv, 'later', { i: 3 }, { delay_ms: 3600000 }),
            'payload_too_large');
        const metrics = await (await fetch(`${srv.url}/metrics`)).text();
        assert.equal(metric(metrics, 'chatd_jobs_refused_total{reason="full"}'), 1, metrics);
    });
});

describe('jobs: the SQLite queue survives a restart', () => {
    let hooks;
    const servers = [];
    before(async () => { hooks = await h.hookServer(() => 200); });
    after(async () => {
        await h.closeResources();
        for (const s of servers) {
            if (!s.exit) {
                await h.stopServer(s);
            }
        }
        await hooks.close();
    });

    h.test('a delayed job pushed before a stop runs after the next start', async () => {
        const scripts = scriptsDir();
        const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'chatd-e2e-jobs-'));
        const secret = crypto.randomBytes(32).toString('hex');
        const first = await h.startServer({ scripts, dataDir, secret });
        servers.push(first);
        const ack = await pushJob(first, 'webhook', { url: `${hooks.url}/later`, body: 'kept' },
            { delay_ms: 1500 });
        h.assertAckOk(ack, 'push');
        await h.stopServer(first, { keepData: true });
        assert.equal(hooks.seen.length, 0, 'the job must not have run before the stop');
        const second = await h.startServer({ scripts, dataDir, secret });
        servers.push(second);
        await h.eventually(() => hooks.seen.length >= 1, 'the POST after the restart', 15000);
        assert.equal(hooks.seen[0].headers['x-chat-job'], ack.id);
        assert.equal(JSON.parse(hooks.seen[0].body), 'kept');
    });
});

// On Redis: a handler that sleeps on its first run; the node running it is SIGKILLed; the
// other node takes the job over once its lease (CHAT_JOBS_TIMEOUT_MS) has run out.
const SLOW_LUA = `
local chat = require "chat"
local NODE = chat.setting("node_id", "?")
chat.jobs.handle("slow", function(job)
    local url = job.payload.url
    local starts = chat.redis("INCR", "jobtest:" .. job.id .. ":starts")
    chat.http.request({ url = url .. "/start?node=" .. NODE .. "&n=" .. starts, method = "POST", body = "" })
    if starts == 1 then chat.timer.sleep(2500) end
    chat.http.request({ url = url .. "/done?node=" .. NODE, method = "POST", body = "" })
end)
`;

describe('jobs: on Redis Streams a job survives the death of its node', () => {
    let hooks;
    const nodes = {};
    before(async () => {
        assert.ok(REDIS, 'this test needs Redis: eval "$(tools/services.sh start)"');
        hooks = await h.hookServer(() => 200);
        const scripts = scriptsDir({ 'slow.lua': SLOW_LUA });
        const secret = crypto.randomBytes(32).toString('hex');
        for (const id of ['ja', 'jb']) {
            nodes[id] = await h.startServer({
                secret, scripts,
                env: { CHAT_NODE_ID: id, CHAT_REDIS_URL: REDIS, CHAT_JOBS_TIMEOUT_MS: '3000',
                    CHAT_JOBS_POLL_MS: '50' },
            });
        }
    });
    after(async () => {
        await h.closeResources();
        for (const n of Object.values(nodes)) {
            if (!n.exit) {
                await h.stopServer(n);
            }
        }
        if (hooks) {
            await hooks.close();
        }
    });

    h.test('SIGKILL of the node running a job: the other node runs it to the end', async () => {
        const ack = await pushJob(nodes.ja, 'slow', { url: hooks.url });
        h.assertAckOk(ack, 'push');
        const start = await h.eventually(() => hooks.seen.find((r) => r.path === '/start'),
            'a node starts the job', 10000);
        const victim = start.query.node;
        const other = victim === 'ja' ? 'jb' : 'ja';
        nodes[victim].proc.kill('SIGKILL');
        await nodes[victim].exited;
        const done = await h.eventually(() => hooks.seen.find((r) => r.path === '/done'),
            'the job is done', 15000);
        assert.equal(done.query.node, other, JSON.stringify(hooks.seen));
        const starts = hooks.seen.filter((r) => r.path === '/start');
        assert.deepEqual(starts.map((r) => [r.query.node, r.query.n]), [[victim, '1'], [other, '2']]);
        assert.equal(hooks.seen.filter((r) => r.path === '/done').length, 1);
    });
});

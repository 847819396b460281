'use strict';
// The first things a newcomer runs: chatd's flags, tools/run.sh, the README's client example,
// and what chatd says when its folders are missing.
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { spawn, spawnSync } = require('node:child_process');
const { describe } = require('node:test');
const h = require('./helpers');
const { test } = h;

const REPO = path.resolve(__dirname, '..', '..');
const BIN = process.env.CHATD_BIN ? path.resolve(process.env.CHATD_BIN) : path.join(REPO, 'build', 'chatd');

/** Spawns cmd with env; collects its output; resolves once /healthz on port answers 200. */
async function spawnServing(cmd, args, port, env = {}) {
    const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'chatd-cli-'));
    const proc = spawn(cmd, args, {
        cwd: REPO,
        env: { ...process.env, CHAT_DATA_DIR: dataDir, CHAT_BCRYPT_COST: '4', ...env },
        stdio: ['ignore', 'pipe', 'pipe'],
    });
    const run = { proc, out: '', dataDir };
    proc.stdout.on('data', (c) => { run.out += c; });
    proc.stderr.on('data', (c) => { run.out += c; });
    run.exited = new Promise((r) => proc.on('exit', (code, signal) => r({ code, signal })));
    let exit = null;
    run.exited.then((e) => { exit = e; });
    await h.eventually(async () => {
        assert.equal(exit, null, `exited early: ${JSON.stringify(exit)}\n${run.out}`);
        try {
            const res = await fetch(`http://127.0.0.1:${port}/healthz`, { signal: AbortSignal.timeout(1000) });
            return res.status === 200;
        } catch {
            return false;
        }
    }, `${cmd} serving on port ${port}\n${run.out}`, 20000);
    return run;
}

async function stop(run) {
    run.proc.kill('SIGTERM');
    const exit = await h.withTimeout(run.exited, 20000, 'exit after SIGTERM');
    fs.rmSync(run.dataDir, { recursive: true, force: true });
    assert.deepEqual(exit, { code: 0, signal: null }, run.out);
    assert.doesNotMatch(run.out, /ERROR: (Address|Leak)Sanitizer|runtime error:/);
}

function freePort() {
    return new Promise((resolve, reject) => {
        const srv = require('node:net').createServer();
        srv.listen(0, '127.0.0.1', () => {
            const { port } = srv.address();
            srv.close(() => resolve(port));
        });
        srv.on('error', reject);
    });
}

describe('chatd flags', () => {
    test('--listen HOST:PORT (space form) is taken like --listen=HOST:PORT', async () => {
        const port = await freePort();
        const run = await spawnServing(BIN, ['--listen', `127.0.0.1:${port}`, '--log-level', 'info'], port);
        assert.match(run.out, new RegExp(`"event":"listening".*"listen":"127.0.0.1:${port}"`));
        await stop(run);
    });

    test('a number out of range is refused with the allowed range, flag or variable', () => {
        const flag = spawnSync(BIN, ['--bcrypt-cost=99'], { encoding: 'utf8' });
        assert.equal(flag.status, 2);
        assert.match(flag.stderr, /--bcrypt-cost: expected an integer from 4 to 31/);
        const spaced = spawnSync(BIN, ['--ping-interval-ms', '10'], { encoding: 'utf8' });
        assert.equal(spaced.status, 2);
        assert.match(spaced.stderr, /--ping-interval-ms: expected an integer from 50 to 3600000/);
        const env = spawnSync(BIN, [], { encoding: 'utf8', env: { ...process.env, CHAT_BCRYPT_COST: '3' } });
        assert.equal(env.status, 2);
        assert.match(env.stderr, /CHAT_BCRYPT_COST='3' is not valid: expected an integer from 4 to 31/);
        const missing = spawnSync(BIN, ['--listen'], { encoding: 'utf8' });
        assert.equal(missing.status, 2);
        assert.match(missing.stderr, /--listen needs a value: host:port/);
        const unknown = spawnSync(BIN, ['--no-such-option', 'x'], { encoding: 'utf8' });
        assert.equal(unknown.status, 2);
        assert.match(unknown.stderr, /unknown argument '--no-such-option'/);
    });

    test('--help gives the range of every numeric option', () => {
        const help = spawnSync(BIN, ['--help'], { encoding: 'utf8' });
        assert.equal(help.status, 0);
        const numeric = help.stdout.split('\n').filter((l) => /--(ping|max-payload|bcrypt|token-ttl|message-max|lua-budget|lua-memory|trust-proxy)/.test(l));
        assert.ok(numeric.length >= 9, help.stdout);
        for (const line of numeric) {
            assert.match(line, /integer from -?\d+ to \d+; default: \d+/, line);
        }
    });
});

describe('README', () => {
    test("README's configuration table has every option of --help, with its flag, default and range", () => {
        const help = spawnSync(BIN, ['--help'], { encoding: 'utf8' });
        assert.equal(help.status, 0);
        const options = {};
        for (const line of help.stdout.split('\n')) {
            const m = /^ {2}(--[\w-]+)\s+(CHAT_\w+)\s+.*\((?:integer from (-?\d+) to (\d+); )?default: (.*)\)$/.exec(line);
            if (m) {
                options[m[2]] = { flag: m[1], min: m[3], max: m[4], def: m[5] };
            }
        }
        assert.ok(Object.keys(options).length >= 30, help.stdout);
        const rows = {};
        const readme = fs.readFileSync(path.join(REPO, 'README.md'), 'utf8');
        const table = readme.slice(readme.indexOf('## Configuration'));
        for (const line of table.slice(0, table.indexOf('\n\n', table.indexOf('| variable |'))).split('\n')) {
            const m = /^\| `(CHAT_\w+)` \| `(--[\w-]+)` \| ([^|]*) \|(.*)\|$/.exec(line);
            if (m) {
                rows[m[1]] = { flag: m[2], def: m[3].trim(), meaning: m[4] };
            }
        }
        const wrong = [];
        for (const [name, o] of Object.entries(options)) {
            const r = rows[name];
            if (!r) {
                wrong.push(`${name}: no row`);
                continue;
            }
            if (r.flag !== o.flag) {
                wrong.push(`${name}: flag ${r.flag}, --help says ${o.flag}`);
            }
            // A value is shown in backticks; an unset default is a word (unset, generated, random).
            const def = /^`(.*)`$/.exec(r.def);
            if (o.def === 'unset' ? def : !def || def[1] !== o.def) {
                wrong.push(`${name}: default ${r.def}, --help says ${o.def}`);
            }
            const range = /\((-?\d+)\.\.(\d+)\)/.exec(r.meaning);
            if (range && (range[1] !== o.min || range[2] !== o.max)) {
                wrong.push(`${name}: range ${range[1]}..${range[2]}, --help says ${o.min}..${o.max}`);
            }
        }
        for (const name of Object.keys(rows)) {
            if (!(name in options)) {
                wrong.push(`${name}: a row for no option`);
            }
        }
        assert.deepEqual(wrong, []);
    });
});

describe('folders', () => {
    test('a missing scripts or Lua folder is a warning that names the path', async () => {
        const port = await freePort();
        const gone = path.join(os.tmpdir(), `chatd-no-such-dir-${process.pid}`);
        const run = await spawnServing(BIN, [], port, {
            CHAT_LISTEN: `127.0.0.1:${port}`,
            CHAT_SCRIPTS_DIR: path.join(gone, 'scripts'),
            CHAT_LUA_DIR: path.join(gone, 'lua'),
        });
        const lines = run.out.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l));
        const scripts = lines.find((l) => l.event === 'scripts_dir_missing');
        const lua = lines.find((l) => l.event === 'lua_dir_missing');
        assert.ok(scripts && scripts.level === 'warn', run.out);
        assert.equal(scripts.path, path.join(gone, 'scripts'));
        assert.ok(lua && lua.level === 'warn', run.out);
        assert.equal(lua.path, path.join(gone, 'lua'));
        await stop(run);
    });
});

describe('tools/run.sh', () => {
    test('--listen=HOST:PORT: it says the address chatd will listen on, and chatd serves there', async () => {
        const port = await freePort();
        const run = await spawnServing(path.join(REPO, 'tools', 'run.sh'), [`--listen=127.0.0.1:${port}`], port,
            { CHATD_BIN: BIN });
        assert.match(run.out.split('\n')[0], new RegExp(`^==> starting chatd on 127\\.0\\.0\\.1:${port} `));
        await stop(run);
    });

    test('--listen HOST:PORT (space form) too', async () => {
        const port = await freePort();
        const run = await spawnServing(path.join(REPO, 'tools', 'run.sh'), ['--listen', `127.0.0.1:${port}`], port,
            { CHATD_BIN: BIN, CHAT_LISTEN: '127.0.0.1:1' });
        assert.match(run.out.split('\n')[0], new RegExp(`^==> starting chatd on 127\\.0\\.0\\.1:${port} `));
        await stop(run);
    });
});

describe('README', () => {
    test('the client example runs, and runs again (the second time it logs in)', async () => {
        const readme = fs.readFileSync(path.join(REPO, 'README.md'), 'utf8');
        const section = readme.slice(readme.indexOf('## Talking to it'));
        const code = section.match(/```js\n([\s\S]*?)```/)[1];
        assert.match(code, /\/auth\/login", \{ login: "ada", password/);
        const srv = await h.startServer();
        const file = path.join(__dirname, `.readme-example-${process.pid}.mjs`);
        try {
            fs.writeFileSync(file, code.replace('http://127.0.0.1:8080', srv.url));
            for (const round of [1, 2]) {
                const r = spawnSync(process.execPath, [file], { encoding: 'utf8', timeout: 20000 });
                assert.equal(r.status, 0, `run ${round}: ${r.stdout}${r.stderr}`);
                assert.match(r.stdout, /^sent as ada$/m, `run ${round}`);
            }
        } finally {
            fs.rmSync(file, { force: true });
            await h.stopServer(srv);
        }
    });
});

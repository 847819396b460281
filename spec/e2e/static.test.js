'use strict';
// Static files (runtime/src/static.c): the web page's folder served at / for GET and HEAD on
// paths no route claims, with content types, a content-hash ETag, Cache-Control, 304 for
// If-None-Match, and nothing outside the folder: no "..", no encoded traversal, no symlinks
// that lead out, no dotfiles, no directory listings.
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const fs = require('node:fs');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');
const h = require('./helpers');
const { test } = h;

const REPO = path.resolve(__dirname, '..', '..');

// A folder made for these tests, beside a secret it must never serve.
const base = fs.mkdtempSync(path.join(os.tmpdir(), 'chatd-static-'));
const root = path.join(base, 'web');
const SECRET = `secret-${crypto.randomBytes(8).toString('hex')}`;
const FILES = {
    'index.html': ['<!doctype html><title>t</title><p>home</p>\n', 'text/html; charset=utf-8'],
    'app.js': ['export const x = 1;\n', 'text/javascript; charset=utf-8'],
    'lib.mjs': ['export default 2;\n', 'text/javascript; charset=utf-8'],
    'style.css': ['body { color: red }\n', 'text/css; charset=utf-8'],
    'data.json': ['{"a":1}\n', 'application/json'],
    'app.js.map': ['{"version":3}\n', 'application/json'],
    'icon.svg': ['<svg xmlns="http://www.w3.org/2000/svg"/>\n', 'image/svg+xml'],
    'pic.png': [Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0, 0]), 'image/png'],
    'photo.JPG': [Buffer.from([0xff, 0xd8, 0xff, 0xe0]), 'image/jpeg'],
    'font.woff2': [Buffer.from('wOF2'), 'font/woff2'],
    'notes.txt': ['plain words\n', 'text/plain; charset=utf-8'],
    'blob.bin': [Buffer.from([0, 1, 2, 3]), 'application/octet-stream'],
    'README': ['no extension\n', 'application/octet-stream'],
    'sub/index.html': ['<p>sub home</p>\n', 'text/html; charset=utf-8'],
    'sub/page.html': ['<p>sub page</p>\n', 'text/html; charset=utf-8'],
    'empty/a.txt': ['in a folder without index.html\n', 'text/plain; charset=utf-8'],
    'dotted/.well/x.txt': ['below a dot folder\n', 'text/plain; charset=utf-8'],
    '.hidden.txt': [`${SECRET} hidden\n`, 'text/plain; charset=utf-8'],
};
for (const [name, [content]] of Object.entries(FILES)) {
    fs.mkdirSync(path.dirname(path.join(root, name)), { recursive: true });
    fs.writeFileSync(path.join(root, name), content);
}
fs.writeFileSync(path.join(base, 'secret.txt'), `${SECRET}\n`);
fs.symlinkSync(path.join(base, 'secret.txt'), path.join(root, 'link-out.txt'));
fs.symlinkSync('../secret.txt', path.join(root, 'rel-out.txt'));
fs.symlinkSync(base, path.join(root, 'dir-out'));
fs.symlinkSync('notes.txt', path.join(root, 'link-in.txt'));
// a FIFO would block a reader forever: only regular files are served
require('node:child_process').execFileSync('mkfifo', [path.join(root, 'pipe.txt')]);
// sparse: larger than the 16 MiB cap without using the disk
fs.closeSync(fs.openSync(path.join(root, 'huge.bin'), 'w'));
fs.truncateSync(path.join(root, 'huge.bin'), 17 * 1024 * 1024);

const srv = h.useServer({ env: { CHAT_STATIC_DIR: root } });

const body = (name) => Buffer.from(FILES[name][0]);

/**
 * Raw HTTP/1.1 requests, one after another on one connection (so a 304 or HEAD that leaves
 * bytes behind would break the next answer). Each request: { method, path, headers }.
 * Resolves with [{ status, headers, body }]; status 0 when the server closed instead.
 */
function raw(port, requests) {
    return h.withTimeout(new Promise((resolve, reject) => {
        const sock = net.connect(port, '127.0.0.1');
        const out = [];
        let buf = Buffer.alloc(0);
        let i = 0;
        const sendNext = () => {
            if (i >= requests.length) {
                sock.end();
                resolve(out);
                return;
            }
            const r = requests[i];
            const lines = [`${r.method || 'GET'} ${r.path} HTTP/1.1`, 'Host: 127.0.0.1'];
            for (const [k, v] of Object.entries(r.headers || {})) {
                lines.push(`${k}: ${v}`);
            }
            sock.write(`${lines.join('\r\n')}\r\n\r\n`);
        };
        const parse = () => {
            const end = buf.indexOf('\r\n\r\n');
            if (end < 0) {
                return;
            }
            const head = buf.subarray(0, end).toString('latin1').split('\r\n');
            const status = Number(head[0].split(' ')[1]);
            const headers = {};
            for (const line of head.slice(1)) {
                const c = line.indexOf(':');
                headers[line.slice(0, c).trim().toLowerCase()] = line.slice(c + 1).trim();
            }
            const r = requests[i];
            const noBody = (r.method || 'GET') === 'HEAD' || status === 304 || status === 204;
            const len = noBody ? 0 : Number(headers['content-length'] || 0);
            if (buf.length < end + 4 + len) {
                return;
            }
            out.push({ status, headers, body: buf.subarray(end + 4, end + 4 + len) });
            buf = buf.subarray(end + 4 + len);
            i++;
            sendNext();
            parse();
        };
        sock.on('connect', sendNext);
        sock.on('data', (d) => {
            buf = Buffer.concat([buf, d]);
            parse();
        });
        sock.on('close', () => {
            while (out.length < requests.length) {
                out.push({ status: 0, headers: {}, body: buf });
                buf = Buffer.alloc(0);
            }
            resolve(out);
        });
        sock.on('error', (err) => (out.length ? resolve(out) : reject(err)));
    }), h.WAIT_MS, 'raw HTTP requests');
}

async function get(urlPath, headers = {}, method = 'GET') {
    const [res] = await raw(srv.server.port, [{ method, path: urlPath, headers }]);
    return res;
}

function assertNotFound(res, what) {
    assert.equal(res.status, 404, `${what}: ${res.status} ${res.body}`);
    h.assertErrorShape(JSON.parse(res.body.toString()), 'not_found', what);
}

test('each file is served whole with the content type of its extension', async () => {
    for (const [name, [, type]] of Object.entries(FILES)) {
        if (name.split('/').some((seg) => seg.startsWith('.'))) {
            continue;
        }
        const res = await get(`/${name}`);
        assert.equal(res.status, 200, `${name}: ${res.status} ${res.body}`);
        assert.equal(res.headers['content-type'], type, name);
        assert.deepEqual(res.body, body(name), name);
        assert.equal(Number(res.headers['content-length']), body(name).length, name);
        assert.equal(res.headers['x-content-type-options'], 'nosniff', name);
    }
});

test('/ and a folder path with a slash serve index.html; a query string is ignored', async () => {
    const home = await get('/');
    assert.equal(home.status, 200);
    assert.equal(home.headers['content-type'], 'text/html; charset=utf-8');
    assert.deepEqual(home.body, body('index.html'));
    assert.equal(home.headers.etag, (await get('/index.html')).headers.etag);
    assert.deepEqual((await get('/sub/')).body, body('sub/index.html'));
    const q = await get('/app.js?v=123&x');
    assert.equal(q.status, 200);
    assert.deepEqual(q.body, body('app.js'));
});

test('ETag is a quoted content hash and Cache-Control is public for five minutes', async () => {
    const a = await get('/app.js');
    assert.match(a.headers.etag, /^"[0-9a-f]{32}"$/, `strong ETag: ${a.headers.etag}`);
    assert.equal(a.headers['cache-control'], 'public, max-age=300');
    assert.equal((await get('/app.js')).headers.etag, a.headers.etag, 'stable');
    assert.notEqual((await get('/style.css')).headers.etag, a.headers.etag, 'differs per content');
    // same content elsewhere: same tag (a hash, not a path, inode or mtime)
    fs.writeFileSync(path.join(root, 'copy.js'), FILES['app.js'][0]);
    assert.equal((await get('/copy.js')).headers.etag, a.headers.etag);
    // new content of the same size: a new tag at once
    fs.writeFileSync(path.join(root, 'copy.js'), FILES['app.js'][0].replace('1', '2'));
    const changed = await get('/copy.js');
    assert.notEqual(changed.headers.etag, a.headers.etag);
    assert.equal(changed.body.toString(), FILES['app.js'][0].replace('1', '2'));
});

test('If-None-Match with the current tag gets 304 with no body; keep-alive survives it', async () => {
    const { etag } = (await get('/style.css')).headers;
    const cases = [etag, `W/${etag}`, `"nope", ${etag}`, `"a",${etag} , "b"`, '*'];
    for (const inm of cases) {
        const res = await get('/style.css', { 'If-None-Match': inm });
        assert.equal(res.status, 304, `If-None-Match: ${inm}`);
        assert.equal(res.headers.etag, etag);
        assert.equal(res.headers['cache-control'], 'public, max-age=300');
        // a 304 may carry only the length a 200 would have (RFC 9110 8.6)
        assert.ok(!('content-length' in res.headers) ||
            Number(res.headers['content-length']) === body('style.css').length, inm);
    }
    for (const inm of ['"nope"', `W/"x${etag.slice(1)}`, etag.slice(0, -2) + '"']) {
        const res = await get('/style.css', { 'If-None-Match': inm });
        assert.equal(res.status, 200, `If-None-Match: ${inm}`);
        assert.deepEqual(res.body, body('style.css'));
    }
    // one connection: 304, 200, HEAD 304, 200; each answer must parse where it starts
    const seq = await raw(srv.server.port, [
        { path: '/style.css', headers: { 'If-None-Match': etag } },
        { path: '/app.js' },
        { method: 'HEAD', path: '/style.css', headers: { 'If-None-Match': etag } },
        { path: '/notes.txt' },
    ]);
    assert.deepEqual(seq.map((r) => r.status), [304, 200, 304, 200]);
    assert.deepEqual(seq[1].body, body('app.js'));
    assert.deepEqual(seq[3].body, body('notes.txt'));
    // and fetch (undici) agrees
    const res = await fetch(`${srv.url}/style.css`, { headers: { 'if-none-match': etag } });
    assert.equal(res.status, 304);
    assert.equal((await res.arrayBuffer()).byteLength, 0);
});

test('HEAD answers the headers of GET and no body', async () => {
    const seq = await raw(srv.server.port, [
        { method: 'HEAD', path: '/index.html' },
        { method: 'GET', path: '/index.html' },
        { method: 'HEAD', path: '/' },
    ]);
    const [head, full, slash] = seq;
    assert.equal(head.status, 200);
    for (const k of ['content-type', 'content-length', 'etag', 'cache-control']) {
        assert.equal(head.headers[k], full.headers[k], k);
        assert.equal(slash.headers[k], full.headers[k], k);
    }
    assert.equal(Number(head.headers['content-length']), body('index.html').length);
    assert.equal(head.body.length, 0);
    assert.deepEqual(full.body, body('index.html'));
    const missing = await get('/nope.html', {}, 'HEAD');
    assert.equal(missing.status, 404);
});

test('nothing outside the folder: "..", encoded traversal, symlinks out, dotfiles', async () => {
    const attempts = [
        '/../secret.txt', '/../../secret.txt', '/sub/../../secret.txt', '/./../secret.txt',
        '/%2e%2e/secret.txt', '/%2E%2E/secret.txt', '/.%2e/secret.txt', '/%2e%2e%2fsecret.txt',
        '/sub/%2e%2e/%2e%2e/secret.txt', '/..%2fsecret.txt', '/%252e%252e/secret.txt',
        '/..%5csecret.txt', '/sub\\..\\..\\secret.txt', '//secret.txt', '/%2fsecret.txt',
        `/${'../'.repeat(20)}etc/passwd`, '/link-out.txt', '/rel-out.txt', '/dir-out/secret.txt',
        '/.hidden.txt', '/%2ehidden.txt', '/dotted/.well/x.txt',
        '/index.html%00.txt', '/secret.txt',
    ];
    for (const p of attempts) {
        const res = await get(p);
        assert.ok([0, 400, 403, 404].includes(res.status), `${p} answered ${res.status}`);
        assert.ok(!res.body.toString().includes(SECRET), `${p} leaked the secret`);
    }
    assertNotFound(await get('/link-out.txt'), 'symlink to a file outside');
    assertNotFound(await get('/dir-out/secret.txt'), 'symlink to a folder outside');
    assertNotFound(await get('/.hidden.txt'), 'dotfile');
    // a symlink that stays inside the folder is fine
    const inside = await get('/link-in.txt');
    assert.equal(inside.status, 200);
    assert.deepEqual(inside.body, body('notes.txt'));
});

test('no directory listings (a folder is only ever its index.html), no FIFOs', async () => {
    assertNotFound(await get('/empty/'), 'folder without index.html');
    assertNotFound(await get('/empty'), 'folder without a slash');
    assertNotFound(await get('/sub'), 'folder with index.html but no slash');
    assertNotFound(await get('/sub/nope/'), 'missing folder');
    assertNotFound(await get('/pipe.txt'), 'a FIFO');
});

test('a file over 16 MiB is refused and logged, not read', async () => {
    const mark = srv.server.output.length;
    assertNotFound(await get('/huge.bin'), 'huge file');
    await h.withTimeout((async () => {
        while (!srv.server.output.slice(mark).includes('static_file_too_large')) {
            await new Promise((r) => setTimeout(r, 20)); // poll the log of a bounded wait
        }
    })(), h.WAIT_MS, 'the static_file_too_large log line');
});

test('routes and Socket.IO still win; other methods get the JSON 404', async () => {
    const health = await srv.http('GET', '/healthz');
    assert.equal(health.status, 200);
    assert.equal(health.body.ok, true);
    const open = await srv.eioOpen();
    assert.match(open.sid, /\S/);
    h.assertRestError(await srv.http('POST', '/index.html', {}), 404, 'not_found');
    const del = await get('/index.html', {}, 'DELETE');
    assert.equal(del.status, 404);
    srv.assertAlive();
});

test('a missing folder serves nothing and says so once at start; an empty setting is quiet', async () => {
    const missing = await h.startServer({ env: { CHAT_STATIC_DIR: path.join(base, 'nope') } });
    try {
        const res = await h.http(missing, 'GET', '/');
        h.assertRestError(res, 404, 'not_found');
        await h.http(missing, 'GET', '/index.html');
        const warnings = missing.output.split('\n').filter((l) => l.includes('"static_dir_missing"'));
        assert.equal(warnings.length, 1, missing.output);
        assert.match(warnings[0], /"level":"warn"/);
        assert.match(warnings[0], /CHAT_STATIC_DIR/);
    } finally {
        await h.stopServer(missing);
    }
    const off = await h.startServer({ env: { CHAT_STATIC_DIR: '' } });
    try {
        h.assertRestError(await h.http(off, 'GET', '/'), 404, 'not_found');
        assert.doesNotMatch(off.output, /static_dir/);
    } finally {
        await h.stopServer(off);
    }
});

test('the real page: examples/web with the socket.io-client bundle of the tested version', async () => {
    const web = path.join(REPO, 'examples', 'web');
    const s = await h.startServer({ env: { CHAT_STATIC_DIR: web } });
    try {
        const expect = {
            '/': 'text/html; charset=utf-8',
            '/app.js': 'text/javascript; charset=utf-8',
            '/api.js': 'text/javascript; charset=utf-8',
            '/messages.js': 'text/javascript; charset=utf-8',
            '/style.css': 'text/css; charset=utf-8',
            '/favicon.svg': 'image/svg+xml',
            '/vendor/socket.io.min.js': 'text/javascript; charset=utf-8',
            '/vendor/socket.io.min.js.map': 'application/json',
        };
        for (const [p, type] of Object.entries(expect)) {
            const res = await fetch(s.url + p);
            assert.equal(res.status, 200, p);
            assert.equal(res.headers.get('content-type'), type, p);
            await res.arrayBuffer();
        }
        // the committed bundle is the one from the socket.io-client the tests run with
        const pkg = require('socket.io-client/package.json');
        const npmFile = path.join(path.dirname(require.resolve('socket.io-client/package.json')),
            'dist', 'socket.io.min.js');
        const served = Buffer.from(await (await fetch(`${s.url}/vendor/socket.io.min.js`)).arrayBuffer());
        assert.ok(served.equals(fs.readFileSync(npmFile)),
            `examples/web/vendor/socket.io.min.js is not socket.io-client ${pkg.version}'s: ` +
            'run tools/update-web-client.sh');
        assert.match(fs.readFileSync(path.join(web, 'vendor', 'VERSION'), 'utf8'),
            new RegExp(`^socket\\.io-client ${pkg.version.replace(/\./g, '\\.')} `));
    } finally {
        await h.stopServer(s);
    }
});

process.on('exit', () => fs.rmSync(base, { recursive: true, force: true }));

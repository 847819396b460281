'use strict';
// The two stacks every feature of issue 15 runs on: the embedded one (SQLite, in-process bus
// and kv, one node) and the scaled-out one (MongoDB via FerretDB, Redis for the bus and the
// kv, two nodes sharing both). On the scaled-out stack node(0) and node(1) are different
// processes, so a test that puts one client on each sees every event cross nodes; on the
// embedded stack both are the same node. The two nodes share one data directory, as a
// cluster shares a volume for uploads.
//
// The scaled-out stack needs CHAT_TEST_REDIS_URL and CHAT_TEST_MONGO_URI (tools/test.sh and
// `eval "$(tools/services.sh env)"` set them) and fails, as the cluster test does, without.

const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { describe, before, after, afterEach } = require('node:test');
const h = require('./helpers');

const REDIS = process.env.CHAT_TEST_REDIS_URL;
const MONGO = process.env.CHAT_TEST_MONGO_URI;

function bind(server) {
    return {
        server,
        get url() {
            return server.url;
        },
        http: (...a) => h.http(server, ...a),
        register: (...a) => h.register(server, ...a),
        connect: (...a) => h.connect(server, ...a),
    };
}

/** A stack's handle: node(i), and the shared secret. opts.scripts, opts.env as useServer;
 * opts.env may also be a function (async or not) returning them, called when the stack starts
 * (for a value known only then, such as the URL of a server the test file started). */
function useStack(kind, stackOpts = {}) {
    const servers = [];
    const stack = {
        kind,
        node: (i = 0) => bind(servers[Math.min(i, servers.length - 1)]),
        get nodes() {
            return servers.length;
        },
    };
    before(async () => {
        const env = typeof stackOpts.env === 'function' ? await stackOpts.env() : stackOpts.env;
        const opts = { ...stackOpts, env };
        const secret = crypto.randomBytes(32).toString('hex');
        if (kind === 'sqlite') {
            servers.push(await h.startServer({ ...opts, secret }));
            return;
        }
        assert.ok(REDIS && MONGO,
            'the MongoDB + Redis stack needs CHAT_TEST_REDIS_URL and CHAT_TEST_MONGO_URI: ' +
            'eval "$(tools/services.sh start)"');
        const db = `chatd_feat_${crypto.randomBytes(4).toString('hex')}`;
        const mongo = MONGO.replace(/\/[^/?]*(\?|$)/, `/${db}$1`);
        // one data directory for both, as a cluster shares a volume for uploads
        const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'chatd-e2e-'));
        for (const id of ['a', 'b']) {
            servers.push(await h.startServer({
                ...opts,
                secret,
                dataDir,
                env: { ...(opts.env || {}), CHAT_NODE_ID: id, CHAT_REDIS_URL: REDIS, CHAT_MONGO_URI: mongo },
            }));
        }
    });
    afterEach(async (t) => {
        await h.closeResources();
        if (t && t.passed === false) {
            for (const s of servers) {
                t.diagnostic(`chatd ${s.port} output:`);
                for (const line of h.tail(s.output, 40).split('\n')) {
                    t.diagnostic(line);
                }
            }
        }
    });
    after(async () => {
        await h.closeResources();
        for (const s of servers) {
            await h.stopServer(s);
        }
    });
    return stack;
}

/** Runs fn(stack) in one describe per stack. */
function forEachStack(title, fn, opts = {}) {
    for (const [kind, name] of [['sqlite', 'SQLite, one node'], ['mongo', 'MongoDB + Redis, two nodes']]) {
        describe(`${title} (${name})`, () => {
            fn(useStack(kind, opts));
        });
    }
}

/** alice (the room's admin, on node 0), bob and carol (on node 1) in one group room; tag
 * starts their names. */
async function threeInARoom(st, tag) {
    const users = [];
    for (const n of ['a', 'b', 'c']) {
        users.push(await st.node(0).register(h.uniqueName(tag + n)));
    }
    const [a, b, c] = users;
    const sa = await st.node(0).connect(a.token);
    const sb = await st.node(1).connect(b.token);
    const sc = await st.node(1).connect(c.token);
    const ack = await h.emitAck(sa, 'room:create', {
        name: h.uniqueName(tag + 'room'), type: 'group', participants: [b.user.id, c.user.id],
    });
    h.assertAckOk(ack, 'room:create');
    return { a, b, c, sa, sb, sc, room: ack.room };
}

module.exports = { forEachStack, threeInARoom, useStack };

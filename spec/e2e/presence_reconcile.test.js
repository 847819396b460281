'use strict';
// Presence with Redis heals itself (review H1): each heartbeat reconciles the node's real
// users with its presence record. A join or a leave lost while Redis was down (or while the
// node was cut off from it) is the same state as Redis holding the wrong set for the node;
// the test makes that state directly in Redis (a database of its own) and waits, bounded,
// for the node to put it right. Needs the services: eval "$(tools/services.sh start)".
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const { spawnSync } = require('node:child_process');
const { describe, before, after } = require('node:test');
const h = require('./helpers');
const { test, emitAck, assertAckOk } = h;

const REDIS = process.env.CHAT_TEST_REDIS_URL &&
    Object.assign(new URL(process.env.CHAT_TEST_REDIS_URL), { pathname: '/6' }).toString();
const MONGO = process.env.CHAT_TEST_MONGO_URI;

function redis(...args) {
    const url = new URL(REDIS);
    const db = url.pathname.replace('/', '') || '0';
    const r = spawnSync('redis-cli', ['-h', url.hostname, '-p', url.port || '6379', '-n', db,
        '--raw', ...args], { encoding: 'utf8', timeout: 5000 });
    assert.equal(r.status, 0, `redis-cli ${args.join(' ')}: ${r.stderr}`);
    return r.stdout.split('\n').filter(Boolean);
}

describe('presence reconciles with Redis on every heartbeat', {
    skip: !(REDIS && MONGO) && 'CHAT_TEST_REDIS_URL and CHAT_TEST_MONGO_URI are not set',
}, () => {
    let node;
    before(async () => {
        const mongo = new URL(MONGO);
        mongo.pathname = `/chatd_reconcile_${crypto.randomBytes(4).toString('hex')}`;
        node = await h.startServer({
            env: {
                CHAT_NODE_ID: 'rc',
                CHAT_REDIS_URL: REDIS,
                CHAT_MONGO_URI: mongo.toString(),
                CHAT_PRESENCE_HEARTBEAT_MS: '200',
            },
        });
    });
    after(async () => {
        await h.closeResources();
        if (node && !node.exit) {
            await h.stopServer(node);
        }
    });

    // this node's instance: the one presence:{user} names while the user is connected here
    // (an earlier run's instance may still hold a record that has not expired yet)
    const instOf = (userId) => {
        const held = redis('HKEYS', `presence:${userId}`);
        assert.equal(held.length, 1, `one instance holds the user: ${held}`);
        return held[0];
    };

    test('a join lost while Redis was away comes back: the user is online again', async () => {
        const alice = await h.register(node);
        const bob = await h.register(node);
        const a = await h.connect(node, alice.token);
        const created = await emitAck(a, 'room:create', { name: 'rc', type: 'group', participants: [bob.user.id] });
        assertAckOk(created, 'room:create');
        await h.connect(node, bob.token);
        await h.eventually(() => redis('SMEMBERS', 'online_users').includes(bob.user.id), 'bob online');
        const i = instOf(bob.user.id);
        // what a lost join leaves: Redis does not know bob is here (one script, so no
        // heartbeat runs between the steps and heals half of it)
        redis('EVAL', "redis.call('SREM', KEYS[1], ARGV[1]); redis.call('DEL', KEYS[2]); " +
            "redis.call('SREM', 'online_users', ARGV[1]); redis.call('SET', KEYS[3], '0')", '3',
            `presence:node:${i}:users`, `presence:${bob.user.id}`, `user:${bob.user.id}:online`,
            bob.user.id);
        await h.eventually(() => redis('SMEMBERS', 'online_users').includes(bob.user.id),
            'bob back in online_users');
        assert.deepEqual(redis('HKEYS', `presence:${bob.user.id}`), [i]);
        assert.deepEqual(redis('GET', `user:${bob.user.id}:online`), ['1']);
    });

    test('a leave lost while Redis was away is applied: the user goes offline, announced', async () => {
        const alice = await h.register(node);
        const carol = await h.register(node);
        const a = await h.connect(node, alice.token);
        const created = await emitAck(a, 'room:create', { name: 'rc2', type: 'group', participants: [carol.user.id] });
        assertAckOk(created, 'room:create');
        const c = await h.connect(node, carol.token);
        await h.waitFor(a, 'presence:update', (p) => p.userId === carol.user.id && p.status === 'online');
        await h.eventually(() => redis('HKEYS', `presence:${carol.user.id}`).length === 1, 'carol held');
        const i = instOf(carol.user.id);
        c.disconnect();
        await h.waitFor(a, 'presence:update', (p) => p.userId === carol.user.id && p.status === 'offline');
        await h.eventually(() => !redis('SMEMBERS', 'online_users').includes(carol.user.id), 'carol offline');
        // what a lost leave leaves: Redis still has carol on this node
        const now = String(Date.now());
        redis('EVAL', "redis.call('SADD', KEYS[1], ARGV[1]); redis.call('HSET', KEYS[2], ARGV[2], ARGV[3]); " +
            "redis.call('SADD', 'online_users', ARGV[1]); redis.call('SET', KEYS[3], '1')", '3',
            `presence:node:${i}:users`, `presence:${carol.user.id}`, `user:${carol.user.id}:online`,
            carol.user.id, i, now);
        const before = a.inbox.list('presence:update', (p) => p.userId === carol.user.id && p.status === 'offline').length;
        await h.eventually(() => !redis('SMEMBERS', 'online_users').includes(carol.user.id),
            'carol out of online_users again');
        assert.deepEqual(redis('HKEYS', `presence:${carol.user.id}`), []);
        assert.deepEqual(redis('SMEMBERS', `presence:node:${i}:users`).filter((u) => u === carol.user.id), []);
        await h.eventually(() => a.inbox.list('presence:update',
            (p) => p.userId === carol.user.id && p.status === 'offline').length > before, 'carol announced offline');
    });
});

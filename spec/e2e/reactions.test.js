'use strict';
// Reactions (issue 15 item 2): message:react {messageId, emoji, on}; one per user per emoji;
// the message carries reactions {emoji: [userId, ...]} (who, and so how many); members on
// every node get message:reaction; history shows them; bad input changes nothing; a
// message/react policy decides.
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const h = require('./helpers');
const { test, emitAck, assertAckOk, assertAckError, send } = h;
const { forEachStack, threeInARoom } = require('./stacks');

async function stored(st, token, roomId, id) {
    const res = await st.node(1).http('GET', `/messages?roomId=${roomId}&limit=50`, undefined, token);
    assert.equal(res.status, 200, res.text);
    return res.body.messages.find((m) => m.id === id);
}

const THUMBS = '👍';
const FAMILY = '👨‍👩‍👧';
const FLAG = '🇫🇷';
const KEYCAP = '1️⃣';

forEachStack('message:react', (st) => {
    test('members add and remove reactions; everyone sees them live and in history', async () => {
        const { a, b, c, sa, sb, sc, room } = await threeInARoom(st, 'r');
        const m = await send(sa, room.id, 'react to this');
        await stored(st, a.token, room.id, m.id); // the cached history holds no reactions yet
        let ack = await emitAck(sb, 'message:react', { messageId: m.id, emoji: THUMBS, on: true });
        assertAckOk(ack, 'message:react');
        assert.deepEqual(ack.message.reactions, { [THUMBS]: [b.user.id] });
        const live = await h.waitFor(sa, 'message:reaction', (x) => x.messageId === m.id);
        assert.deepEqual(live, {
            messageId: m.id, roomId: room.id, userId: b.user.id, emoji: THUMBS, on: true,
            reactions: { [THUMBS]: [b.user.id] },
        });
        await h.waitFor(sc, 'message:reaction', (x) => x.messageId === m.id);

        ack = await emitAck(sc, 'message:react', { messageId: m.id, emoji: THUMBS, on: true });
        assert.deepEqual(ack.message.reactions[THUMBS], [b.user.id, c.user.id]);
        // once per user per emoji: a second "on" changes nothing
        ack = await emitAck(sb, 'message:react', { messageId: m.id, emoji: THUMBS, on: true });
        assert.deepEqual(ack.message.reactions[THUMBS], [b.user.id, c.user.id]);
        for (const e of [FAMILY, FLAG, KEYCAP, '❤️', '👍🏽']) {
            assertAckOk(await emitAck(sa, 'message:react', { messageId: m.id, emoji: e, on: true }), e);
        }
        ack = await emitAck(sb, 'message:react', { messageId: m.id, emoji: THUMBS, on: false });
        assert.deepEqual(ack.message.reactions[THUMBS], [c.user.id]);
        const off = await h.waitFor(sa, 'message:reaction',
            (x) => x.messageId === m.id && x.on === false && x.userId === b.user.id);
        assert.deepEqual(off.reactions[THUMBS], [c.user.id]);
        ack = await emitAck(sc, 'message:react', { messageId: m.id, emoji: THUMBS, on: false });
        assert.ok(!(THUMBS in ack.message.reactions), 'the last one out removes the emoji');

        const s = await stored(st, b.token, room.id, m.id);
        assert.deepEqual(Object.keys(s.reactions).sort(), [FAMILY, FLAG, KEYCAP, '❤️', '👍🏽'].sort());
        assert.deepEqual(s.reactions[FAMILY], [a.user.id]);
        assert.equal(s.updatedAt, m.updatedAt, 'a reaction is not an edit');
    });

    test('bad input: the error shape, and nothing changes', async () => {
        const { a, sa, sb, room } = await threeInARoom(st, 'r');
        const m = await send(sa, room.id, 'no reactions yet');
        const bad = [
            [{ messageId: m.id, emoji: 'ok', on: true }, 'invalid_payload'],
            [{ messageId: m.id, emoji: '👍👍', on: true }, 'invalid_payload'],
            [{ messageId: m.id, emoji: '', on: true }, 'invalid_payload'],
            [{ messageId: m.id, emoji: '1', on: true }, 'invalid_payload'],
            [{ messageId: m.id, emoji: '🇫', on: true }, 'invalid_payload'],
            [{ messageId: m.id, emoji: '👍'.repeat(9), on: true }, 'invalid_payload'],
            [{ messageId: m.id, emoji: 5, on: true }, 'invalid_payload'],
            [{ messageId: m.id, emoji: THUMBS, on: 'yes' }, 'invalid_payload'],
            [{ messageId: m.id, emoji: THUMBS }, 'invalid_payload'],
            [{ messageId: 'x', emoji: THUMBS, on: true }, 'invalid_payload'],
            [{ messageId: h.randomHex24(), emoji: THUMBS, on: true }, 'not_found'],
        ];
        for (const [payload, code] of bad) {
            assertAckError(await emitAck(sb, 'message:react', payload), code);
        }
        const d = await st.node(1).register(h.uniqueName('rd'));
        const sd = await st.node(1).connect(d.token);
        assertAckError(await emitAck(sd, 'message:react', { messageId: m.id, emoji: THUMBS, on: true }), 'forbidden');
        // a deleted message takes no reactions
        const gone = await send(sa, room.id, 'soon gone');
        assertAckOk(await emitAck(sa, 'message:delete', { messageId: gone.id }));
        assertAckError(await emitAck(sb, 'message:react', { messageId: gone.id, emoji: THUMBS, on: true }), 'not_found');
        // at most 20 different emoji on one message
        const many = ['😀', '😁', '😂', '😃', '😄', '😅', '😆', '😇', '😈', '😉',
            '😊', '😋', '😌', '😍', '😎', '😏', '😐', '😑', '😒', '😓'];
        for (const e of many) {
            assertAckOk(await emitAck(sb, 'message:react', { messageId: m.id, emoji: e, on: true }), e);
        }
        assertAckError(await emitAck(sb, 'message:react', { messageId: m.id, emoji: '🙈', on: true }), 'conflict');
        assertAckOk(await emitAck(sa, 'message:react', { messageId: m.id, emoji: '😀', on: true }),
            'adding to an existing one is fine');
        const s = await stored(st, a.token, room.id, m.id);
        assert.equal(Object.keys(s.reactions).length, 20);
        assert.deepEqual(await stored(st, a.token, room.id, gone.id).then((x) => x.reactions), {});
        assert.equal(sd.inbox.list('message:reaction').length, 0, 'a non-member hears nothing');
    });

    test('many different emoji at once: never more than 20, the rest refused with conflict', async () => {
        const { a, b, c, sa, room } = await threeInARoom(st, 'r');
        const m = await send(sa, room.id, 'everyone at once');
        // All through node 0: the store holds the cap with a conditional findAndModify, atomic
        // on MongoDB across nodes, but FerretDB 1.24 (the MongoDB of these tests) runs
        // findAndModify as a query and then a plain write, so two nodes' writes to one
        // document at once can lose each other whatever chatd does; within one node chatd
        // keeps a message's reactions in order (message_ops.c).
        const sb = await st.node(0).connect(b.token);
        const sc = await st.node(0).connect(c.token);
        const emoji = ['😀', '😁', '😂', '😃', '😄', '😅', '😆', '😇', '😈', '😉',
            '😊', '😋', '😌', '😍', '😎', '😏', '😐', '😑', '😒', '😓',
            '🙈', '🙉', '🙊', '🐶', '🐱', '🐭', '🐹', '🐰', '🦊', '🐻'];
        const sockets = [sa, sb, sc];
        const acks = await Promise.all(emoji.map((e, i) =>
            emitAck(sockets[i % 3], 'message:react', { messageId: m.id, emoji: e, on: true })));
        const ok = acks.filter((x) => x.ok === true);
        const refused = acks.filter((x) => x.ok !== true);
        for (const x of refused) {
            assertAckError(x, 'conflict');
            assert.match(x.error.message, /20 different reactions/);
        }
        assert.equal(ok.length, 20, JSON.stringify(acks.map((x) => x.ok)));
        assert.equal(refused.length, emoji.length - 20);
        for (const x of ok) {
            assert.ok(Object.keys(x.message.reactions).length <= 20);
        }
        const s = await stored(st, a.token, room.id, m.id);
        assert.equal(Object.keys(s.reactions).length, 20);
        // exactly the acknowledged ones are stored
        const acked = emoji.filter((e, i) => acks[i].ok === true).sort();
        assert.deepEqual(Object.keys(s.reactions).sort(), acked);
    });

    test('a burst of reactions to one message waits in line without holding up other calls', async () => {
        const { a, b, c, sa, room } = await threeInARoom(st, 'r');
        const m = await send(sa, room.id, 'a busy message');
        // all on node 0, so they queue behind each other there (message_ops.c); while they
        // wait, nothing of the node's store is taken up, so a message from a fourth member
        // in another room is stored and acknowledged all the same
        const sb = await st.node(0).connect(b.token);
        const sc = await st.node(0).connect(c.token);
        const d = await st.node(0).register(h.uniqueName('rd'));
        const sd = await st.node(0).connect(d.token);
        const other = await emitAck(sd, 'room:create', { name: h.uniqueName('rother'), type: 'group', participants: [] });
        assertAckOk(other, 'room:create');
        const emoji = ['😀', '😁', '😂', '😃', '😄', '😅', '😆', '😇', '😈', '😉'];
        const sockets = [sa, sb, sc];
        const reacting = [];
        for (const e of emoji) {
            for (const s of sockets) {
                reacting.push(emitAck(s, 'message:react', { messageId: m.id, emoji: e, on: true }));
            }
        }
        const sent = await send(sd, other.room.id, 'not held up');
        assert.equal(sent.content, 'not held up');
        const acks = await Promise.all(reacting);
        acks.forEach((x, i) => assertAckOk(x, `reaction ${i}`));
        // same emoji from three users at once: none lost
        const s = await stored(st, a.token, room.id, m.id);
        const everyone = [a.user.id, b.user.id, c.user.id].sort();
        assert.deepEqual(Object.keys(s.reactions).sort(), [...emoji].sort());
        for (const e of emoji) {
            assert.deepEqual([...s.reactions[e]].sort(), everyone, e);
        }
    });
});

forEachStack('message:react with one reaction waiting at most', (st) => {
    test('past CHAT_REACTIONS_WAITING_MAX a reaction is refused unavailable and changes nothing', async () => {
        const { a, b, c, sa, room } = await threeInARoom(st, 'r');
        const m = await send(sa, room.id, 'only one may wait');
        const sb = await st.node(0).connect(b.token);
        const sc = await st.node(0).connect(c.token);
        const emoji = ['😀', '😁', '😂', '😃', '😄', '😅', '😆', '😇', '😈', '😉'];
        const calls = [];
        for (const e of emoji) {
            for (const [s, u] of [[sa, a], [sb, b], [sc, c]]) {
                calls.push({ e, u: u.user.id, ack: emitAck(s, 'message:react', { messageId: m.id, emoji: e, on: true }) });
            }
        }
        const acks = await Promise.all(calls.map((x) => x.ack));
        const refused = acks.filter((x) => x.ok !== true);
        for (const x of refused) {
            assertAckError(x, 'unavailable');
            assert.match(x.error.message, /too many reactions to this message at once/);
        }
        // how many wait at once depends on when each arrives; what is acknowledged is stored,
        // what is refused is not, and each refusal is counted
        const want = {};
        calls.forEach((x, i) => {
            if (acks[i].ok === true) {
                (want[x.e] = want[x.e] || []).push(x.u);
            }
        });
        const s = await stored(st, a.token, room.id, m.id);
        assert.deepEqual(Object.keys(s.reactions).sort(), Object.keys(want).sort());
        for (const e of Object.keys(want)) {
            assert.deepEqual([...s.reactions[e]].sort(), want[e].sort(), e);
        }
        const metrics = await st.node(0).http('GET', '/metrics');
        assert.equal(metrics.status, 200);
        const n = /^chatd_reactions_refused_total (\d+)/m.exec(metrics.text);
        assert.ok(n, 'chatd_reactions_refused_total is shown');
        assert.equal(Number(n[1]), refused.length);
    });
}, { env: { CHAT_REACTIONS_WAITING_MAX: '1' } });

const scripts = fs.mkdtempSync(path.join(os.tmpdir(), 'chatd-react-scripts-'));
fs.writeFileSync(path.join(scripts, 'reactions.lua'), `
local chat = require "chat"
chat.hook("message/react", function(ev)
  if ev.emoji == "💩" then
    return chat.reject("policy_rejected", "keep it friendly")
  end
end)
`);

forEachStack('message:react with a policy', (st) => {
    test('message/react rejects a reaction; nothing is stored or sent', async () => {
        const { a, sa, sb, room } = await threeInARoom(st, 'r');
        const m = await send(sa, room.id, 'be nice');
        assertAckError(await emitAck(sb, 'message:react', { messageId: m.id, emoji: '💩', on: true }), 'policy_rejected');
        assertAckOk(await emitAck(sb, 'message:react', { messageId: m.id, emoji: THUMBS, on: true }));
        await h.waitFor(sa, 'message:reaction', (x) => x.emoji === THUMBS);
        assert.equal(sa.inbox.list('message:reaction', (x) => x.emoji === '💩').length, 0);
        assert.deepEqual(Object.keys((await stored(st, a.token, room.id, m.id)).reactions), [THUMBS]);
    });
}, { scripts });

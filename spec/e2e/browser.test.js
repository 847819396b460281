'use strict';
// The web page (examples/web) in a real browser: Debian's Chromium, headless, driven by
// playwright-core, against a chatd running the repository's default policies and bots
// (scripts/), as `tools/run.sh` does. Two people, alice on a desktop-sized window and bob on
// a phone-sized one, sign up, message each other directly and in a room, see each other type
// and come and go, lose the connection and catch up, page back through history, and read the
// server's own sentences when it refuses a message (too long, moderation, slow mode).
// Screenshots of each step go to artifacts/screenshots/.
//
// The steps tell one story and build on each other, so they run in order and an early
// failure fails the later ones too; each failure leaves FAILED-*.png pictures of both pages.
// Every wait is on something the page shows (a selector, a text, an attribute), bounded by
// UI_WAIT_MS. Set UPDATE_DOCS_SCREENSHOT=1 to also refresh docs/screenshot.png.

const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const nodeTest = require('node:test');
const h = require('./helpers');
const { test } = h;

const REPO = path.resolve(__dirname, '..', '..');
const SHOTS = path.join(REPO, 'artifacts', 'screenshots');
const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
const UI_WAIT_MS = Number(process.env.E2E_UI_WAIT_MS || 10000);
const MAX_CONTENT = 500; // CHAT_MESSAGE_MAX_BYTES for this server, to see a refusal

const srv = h.useServer({
    scripts: path.join(REPO, 'scripts'),
    env: {
        CHAT_STATIC_DIR: path.join(REPO, 'examples', 'web'),
        CHAT_MESSAGE_MAX_BYTES: String(MAX_CONTENT),
        // every page and helper here shares 127.0.0.1: keep the per-address limit out of the way
        CHAT_RATELIMIT_IP: '10000',
        // the moderation settings the steps below rely on, whatever the defaults become
        CHAT_BLOCKED_WORDS: 'darn',
        CHAT_FLOOD_REPEATS: '3',
        CHAT_FLOOD_WINDOW_S: '30',
    },
});

let browser;
const people = {}; // name -> { name, context, page, errors, id, token }
const shared = {}; // ids the steps hand on: room, dm

/** A measurement, reported as a test diagnostic. */
function timing(t, what, ms) {
    t.diagnostic(`timing: ${what}: ${ms} ms`);
}

nodeTest.before(async () => {
    if (!fs.existsSync(CHROMIUM)) {
        throw new Error(`Chromium not found at ${CHROMIUM}: install Debian's chromium package ` +
            '(tools/test.sh does) or set CHROMIUM_PATH');
    }
    const { chromium } = require('playwright-core');
    fs.mkdirSync(SHOTS, { recursive: true });
    // launch() runs the browser with a fresh temporary profile (--user-data-dir) of its own
    // and removes it on close.
    browser = await chromium.launch({
        executablePath: CHROMIUM,
        headless: true,
        args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
            '--disable-background-networking', '--disable-component-update', '--disable-sync'],
        timeout: 30000,
    });
});

// a failed step leaves a picture of every page as it was
nodeTest.afterEach(async (t) => {
    if (t.passed !== false) {
        return;
    }
    const slug = t.name.replace(/[^a-z0-9]+/gi, '-').slice(0, 60);
    for (const p of Object.values(people)) {
        if (p.page && !p.page.isClosed()) {
            await p.page.screenshot({ path: path.join(SHOTS, `FAILED-${slug}-${p.name}.png`) })
                .catch(() => {});
        }
    }
});

nodeTest.after(async () => {
    if (browser) {
        await browser.close();
    }
});

async function person(name, viewport) {
    const context = await browser.newContext({
        viewport,
        deviceScaleFactor: 1,
        isMobile: viewport.width < 500,
        hasTouch: viewport.width < 500,
        colorScheme: 'light',
        locale: 'en-GB',
        timezoneId: 'UTC',
    });
    context.setDefaultTimeout(UI_WAIT_MS);
    const p = { name, context, page: null, errors: [] };
    p.page = await openPage(p);
    people[name] = p;
    return p;
}

async function openPage(p) {
    const page = await p.context.newPage();
    page.on('pageerror', (err) => p.errors.push(`${err.message}\n${err.stack}`));
    await page.goto(srv.url + '/');
    return page;
}

async function shot(p, name) {
    await p.page.screenshot({ path: path.join(SHOTS, `${name}.png`) });
}

function row(page, text) {
    return page.locator('#messages li.msg', { hasText: text });
}

async function signUp(p) {
    const { page } = p;
    await page.locator('#auth:not([hidden])').waitFor();
    await page.click('#tab-register');
    await page.fill('#register-form [name=username]', p.username);
    await page.fill('#register-form [name=email]', `${p.username}@example.test`);
    await page.fill('#register-form [name=password]', h.PASSWORD);
    await page.click('#register-form button[type=submit]');
    await page.waitForSelector('#conn-state[data-state="online"]', { state: 'attached' });
    p.id = (await page.textContent('#my-id')).trim();
    assert.match(p.id, h.HEX24, 'the page shows the user id');
    p.token = await page.evaluate(() => JSON.parse(localStorage.getItem('chatd.session')).token);
}

/** Opens a room from the list (going back to the list first on a phone). */
async function openRoom(p, roomId) {
    const { page } = p;
    const link = page.locator(`#room-list a[data-room-id="${roomId}"]`);
    if (!(await link.isVisible())) {
        await page.click('#back');
    }
    await link.click();
    await page.locator('#room-view:not([hidden])').waitFor();
    await page.waitForFunction((id) => document.getElementById('room-id').textContent === id, roomId);
}

async function send(p, text) {
    await p.page.fill('#composer-input', text);
    await p.page.press('#composer-input', 'Enter');
}

/** Records every data-state a message row goes through, keyed by clientMsgId. */
async function recordRowStates(page) {
    await page.evaluate(() => {
        window.__rowStates = {};
        const note = (li, state) => {
            const key = li.dataset.clientMsgId;
            if (!key || !state) {
                return;
            }
            const seen = (window.__rowStates[key] = window.__rowStates[key] || []);
            if (seen[seen.length - 1] !== state) {
                seen.push(state);
            }
        };
        new MutationObserver((records) => {
            for (const r of records) {
                if (r.type === 'attributes') {
                    note(r.target, r.oldValue);
                    note(r.target, r.target.dataset.state);
                }
                for (const n of r.addedNodes) {
                    if (n.nodeType === 1 && n.matches('li.msg')) {
                        note(n, n.dataset.state);
                    }
                }
            }
        }).observe(document.getElementById('messages'), {
            childList: true, subtree: true, attributes: true, attributeOldValue: true,
            attributeFilter: ['data-state'],
        });
    });
}

async function visibleTexts(page) {
    return page.locator('#messages li.msg .text').allTextContents();
}

/** Asserts no stored message has two rows. */
async function assertNoDuplicateRows(page) {
    const ids = await page.locator('#messages li.msg[data-id]').evaluateAll((lis) => lis.map((li) => li.dataset.id));
    assert.equal(new Set(ids).size, ids.length, `a message is shown twice: ${ids.join(' ')}`);
}

function assertNoPageErrors() {
    for (const p of Object.values(people)) {
        assert.deepEqual(p.errors, [], `${p.name}'s page threw`);
    }
}

nodeTest.describe('the web page in Chromium', () => {
    test('serves the page; a sign-in while the server is unreachable says so', async () => {
        const res = await srv.http('GET', '/');
        assert.equal(res.status, 200);
        assert.match(res.headers.get('content-type'), /^text\/html/);
        const alice = await person('alice', { width: 1280, height: 800 });
        alice.username = 'alice'; // a fresh server: the names are free
        await shot(alice, '01-sign-in');
        // the network refuses the login request: the form explains instead of hanging
        await alice.page.route('**/auth/login', (route) => route.abort('connectionrefused'));
        await alice.page.fill('#login-form [name=login]', 'nobody');
        await alice.page.fill('#login-form [name=password]', 'whatever1');
        await alice.page.click('#login-form button[type=submit]');
        const err = alice.page.locator('#login-form .form-error');
        await err.waitFor();
        assert.match(await err.textContent(), /Cannot reach the chat server/);
        await alice.page.unroute('**/auth/login');
        // the server's own answer for a wrong password
        await alice.page.click('#login-form button[type=submit]');
        await alice.page.waitForFunction(() => {
            const text = document.querySelector('#login-form .form-error').textContent;
            return text !== '' && !/Cannot reach/.test(text);
        });
        const answer = await srv.http('POST', '/auth/login', { login: 'nobody', password: 'whatever1' });
        assert.equal(answer.status, 401);
        assert.equal(await err.textContent(), `Not signed in${answer.body.error.message}`,
            'a title, then the server\'s own sentence');
        await shot(alice, '02-sign-in-error');
    });

    test('two people sign up: alice on a desktop, bob on a phone', async (t) => {
        const t0 = Date.now();
        await signUp(people.alice);
        timing(t, 'sign up to connected (alice)', Date.now() - t0);
        const bob = await person('bob', { width: 390, height: 844 });
        bob.username = 'bob';
        await signUp(bob);
        await shot(people.alice, '03-alice-signed-in');
        await shot(bob, '04-bob-phone-rooms');
    });

    test('bob messages alice directly by her user id; she sees it arrive and who it is from', async () => {
        const { alice, bob } = people;
        await bob.page.click('#new-dm');
        await bob.page.fill('#dlg-dm [name=userId]', alice.id);
        await bob.page.fill('#dlg-dm [name=label]', alice.username);
        await shot(bob, '05-bob-new-direct');
        await bob.page.click('#dlg-dm button[value=ok]');
        await bob.page.locator('#room-view:not([hidden])').waitFor();
        assert.equal(await bob.page.textContent('#room-title'), alice.username);
        shared.dm = (await bob.page.textContent('#room-id')).trim();
        await send(bob, 'hi alice, it is bob');
        await row(bob.page, 'hi alice, it is bob').and(bob.page.locator('[data-state="sent"]')).waitFor();
        // alice learns of the room from the message itself and shows it, unread, under bob's name
        const link = alice.page.locator(`#room-list a[data-room-id="${shared.dm}"]`);
        await link.locator('.badge').waitFor();
        assert.equal((await link.locator('.name').textContent()).trim(), bob.username);
        await shot(alice, '06-alice-unread-direct');
        await openRoom(alice, shared.dm);
        await row(alice.page, 'hi alice, it is bob').waitFor();
        await send(alice, 'hello bob!');
        await row(bob.page, 'hello bob!').waitFor();
        assertNoPageErrors();
    });

    test('alice creates a room, bob joins it with its id, and they chat: pending, then sent', async (t) => {
        const { alice, bob } = people;
        await alice.page.click('#new-room');
        await alice.page.fill('#dlg-room [name=name]', 'general');
        await alice.page.click('#dlg-room button[value=ok]');
        await alice.page.waitForFunction(() => document.getElementById('room-title').textContent === 'general');
        shared.room = (await alice.page.textContent('#room-id')).trim();
        assert.match(shared.room, h.HEX24);

        await bob.page.click('#back');
        await bob.page.click('#join-room');
        await bob.page.fill('#dlg-join [name=roomId]', shared.room);
        await bob.page.click('#dlg-join button[value=ok]');
        await bob.page.waitForFunction(() => document.getElementById('room-title').textContent === 'general');
        // alice sees bob join
        await alice.page.locator(`#member-list li[data-user-id="${bob.id}"]`).waitFor();

        await recordRowStates(alice.page);
        const t0 = Date.now();
        await send(alice, 'glad you made it, bob');
        await row(bob.page, 'glad you made it, bob').waitFor();
        timing(t, 'Enter on one page to the message shown on the other', Date.now() - t0);
        const mine = row(alice.page, 'glad you made it, bob');
        await mine.and(alice.page.locator('[data-state="sent"]')).waitFor();
        const cid = await mine.getAttribute('data-client-msg-id');
        const states = await alice.page.evaluate((k) => window.__rowStates[k], cid);
        assert.deepEqual(states, ['pending', 'sent'], 'the row showed "sending" before the ack turned it into "sent"');

        await send(bob, 'thanks! glad to be here');
        await row(alice.page, 'thanks! glad to be here').waitFor();
        await send(alice, 'the web page is served by chatd itself');
        await row(bob.page, 'the web page is served by chatd itself').waitFor();
        await send(bob, 'and it works on my phone, nothing to install');
        await row(alice.page, 'nothing to install').waitFor();
        // names learned from the direct room label the senders in the group too
        assert.equal(await row(alice.page, 'thanks! glad to be here').locator('.who').textContent(), bob.username);
        assertNoPageErrors();
    });

    test('typing shows on the other page and goes away', async () => {
        const { alice, bob } = people;
        await bob.page.focus('#composer-input');
        await bob.page.keyboard.type('I am typing a long');
        await alice.page.waitForFunction((name) =>
            document.getElementById('typing').textContent === `${name} is typing…`, bob.username);
        await shot(alice, '07-alice-sees-bob-typing');
        if (process.env.UPDATE_DOCS_SCREENSHOT === '1') {
            await alice.page.screenshot({ path: path.join(REPO, 'docs', 'screenshot.png') });
        }
        await shot(bob, '08-bob-phone-typing');
        await bob.page.fill('#composer-input', ''); // cleared: typing:stop
        await alice.page.waitForFunction(() => document.getElementById('typing').textContent === '');
    });

    test('presence: alice sees bob leave (last seen) and come back (online)', async () => {
        const { alice, bob } = people;
        const member = alice.page.locator(`#member-list li[data-user-id="${bob.id}"]`);
        await member.locator('.online').waitFor();
        await bob.page.close();
        await member.getByText(/last seen/).waitFor();
        const dmAvatar = alice.page.locator(`#room-list a[data-room-id="${shared.dm}"] .avatar`);
        assert.equal(await dmAvatar.getAttribute('data-presence'), 'offline');
        await shot(alice, '09-alice-bob-offline');
        // bob opens the page again: the saved session signs him straight back in
        bob.page = await openPage(bob);
        await bob.page.waitForSelector('#conn-state[data-state="online"]', { state: 'attached' });
        await member.locator('.online').waitFor();
        assert.equal(await dmAvatar.getAttribute('data-presence'), 'online');
        await shot(bob, '10-bob-phone-rooms');
        await openRoom(bob, shared.room);
        await row(bob.page, 'the web page is served by chatd itself').waitFor();
    });

    test('bob loses the connection, writes offline, and catches up without duplicates', async (t) => {
        const { alice, bob } = people;
        await bob.context.setOffline(true);
        await bob.page.locator('#conn-banner:not([hidden])').waitFor();
        await alice.page.locator(`#member-list li[data-user-id="${bob.id}"]`).getByText(/last seen/).waitFor();
        const missed = ['missed one', 'missed two', 'missed three'];
        for (const text of missed) {
            await send(alice, text);
            await row(alice.page, text).and(alice.page.locator('[data-state="sent"]')).waitFor();
        }
        await send(bob, 'written while offline');
        const pending = row(bob.page, 'written while offline');
        await pending.and(bob.page.locator('[data-state="pending"]')).waitFor();
        assert.match(await pending.textContent(), /Waiting for connection/);
        await shot(bob, '11-bob-phone-offline');

        const t0 = Date.now();
        await bob.context.setOffline(false);
        // socket.io retries with a backoff of up to 5 s (reconnectionDelayMax)
        await bob.page.waitForSelector('#conn-state[data-state="online"]',
            { state: 'attached', timeout: UI_WAIT_MS + 5000 });
        await pending.and(bob.page.locator('[data-state="sent"]')).waitFor();
        for (const text of missed) {
            await row(bob.page, text).waitFor();
        }
        timing(t, 'network back to caught up (bob)', Date.now() - t0);
        await row(alice.page, 'written while offline').waitFor();
        await shot(bob, '12-bob-phone-caught-up');
        await assertNoDuplicateRows(bob.page);
        const texts = await visibleTexts(bob.page);
        const at = missed.map((t) => texts.indexOf(t));
        assert.deepEqual([...at].sort((x, y) => x - y), at, 'the missed messages are in order');
        assert.ok(texts.indexOf('written while offline') > at[2], 'the offline message is stored after them');
        // exactly one stored copy of the offline message (the resend reused its clientMsgId)
        const res = await srv.http('GET', `/messages?roomId=${shared.room}&limit=100`, undefined, alice.token);
        assert.equal(res.body.messages.filter((m) => m.content === 'written while offline').length, 1);
        assertNoPageErrors();
    });

    test('older history loads when scrolling up', async () => {
        const { bob } = people;
        // 45 messages from three other people (15 each, so no one floods the room)
        const helpers = [];
        for (let i = 0; i < 3; i++) {
            const u = await srv.register();
            const s = await srv.connect(u.token);
            h.assertAckOk(await h.emitAck(s, 'room:join', { roomId: shared.room }), 'room:join');
            helpers.push(s);
        }
        for (let i = 1; i <= 45; i++) {
            const ack = await h.emitAck(helpers[i % 3], 'message:send', {
                roomId: shared.room, content: `history ${String(i).padStart(2, '0')}`,
            });
            h.assertAckOk(ack, 'message:send');
        }
        // a fresh page loads only the newest page of the room
        await bob.page.reload();
        await bob.page.waitForSelector('#conn-state[data-state="online"]', { state: 'attached' });
        await openRoom(bob, shared.room);
        await row(bob.page, 'history 45').waitFor();
        const rows = bob.page.locator('#messages li.msg');
        const firstPage = await rows.count();
        assert.ok(firstPage < 45, `first page is partial (${firstPage} rows)`);
        assert.equal(await row(bob.page, 'glad you made it, bob').count(), 0);
        const list = bob.page.locator('#messages');
        for (let i = 0; i < 10; i++) {
            if (await bob.page.locator('#messages li.history', { hasText: 'start of the conversation' }).count()) {
                break;
            }
            const n = await rows.count();
            await list.hover();
            await bob.page.mouse.wheel(0, -20000);
            await bob.page.waitForFunction((before) =>
                document.querySelectorAll('#messages li.msg').length > before ||
                /start of the conversation/.test(document.querySelector('#messages li.history')?.textContent), n);
        }
        await bob.page.locator('#messages li.history', { hasText: 'start of the conversation' }).waitFor();
        await row(bob.page, 'glad you made it, bob').waitFor();
        await assertNoDuplicateRows(bob.page);
        const texts = await visibleTexts(bob.page);
        const history = texts.filter((t) => t.startsWith('history '));
        assert.deepEqual(history, Array.from({ length: 45 }, (_, i) => `history ${String(i + 1).padStart(2, '0')}`));
        await list.evaluate((el) => { el.scrollTop = 0; });
        await shot(bob, '13-bob-phone-history-top');
        assertNoPageErrors();
    });

    test('refusals read as the server\'s own sentences: too long, moderation, slow mode', async () => {
        const { alice } = people;
        const failed = alice.page.locator('#messages li.msg[data-state="failed"]');
        const sent = alice.page.locator('[data-state="sent"]');

        // too long for CHAT_MESSAGE_MAX_BYTES: it can never pass, so Edit and no Retry
        const long = 'x'.repeat(MAX_CONTENT + 50);
        await send(alice, long);
        await failed.waitFor();
        let problem = await failed.locator('.problem').textContent();
        assert.match(problem, new RegExp(`longer than ${MAX_CONTENT} bytes`), problem);
        assert.equal(await failed.getByRole('button', { name: 'Retry' }).count(), 0,
            'no Retry for a message that can never be accepted');
        await failed.getByRole('button', { name: 'Edit' }).click();
        await failed.waitFor({ state: 'detached' });
        assert.equal(await alice.page.inputValue('#composer-input'), long, 'the text is back in the composer');
        await alice.page.fill('#composer-input', '');

        // the word filter (scripts/moderation.lua) rewrites: the stored text replaces ours
        await send(alice, 'well, darn it');
        await row(alice.page, 'well, d*** it').and(sent).waitFor();

        // flood control refuses the same text a fourth time within 30 s
        const same = alice.page.locator('#messages li.msg', { hasText: 'same words again' });
        for (let i = 1; i <= 3; i++) {
            await send(alice, 'same words again');
            await alice.page.waitForFunction((n) => [...document.querySelectorAll(
                '#messages li.msg[data-state="sent"] .text')]
                .filter((x) => x.textContent === 'same words again').length === n, i);
        }
        await send(alice, 'same words again');
        await same.and(failed).waitFor();
        problem = await failed.locator('.problem').textContent();
        assert.match(problem, /^Not allowed here: .*same message/, problem);
        await shot(alice, '14-alice-refused-by-moderation');
        await failed.getByRole('button', { name: 'Edit' }).click();
        await failed.waitFor({ state: 'detached' });
        await alice.page.fill('#composer-input', '');

        // a room in slow mode (scripts/ratelimit.lua): rate_limited, which Retry may fix later
        await alice.page.click('#new-room');
        await alice.page.fill('#dlg-room [name=name]', 'slow lane');
        await alice.page.selectOption('#dlg-room [name=slowMode]', '60');
        await shot(alice, '15-alice-new-room-slow-mode');
        await alice.page.click('#dlg-room button[value=ok]');
        await alice.page.waitForFunction(() => document.getElementById('room-title').textContent === 'slow lane');
        await send(alice, 'first in the slow lane');
        await row(alice.page, 'first in the slow lane').and(sent).waitFor();
        await send(alice, 'second in the slow lane');
        await row(alice.page, 'second in the slow lane').and(failed).waitFor();
        problem = await failed.locator('.problem').textContent();
        assert.match(problem, /^Slow down: .*slow mode.*60 s/i, problem);
        assert.equal(await failed.getByRole('button', { name: 'Retry' }).count(), 1);
        await shot(alice, '16-alice-slow-mode');
        assertNoPageErrors();
    });

    test('the desktop view of the conversation', async () => {
        const { alice, bob } = people;
        await alice.page.reload();
        await alice.page.waitForSelector('#conn-state[data-state="online"]', { state: 'attached' });
        await openRoom(alice, shared.room);
        await row(alice.page, 'history 45').waitFor();
        await send(bob, 'see you tomorrow!');
        await row(alice.page, 'see you tomorrow!').waitFor();
        await bob.page.focus('#composer-input');
        await bob.page.keyboard.type('one more');
        await alice.page.waitForFunction(() => /is typing/.test(document.getElementById('typing').textContent));
        await shot(alice, '17-alice-desktop-room');
        await bob.page.fill('#composer-input', '');
        assertNoPageErrors();
    });

    test('names come from the directory: bob\'s display name shows on alice\'s page', async () => {
        const { alice, bob } = people;
        const res = await srv.http('PATCH', '/me', { displayName: 'Bob the Builder' }, bob.token);
        assert.equal(res.status, 200, res.text);
        await alice.page.reload();
        await alice.page.waitForSelector('#conn-state[data-state="online"]', { state: 'attached' });
        await openRoom(alice, shared.room);
        const who = row(alice.page, 'see you tomorrow!').locator('.who');
        await alice.page.waitForFunction(
            (el) => el && el.textContent === 'Bob the Builder', await who.elementHandle(),
            { timeout: UI_WAIT_MS });
        await shot(alice, '18-alice-directory-names');
        assertNoPageErrors();
    });

    test('alice edits and then deletes her message; bob sees "(edited)", then a tombstone', async () => {
        const { alice, bob } = people;
        await openRoom(bob, shared.room);
        await send(alice, 'a tpyo in here');
        const sentRow = row(alice.page, 'a tpyo in here').and(alice.page.locator('[data-state="sent"]'));
        await sentRow.waitFor();
        await row(bob.page, 'a tpyo in here').waitFor();
        alice.page.once('dialog', (d) => d.accept('no typo in here'));
        await sentRow.hover();
        await sentRow.getByRole('button', { name: 'Edit' }).click();
        await row(bob.page, 'no typo in here').locator('.edited').waitFor();
        assert.equal(await row(bob.page, 'a tpyo in here').count(), 0);
        await shot(bob, '19-bob-sees-edit');
        const edited = row(alice.page, 'no typo in here');
        await edited.hover();
        await edited.getByRole('button', { name: 'Delete' }).click();
        await bob.page.waitForFunction(() =>
            [...document.querySelectorAll('#messages li.msg')].some((li) =>
                li.textContent.includes('This message was deleted')));
        assert.equal(await row(bob.page, 'no typo in here').count(), 0);
        await shot(bob, '20-bob-sees-tombstone');
        assertNoPageErrors();
    });

    test('bob reacts with 👍 to alice\'s message; alice sees the count and takes part', async () => {
        const { alice, bob } = people;
        await send(alice, 'react if you agree');
        const bobRow = row(bob.page, 'react if you agree');
        await bobRow.waitFor();
        await bobRow.hover();
        await bobRow.getByRole('button', { name: 'React with 👍' }).click();
        const chip = row(alice.page, 'react if you agree').locator('.reaction');
        await alice.page.waitForFunction((el) => el && el.textContent === '👍 1', await chip.elementHandle(),
            { timeout: UI_WAIT_MS });
        await chip.click();
        await bob.page.waitForFunction(() => [...document.querySelectorAll('#messages li.msg')]
            .some((li) => li.textContent.includes('react if you agree') &&
                (li.querySelector('.reaction') || {}).textContent === '👍 2'));
        await shot(bob, '21-bob-sees-reactions');
        assertNoPageErrors();
    });

    test('read markers: alice sees "Seen by" bob; unread counts come from the server after a reload', async () => {
        const { alice, bob } = people;
        await send(alice, 'did you see this one?');
        await row(bob.page, 'did you see this one?').waitFor();
        // bob has the room open: his page marks it read, and alice's shows where he stopped
        await row(alice.page, 'did you see this one?').locator('.seen', { hasText: 'Seen by Bob the Builder' })
            .waitFor({ timeout: UI_WAIT_MS });
        await shot(alice, '22-alice-seen-by-bob');
        // two messages while alice looks at another room; after a reload the count is the server's
        await openRoom(alice, shared.dm);
        for (const text of ['unread one', 'unread two']) {
            await send(bob, text);
            await row(bob.page, text).and(bob.page.locator('[data-state="sent"]')).waitFor();
        }
        await alice.page.reload();
        await alice.page.waitForSelector('#conn-state[data-state="online"]', { state: 'attached' });
        const badge = alice.page.locator(`#room-list a[data-room-id="${shared.room}"] .badge`);
        await badge.waitFor({ timeout: UI_WAIT_MS });
        assert.equal(await badge.textContent(), '2');
        await shot(alice, '23-alice-unread-after-reload');
        assertNoPageErrors();
    });

    test('a mention: bob is told on his page; the toast opens the room, which marks it read', async () => {
        const { alice, bob } = people;
        await openRoom(bob, shared.dm);
        await openRoom(alice, shared.room);
        await send(alice, `@${bob.username} can you check this?`);
        const t = bob.page.locator('#toasts .toast', { hasText: 'mentioned you' });
        await t.waitFor({ timeout: UI_WAIT_MS });
        assert.match(await t.textContent(), /can you check this\?/);
        await shot(bob, '24-bob-mentioned');
        await t.click(); // the toast opens the room
        await bob.page.waitForFunction((id) => document.getElementById('room-id').textContent === id, shared.room);
        await h.eventually(async () => {
            const res = await srv.http('GET', '/notifications', undefined, bob.token);
            return res.body.unread === 0 && res.body.notifications.length === 1;
        }, 'bob\'s page marked the mention read when he opened the room');
        assertNoPageErrors();
    });

    test('alice attaches a picture; bob sees it in the room', async () => {
        const { alice, bob } = people;
        const png = Buffer.from('iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==', 'base64');
        await alice.page.setInputFiles('#attach-input', { name: 'dot.png', mimeType: 'image/png', buffer: png });
        const img = row(bob.page, 'dot.png').locator('img.file-image');
        await img.waitFor({ timeout: UI_WAIT_MS });
        await bob.page.waitForFunction((el) => el.complete && el.naturalWidth === 1, await img.elementHandle(),
            { timeout: UI_WAIT_MS });
        await shot(bob, '25-bob-sees-attachment');
        assertNoPageErrors();
    });

    test('bob edits his profile on his page; alice\'s open page renames him without a reload', async () => {
        const { alice, bob } = people;
        await openRoom(alice, shared.room);
        await openRoom(bob, shared.room);
        await send(bob, 'soon under another name');
        // the sender's name above the message (the row is drawn again when it changes)
        const senderShown = (name) => alice.page.waitForFunction(([text, n]) =>
            [...document.querySelectorAll('#messages li.msg')].some((li) => li.textContent.includes(text) &&
                (li.querySelector('.who') || {}).textContent === n), ['soon under another name', name]);
        await senderShown('Bob the Builder');
        // from here on alice's page is not reloaded: the new name has to come to it
        await alice.page.evaluate(() => { window.__notReloaded = true; });

        await bob.page.click('#back'); // the header is on the room list on a phone
        await bob.page.click('#edit-profile');
        const form = bob.page.locator('#dlg-profile form');
        await form.waitFor();
        assert.equal(await form.locator('[name=displayName]').inputValue(), 'Bob the Builder',
            'the editor starts from the profile as it is');
        // bad input: the server's sentence, the dialog stays open, nothing changes
        await form.locator('[name=avatar]').fill('not a picture');
        await form.locator('button[value=ok]').click();
        const problem = form.locator('.form-error');
        await problem.waitFor();
        assert.match(await problem.textContent(), /^Check the details.*avatar must be an http\(s\) URL/);
        await shot(bob, '26-bob-profile-refused');
        await form.locator('[name=avatar]').fill('');
        // the word filter (scripts/moderation.lua) covers display names too
        await form.locator('[name=displayName]').fill('Darn Bob');
        await form.locator('button[value=ok]').click();
        await bob.page.waitForFunction(() => /^Not allowed here/.test(
            document.querySelector('#dlg-profile .form-error').textContent));
        assert.match(await problem.textContent(), /display name has a word this chat does not allow/);
        await form.locator('[name=displayName]').fill('Robert B.');
        await form.locator('[name=statusText]').fill('on site today');
        await form.locator('button[value=ok]').click();
        await form.waitFor({ state: 'hidden' });
        await bob.page.waitForFunction(() => document.getElementById('me-name').textContent === 'Robert B.');
        await shot(bob, '27-bob-profile-saved');

        await senderShown('Robert B.');
        const member = alice.page.locator(`#member-list li[data-user-id="${bob.id}"]`);
        await member.getByText('Robert B.', { exact: true }).waitFor();
        await member.getByText('on site today', { exact: true }).waitFor();
        assert.equal(await alice.page.evaluate(() => window.__notReloaded), true, 'alice\'s page was not reloaded');
        await shot(alice, '28-alice-sees-new-name');
        const res = await srv.http('GET', `/users/${bob.id}`, undefined, alice.token);
        assert.equal(res.body.user.displayName, 'Robert B.', res.text);
        assert.equal(res.body.user.avatar, null, 'the refused picture was never stored');
        assertNoPageErrors();
    });

    test('alice finds bob by the start of his username to message him directly', async () => {
        const { alice, bob } = people;
        await alice.page.click('#new-dm');
        await alice.page.fill('#dlg-dm [name=q]', bob.username.slice(0, 2));
        const hit = alice.page.locator(`#dm-results button[data-user-id="${bob.id}"]`);
        await hit.waitFor();
        assert.equal(await hit.locator('span:not(.avatar)').textContent(), `Robert B. (@${bob.username})`);
        await shot(alice, '29-alice-finds-bob');
        await hit.click();
        assert.equal(await alice.page.inputValue('#dlg-dm [name=userId]'), bob.id);
        await alice.page.click('#dlg-dm button[value=ok]');
        // they have a direct room already: it opens
        await alice.page.waitForFunction((id) => document.getElementById('room-id').textContent === id, shared.dm);
        assertNoPageErrors();
    });

    test('bob uploads a picture in his profile; alice\'s page shows it (they need not share a room)', async (t) => {
        const { alice, bob } = people;
        // a 2x2 PNG, so a loaded picture is told from a broken one by its size
        const png = Buffer.from('iVBORw0KGgoAAAANSUhEUgAAAAIAAAACCAYAAABytg0kAAAAEUlEQVR4nGM4YWPzH4QZYAwAT6QI/d3jAgwAAAAASUVORK5CYII=', 'base64');
        await openRoom(alice, shared.room);
        // bob's phone shows the toast of his last save over the header: clicks go through it
        await bob.page.click('#edit-profile');
        const form = bob.page.locator('#dlg-profile form');
        await form.waitFor();
        await form.locator('[name=picture]').setInputFiles({ name: 'bob.png', mimeType: 'image/png', buffer: png });
        const saved = Date.now();
        await form.locator('button[value=ok]').click();
        await form.waitFor({ state: 'hidden' });
        const res = await srv.http('GET', `/users/${bob.id}`, undefined, alice.token);
        assert.match(res.body.user.avatar || '', /^\/uploads\/[0-9a-f]{24}$/, res.text);
        // bob's own header, and alice's member list, without a reload
        const loaded = (page, selector) => page.waitForFunction((sel) => {
            const img = document.querySelector(sel);
            return img && img.complete && img.naturalWidth === 2;
        }, selector, { timeout: UI_WAIT_MS });
        await loaded(bob.page, '#me-avatar img');
        await loaded(alice.page, `#member-list li[data-user-id="${bob.id}"] .avatar img`);
        timing(t, 'Save with a picture to the picture shown on the other page', Date.now() - saved);
        await shot(alice, '30-alice-sees-bob-picture');
        // a user who shares no room with bob (a fresh one, over REST) downloads it too
        const carol = await srv.register(h.uniqueName('carol'));
        const d = await fetch(`${srv.url}${res.body.user.avatar}`, { headers: { authorization: `Bearer ${carol.token}` } });
        assert.equal(d.status, 200);
        assert.ok(Buffer.from(await d.arrayBuffer()).equals(png));
        assertNoPageErrors();
    });
});

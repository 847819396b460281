// The chatd web page: sign in, rooms, messages, typing and presence over Socket.IO, history
// and catch-up over REST. No framework and no build step; `io` comes from
// vendor/socket.io.min.js (the socket.io-client package's browser bundle).
//
// Two rules keep the message list right whatever the network does:
//  - every message goes through RoomLog.put(), which de-duplicates by id and clientMsgId;
//  - a message we send keeps its clientMsgId until it is stored, so sending it again (retry,
//    reconnect) can never store it twice (PROTOCOL.md: the server answers a repeat with the
//    stored message).

import { Api, ChatError, UNREACHABLE, errorTitle, toChatError } from './api.js';
import { RoomLog } from './messages.js';

const PAGE_SIZE = 30;
const CATCH_UP_PAGES = 10; // 1000 messages; a longer gap drops the cache and starts over
const ACK_TIMEOUT_MS = 10000;
const TYPING_IDLE_MS = 3000; // typing:stop after this long without a keystroke
const TYPING_FORGET_MS = 8000; // forget someone's typing if their typing:stop got lost
const SESSION_KEY = 'chatd.session';
const USERNAME = /^[A-Za-z0-9_.-]{3,32}$/;
const OBJECT_ID = /^[0-9a-f]{24}$/;

const api = new Api(location.origin);

const state = {
    token: null,
    me: null,
    socket: null,
    conn: 'connecting', // connecting | online | offline
    wasOnline: false,
    rooms: new Map(), // id -> room
    logs: new Map(), // roomId -> RoomLog
    last: new Map(), // roomId -> newest message we know of (for previews and order)
    unread: new Map(), // roomId -> count
    reads: new Map(), // roomId -> { userId: id of the last message they read }
    readSent: new Map(), // roomId -> the message id we last marked read there
    notes: new Map(), // notification id -> unread notification (mentions of us)
    names: new Map(), // userId -> { name, self, dir (from the directory), user }
    presence: new Map(), // userId -> { status, lastSeen }
    typing: new Map(), // roomId -> Map(userId -> timer)
    activeId: null,
    typingSent: null, // roomId we told the server we are typing in
    typingTimer: 0,
    rendered: new Map(), // row key -> <li> of the active room
};

// ---- small DOM helpers ------------------------------------------------------------------

const $ = (id) => document.getElementById(id);

function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) {
        if (v === null || v === undefined || v === false) {
            continue;
        }
        if (k === 'class') {
            node.className = v;
        } else if (k === 'text') {
            node.textContent = v;
        } else if (k.startsWith('on')) {
            node.addEventListener(k.slice(2), v);
        } else {
            node.setAttribute(k, v === true ? '' : v);
        }
    }
    node.append(...children.filter((c) => c !== null && c !== undefined && c !== false));
    return node;
}

const SVG_NS = 'http://www.w3.org/2000/svg';
function icon(path) {
    const svg = document.createElementNS(SVG_NS, 'svg');
    svg.setAttribute('viewBox', '0 0 24 24');
    svg.setAttribute('aria-hidden', 'true');
    const p = document.createElementNS(SVG_NS, 'path');
    p.setAttribute('d', path);
    svg.append(p);
    return svg;
}
const ICON_CHECK = 'M5 12.5l4.5 4.5L19 7.5';
const ICON_CLOCK = 'M12 7v5l3 2M21 12a9 9 0 1 1-18 0 9 9 0 0 1 18 0z';
const ICON_ALERT = 'M12 8v5m0 3.5v.01M21 12a9 9 0 1 1-18 0 9 9 0 0 1 18 0z';

function hue(id) {
    let h = 0;
    for (const c of id || '') {
        h = (h * 31 + c.charCodeAt(0)) % 360;
    }
    return h;
}

const ICON_PERSON =
    'M12 12a4.5 4.5 0 1 0 0-9 4.5 4.5 0 0 0 0 9zm0 2c-4.4 0-8 2.2-8 5v2h16v-2c0-2.8-3.6-5-8-5z';

/** A person's picture (their profile's avatar) when it is an https address or a picture they
 * uploaded (/uploads/<id>, fetched with the token); null otherwise. */
function pictureOf(id) {
    const u = state.me && id === state.me.id ? state.me : (state.names.get(id) || {}).user;
    const url = u && u.avatar;
    return typeof url === 'string' &&
        (/^https:\/\/[^\s"'<>\\]+$/.test(url) || /^\/uploads\/[0-9a-f]{24}$/.test(url)) ? url : null;
}

/** A person's picture, else a circle with an initial; people we know no name for get a
 * silhouette. */
function avatar(node, id, label, extraClass = '') {
    const anon = !label || label.startsWith('user·');
    const picture = pictureOf(id);
    node.className = `avatar ${extraClass}${anon && !picture ? ' anon' : ''}`.trim();
    node.style.setProperty('--hue', hue(id));
    const initial = () => {
        if (anon) {
            node.replaceChildren(icon(ICON_PERSON));
        } else {
            node.textContent = label.slice(0, 1);
        }
    };
    if (picture) {
        // an address that does not load shows the initial instead
        if (picture.startsWith('/uploads/')) {
            // an uploaded picture needs the token: shown through a blob URL, as attachments are
            const img = el('img', { alt: '', onerror: initial });
            node.replaceChildren(img);
            blobUrl(picture).then((u) => { img.src = u; }).catch(initial);
        } else {
            node.replaceChildren(el('img', { src: picture, alt: '', referrerpolicy: 'no-referrer', onerror: initial }));
        }
    } else {
        initial();
    }
    return node;
}

function newClientMsgId() {
    if (crypto.randomUUID) {
        return crypto.randomUUID();
    }
    // plain http on a LAN address is not a secure context: no randomUUID there
    const b = crypto.getRandomValues(new Uint8Array(16));
    return Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
}

const timeFmt = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit' });
const dayFmt = new Intl.DateTimeFormat(undefined, { weekday: 'long', month: 'short', day: 'numeric' });
const relFmt = new Intl.RelativeTimeFormat(undefined, { numeric: 'auto' });

function dayLabel(ms) {
    const d = new Date(ms);
    const today = new Date();
    const start = (x) => new Date(x.getFullYear(), x.getMonth(), x.getDate()).getTime();
    const days = Math.round((start(today) - start(d)) / 86400000);
    if (days === 0) {
        return 'Today';
    }
    if (days === 1) {
        return 'Yesterday';
    }
    return dayFmt.format(d);
}

function ago(ms) {
    const s = Math.round((ms - Date.now()) / 1000);
    if (s > -60) {
        return 'just now';
    }
    if (s > -3600) {
        return relFmt.format(Math.round(s / 60), 'minute');
    }
    if (s > -86400) {
        return relFmt.format(Math.round(s / 3600), 'hour');
    }
    return relFmt.format(Math.round(s / 86400), 'day');
}

function shortTime(ms) {
    return Date.now() - ms < 86400000 ? timeFmt.format(ms) : dayFmt.format(ms).split(',')[0];
}

// ---- toasts and the connection state -------------------------------------------------------

function toast(message, { title = null, error = false, ms = 6000, onclick = null } = {}) {
    const node = el('div', { class: `toast${error ? ' error' : ''}${onclick ? ' action' : ''}`,
        role: error ? 'alert' : 'status' },
    title ? el('strong', { text: title }) : null, message);
    if (onclick) {
        node.addEventListener('click', () => {
            node.remove();
            onclick();
        });
    }
    $('toasts').append(node);
    setTimeout(() => node.remove(), ms);
}

function toastError(err) {
    const e = toChatError(err);
    toast(e.message, { title: errorTitle(e.code), error: true });
}

function setConn(conn, detail = '') {
    state.conn = conn;
    const label = { connecting: 'Connecting…', online: 'Connected', offline: 'Offline' }[conn];
    const node = $('conn-state');
    node.dataset.state = conn;
    node.textContent = label;
    const banner = $('conn-banner');
    banner.hidden = conn !== 'offline';
    if (conn === 'offline') {
        banner.textContent = detail ||
            `${UNREACHABLE} Messages you write now are sent when the connection is back.`;
    }
    renderMessages(); // pending rows say whether they wait for the connection
}

// ---- names ------------------------------------------------------------------------------
// Messages, rooms and presence carry user ids; the directory (GET /users?ids=) turns them into
// names: displayName, else username. Ids not known yet are asked for in one batch; until the
// answer comes they show as "user·" and the end of their id, and every view is drawn again
// when it arrives.

const lookups = { queued: new Set(), asked: new Set(), timer: null };

function nameOf(id) {
    if (state.me && id === state.me.id) {
        return state.me.displayName || state.me.username;
    }
    const known = state.names.get(id);
    if (!known || !known.dir) {
        lookUp(id);
    }
    return known ? known.name : `user·${(id || '').slice(-6)}`;
}

function lookUp(id) {
    if (!id || !/^[0-9a-f]{24}$/.test(id) || lookups.asked.has(id) || !api.token) {
        return;
    }
    lookups.asked.add(id);
    lookups.queued.add(id);
    if (!lookups.timer) {
        lookups.timer = setTimeout(flushLookups, 0);
    }
}

async function flushLookups() {
    lookups.timer = null;
    const ids = [...lookups.queued].slice(0, 100);
    ids.forEach((id) => lookups.queued.delete(id));
    if (lookups.queued.size) {
        lookups.timer = setTimeout(flushLookups, 0);
    }
    try {
        const { users } = await api.users(ids);
        for (const u of users) {
            state.names.set(u.id, { name: u.displayName || u.username, self: true, dir: true, user: u });
        }
    } catch {
        ids.forEach((id) => lookups.asked.delete(id)); // asked again on the next draw
        return;
    }
    renderRoomList();
    if (state.activeId) {
        renderRoomHead();
        renderMembers();
        renderMessages();
    }
}

/** A profile changed (user:updated, or our own PATCH /me): every view shows the new one. */
function profileChanged(u) {
    if (!u || !OBJECT_ID.test(u.id || '')) {
        return;
    }
    if (state.me && u.id === state.me.id) {
        state.me = { ...state.me, ...u }; // the public user: our email stays
        saveSession();
        renderMe();
    } else {
        state.names.set(u.id, { name: u.displayName || u.username, self: true, dir: true, user: u });
    }
    renderRoomList();
    if (state.activeId) {
        renderRoomHead();
        renderMembers();
        renderMessages();
    }
}

function renderMe() {
    const me = state.me;
    const name = me.displayName || me.username;
    $('me-name').textContent = name;
    $('me-name').title = me.statusText || '';
    avatar($('me-avatar'), me.id, name);
}

function learn(id, name, self) {
    if (!id || !USERNAME.test(name || '') || (state.me && id === state.me.id)) {
        return;
    }
    const known = state.names.get(id);
    if (known && known.dir) {
        return; // the directory's answer wins over a name read from a room
    }
    if (!known || (self && !known.self)) {
        state.names.set(id, { name, self });
    }
}

function learnNames(room) {
    if (room.type !== 'direct' || !room.name) {
        return;
    }
    const [creator, other] = room.name.split(' & ').map((s) => s.trim());
    learn(room.admin, creator, true);
    const otherId = room.participants.find((p) => p !== room.admin);
    learn(otherId, other, false);
}

function otherMember(room) {
    return room.participants.find((p) => p !== state.me.id) || state.me.id;
}

function roomTitle(room) {
    if (room.type === 'direct') {
        return nameOf(otherMember(room));
    }
    return room.name || 'Untitled room';
}

// ---- presence ---------------------------------------------------------------------------
// presence:update arrives when someone who shares a room with us connects or leaves; there is
// no snapshot of who was already online, so until we hear of someone their state is unknown.
// Typing also shows a live connection. A new message or a join does not: bots and server
// scripts post and add members without one.

function presenceOf(id) {
    if (state.me && id === state.me.id) {
        return { status: state.conn === 'online' ? 'online' : 'offline' };
    }
    return state.presence.get(id) || { status: 'unknown' };
}

function seenOnline(id) {
    const p = state.presence.get(id);
    if (!p || p.status !== 'online') {
        state.presence.set(id, { status: 'online', lastSeen: Date.now() });
        renderPresence();
    }
}

function presenceText(id) {
    const p = presenceOf(id);
    if (p.status === 'online') {
        return 'online';
    }
    if (p.status === 'offline') {
        return p.lastSeen ? `last seen ${ago(p.lastSeen)}` : 'offline';
    }
    return '';
}

function renderPresence() {
    renderRoomList();
    renderRoomHead();
    renderMembers();
}

// ---- session ----------------------------------------------------------------------------

function saveSession() {
    localStorage.setItem(SESSION_KEY, JSON.stringify({ token: state.token, user: state.me }));
}

function loadSession() {
    try {
        const s = JSON.parse(localStorage.getItem(SESSION_KEY) || 'null');
        return s && typeof s.token === 'string' ? s : null;
    } catch {
        return null;
    }
}

function signOut(note = null) {
    if (state.socket) {
        state.socket.removeAllListeners();
        state.socket.disconnect();
        state.socket = null;
    }
    localStorage.removeItem(SESSION_KEY);
    for (const m of state.typing.values()) {
        for (const t of m.values()) {
            clearTimeout(t);
        }
    }
    Object.assign(state, {
        token: null, me: null, conn: 'connecting', wasOnline: false, activeId: null, typingSent: null,
    });
    for (const k of ['rooms', 'logs', 'last', 'unread', 'reads', 'readSent', 'notes', 'names', 'presence', 'typing', 'rendered']) {
        state[k].clear();
    }
    roomAddedAt.clear();
    api.token = null;
    showAuth(note);
}

api.onUnauthorized = () => signOut('Your session has ended. Please sign in again.');

// ---- signing in -------------------------------------------------------------------------

function showAuth(note = null) {
    $('app').hidden = true;
    $('auth').hidden = false;
    $('auth-note').hidden = !note;
    $('auth-note').textContent = note || '';
    document.title = 'chatd';
    selectTab('login');
}

function selectTab(which) {
    for (const t of ['login', 'register']) {
        $(`tab-${t}`).setAttribute('aria-selected', String(t === which));
        $(`${t}-form`).hidden = t !== which;
    }
    const first = $(`${which}-form`).querySelector('input');
    first.focus();
}

function formError(form, err) {
    const p = form.querySelector('.form-error');
    if (!err) {
        p.hidden = true;
        p.textContent = '';
        return;
    }
    const e = toChatError(err);
    p.replaceChildren(el('strong', { text: errorTitle(e.code) }), e.message);
    p.hidden = false;
}

async function busy(form, fn) {
    const buttons = form.querySelectorAll('button');
    buttons.forEach((b) => { b.disabled = true; });
    formError(form, null);
    try {
        await fn();
    } catch (err) {
        formError(form, err);
    } finally {
        buttons.forEach((b) => { b.disabled = false; });
    }
}

function setupAuth() {
    $('tab-login').addEventListener('click', () => selectTab('login'));
    $('tab-register').addEventListener('click', () => selectTab('register'));
    $('login-form').addEventListener('submit', (ev) => {
        ev.preventDefault();
        const f = ev.target;
        busy(f, async () => {
            const login = f.login.value.trim();
            if (!login || !f.password.value) {
                throw new ChatError('invalid_payload', 'Enter your email or username and your password.');
            }
            const { token, user } = await api.login(login, f.password.value);
            f.reset();
            await start(token, user);
        });
    });
    $('register-form').addEventListener('submit', (ev) => {
        ev.preventDefault();
        const f = ev.target;
        busy(f, async () => {
            // the server checks the fields and says what is wrong in its answer
            const { token, user } = await api.register(f.email.value.trim(),
                f.username.value.trim(), f.password.value);
            f.reset();
            await start(token, user);
        });
    });
}

// ---- starting a session -----------------------------------------------------------------

async function start(token, user) {
    state.token = token;
    state.me = user;
    api.token = token;
    saveSession();
    $('auth').hidden = true;
    $('app').hidden = false;
    renderMe();
    $('my-id').textContent = user.id;
    setConn('connecting');
    showRoom(null);
    connectSocket();
    try {
        await loadRooms();
    } catch (err) {
        toastError(err);
    }
}

async function resume() {
    const s = loadSession();
    if (!s) {
        showAuth();
        return;
    }
    api.token = s.token;
    try {
        const { user } = await api.me();
        await start(s.token, user);
    } catch (err) {
        if (err.code === 'unauthorized') {
            return; // onUnauthorized showed the sign-in form
        }
        // the server is unreachable: start with what we saved, the socket keeps retrying
        await start(s.token, s.user);
        toastError(err);
    }
}

// ---- the socket -------------------------------------------------------------------------

function connectSocket() {
    // eslint-disable-next-line no-undef
    const socket = io({
        auth: (cb) => cb({ token: state.token }),
        reconnectionDelay: 1000,
        reconnectionDelayMax: 5000,
    });
    state.socket = socket;
    socket.on('connect', onConnect);
    socket.on('disconnect', (reason) => {
        clearAllTyping();
        if (reason === 'io client disconnect') {
            return;
        }
        if (reason === 'io server disconnect') {
            // the server ended the session (a restart, say); socket.io leaves it closed
            setConn('offline', 'The server closed the connection; reconnecting…');
            setTimeout(() => socket === state.socket && !socket.connected && socket.connect(), 2000);
            return;
        }
        setConn('offline');
    });
    socket.on('connect_error', (err) => {
        if (err.message === 'unauthorized') {
            signOut('Your session has ended. Please sign in again.');
            return;
        }
        if (socket.active) {
            setConn('offline'); // the transport failed: socket.io retries with backoff
            return;
        }
        // refused by the server (unavailable, internal): socket.io does not retry those
        setConn('offline', `The server refused the connection (${err.message}); retrying…`);
        setTimeout(() => socket === state.socket && socket.connect(), 3000);
    });
    socket.on('message:new', onMessageNew);
    socket.on('message:ack', onMessageAck);
    socket.on('message:updated', onMessageChanged);
    socket.on('message:deleted', onMessageChanged);
    socket.on('message:reaction', onReaction);
    socket.on('room:read', onRoomRead);
    socket.on('notification', onNotification);
    socket.on('typing', onTyping);
    socket.on('presence:update', (p) => {
        state.presence.set(p.userId, { status: p.status, lastSeen: p.lastSeen });
        if (p.status === 'offline') {
            stopTypingOf(p.userId);
        }
        renderPresence();
    });
    socket.on('user:updated', profileChanged);
    socket.on('room:member_joined', onMemberJoined);
    socket.on('room:member_left', onMemberLeft);
    socket.on('error', (e) => {
        // a failed event that had no ack callback; typing failures are not worth a popup
        if (e && e.event && !String(e.event).startsWith('typing:')) {
            toastError(e);
        }
    });
}

function onConnect() {
    const again = state.wasOnline;
    state.wasOnline = true;
    setConn('online');
    // Where each loaded room stood before this connection: taken now, before any live event of
    // the new connection is handled, so catch-up fetches back to exactly here.
    const anchors = new Map();
    for (const [roomId, log] of state.logs) {
        if (log.loaded) {
            const newest = log.newestStored();
            anchors.set(roomId, newest ? newest.id : null);
        }
    }
    for (const log of state.logs.values()) {
        for (const item of log.pending()) {
            if (item.state !== 'failed') {
                emitMessage(item);
            }
        }
    }
    catchUp(anchors, again).catch((err) => toastError(err));
}

async function emitWithAck(event, payload) {
    const s = state.socket;
    if (!s || !s.connected) {
        throw new ChatError('unreachable', UNREACHABLE);
    }
    let res;
    try {
        res = await s.timeout(ACK_TIMEOUT_MS).emitWithAck(event, payload);
    } catch {
        throw new ChatError('unreachable', 'The server did not answer in time; please try again.');
    }
    if (!res || res.ok !== true) {
        throw toChatError(res);
    }
    return res;
}

// ---- rooms ------------------------------------------------------------------------------

const roomAddedAt = new Map(); // roomId -> when this page last learned of it

function addRoom(room) {
    state.rooms.set(room.id, room);
    roomAddedAt.set(room.id, performance.now());
    learnNames(room);
}

async function loadRooms() {
    const asked = performance.now();
    const { rooms } = await api.rooms();
    const seen = new Set();
    for (const room of rooms) {
        addRoom(room);
        seen.add(room.id);
        // the server counts what we have not read (room:read markers), on any device
        if (typeof room.unread === 'number' && room.id !== state.activeId) {
            if (room.unread) {
                state.unread.set(room.id, room.unread);
            } else {
                state.unread.delete(room.id);
            }
        }
        if (room.reads) {
            state.reads.set(room.id, { ...room.reads });
        }
    }
    for (const id of [...state.rooms.keys()]) {
        // a room we joined or made after asking is not in this answer, but still ours
        if (!seen.has(id) && roomAddedAt.get(id) < asked) {
            forgetRoom(id);
        }
    }
    renderRoomList();
    renderRoomHead();
    renderMembers();
    // the newest message of each room, for the previews and the order of the list
    await Promise.all(rooms.filter((r) => !state.last.has(r.id)).slice(0, 50).map(async (r) => {
        try {
            const { messages } = await api.messages(r.id, { limit: 1 });
            if (messages[0]) {
                noteLast(messages[0]);
            }
        } catch {
            /* a preview is not worth an error */
        }
    }));
    renderRoomList();
}

function forgetRoom(id) {
    state.rooms.delete(id);
    roomAddedAt.delete(id);
    state.logs.delete(id);
    state.last.delete(id);
    state.unread.delete(id);
    state.typing.delete(id);
    if (state.activeId === id) {
        showRoom(null);
    }
}

function noteLast(m) {
    const cur = state.last.get(m.roomId);
    if (!cur || cur.id === m.id || cur.createdAt < m.createdAt ||
        (cur.createdAt === m.createdAt && cur.id < m.id)) {
        state.last.set(m.roomId, m);
    }
}

function roomActivity(room) {
    const m = state.last.get(room.id);
    return m ? m.createdAt : room.createdAt || 0;
}

function renderRoomList() {
    const list = $('room-list');
    if (!state.me) {
        return;
    }
    const rooms = [...state.rooms.values()].sort((a, b) => roomActivity(b) - roomActivity(a));
    $('rooms-empty').hidden = rooms.length > 0;
    let totalUnread = 0;
    const items = rooms.map((room) => {
        const unread = state.unread.get(room.id) || 0;
        totalUnread += unread;
        const title = roomTitle(room);
        const last = state.last.get(room.id);
        const typers = typingIn(room.id);
        let preview = 'No messages yet';
        if (typers.length) {
            preview = room.type === 'direct' ? 'typing…' : `${nameOf(typers[0])} is typing…`;
        } else if (last) {
            const who = last.senderId === state.me.id ? 'You: '
                : room.type === 'direct' ? '' : `${nameOf(last.senderId)}: `;
            preview = who + last.content;
        }
        const av = avatar(el('span'), room.type === 'direct' ? otherMember(room) : room.id, title,
            room.type === 'direct' ? '' : 'group');
        if (room.type === 'direct') {
            av.dataset.presence = presenceOf(otherMember(room)).status;
        }
        const a = el('a', {
            href: `#${room.id}`,
            class: unread ? 'unread' : '',
            'data-room-id': room.id,
            'aria-current': room.id === state.activeId ? 'true' : null,
            onclick: (ev) => {
                ev.preventDefault();
                showRoom(room.id);
            },
        }, av,
        el('span', { class: 'name', text: title }),
        el('span', { class: 'when', text: last ? shortTime(last.createdAt) : '' }),
        el('span', { class: `preview${typers.length ? ' typing-now' : ''}`, text: preview }),
        unread ? el('span', {
            class: 'badge', text: unread > 99 ? '99+' : String(unread), 'aria-label': `${unread} unread`,
        }) : el('span'));
        return el('li', {}, a);
    });
    list.replaceChildren(...items);
    document.title = totalUnread ? `(${totalUnread}) chatd` : 'chatd';
}

function showRoom(id) {
    if (state.typingSent && state.typingSent !== id) {
        sendTypingStop();
    }
    state.activeId = id && state.rooms.has(id) ? id : null;
    state.rendered.clear();
    $('messages').replaceChildren();
    $('typing').textContent = '';
    $('app').classList.toggle('room-open', !!state.activeId);
    $('no-room').hidden = !!state.activeId;
    $('room-view').hidden = !state.activeId;
    $('members').classList.remove('open');
    $('toggle-members').setAttribute('aria-expanded', 'false');
    if (!state.activeId) {
        renderRoomList();
        return;
    }
    state.unread.delete(id);
    renderRoomList();
    renderRoomHead();
    renderMembers();
    renderTyping();
    const log = logFor(id);
    renderMessages({ bottom: true });
    if (!log.loaded) {
        loadFirstPage(id).catch((err) => toastError(err));
    }
    if (matchMedia('(min-width: 761px)').matches) {
        $('composer-input').focus();
    }
}

function renderRoomHead() {
    const room = state.rooms.get(state.activeId);
    if (!room) {
        return;
    }
    const title = roomTitle(room);
    $('room-title').textContent = title;
    const av = $('room-avatar');
    const sub = $('room-sub');
    sub.className = 'muted';
    if (room.type === 'direct') {
        const other = otherMember(room);
        avatar(av, other, title);
        av.dataset.presence = presenceOf(other).status;
        const text = presenceText(other);
        sub.textContent = text || 'Direct message';
        if (text === 'online') {
            sub.className = 'online';
        }
    } else {
        avatar(av, room.id, title, 'group');
        delete av.dataset.presence;
        const n = room.participants.length;
        const online = room.participants.filter((p) => presenceOf(p).status === 'online').length;
        sub.textContent = `${n} member${n === 1 ? '' : 's'} · ${online} online`;
    }
    $('room-id').textContent = room.id;
}

function renderMembers() {
    const room = state.rooms.get(state.activeId);
    if (!room) {
        return;
    }
    const order = (id) => (id === state.me.id ? 0 : presenceOf(id).status === 'online' ? 1 : 2);
    const ids = [...room.participants].sort((a, b) => order(a) - order(b) ||
        nameOf(a).localeCompare(nameOf(b)));
    $('member-list').replaceChildren(...ids.map((id) => {
        const av = avatar(el('span'), id, nameOf(id), 'small');
        av.dataset.presence = presenceOf(id).status;
        const status = presenceText(id);
        const bits = [];
        if (id === state.me.id) {
            bits.push('you');
        }
        if (id === room.admin) {
            bits.push('admin');
        }
        const label = [status, ...bits].filter(Boolean).join(' · ') || 'not seen yet';
        const profile = id === state.me.id ? state.me : (state.names.get(id) || {}).user;
        const statusText = profile && profile.statusText;
        return el('li', { 'data-user-id': id }, av,
            el('span', { class: 'who' },
                el('span', { text: nameOf(id) }),
                statusText ? el('span', { class: 'status-text', text: statusText }) : null,
                el('span', { class: status === 'online' ? 'online' : '', text: label })));
    }));
    $('leave-room').hidden = room.type === 'direct';
    $('room-id').parentElement.hidden = room.type === 'direct'; // nobody joins a direct room
}

function onMemberJoined({ roomId, userId }) {
    const room = state.rooms.get(roomId);
    if (!room) {
        loadRooms().catch(() => {});
        return;
    }
    if (!room.participants.includes(userId)) {
        room.participants.push(userId);
    }
    renderPresence();
}

function onMemberLeft({ roomId, userId }) {
    if (userId === state.me.id) {
        forgetRoom(roomId); // we left on another device
        renderRoomList();
        return;
    }
    const room = state.rooms.get(roomId);
    if (room) {
        room.participants = room.participants.filter((p) => p !== userId);
        renderPresence();
    }
}

// ---- messages ---------------------------------------------------------------------------

function logFor(roomId) {
    let log = state.logs.get(roomId);
    if (!log) {
        log = new RoomLog(roomId);
        state.logs.set(roomId, log);
    }
    return log;
}

function putMessages(roomId, messages) {
    const log = logFor(roomId);
    let added = 0;
    for (const m of messages) {
        if (log.put(m)) {
            added++;
            noteLast(m);
        }
    }
    return added;
}

async function loadFirstPage(roomId) {
    const log = logFor(roomId);
    if (log.loading) {
        return;
    }
    log.loading = true;
    renderMessages();
    try {
        const { messages, nextBefore } = await api.messages(roomId, { limit: PAGE_SIZE });
        putMessages(roomId, messages);
        log.nextBefore = nextBefore;
        log.complete = !nextBefore;
        log.loaded = true;
    } finally {
        log.loading = false;
    }
    if (roomId === state.activeId) {
        renderMessages({ bottom: true });
        renderRoomList();
        fillViewport();
    }
}

/** Older history, when the list is scrolled near its top. */
async function loadOlder() {
    const roomId = state.activeId;
    const log = roomId && state.logs.get(roomId);
    if (!log || !log.loaded || log.complete || log.loading || !log.nextBefore) {
        return;
    }
    log.loading = true;
    renderMessages({ keepTop: true });
    try {
        const { messages, nextBefore } = await api.messages(roomId, {
            before: log.nextBefore, limit: PAGE_SIZE,
        });
        putMessages(roomId, messages);
        log.nextBefore = nextBefore;
        log.complete = !nextBefore;
    } catch (err) {
        toastError(err);
    } finally {
        log.loading = false;
    }
    if (roomId === state.activeId) {
        renderMessages({ keepTop: true });
        fillViewport();
    }
}

/** Loads older pages until the list can scroll, so scrolling up can load the rest. */
function fillViewport() {
    const list = $('messages');
    if (list.scrollHeight <= list.clientHeight + 40) {
        loadOlder();
    }
}

function onMessageNew(m) {
    if (!state.rooms.has(m.roomId)) {
        // a room we were just added to (room:create by someone else): fetch the list again
        loadRooms().catch(() => {});
    }
    if (m.senderId !== state.me.id) {
        stopTypingOf(m.senderId, m.roomId);
    }
    const log = logFor(m.roomId);
    const added = log.put(m);
    noteLast(m);
    if (added && m.roomId !== state.activeId && m.senderId !== state.me.id) {
        state.unread.set(m.roomId, (state.unread.get(m.roomId) || 0) + 1);
    }
    if (m.roomId === state.activeId) {
        renderMessages();
    }
    renderRoomList();
}

// an edit or a delete, ours from another device or someone else's: the stored copy wins
function onMessageChanged(m) {
    const log = state.logs.get(m.roomId);
    if (!log || !log.byId.has(m.id)) {
        return;
    }
    log.put(m);
    if (m.roomId === state.activeId) {
        renderMessages();
    }
}

// ---- attachments ------------------------------------------------------------------------
// Files need the token, so the page fetches them and shows blob URLs (kept per file).

const blobs = new Map(); // url -> Promise<object URL>

function blobUrl(url) {
    if (!blobs.has(url)) {
        blobs.set(url, api.file(url).then((b) => URL.createObjectURL(b)).catch((err) => {
            blobs.delete(url);
            throw err;
        }));
    }
    return blobs.get(url);
}

function fileView(f) {
    if (/^image\//.test(f.type)) {
        const img = el('img', { class: 'file-image', alt: f.name });
        blobUrl(f.url).then((u) => { img.src = u; }).catch(() => { img.alt = `${f.name} (could not load)`; });
        return img;
    }
    return el('button', {
        type: 'button', class: 'link file', text: `📎 ${f.name} (${Math.ceil(f.size / 1024)} KB)`,
        onclick: async () => {
            try {
                const a = el('a', { href: await blobUrl(f.url), download: f.name });
                a.click();
            } catch (err) {
                toastError(err);
            }
        },
    });
}

async function attachFile(file) {
    const roomId = state.activeId;
    if (!file || !roomId) {
        return;
    }
    try {
        const { upload } = await api.upload(file);
        const { message } = await emitWithAck('message:send', {
            roomId, content: file.name, clientMsgId: newClientMsgId(), attachments: [{ uploadId: upload.id }],
        });
        logFor(roomId).put(message);
        noteLast(message);
        if (roomId === state.activeId) {
            renderMessages({ bottom: true });
        }
    } catch (err) {
        toastError(err);
    }
}

function onReaction({ messageId, roomId, reactions }) {
    const log = state.logs.get(roomId);
    const item = log && log.byId.get(messageId);
    if (!item) {
        return;
    }
    item.reactions = reactions;
    if (roomId === state.activeId) {
        renderMessages();
    }
}

async function react(item, emoji, on) {
    try {
        const { message } = await emitWithAck('message:react', { messageId: item.id, emoji, on });
        onReaction({ messageId: message.id, roomId: message.roomId, reactions: message.reactions });
    } catch (err) {
        toastError(err);
    }
}

async function changeMessage(item, remove) {
    try {
        if (remove) {
            const { message } = await emitWithAck('message:delete', { messageId: item.id });
            onMessageChanged(message);
            return;
        }
        const content = window.prompt('Edit your message', item.content);
        if (content === null || content === item.content) {
            return;
        }
        const { message } = await emitWithAck('message:edit', { messageId: item.id, content });
        onMessageChanged(message);
    } catch (err) {
        toastError(err);
    }
}

function onMessageAck({ clientMsgId, id, createdAt }) {
    for (const log of state.logs.values()) {
        const item = log.byClient.get(RoomLog.clientKey(state.me.id, clientMsgId));
        if (item && item.pending) {
            log.put({ ...item, id, createdAt, updatedAt: createdAt, pending: false });
            noteLast(item);
            if (log.roomId === state.activeId) {
                renderMessages();
            }
            renderRoomList();
            return;
        }
    }
}

function sendMessage(text) {
    const roomId = state.activeId;
    const log = logFor(roomId);
    const item = log.addPending(state.me.id, newClientMsgId(), text);
    renderMessages({ bottom: true });
    emitMessage(item);
}

/** Sends (or sends again) a pending message; the same clientMsgId every time. */
function emitMessage(item) {
    const socket = state.socket;
    if (!socket || !socket.connected) {
        return; // onConnect sends every pending message
    }
    item.state = 'pending';
    item.error = null;
    const attempt = (item.attempt || 0) + 1;
    item.attempt = attempt;
    socket.timeout(ACK_TIMEOUT_MS).emit('message:send',
        { roomId: item.roomId, content: item.content, clientMsgId: item.clientMsgId },
        (err, res) => {
            if (res && res.ok) {
                // also when message:ack came first: the answer has the stored text
                const log = logFor(item.roomId);
                log.put(res.message);
                noteLast(res.message);
                if (item.roomId === state.activeId) {
                    renderMessages();
                }
                renderRoomList();
                return;
            }
            if (!item.pending || item.attempt !== attempt) {
                return; // stored already, or sent again since
            }
            if (err) {
                if (socket.connected) {
                    failMessage(item, new ChatError('unavailable',
                        'The server did not confirm this message in time.'));
                }
                return; // disconnected: onConnect sends it again
            }
            failMessage(item, toChatError(res));
        });
    if (item.roomId === state.activeId) {
        renderMessages();
    }
}

/** Codes where sending the same message again may work. */
const RETRYABLE = new Set(['rate_limited', 'unavailable', 'unreachable', 'internal']);

/** Takes a refused message off the list and puts its text back in the composer. */
function editFailed(item) {
    const log = state.logs.get(item.roomId);
    if (log) {
        log.drop(item);
    }
    const input = $('composer-input');
    if (!input.value.trim()) {
        input.value = item.content;
    }
    renderMessages();
    onComposerInput();
    input.focus();
}

function failMessage(item, err) {
    item.state = 'failed';
    item.error = err;
    if (item.roomId === state.activeId) {
        renderMessages();
    } else {
        toastError(err);
    }
}

// Catch-up after (re)connecting: for each loaded room, fetch newest-first pages until we
// reach the newest message we had, and merge. Rooms we never opened only get their preview
// and unread count refreshed. A gap longer than CATCH_UP_PAGES pages replaces the cache.
async function catchUp(anchors, again) {
    if (again) {
        await loadRooms();
    }
    await Promise.all([...anchors].map(([roomId, anchor]) =>
        catchUpRoom(roomId, anchor).catch((err) => {
            if (err.code !== 'not_found' && err.code !== 'forbidden') {
                throw err;
            }
        })));
    if (again) {
        await Promise.all([...state.rooms.keys()].filter((id) => !anchors.has(id))
            .map((id) => refreshUnread(id).catch(() => {})));
    }
    renderRoomList();
}

async function catchUpRoom(roomId, anchor) {
    const log = state.logs.get(roomId);
    if (!log || !state.rooms.has(roomId)) {
        return;
    }
    const fresh = [];
    let before = null;
    let reached = false;
    for (let page = 0; page < CATCH_UP_PAGES && !reached; page++) {
        const { messages, nextBefore } = await api.messages(roomId, { before, limit: 100 });
        for (const m of messages) {
            if (m.id === anchor) {
                reached = true;
                break;
            }
            fresh.push(m);
        }
        if (!nextBefore) {
            reached = true; // the whole history was read
        }
        before = nextBefore;
    }
    if (state.logs.get(roomId) !== log) {
        return; // signed out or left meanwhile
    }
    if (!reached) {
        log.reset();
        log.nextBefore = before;
        log.complete = !before;
    }
    const missed = fresh.filter((m) => !log.byId.has(m.id) && m.senderId !== state.me.id).length;
    putMessages(roomId, fresh);
    if (roomId === state.activeId) {
        renderMessages();
    } else if (missed) {
        state.unread.set(roomId, (state.unread.get(roomId) || 0) + missed);
    }
}

/** For a room with no loaded messages: what arrived since the newest one we knew of. */
async function refreshUnread(roomId) {
    const known = state.last.get(roomId);
    const { messages } = await api.messages(roomId, { limit: 50 });
    let n = 0;
    for (const m of messages) {
        if (known && m.id === known.id) {
            break;
        }
        if (m.senderId !== state.me.id) {
            n++;
        }
    }
    if (messages[0]) {
        noteLast(messages[0]);
    }
    if (n && known && roomId !== state.activeId) {
        state.unread.set(roomId, (state.unread.get(roomId) || 0) + n);
    }
}

// ---- rendering the message list ---------------------------------------------------------

function rowKey(item) {
    return item.clientMsgId && item.senderId === state.me.id ? `c:${item.clientMsgId}` : `i:${item.id}`;
}

function timeOf(item) {
    return el('time', {
        datetime: new Date(item.createdAt).toISOString(), text: timeFmt.format(item.createdAt),
    });
}

function stampFor(item, offline) {
    const stamp = el('span', { class: 'stamp' });
    if (item.senderId !== state.me.id) {
        stamp.append(timeOf(item));
        return stamp;
    }
    if (item.state === 'sent') {
        stamp.append(timeOf(item),
            el('span', { class: 'tick', title: 'Sent', 'aria-label': 'sent' }, icon(ICON_CHECK)));
    } else if (item.state === 'failed') {
        stamp.append(el('span', { class: 'tick', 'aria-label': 'not sent' }, icon(ICON_ALERT)), 'Not sent');
    } else {
        stamp.append(el('span', { class: 'tick', 'aria-label': 'sending' }, icon(ICON_CLOCK)),
            offline ? 'Waiting for connection' : 'Sending…');
    }
    return stamp;
}

function buildRow(li, item, first, direct, offline) {
    const mine = item.senderId === state.me.id;
    li.className = `msg${mine ? ' mine' : ''}${first ? ' first' : ''}`;
    li.dataset.state = item.state;
    if (item.id) {
        li.dataset.id = item.id;
    }
    if (item.clientMsgId) {
        li.dataset.clientMsgId = item.clientMsgId;
    }
    const parts = [];
    if (!mine) {
        parts.push(first ? avatar(el('span'), item.senderId, nameOf(item.senderId))
            : el('span', { class: 'spacer' }));
    }
    const stack = el('div', { class: 'stack' });
    if (!mine && first && !direct) {
        stack.append(el('div', { class: 'who', text: nameOf(item.senderId) }));
    }
    if (item.deleted) {
        stack.append(el('div', { class: 'bubble deleted' },
            el('span', { class: 'text', text: 'This message was deleted' }), stampFor(item, offline)));
    } else {
        const edited = item.state === 'sent' && item.updatedAt > item.createdAt;
        stack.append(el('div', { class: 'bubble' },
            el('span', { class: 'text', text: item.content }),
            edited ? el('span', { class: 'edited', text: ' (edited)' }) : null,
            stampFor(item, offline)));
        const reactions = Object.entries(item.reactions || {}).filter(([, who]) => who.length);
        if (reactions.length) {
            stack.append(el('div', { class: 'reactions' }, ...reactions.map(([emoji, who]) => {
                const me = who.includes(state.me.id);
                return el('button', {
                    type: 'button',
                    class: `reaction${me ? ' mine' : ''}`,
                    title: who.map(nameOf).join(', '),
                    'aria-pressed': String(me),
                    text: `${emoji} ${who.length}`,
                    onclick: () => react(item, emoji, !me),
                });
            })));
        }
        const files = (item.attachments || []).filter((f) => f && typeof f.url === 'string' && f.uploadId);
        if (files.length) {
            stack.append(el('div', { class: 'files' }, ...files.map(fileView)));
        }
        const readers = seenBy(item);
        if (readers.length) {
            stack.append(el('div', { class: 'seen', text: `Seen by ${readers.map(nameOf).join(', ')}` }));
        }
        if (item.state === 'sent' && item.id) {
            const own = (item.reactions && item.reactions['👍']) || [];
            stack.append(el('div', { class: 'actions' },
                el('button', {
                    type: 'button', class: 'link', text: '👍', title: 'React with 👍', 'aria-label': 'React with 👍',
                    onclick: () => react(item, '👍', !own.includes(state.me.id)),
                }),
                mine ? el('button', { type: 'button', class: 'link', text: 'Edit', onclick: () => changeMessage(item, false) }) : null,
                mine ? el('button', { type: 'button', class: 'link', text: 'Delete', onclick: () => changeMessage(item, true) }) : null));
        }
    }
    if (item.state === 'failed') {
        const code = item.error && item.error.code;
        stack.append(el('div', { class: 'problem', role: 'alert' },
            `${errorTitle(code)}: ${item.error ? item.error.message : ''}`,
            RETRYABLE.has(code) ? el('button', {
                type: 'button', class: 'link', text: 'Retry',
                onclick: () => emitMessage(item),
            }) : null,
            el('button', {
                type: 'button', class: 'link', text: 'Edit',
                onclick: () => editFailed(item),
            })));
    }
    li.replaceChildren(...parts, stack);
}

/**
 * Re-renders the active room's rows, reusing each row's <li> (keyed by clientMsgId for our
 * messages, id for others), so a pending row turns into a sent one in place.
 * opts.bottom: scroll to the newest; opts.keepTop: older rows were added above.
 */
function renderMessages(opts = {}) {
    const roomId = state.activeId;
    const log = roomId && state.logs.get(roomId);
    const list = $('messages');
    if (!log) {
        return;
    }
    const room = state.rooms.get(roomId);
    const atBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 60;
    const oldHeight = list.scrollHeight;
    const oldTop = list.scrollTop;
    const offline = state.conn !== 'online';
    const rows = [];
    const keep = new Map();
    let prev = null;
    let prevDay = null;
    for (const item of log.items) {
        const day = dayLabel(item.createdAt);
        if (day !== prevDay) {
            const key = `d:${day}`;
            const li = state.rendered.get(key) || el('li', { class: 'day' });
            li.textContent = day;
            keep.set(key, li);
            rows.push(li);
            prevDay = day;
            prev = null;
        }
        const first = !prev || prev.senderId !== item.senderId || item.createdAt - prev.createdAt > 5 * 60000;
        const key = rowKey(item);
        const li = state.rendered.get(key) || el('li');
        const sig = [item.state, item.id, first, offline, item.error && item.error.message,
            nameOf(item.senderId), pictureOf(item.senderId), item.content, item.updatedAt, Boolean(item.deleted),
            JSON.stringify(item.reactions || {}), seenBy(item).join(','),
            (item.attachments || []).length].join('|');
        if (li.dataset.sig !== sig) {
            buildRow(li, item, first, room && room.type === 'direct', offline);
            li.dataset.sig = sig;
        }
        keep.set(key, li);
        rows.push(li);
        prev = item;
    }
    if (!rows.length && log.loaded) {
        rows.push(el('li', { class: 'empty', text: 'No messages yet. Say hello!' }));
    } else {
        const text = log.loading ? 'Loading messages…'
            : log.complete ? 'This is the start of the conversation.' : '';
        if (text) {
            const li = state.rendered.get('h:') || el('li', { class: 'history', 'aria-live': 'polite' });
            li.textContent = text;
            keep.set('h:', li);
            rows.unshift(li);
        }
    }
    state.rendered = keep;
    // move rows into place only where the order changed
    let cursor = list.firstChild;
    for (const li of rows) {
        if (li === cursor) {
            cursor = cursor.nextSibling;
        } else {
            list.insertBefore(li, cursor);
        }
    }
    while (cursor) {
        const next = cursor.nextSibling;
        cursor.remove();
        cursor = next;
    }
    if (opts.keepTop) {
        list.scrollTop = oldTop + (list.scrollHeight - oldHeight);
    } else if (opts.bottom || atBottom) {
        list.scrollTop = list.scrollHeight;
    }
    markRead(roomId, log);
}

// ---- read markers -----------------------------------------------------------------------
// The open room is read up to its newest stored message: room:read tells the server (and so
// our other devices and the other members); room:read from others says where they stopped,
// shown as "Seen by" under that message.

// ---- notifications ----------------------------------------------------------------------
// A mention of us arrives as `notification` (live, and the unread ones again on connect). The
// page says so once, and marks the mentions of a room read when that room is open.

function onNotification(n) {
    if (!n || n.read || state.notes.has(n.id)) {
        return;
    }
    state.notes.set(n.id, n);
    const d = n.data || {};
    if (d.roomId === state.activeId) {
        readNotesOf(d.roomId);
        return;
    }
    const room = state.rooms.get(d.roomId);
    toast(d.excerpt || '', {
        title: `${nameOf(d.senderId)} mentioned you${room ? ` in ${roomTitle(room)}` : ''}`,
        ms: 10000,
        onclick: room ? () => showRoom(d.roomId) : null, // opens the room, which reads them
    });
}

function readNotesOf(roomId) {
    const ids = [...state.notes.values()].filter((n) => n.data && n.data.roomId === roomId && !n.read)
        .map((n) => n.id);
    if (!ids.length) {
        return;
    }
    ids.forEach((id) => { state.notes.get(id).read = true; });
    api.readNotifications(ids).catch(() => ids.forEach((id) => { state.notes.get(id).read = false; }));
}

function markRead(roomId, log) {
    readNotesOf(roomId);
    const newest = log.newestStored();
    if (!newest || !newest.id || state.conn !== 'online' || document.visibilityState === 'hidden' ||
        state.readSent.get(roomId) === newest.id) {
        return;
    }
    state.readSent.set(roomId, newest.id);
    emitWithAck('room:read', { roomId, messageId: newest.id }).catch(() => {
        state.readSent.delete(roomId); // tried again on the next draw
    });
}

function onRoomRead({ roomId, userId, messageId }) {
    const reads = state.reads.get(roomId) || {};
    reads[userId] = messageId;
    state.reads.set(roomId, reads);
    if (userId === state.me.id && roomId !== state.activeId) {
        state.unread.delete(roomId); // read on another device
        renderRoomList();
    }
    if (roomId === state.activeId) {
        renderMessages();
    }
}

function seenBy(item) {
    const reads = item.id && state.reads.get(item.roomId);
    if (!reads) {
        return [];
    }
    return Object.entries(reads).filter(([u, id]) => id === item.id && u !== state.me.id).map(([u]) => u);
}

// ---- typing -----------------------------------------------------------------------------

function typingIn(roomId) {
    const m = state.typing.get(roomId);
    return m ? [...m.keys()] : [];
}

function onTyping({ roomId, userId, typing }) {
    if (userId === state.me.id) {
        return;
    }
    let m = state.typing.get(roomId);
    if (!m) {
        m = new Map();
        state.typing.set(roomId, m);
    }
    clearTimeout(m.get(userId));
    if (typing) {
        seenOnline(userId);
        m.set(userId, setTimeout(() => stopTypingOf(userId, roomId), TYPING_FORGET_MS));
    } else {
        m.delete(userId);
    }
    renderTyping();
    renderRoomList();
}

function stopTypingOf(userId, roomId = null) {
    let changed = false;
    for (const [rid, m] of state.typing) {
        if ((roomId === null || rid === roomId) && m.has(userId)) {
            clearTimeout(m.get(userId));
            m.delete(userId);
            changed = true;
        }
    }
    if (changed) {
        renderTyping();
        renderRoomList();
    }
}

function clearAllTyping() {
    for (const m of state.typing.values()) {
        for (const t of m.values()) {
            clearTimeout(t);
        }
    }
    state.typing.clear();
    renderTyping();
}

function renderTyping() {
    const who = typingIn(state.activeId).map(nameOf);
    const text = who.length === 0 ? ''
        : who.length === 1 ? `${who[0]} is typing…`
            : who.length === 2 ? `${who[0]} and ${who[1]} are typing…`
                : `${who.length} people are typing…`;
    $('typing').textContent = text;
}

function onComposerInput() {
    const input = $('composer-input');
    $('send').disabled = !input.value.trim();
    input.style.height = 'auto';
    input.style.height = `${Math.min(input.scrollHeight + 2, 160)}px`;
    const roomId = state.activeId;
    const socket = state.socket;
    if (!roomId || !socket || !socket.connected) {
        return;
    }
    if (!input.value.trim()) {
        sendTypingStop();
        return;
    }
    if (state.typingSent !== roomId) {
        if (state.typingSent) {
            sendTypingStop();
        }
        socket.emit('typing:start', { roomId });
        state.typingSent = roomId;
    }
    clearTimeout(state.typingTimer);
    state.typingTimer = setTimeout(sendTypingStop, TYPING_IDLE_MS);
}

function sendTypingStop() {
    clearTimeout(state.typingTimer);
    const roomId = state.typingSent;
    state.typingSent = null;
    if (roomId && state.socket && state.socket.connected) {
        state.socket.emit('typing:stop', { roomId });
    }
}

// ---- dialogs ----------------------------------------------------------------------------

function openDialog(id, onSubmit) {
    const dlg = $(id);
    const form = dlg.querySelector('form');
    form.reset();
    formError(form, null);
    form.onsubmit = (ev) => {
        ev.preventDefault();
        busy(form, async () => {
            await onSubmit(form);
            dlg.close();
        });
    };
    form.querySelector('button[value="cancel"]').onclick = () => dlg.close();
    dlg.showModal();
    form.querySelector('input').focus();
}

function parseIds(text) {
    const ids = text.split(/[\s,;]+/).map((s) => s.trim().toLowerCase()).filter(Boolean);
    const bad = ids.find((s) => !OBJECT_ID.test(s));
    if (bad) {
        throw new ChatError('invalid_payload',
            `"${bad}" is not a user id: those are 24 characters, 0-9 and a-f.`);
    }
    return ids;
}

async function createRoom(payload) {
    const { room } = await api.request('POST', '/rooms', payload);
    addRoom(room);
    renderRoomList();
    showRoom(room.id);
    return room;
}

// ---- finding people (the directory's search) ---------------------------------------------

const search = { timer: 0, seq: 0 };

function searchPeople(form) {
    clearTimeout(search.timer);
    const seq = ++search.seq;
    const q = form.q.value.trim();
    const list = $('dm-results');
    if (!/^[A-Za-z0-9_.-]{1,32}$/.test(q)) {
        const hint = q ? [el('li', { class: 'muted', text: 'Usernames are letters, digits, _ . and -.' })] : [];
        list.replaceChildren(...hint);
        return;
    }
    search.timer = setTimeout(async () => {
        let users;
        try {
            ({ users } = await api.searchUsers(q));
        } catch (err) {
            if (seq === search.seq) {
                list.replaceChildren(el('li', { class: 'muted', text: toChatError(err).message }));
            }
            return;
        }
        if (seq !== search.seq) {
            return; // a later keystroke asked again
        }
        const others = users.filter((u) => u.id !== state.me.id);
        for (const u of others) {
            state.names.set(u.id, { name: u.displayName || u.username, self: true, dir: true, user: u });
        }
        list.replaceChildren(...(others.length ? others.map((u) => el('li', {},
            el('button', {
                type: 'button',
                class: 'ghost',
                'data-user-id': u.id,
                onclick: (ev) => {
                    form.userId.value = u.id;
                    form.label.value = u.username;
                    list.querySelectorAll('button').forEach((b) => b.setAttribute('aria-pressed', 'false'));
                    ev.currentTarget.setAttribute('aria-pressed', 'true');
                },
            }, avatar(el('span'), u.id, u.displayName || u.username, 'small'),
            el('span', { text: u.displayName ? `${u.displayName} (@${u.username})` : `@${u.username}` }))))
            : [el('li', { class: 'muted', text: 'Nobody\'s username starts with that.' })]));
    }, 250);
}

function setupDialogs() {
    $('new-room').addEventListener('click', () => openDialog('dlg-room', async (f) => {
        const name = f.name.value.trim();
        if (!name) {
            throw new ChatError('invalid_payload', 'Give the room a name.');
        }
        const settings = {};
        if (f.private.checked) {
            settings.private = true;
        }
        if (Number(f.slowMode.value) > 0) {
            settings.slowMode = Number(f.slowMode.value);
        }
        await createRoom({ name, type: 'group', participants: parseIds(f.participants.value), settings });
    }));
    const dmForm = $('dlg-dm').querySelector('form');
    dmForm.q.addEventListener('input', () => searchPeople(dmForm));
    $('new-dm').addEventListener('click', () => {
        clearTimeout(search.timer);
        search.seq++; // a search still under way from last time shows nothing
        $('dm-results').replaceChildren();
    });
    $('new-dm').addEventListener('click', () => openDialog('dlg-dm', async (f) => {
        const userId = f.userId.value.trim().toLowerCase();
        const label = f.label.value.trim();
        if (!OBJECT_ID.test(userId)) {
            throw new ChatError('invalid_payload', 'A user id is 24 characters, 0-9 and a-f.');
        }
        if (userId === state.me.id) {
            throw new ChatError('invalid_payload', 'That is your own id: ask the other person for theirs.');
        }
        if (label && !USERNAME.test(label)) {
            throw new ChatError('invalid_payload', 'A name is 3 to 32 letters, digits, _ . or -.');
        }
        const existing = [...state.rooms.values()].find((r) => r.type === 'direct' &&
            r.participants.includes(userId));
        if (existing) {
            showRoom(existing.id);
            return;
        }
        if (label) {
            learn(userId, label, false);
        }
        const name = label ? `${state.me.username} & ${label}` : state.me.username;
        await createRoom({ name, type: 'direct', participants: [userId] });
    }));
    $('join-room').addEventListener('click', () => openDialog('dlg-join', async (f) => {
        const roomId = f.roomId.value.trim().toLowerCase();
        if (!OBJECT_ID.test(roomId)) {
            throw new ChatError('invalid_payload', 'A room id is 24 characters, 0-9 and a-f.');
        }
        const { room } = await emitWithAck('room:join', { roomId });
        addRoom(room);
        renderRoomList();
        showRoom(room.id);
    }));
    $('edit-profile').addEventListener('click', () => {
        openDialog('dlg-profile', async (f) => {
            const changes = {};
            const file = f.picture.files[0];
            if (file) {
                // an uploaded picture: stored first, then the profile points at it (the server
                // checks it is ours and a picture, and lets everyone signed in see it)
                const { upload } = await api.upload(file);
                f.avatar.value = upload.url;
            }
            for (const k of ['displayName', 'statusText', 'avatar']) {
                const v = f[k].value.trim();
                if (v !== (state.me[k] || '')) {
                    changes[k] = v || null; // an emptied field clears it
                }
            }
            if (!Object.keys(changes).length) {
                return;
            }
            // the server checks the fields and says what is wrong in its answer
            const { user } = await api.updateMe(changes);
            profileChanged(user);
            toast('Your profile is saved.');
        });
        const f = $('dlg-profile').querySelector('form');
        for (const k of ['displayName', 'statusText', 'avatar']) {
            f[k].value = state.me[k] || '';
        }
    });
    for (const id of ['dlg-room', 'dlg-dm', 'dlg-join', 'dlg-profile']) {
        $(id).addEventListener('close', () => {
            $(id).querySelector('form').onsubmit = null;
        });
    }
}

async function copyText(text, what) {
    try {
        await navigator.clipboard.writeText(text);
        toast(`${what} copied.`);
    } catch {
        // no clipboard (plain http): show it so it can be copied by hand
        toast(`${what}: ${text}`, { ms: 15000 });
    }
}

// ---- wiring -----------------------------------------------------------------------------

function setupApp() {
    $('sign-out').addEventListener('click', () => signOut());
    $('copy-my-id').addEventListener('click', () => copyText(state.me.id, 'Your user id'));
    $('copy-room-id').addEventListener('click', () => copyText(state.activeId, 'Room id'));
    $('back').addEventListener('click', () => showRoom(null));
    $('toggle-members').addEventListener('click', () => {
        const open = $('members').classList.toggle('open');
        $('toggle-members').setAttribute('aria-expanded', String(open));
    });
    $('leave-room').addEventListener('click', async () => {
        const roomId = state.activeId;
        const room = state.rooms.get(roomId);
        if (!room || !confirm(`Leave ${roomTitle(room)}? You can join again with its id.`)) {
            return;
        }
        try {
            await emitWithAck('room:leave', { roomId });
            forgetRoom(roomId);
            renderRoomList();
        } catch (err) {
            toastError(err);
        }
    });
    const input = $('composer-input');
    input.addEventListener('input', onComposerInput);
    input.addEventListener('keydown', (ev) => {
        if (ev.key === 'Enter' && !ev.shiftKey && !ev.isComposing) {
            ev.preventDefault();
            $('composer').requestSubmit();
        }
    });
    input.addEventListener('blur', () => sendTypingStop());
    $('attach-input').addEventListener('change', (ev) => {
        const file = ev.target.files && ev.target.files[0];
        ev.target.value = '';
        attachFile(file);
    });
    $('composer').addEventListener('submit', (ev) => {
        ev.preventDefault();
        const text = input.value.trim();
        if (!text || !state.activeId) {
            return;
        }
        sendTypingStop();
        input.value = '';
        onComposerInput();
        sendMessage(text);
    });
    $('messages').addEventListener('scroll', () => {
        if ($('messages').scrollTop < 120) {
            loadOlder();
        }
    }, { passive: true });
    // presence texts like "last seen 3 minutes ago" age
    setInterval(() => state.me && renderPresence(), 60000);
}

setupAuth();
setupApp();
setupDialogs();
resume();

// The reference server for bench/run.sh: the part of chatd's contract (PROTOCOL.md) that the
// benchmark uses, written the usual Node.js way on socket.io 4, minimal.
//
//   POST /auth/register {email, username, password} -> 201 {user, token}
//   POST /auth/login    {login, password}           -> 200 {user, token}
//   GET  /healthz                                   -> 200
//   Socket.IO: auth in CONNECT ({token}); room:create, room:join, message:send with acks
//   {ok:true, room} / {ok:true, message}; message:new to the room but the sending socket,
//   message:ack to the sender. Errors: {ok:false, error:{code, message}}.
//
// Users, tokens and rooms live in memory; tokens are random strings, passwords are kept as
// sha256 (registration is not what the benchmark measures). Messages are stored like chatd
// stores them: SQLite in WAL mode with synchronous=NORMAL, one transaction per message that
// first looks the clientMsgId up, and the ack goes out after the commit. REF_STORE=memory
// keeps them in memory instead.
//
// Configuration: REF_LISTEN (127.0.0.1:8090), REF_DATA_DIR (./data-ref), REF_STORE (sqlite),
// REF_PING_INTERVAL_MS (25000), REF_PING_TIMEOUT_MS (20000).
"use strict";

const http = require("node:http");
const crypto = require("node:crypto");
const fs = require("node:fs");
const path = require("node:path");
const { Server } = require("socket.io");

const [host, portText] = (process.env.REF_LISTEN || "127.0.0.1:8090").split(":");
const port = Number(portText);
const pingInterval = Number(process.env.REF_PING_INTERVAL_MS || 25000);
const pingTimeout = Number(process.env.REF_PING_TIMEOUT_MS || 20000);
const storeKind = process.env.REF_STORE || "sqlite";
const PARTICIPANTS_MAX = 1000;

// ---- ids and errors

let oidCounter = crypto.randomBytes(3).readUIntBE(0, 3);
const oidRandom = crypto.randomBytes(5).toString("hex");
function objectId() {
  oidCounter = (oidCounter + 1) & 0xffffff;
  return (
    Math.floor(Date.now() / 1000).toString(16).padStart(8, "0") +
    oidRandom +
    oidCounter.toString(16).padStart(6, "0")
  );
}

const STATUS = { unauthorized: 401, forbidden: 403, not_found: 404, invalid_payload: 400,
  conflict: 409, internal: 500 };
const fail = (code, message) => ({ ok: false, error: { code, message } });

// ---- the store

function openStore() {
  if (storeKind === "memory") {
    const byClient = new Map();
    return {
      kind: "memory",
      insert(m) {
        const key = m.clientMsgId == null ? null : m.senderId + "\u0000" + m.clientMsgId;
        if (key && byClient.has(key)) {
          return { message: byClient.get(key), duplicate: true };
        }
        if (key) byClient.set(key, m);
        return { message: m, duplicate: false };
      },
    };
  }
  const Database = require("better-sqlite3");
  const dir = process.env.REF_DATA_DIR || "./data-ref";
  fs.mkdirSync(dir, { recursive: true });
  const db = new Database(path.join(dir, "reference.db"));
  db.pragma("journal_mode = WAL");
  db.pragma("synchronous = NORMAL");
  db.exec(`CREATE TABLE IF NOT EXISTS messages (
      id TEXT NOT NULL PRIMARY KEY, room_id TEXT NOT NULL, sender_id TEXT NOT NULL,
      content TEXT NOT NULL, attachments TEXT NOT NULL DEFAULT '[]',
      reactions TEXT NOT NULL DEFAULT '{}', client_msg_id TEXT,
      created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL);
    CREATE INDEX IF NOT EXISTS messages_room_time ON messages(room_id, created_at, id);
    CREATE UNIQUE INDEX IF NOT EXISTS messages_client_msg ON messages(sender_id, client_msg_id)
      WHERE client_msg_id IS NOT NULL;`);
  const byClient = db.prepare(
    "SELECT id, room_id, sender_id, content, attachments, reactions, client_msg_id, " +
      "created_at, updated_at FROM messages WHERE sender_id = ? AND client_msg_id = ?");
  const ins = db.prepare(
    "INSERT INTO messages (id, room_id, sender_id, content, attachments, reactions, " +
      "client_msg_id, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)");
  const insertTx = db.transaction((m) => {
    if (m.clientMsgId != null) {
      const r = byClient.get(m.senderId, m.clientMsgId);
      if (r) {
        return {
          duplicate: true,
          message: { id: r.id, roomId: r.room_id, senderId: r.sender_id, content: r.content,
            attachments: JSON.parse(r.attachments), reactions: JSON.parse(r.reactions),
            clientMsgId: r.client_msg_id, createdAt: r.created_at, updatedAt: r.updated_at },
        };
      }
    }
    ins.run(m.id, m.roomId, m.senderId, m.content, JSON.stringify(m.attachments),
      JSON.stringify(m.reactions), m.clientMsgId, m.createdAt, m.updatedAt);
    return { message: m, duplicate: false };
  });
  return { kind: "sqlite", insert: (m) => insertTx.immediate(m) };
}

const store = openStore();

// ---- users and rooms (memory)

const users = new Map(); // id -> {id, username, email, passwordHash, status, lastSeen, avatar}
const byLogin = new Map(); // lower-case email or username -> id
const tokens = new Map(); // token -> user id
const rooms = new Map(); // id -> room
const userRooms = new Map(); // user id -> Set of room ids

const publicUser = (u) => ({ id: u.id, username: u.username, status: u.status,
  lastSeen: u.lastSeen, avatar: u.avatar });
const hash = (pw) => crypto.createHash("sha256").update(pw).digest("hex");
const isId = (s) => typeof s === "string" && /^[0-9a-f]{24}$/.test(s);

function issue(u) {
  const token = crypto.randomBytes(24).toString("base64url");
  tokens.set(token, u.id);
  return token;
}

function addMember(room, userId) {
  if (room.members.has(userId)) return;
  room.members.add(userId);
  room.participants.push(userId);
  let set = userRooms.get(userId);
  if (!set) userRooms.set(userId, (set = new Set()));
  set.add(room.id);
  io.in("user:" + userId).socketsJoin(room.id);
}

// ---- REST

function send(res, status, body) {
  const text = JSON.stringify(body);
  res.writeHead(status, { "Content-Type": "application/json",
    "Content-Length": Buffer.byteLength(text) });
  res.end(text);
}

function rest(req, res) {
  const url = req.url.split("?")[0];
  if (url.startsWith("/socket.io")) return; // engine.io answers these
  if (req.method === "GET" && url === "/healthz") return send(res, 200, { ok: true });
  if (req.method !== "POST" || (url !== "/auth/register" && url !== "/auth/login")) {
    return send(res, 404, fail("not_found", "no such path"));
  }
  const chunks = [];
  req.on("data", (c) => chunks.push(c));
  req.on("end", () => {
    let b;
    try {
      b = JSON.parse(Buffer.concat(chunks).toString("utf8"));
    } catch {
      return send(res, 400, fail("invalid_payload", "the body must be a JSON object"));
    }
    if (url === "/auth/register") {
      const { email, username, password } = b || {};
      if (typeof email !== "string" || typeof username !== "string" ||
          typeof password !== "string" || password.length < 8) {
        return send(res, 400, fail("invalid_payload", "email, username and password needed"));
      }
      if (byLogin.has(email.toLowerCase()) || byLogin.has(username.toLowerCase())) {
        return send(res, 409, fail("conflict", "that email or username is taken"));
      }
      const u = { id: objectId(), username, email, passwordHash: hash(password),
        status: "offline", lastSeen: null, avatar: null };
      users.set(u.id, u);
      byLogin.set(email.toLowerCase(), u.id);
      byLogin.set(username.toLowerCase(), u.id);
      return send(res, 201, { user: publicUser(u), token: issue(u) });
    }
    const id = byLogin.get(String((b && b.login) || "").toLowerCase());
    const u = id && users.get(id);
    if (!u || u.passwordHash !== hash(String(b.password))) {
      return send(res, 401, fail("unauthorized", "wrong login or password"));
    }
    return send(res, 200, { user: publicUser(u), token: issue(u) });
  });
}

const server = http.createServer(rest);
const io = new Server(server, { pingInterval, pingTimeout, maxHttpBufferSize: 1e6,
  serveClient: false, cors: { origin: "*" } });

io.use((socket, next) => {
  const token = socket.handshake.auth && socket.handshake.auth.token;
  const userId = typeof token === "string" && tokens.get(token);
  if (!userId) return next(new Error("unauthorized"));
  socket.data.userId = userId;
  next();
});

io.on("connection", (socket) => {
  const userId = socket.data.userId;
  socket.join("user:" + userId);
  for (const roomId of userRooms.get(userId) || []) socket.join(roomId);
  const answer = (ack, v) => typeof ack === "function" && ack(v);

  socket.on("room:create", (p, ack) => {
    if (!p || (p.type !== "group" && p.type !== "direct")) {
      return answer(ack, fail("invalid_payload", 'type must be "group" or "direct"'));
    }
    const list = Array.isArray(p.participants) ? p.participants : [];
    if (!list.every(isId)) {
      return answer(ack, fail("invalid_payload", "participants must be user ids"));
    }
    const members = [...new Set([userId, ...list])];
    if (members.length > PARTICIPANTS_MAX) {
      return answer(ack, fail("invalid_payload", "a room has at most 1000 participants"));
    }
    const room = { id: objectId(), name: String(p.name || ""), type: p.type, participants: [],
      admin: userId, settings: {}, createdAt: Date.now() };
    // not enumerable: kept out of the JSON the acks carry
    Object.defineProperty(room, "members", { value: new Set() });
    rooms.set(room.id, room);
    for (const m of members) addMember(room, m);
    answer(ack, { ok: true, room });
  });

  socket.on("room:join", (p, ack) => {
    const room = p && rooms.get(p.roomId);
    if (!room) return answer(ack, fail("not_found", "no room with that id"));
    if (!room.members.has(userId) && (room.type !== "group" || room.settings.private)) {
      return answer(ack, fail("forbidden", "this room is private: ask its admin to add you"));
    }
    addMember(room, userId);
    answer(ack, { ok: true, room });
  });

  socket.on("message:send", (p, ack) => {
    const room = p && rooms.get(p.roomId);
    if (!room) return answer(ack, fail("not_found", "no room with that id"));
    if (!room.members.has(userId)) {
      return answer(ack, fail("forbidden", "you are not a member of this room; join it first"));
    }
    if (typeof p.content !== "string" || !p.content.length) {
      return answer(ack, fail("invalid_payload", "content must be a non-empty string"));
    }
    const now = Date.now();
    const m = { id: objectId(), roomId: room.id, senderId: userId, content: p.content,
      attachments: [], reactions: {}, clientMsgId: p.clientMsgId == null ? null : String(p.clientMsgId),
      createdAt: now, updatedAt: now };
    let r;
    try {
      r = store.insert(m);
    } catch (e) {
      return answer(ack, fail("internal", "the message was not stored: " + e.message));
    }
    if (!r.duplicate) socket.to(room.id).emit("message:new", r.message);
    socket.emit("message:ack", { clientMsgId: r.message.clientMsgId, id: r.message.id,
      createdAt: r.message.createdAt });
    answer(ack, { ok: true, message: r.message });
  });
});

server.listen(port, host, () => {
  console.error(JSON.stringify({ level: "info", event: "listening", listen: `${host}:${port}`,
    store: store.kind, pingInterval, pingTimeout, node: process.version,
    socketio: require("socket.io/package.json").version }));
});

for (const sig of ["SIGINT", "SIGTERM"]) {
  process.on(sig, () => process.exit(0));
}

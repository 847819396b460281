// A check of chat-bench's WebSocket reader against frames real servers rarely send: every
// Engine.IO packet arrives fragmented (a text frame and continuation frames, with a
// websocket ping between the fragments), a 64 KiB-payload frame arrives split across TCP
// writes, and Engine.IO pings come with data. chat-bench must register, connect, make a room,
// send and receive, and exit 0 with every message delivered.
//
//   node bench/reference/fragments_test.js build-bench/bench/chat-bench
"use strict";

const http = require("node:http");
const crypto = require("node:crypto");
const { spawn } = require("node:child_process");
const { WebSocketServer } = require("ws");

const bench = process.argv[2];
if (!bench) {
  console.error("usage: node fragments_test.js <path to chat-bench>");
  process.exit(2);
}

const users = new Map(); // token -> id
const socketsByUser = new Map();
const rooms = new Map(); // id -> Set of ws
const id24 = () => crypto.randomBytes(12).toString("hex");

const server = http.createServer((req, res) => {
  const chunks = [];
  req.on("data", (c) => chunks.push(c));
  req.on("end", () => {
    const id = id24();
    const token = crypto.randomBytes(16).toString("hex");
    users.set(token, id);
    // chunked on purpose: chat-bench must read both body framings
    res.writeHead(201, { "Content-Type": "application/json", "Transfer-Encoding": "chunked" });
    res.write(JSON.stringify({ user: { id }, token }).slice(0, 10));
    res.end(JSON.stringify({ user: { id }, token }).slice(10));
  });
});

// Sends one text message as three fragments with a ping in between.
function sendFragmented(ws, text) {
  const a = Math.max(1, Math.floor(text.length / 3));
  const b = Math.max(a + 1, Math.floor((2 * text.length) / 3));
  if (text.length < 3) {
    ws.send(text);
    return;
  }
  ws.send(text.slice(0, a), { fin: false });
  ws.ping("x");
  ws.send(text.slice(a, b), { fin: false });
  ws.send(text.slice(b), { fin: true });
}

let frames = 0;
const wss = new WebSocketServer({ server, path: "/socket.io/" });
wss.on("connection", (ws) => {
  sendFragmented(ws, '0{"sid":"' + id24() + '","upgrades":[],"pingInterval":300,"pingTimeout":5000,"maxPayload":1000000}');
  const pinger = setInterval(() => sendFragmented(ws, "2probe-data"), 300);
  ws.on("close", () => clearInterval(pinger));
  ws.on("message", (data) => {
    const m = data.toString();
    frames++;
    if (m.startsWith("40")) {
      const uid = users.get(JSON.parse(m.slice(2)).token);
      if (!uid) return ws.send('44{"message":"unauthorized"}');
      ws.uid = uid;
      socketsByUser.set(uid, ws);
      sendFragmented(ws, '40{"sid":"' + id24() + '"}');
      return;
    }
    const ev = /^42(\d+)(\[.*)$/s.exec(m);
    if (!ev) return; // pongs
    const [name, p] = JSON.parse(ev[2]);
    if (name === "room:create") {
      const rid = id24();
      const set = new Set([ws]);
      for (const u of p.participants) if (socketsByUser.has(u)) set.add(socketsByUser.get(u));
      rooms.set(rid, set);
      // a big ack: its frame uses the 64-bit length form and is split across writes
      const room = { id: rid, name: p.name, padding: "p".repeat(70000) };
      const text = "43" + ev[1] + JSON.stringify([{ ok: true, room }]);
      const frame = Buffer.concat([Buffer.from([0x81, 127, 0, 0, 0, 0]),
        Buffer.alloc(4), Buffer.from(text)]);
      frame.writeUInt32BE(Buffer.byteLength(text), 6);
      ws._socket.write(frame.subarray(0, 7));
      setTimeout(() => ws._socket.write(frame.subarray(7, 5000)), 5);
      setTimeout(() => ws._socket.write(frame.subarray(5000)), 10);
      return;
    }
    if (name === "message:send") {
      const msg = { id: id24(), roomId: p.roomId, senderId: ws.uid, content: p.content };
      for (const other of rooms.get(p.roomId) || []) {
        if (other !== ws) sendFragmented(other, "42" + JSON.stringify(["message:new", msg]));
      }
      sendFragmented(ws, "43" + ev[1] + JSON.stringify([{ ok: true, message: msg }]));
    }
  });
});

server.listen(0, "127.0.0.1", () => {
  const port = server.address().port;
  const child = spawn(bench, ["--target", `127.0.0.1:${port}`, "--conns", "20", "--room-size", "10",
    "--rate", "100", "--step-secs", "2", "--warmup-secs", "0.5", "--max-secs", "30", "--quiet"],
  { stdio: ["ignore", "pipe", "inherit"] });
  let out = "";
  child.stdout.on("data", (d) => (out += d));
  child.on("exit", (code) => {
    const r = JSON.parse(out.trim().split("\n").pop());
    const s = r.steps[0] || {};
    const ok = code === 0 && r.ok && s.conns === 20 && s.sent > 100 && s.lost === 0 &&
      s.ack_errors === 0 && s.latency_ms.count === s.sent * 9;
    console.log(out.split("\n")[0]);
    console.log(ok ? "1 passed, 0 failed" : "0 passed, 1 failed");
    process.exit(ok ? 0 : 1);
  });
});

'use strict';
// Raw HTTP/1.1 over one TCP connection, for what real clients never send (pipelining in one
// write, smuggling attempts, chunked bodies, huge headers). Not a test file.
const net = require('node:net');
const { WAIT_MS } = require('./helpers');

/** Splits the bytes a server sent into responses: { status, headers, body }[] and the rest. */
function parseResponses(buf) {
    const out = [];
    let rest = buf;
    for (;;) {
        const end = rest.indexOf('\r\n\r\n');
        if (end < 0) {
            break;
        }
        const lines = rest.subarray(0, end).toString('latin1').split('\r\n');
        const m = /^HTTP\/1\.[01] (\d{3})/.exec(lines[0]);
        if (!m) {
            break;
        }
        const headers = {};
        for (const l of lines.slice(1)) {
            const i = l.indexOf(':');
            headers[l.slice(0, i).trim().toLowerCase()] = l.slice(i + 1).trim();
        }
        const len = Number(headers['content-length'] || 0);
        if (rest.length < end + 4 + len) {
            break;
        }
        out.push({ status: Number(m[1]), statusLine: lines[0], headers,
            body: rest.subarray(end + 4, end + 4 + len).toString('utf8') });
        rest = rest.subarray(end + 4 + len);
    }
    return { responses: out, rest };
}

/**
 * Connects, writes `chunks` (each one write, in order), and resolves once `count` responses
 * arrived (the connection stays open: closed: false) or the server closed the connection
 * (closed: true). Rejects after WAIT_MS with what arrived so far.
 */
function exchange(port, chunks, { count = Infinity, closeAfterWrite = false } = {}) {
    return new Promise((resolve, reject) => {
        const sock = net.connect(port, '127.0.0.1');
        let buf = Buffer.alloc(0);
        let done = false;
        const finish = (closed) => {
            if (done) {
                return;
            }
            done = true;
            clearTimeout(timer);
            const { responses, rest } = parseResponses(buf);
            sock.destroy();
            resolve({ responses, rest: rest.toString('latin1'), closed, raw: buf.toString('latin1') });
        };
        const timer = setTimeout(() => {
            if (!done) {
                done = true;
                sock.destroy();
                reject(new Error(`no answer within ${WAIT_MS} ms; got:\n${buf.toString('latin1')}`));
            }
        }, WAIT_MS);
        sock.on('connect', () => {
            for (const c of chunks) {
                sock.write(c);
            }
            if (closeAfterWrite) {
                sock.end();
            }
        });
        sock.on('data', (d) => {
            buf = Buffer.concat([buf, d]);
            if (parseResponses(buf).responses.length >= count) {
                finish(false);
            }
        });
        sock.on('error', () => finish(true));
        sock.on('close', () => finish(true));
    });
}

module.exports = { exchange, parseResponses };

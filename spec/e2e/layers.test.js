'use strict';
// The runtime's layers call downward only (docs/ARCHITECTURE.md): each file has a rank in
// LAYERS below (base < services < Lua host < transport < sockets < domain < runtime), and a
// file names only its own layer and those below it. A lower layer reaches a higher one only
// through a handler struct or route it was given at start, so no runtime/src/*.c file may
// call (through a chat_/chat__ function) a file that calls it back, directly or round a
// loop. This reads the sources: no server is started.
//
// The Lua host (script*.c and the lua_*.c bindings) counts as one component here: its parts
// open and call each other (the states open the bindings, the bindings yield through the
// runs), and what matters for the layers is that it and the rest never loop.
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { test } = require('node:test');

const SRC = path.resolve(__dirname, '..', '..', 'runtime', 'src');

function strip(text) {
    return text
        .replace(/\/\*[\s\S]*?\*\//g, '')
        .replace(/\/\/.*$/gm, '')
        .replace(/"(\\.|[^"\\\n])*"/g, '""');
}

const component = (file) => (/^(script|lua_)/.test(file) ? 'lua host' : file);

// component -> { other component -> [functions of it that component calls] }
function callGraph() {
    const files = fs.readdirSync(SRC).filter((f) => f.endsWith('.c'));
    const text = {};
    const owner = {}; // function -> file defining it (not static)
    for (const f of files) {
        const name = f.slice(0, -2);
        text[name] = strip(fs.readFileSync(path.join(SRC, f), 'utf8'));
        const def = /^([A-Za-z_][\w *]*?)\b((?:chat_{1,2}|luaopen_)\w+)\s*\([^;{]*\)\s*\{/gm;
        for (let m; (m = def.exec(text[name]));) {
            if (!m[1].startsWith('static') && !(m[2] in owner)) {
                owner[m[2]] = name;
            }
        }
        const table = /^const\s+\w+\s+(chat__\w+)\s*=/gm; // exported handler tables
        for (let m; (m = table.exec(text[name]));) {
            owner[m[1]] ??= name;
        }
    }
    const edges = {};
    for (const [name, t] of Object.entries(text)) {
        for (const fn of new Set(t.match(/\b(?:chat_{1,2}|luaopen_)\w+\b/g) || [])) {
            const from = component(name);
            const to = owner[fn] && component(owner[fn]);
            if (to && to !== from) {
                ((edges[from] ??= {})[to] ??= []).push(fn);
            }
        }
    }
    return edges;
}

// Strongly connected components with more than one file (Tarjan).
function loops(edges) {
    const index = new Map(), low = new Map(), stack = [], on = new Set(), found = [];
    let n = 0;
    const visit = (v) => {
        index.set(v, n);
        low.set(v, n++);
        stack.push(v);
        on.add(v);
        for (const w of Object.keys(edges[v] || {})) {
            if (!index.has(w)) {
                visit(w);
                low.set(v, Math.min(low.get(v), low.get(w)));
            } else if (on.has(w)) {
                low.set(v, Math.min(low.get(v), index.get(w)));
            }
        }
        if (low.get(v) === index.get(v)) {
            const comp = [];
            let w;
            do {
                w = stack.pop();
                on.delete(w);
                comp.push(w);
            } while (w !== v);
            if (comp.length > 1) {
                found.push(comp.sort());
            }
        }
    };
    for (const v of Object.keys(edges)) {
        if (!index.has(v)) {
            visit(v);
        }
    }
    return found;
}

test('no two runtime/src files (or the Lua host) call each other, directly or round a loop', () => {
    const edges = callGraph();
    const described = loops(edges).map((comp) =>
        comp
            .flatMap((a) =>
                comp
                    .filter((b) => edges[a]?.[b])
                    .map((b) => `${a} -> ${b}: ${edges[a][b].join(', ')}`))
            .join('\n'));
    assert.deepEqual(described, [], `import loops:\n${described.join('\n\n')}`);
});

// Every runtime/src/*.c file and its layer; a layer may call its own layer and the layers
// before it in LAYERS, never one after it. A new file fails the check below until it is placed.
const LAYERS = [
    ['base', 'buf map log errors frame eio sio bson_json json_out config metrics'],
    ['services', 'store store_sqlite store_mongo bus bus_redis kv kv_redis redis_conn auth stats jobs jobs_sqlite jobs_redis'],
    ['lua host', ['lua host']], // script*.c and lua_*.c, one component (see component())
    ['transport', 'bounds http_frame http net session static'],
    ['sockets', 'sock'],
    ['plain engine.io', 'eio_script'], // beside sock on session.c; hands its sessions to the scripts
    ['cluster', 'cluster reload'],
    ['domain core', 'call members fanout sanctions'],
    ['domain concerns', 'rooms messages presence connect message_ops reads notifications uploads users'],
    ['domain doors', 'actions rest ops admin domain'],
    ['runtime', 'runtime'],
    ['program', 'main'],
];
// Beside the ranks: the Lua host is called by the domain (hooks), eio_script.c (the eio/*
// hooks), cluster.c, reload.c and the operator endpoints, and reaches the domain only through rt->actions; transport and
// sockets, which rank above it, never name it.
const NEVER = { transport: ['lua host'], sockets: ['lua host'] };

const rankOf = {};
const layerOf = {};
LAYERS.forEach(([layer, names], rank) => {
    for (const name of Array.isArray(names) ? names : names.split(' ')) {
        rankOf[name] = rank;
        layerOf[name] = layer;
    }
});

test('every runtime/src file has a layer', () => {
    const unplaced = fs.readdirSync(SRC)
        .filter((f) => f.endsWith('.c'))
        .map((f) => component(f.slice(0, -2)))
        .filter((c) => !(c in rankOf));
    assert.deepEqual([...new Set(unplaced)], [], 'add these to LAYERS in spec/e2e/layers.test.js');
});

test('every call goes to the same layer or one below it', () => {
    const edges = callGraph();
    const upward = [];
    for (const [from, tos] of Object.entries(edges)) {
        for (const [to, fns] of Object.entries(tos)) {
            if (!(from in rankOf) || !(to in rankOf)) {
                continue; // reported by the test above
            }
            const banned = (NEVER[layerOf[from]] || []).includes(layerOf[to]);
            if (rankOf[to] > rankOf[from] || banned) {
                upward.push(`${from} (${layerOf[from]}) -> ${to} (${layerOf[to]}): ${fns.join(', ')}`);
            }
        }
    }
    assert.deepEqual(upward, [], `calls against the layers:\n${upward.join('\n')}`);
});

'use strict';
// The scripts the protocol_*.test.js servers run: the handlers in this folder and the
// shipped example policy examples/auth_session.lua, copied to a fresh scripts folder.
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

function protocolScripts() {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'chatd-protocol-'));
    for (const name of ['args.lua', 'corners.lua']) {
        fs.copyFileSync(path.join(__dirname, name), path.join(dir, name));
    }
    fs.copyFileSync(path.join(__dirname, '..', '..', '..', 'examples', 'auth_session.lua'),
        path.join(dir, 'auth_session.lua'));
    return dir;
}

module.exports = { protocolScripts };

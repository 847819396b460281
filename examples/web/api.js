// REST calls to chatd, and the one error shape every failure is turned into.
//
// chatd answers failures with {ok:false, error:{code, message}} where message is a sentence
// meant for people (PROTOCOL.md "Errors"); the page shows that sentence as it is. Failures
// that never reached chatd get a sentence of our own, with the code "unreachable".

export class ChatError extends Error {
    constructor(code, message, status = 0) {
        super(message);
        this.code = code;
        this.status = status;
    }
}

export const UNREACHABLE =
    'Cannot reach the chat server. Check your connection; the page keeps trying.';

/** A ChatError from anything: a server error body, an ack, a thrown error. */
export function toChatError(x, status = 0) {
    if (x instanceof ChatError) {
        return x;
    }
    if (x && typeof x === 'object' && x.error && typeof x.error.message === 'string') {
        return new ChatError(x.error.code || 'internal', x.error.message, status);
    }
    if (x instanceof Error && x.message) {
        return new ChatError('internal', x.message, status);
    }
    return new ChatError('internal', 'Something went wrong; please try again.', status);
}

/** A short heading for an error code, shown above the server's own sentence. */
export function errorTitle(code) {
    switch (code) {
        case 'rate_limited': return 'Slow down';
        case 'policy_rejected': return 'Not allowed here';
        case 'forbidden': return 'Not allowed';
        case 'unauthorized': return 'Not signed in';
        case 'unavailable': return 'Server busy';
        case 'unreachable': return 'Offline';
        case 'payload_too_large': return 'Too long';
        case 'not_found': return 'Not found';
        case 'conflict': return 'Already taken';
        case 'invalid_payload': return 'Check the details';
        default: return 'Something went wrong';
    }
}

export class Api {
    constructor(base = '') {
        this.base = base;
        this.token = null;
        /** Called with the error when the server says the token is no longer valid. */
        this.onUnauthorized = null;
    }

    async request(method, path, body) {
        const headers = {};
        if (body !== undefined) {
            headers['content-type'] = 'application/json';
        }
        if (this.token) {
            headers.authorization = `Bearer ${this.token}`;
        }
        let res;
        try {
            res = await fetch(this.base + path, {
                method,
                headers,
                body: body === undefined ? undefined : JSON.stringify(body),
                signal: AbortSignal.timeout(15000),
            });
        } catch {
            throw new ChatError('unreachable', UNREACHABLE);
        }
        let data = null;
        try {
            data = await res.json();
        } catch {
            /* not JSON: a proxy's error page, say */
        }
        if (!res.ok || !data || data.ok === false) {
            const err = data && data.error
                ? toChatError(data, res.status)
                : new ChatError(res.status >= 500 ? 'unavailable' : 'internal',
                    `The server answered ${res.status} ${res.statusText || ''}`.trim() +
                    '; please try again.', res.status);
            if (res.status === 401 && this.token && this.onUnauthorized) {
                this.onUnauthorized(err);
            }
            throw err;
        }
        return data;
    }

    register(email, username, password) {
        return this.request('POST', '/auth/register', { email, username, password });
    }

    login(login, password) {
        return this.request('POST', '/auth/login', { login, password });
    }

    me() {
        return this.request('GET', '/me');
    }

    rooms() {
        return this.request('GET', '/rooms');
    }

    /** The directory: public users by id, { users } in the order asked. */
    users(ids) {
        return this.request('GET', `/users?ids=${ids.map(encodeURIComponent).join(',')}`);
    }

    /** The directory's search: { users } whose username starts with prefix. */
    searchUsers(prefix, limit = 8) {
        return this.request('GET', `/users?q=${encodeURIComponent(prefix)}&limit=${limit}`);
    }

    /** POST /uploads: the file's bytes with its type; { upload }. */
    async upload(file) {
        let res;
        try {
            res = await fetch(`${this.base}/uploads?name=${encodeURIComponent(file.name)}`, {
                method: 'POST',
                headers: { authorization: `Bearer ${this.token}`, 'content-type': file.type || 'application/octet-stream' },
                body: file,
                signal: AbortSignal.timeout(60000),
            });
        } catch {
            throw new ChatError('unreachable', UNREACHABLE);
        }
        const data = await res.json().catch(() => null);
        if (!res.ok || !data) {
            throw data && data.error ? toChatError(data, res.status)
                : new ChatError('internal', `The server answered ${res.status}; please try again.`, res.status);
        }
        return data;
    }

    /** GET /uploads/:id with the token, as a blob. */
    async file(url) {
        const res = await fetch(this.base + url, { headers: { authorization: `Bearer ${this.token}` } });
        if (!res.ok) {
            throw new ChatError('internal', `The file could not be loaded (${res.status}).`, res.status);
        }
        return res.blob();
    }

    notifications() {
        return this.request('GET', '/notifications?limit=50');
    }

    readNotifications(ids) {
        return this.request('POST', '/notifications/read', { ids });
    }

    updateMe(changes) {
        return this.request('PATCH', '/me', changes);
    }

    /** Newest first: { messages, nextBefore }. */
    messages(roomId, { before = null, limit = 50 } = {}) {
        const q = new URLSearchParams({ roomId, limit: String(limit) });
        if (before) {
            q.set('before', before);
        }
        return this.request('GET', `/messages?${q}`);
    }
}

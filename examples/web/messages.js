// The messages of one room as this page knows them: stored messages from history pages, live
// events and catch-up, plus the ones we are still sending. Every way a message can arrive
// goes through put(), which de-duplicates by id and by (sender, clientMsgId), so history, a
// live message:new and an ack can overlap freely.

/** Stored messages in server order (createdAt, then id); pending ones after them. */
function compare(a, b) {
    if (a.pending !== b.pending) {
        return a.pending ? 1 : -1;
    }
    if (a.createdAt !== b.createdAt) {
        return a.createdAt - b.createdAt;
    }
    return a.id < b.id ? -1 : a.id > b.id ? 1 : 0;
}

export class RoomLog {
    constructor(roomId) {
        this.roomId = roomId;
        this.items = [];
        this.byId = new Map();
        this.byClient = new Map(); // `${senderId}/${clientMsgId}` -> item
        this.nextBefore = null; // where the next older page starts
        this.complete = false; // the oldest message is loaded
        this.loaded = false; // the first page is loaded
        this.loading = false;
    }

    static clientKey(senderId, clientMsgId) {
        return `${senderId}/${clientMsgId}`;
    }

    /**
     * A stored message (from history, message:new or an ack). Returns true if it was new. A
     * copy we have already is refreshed: the server may have rewritten what we sent (a
     * moderation policy masking a word), and its answer is what everyone else sees.
     */
    put(m) {
        const have = this.byId.get(m.id);
        if (have) {
            if ((m.content !== undefined && m.content !== have.content) ||
                (m.updatedAt !== undefined && m.updatedAt !== have.updatedAt) ||
                Boolean(m.deleted) !== Boolean(have.deleted)) {
                Object.assign(have, m, { pending: false, state: 'sent', error: null });
            }
            return false;
        }
        const key = m.clientMsgId ? RoomLog.clientKey(m.senderId, m.clientMsgId) : null;
        const mine = key && this.byClient.get(key);
        if (mine) {
            // our pending copy becomes the stored message: same item, so the same row
            Object.assign(mine, m, { pending: false, state: 'sent', error: null });
            this.byId.set(m.id, mine);
            this.sort();
            return true;
        }
        const item = { ...m, pending: false, state: 'sent' };
        this.byId.set(m.id, item);
        if (key) {
            this.byClient.set(key, item);
        }
        this.insert(item);
        return true;
    }

    /** A message we are sending: shown at once, replaced by put() when it is stored. */
    addPending(senderId, clientMsgId, content) {
        const item = {
            id: null,
            roomId: this.roomId,
            senderId,
            content,
            clientMsgId,
            createdAt: Date.now(),
            pending: true,
            state: 'pending',
            error: null,
        };
        this.byClient.set(RoomLog.clientKey(senderId, clientMsgId), item);
        this.insert(item);
        return item;
    }

    /** Takes a message we gave up sending off the list. */
    drop(item) {
        this.items = this.items.filter((m) => m !== item);
        this.byClient.delete(RoomLog.clientKey(item.senderId, item.clientMsgId));
    }

    pending() {
        return this.items.filter((m) => m.pending);
    }

    /** The newest stored message, the point catch-up fetches back to. */
    newestStored() {
        for (let i = this.items.length - 1; i >= 0; i--) {
            if (!this.items[i].pending) {
                return this.items[i];
            }
        }
        return null;
    }

    insert(item) {
        // most arrivals are the newest: walk from the end
        let i = this.items.length;
        while (i > 0 && compare(this.items[i - 1], item) > 0) {
            i--;
        }
        this.items.splice(i, 0, item);
    }

    sort() {
        this.items.sort(compare);
    }

    /** Forgets stored messages (a gap too long to fill); pending ones stay. */
    reset() {
        const pending = this.pending();
        this.items = pending;
        this.byId.clear();
        this.byClient = new Map(pending.map((m) => [RoomLog.clientKey(m.senderId, m.clientMsgId), m]));
        this.nextBefore = null;
        this.complete = false;
    }
}

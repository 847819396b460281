/* presence.c: online/offline. The first socket of a user anywhere in the cluster makes it
 * online and the last one gone makes it offline; the change goes to the members of the
 * user's rooms and to the store (lastSeen).
 *
 * In process (one node) a counter in the kv says it: user:{id}:online, +1 when a user's first
 * socket on this node connects, -1 when its last one here leaves.
 *
 * With Redis, the seed's keys, kept by atomic scripts so two nodes never both announce:
 *   online_users                 set of users with a socket on some live node
 *   presence:{userId}            hash: node instance -> since (ms) for each node holding them
 *   user:{userId}:online         how many nodes hold them (HLEN of the hash)
 *   user:{userId}:last_seen      ms when they went offline
 *   presence:node:{instance}     this node is alive: renewed every presence_heartbeat_ms with
 *                                TTL presence_ttl_ms, so it expires on its own when the
 *                                process dies (SIGKILL, power loss, partition)
 *   presence:node:{instance}:users  the users this node holds, to take back when it is dead
 *   presence:nodes               set of the instances that may hold users
 * The instance is "{node_id}.{random}", new at each start: a restarted node never renews
 * its dead predecessor's record. Each heartbeat also looks for instances whose record has
 * expired and, in the same script, removes their users' entries; users left on no node go
 * offline and this node announces it (presence:update offline) to their rooms. A node that
 * finds its own record had expired (it was stalled or cut off longer than the TTL and may
 * have been reaped) registers its users again. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "domain_int.h"
#include "log.h"

struct chat_presence {
    uv_timer_t timer;
    chat_runtime *rt;
    char inst[64];    /* this process: "{node_id}.{random}" */
    int beats;        /* heartbeats Redis answered */
    int beat_pending; /* one at a time: a slow Redis does not pile them up */
};

#define PRESENCE_CHANNEL "presence:updates" /* every node subscribes to it at start */

static void publish_presence(chat_runtime *rt, chat_user_state *u, const char *status,
                             int64_t last_seen)
{
    chat_buf csv = CHAT_BUF_INIT;
    for (uint32_t i = 0; i < u->rooms.len; i++) {
        chat_room_state *r = u->rooms.items[i];
        if ((i && chat__buf_appendc(&csv, ',')) || chat__buf_append(&csv, r->id, 24)) {
            chat__buf_free(&csv);
            return;
        }
    }
    if (chat__buf_terminate(&csv)) {
        return;
    }
    char except[32];
    snprintf(except, sizeof except, "u:%s", u->id);
    json_t *payload = json_pack("{s:s,s:s,s:I}", "userId", u->id, "status", status, "lastSeen",
                                (json_int_t)last_seen);
    if (payload && csv.len) {
        chat__fanout_rooms(rt, PRESENCE_CHANNEL, (const char *)csv.data, except, "presence:update",
                           payload);
    }
    json_decref(payload);
    chat__buf_free(&csv);
}

typedef struct presence_ctx {
    chat_runtime *rt;
    char user_id[25];
    int online;
    chat_buf rooms; /* for going offline: the user's rooms when its last socket left */
} presence_ctx;

typedef struct seen_ctx {
    chat_runtime *rt;
    char user_id[25];
} seen_ctx;

static void store_ignore(int status, json_t *result, void *arg)
{
    seen_ctx *s = arg;
    if (status) {
        chat__log(CHAT_LOG_WARN, "last_seen_failed", "could not record a user's last seen time",
                  json_pack("{s:s}", "code", chat_errcode(status)));
    }
    json_decref(result);
    if (s) {
        chat__users_changed(s->rt, s->user_id); /* the directory's copy shows the old status */
        free(s);
    }
}

/* The user changed state cluster-wide: tell their rooms and the store. */
static void announce(chat_runtime *rt, const char *user_id, int online, chat_buf *rooms)
{
    int64_t now = chat__now_ms();
    chat_user_state *u = chat__map_get(&rt->users, user_id);
    const char *st = online ? "online" : "offline";
    if (u) {
        publish_presence(rt, u, st, now);
    } else if (rooms && rooms->len && !chat__buf_terminate(rooms)) {
        char except[32];
        snprintf(except, sizeof except, "u:%s", user_id);
        json_t *payload = json_pack("{s:s,s:s,s:I}", "userId", user_id, "status", st,
                                    "lastSeen", (json_int_t)now);
        chat__fanout_rooms(rt, PRESENCE_CHANNEL, (const char *)rooms->data, except,
                           "presence:update", payload);
        json_decref(payload);
    }
    seen_ctx *s = malloc(sizeof *s);
    if (s) {
        s->rt = rt;
        snprintf(s->user_id, sizeof s->user_id, "%s", user_id);
    }
    chat__store_call(
        rt->store, CHAT_STORE_USER_SET_SEEN,
        json_pack("{s:s,s:I,s:s}", "id", user_id, "lastSeen", (json_int_t)now, "status", st),
        store_ignore, s);
}

static void presence_counted(int status, const char *value, int64_t number, void *arg)
{
    presence_ctx *p = arg;
    (void)value;
    /* first socket anywhere comes online; last one anywhere goes offline */
    if (status == 0 && ((p->online && number == 1) || (!p->online && number <= 0))) {
        if (!p->online) {
            char key[48], now[24];
            snprintf(key, sizeof key, "user:%s:last_seen", p->user_id);
            snprintf(now, sizeof now, "%lld", (long long)chat__now_ms());
            chat__kv_set(p->rt->kv, key, now, 0, NULL, NULL);
        }
        announce(p->rt, p->user_id, p->online, &p->rooms);
    }
    chat__buf_free(&p->rooms);
    free(p);
}

/* ---- Redis: per-node records ---- */

/* ARGV: user, instance, now, ttl ms. 1 when the user was not online anywhere before. The
 * node registers itself too, in case its first heartbeat has not run yet: a node that holds
 * users is always in presence:nodes, with a record that expires. */
static const char join_script[] =
    "local u, inst = ARGV[1], ARGV[2]\n"
    "redis.call('SET', 'presence:node:' .. inst, ARGV[3], 'PX', ARGV[4], 'NX')\n"
    "redis.call('SADD', 'presence:nodes', inst)\n"
    "redis.call('SADD', 'presence:node:' .. inst .. ':users', u)\n"
    "redis.call('HSET', 'presence:' .. u, inst, ARGV[3])\n"
    "redis.call('SET', 'user:' .. u .. ':online', redis.call('HLEN', 'presence:' .. u))\n"
    "return redis.call('SADD', 'online_users', u)\n";

/* ARGV: user, instance, now, ttl ms. 1 when the user is now on no node. */
static const char leave_script[] =
    "local u, inst = ARGV[1], ARGV[2]\n"
    "redis.call('SREM', 'presence:node:' .. inst .. ':users', u)\n"
    "redis.call('HDEL', 'presence:' .. u, inst)\n"
    "local n = redis.call('HLEN', 'presence:' .. u)\n"
    "redis.call('SET', 'user:' .. u .. ':online', n)\n"
    "if n > 0 then return 0 end\n"
    "redis.call('SET', 'user:' .. u .. ':last_seen', ARGV[3])\n"
    "return redis.call('SREM', 'online_users', u)\n";

/* ARGV: instance, "-", now, ttl ms, then every user this node has sockets for. Renews this
 * node's record, reconciles its user set with that list (a join or leave lost while Redis was
 * down or the node cut off from it is applied now, as the join and leave scripts would),
 * then reaps every instance whose record expired. Returns {1 if our record still existed,
 * dead instances, users now offline (reaped), users now offline (reconciled), users now
 * online (reconciled)}. */
static const char beat_script[] =
    "local inst, now = ARGV[1], ARGV[3]\n"
    "local existed = redis.call('EXISTS', 'presence:node:' .. inst)\n"
    "redis.call('SET', 'presence:node:' .. inst, now, 'PX', ARGV[4])\n"
    "redis.call('SADD', 'presence:nodes', inst)\n"
    "local mine, left, came = {}, {}, {}\n"
    "for i = 5, #ARGV do mine[ARGV[i]] = true end\n"
    "local own = 'presence:node:' .. inst .. ':users'\n"
    "for _, u in ipairs(redis.call('SMEMBERS', own)) do\n"
    "  if mine[u] then\n"
    "    mine[u] = false\n"
    "  else\n"
    "    redis.call('SREM', own, u)\n"
    "    redis.call('HDEL', 'presence:' .. u, inst)\n"
    "    local n = redis.call('HLEN', 'presence:' .. u)\n"
    "    redis.call('SET', 'user:' .. u .. ':online', n)\n"
    "    if n == 0 then\n"
    "      redis.call('SET', 'user:' .. u .. ':last_seen', now)\n"
    "      if redis.call('SREM', 'online_users', u) == 1 then left[#left + 1] = u end\n"
    "    end\n"
    "  end\n"
    "end\n"
    "for u, missing in pairs(mine) do\n"
    "  if missing then\n"
    "    redis.call('SADD', own, u)\n"
    "    redis.call('HSET', 'presence:' .. u, inst, now)\n"
    "    redis.call('SET', 'user:' .. u .. ':online', redis.call('HLEN', 'presence:' .. u))\n"
    "    if redis.call('SADD', 'online_users', u) == 1 then came[#came + 1] = u end\n"
    "  end\n"
    "end\n"
    "local gone, dead = {}, 0\n"
    "for _, n in ipairs(redis.call('SMEMBERS', 'presence:nodes')) do\n"
    "  if redis.call('EXISTS', 'presence:node:' .. n) == 0 then\n"
    "    dead = dead + 1\n"
    "    local set = 'presence:node:' .. n .. ':users'\n"
    "    for _, u in ipairs(redis.call('SMEMBERS', set)) do\n"
    "      local h = 'presence:' .. u\n"
    "      redis.call('HDEL', h, n)\n"
    "      local left = redis.call('HLEN', h)\n"
    "      redis.call('SET', 'user:' .. u .. ':online', left)\n"
    "      if left == 0 then\n"
    "        redis.call('SET', 'user:' .. u .. ':last_seen', now)\n"
    "        if redis.call('SREM', 'online_users', u) == 1 then gone[#gone + 1] = u end\n"
    "      end\n"
    "    end\n"
    "    redis.call('DEL', set)\n"
    "    redis.call('SREM', 'presence:nodes', n)\n"
    "  end\n"
    "end\n"
    "return {existed, dead, gone, left, came}\n";

static int ttl_ms(const chat_runtime *rt)
{
    int ttl = rt->cfg.presence_ttl_ms;
    int floor = 2 * rt->cfg.presence_heartbeat_ms; /* a record must outlive a missed beat */
    return ttl < floor ? floor : ttl;
}

static int run_script(chat_runtime *rt, const char *script, const char *a1, const char *a2,
                      chat_kv_reply_cb cb, void *arg)
{
    char now[24], ttl[24];
    snprintf(now, sizeof now, "%lld", (long long)chat__now_ms());
    snprintf(ttl, sizeof ttl, "%d", ttl_ms(rt));
    const char *argv[] = {"EVAL", script, "0", a1, a2, now, ttl};
    return chat__kv_redis_command(rt->kv, 7, argv, NULL, cb, arg);
}

static void script_counted(int status, json_t *reply, void *arg)
{
    presence_ctx *p = arg;
    if (status) {
        chat__log(CHAT_LOG_WARN, "presence_failed", "could not record a user's presence",
                  json_pack("{s:s,s:s}", "user", p->user_id, "code", chat_errcode(status)));
    } else if (json_integer_value(reply) == 1) {
        announce(p->rt, p->user_id, p->online, &p->rooms);
    }
    json_decref(reply);
    chat__buf_free(&p->rooms);
    free(p);
}

static int presence_script(chat_runtime *rt, presence_ctx *p)
{
    return run_script(rt, p->online ? join_script : leave_script, p->user_id,
                      rt->presence->inst, script_counted, p);
}

/* A user this node took offline for a dead node: their rooms come from the store. */
typedef struct reaped_ctx {
    chat_runtime *rt;
    char user_id[25];
} reaped_ctx;

static void reaped_rooms(int status, json_t *rooms, void *arg)
{
    reaped_ctx *r = arg;
    chat_buf csv = CHAT_BUF_INIT;
    for (size_t i = 0; status == 0 && i < json_array_size(rooms); i++) {
        const char *id = json_string_value(json_object_get(json_array_get(rooms, i), "id"));
        if (id && strlen(id) == 24 &&
            ((csv.len && chat__buf_appendc(&csv, ',')) || chat__buf_append(&csv, id, 24))) {
            break;
        }
    }
    if (status) {
        chat__log(CHAT_LOG_WARN, "presence_rooms_failed",
                  "could not load the rooms of a user whose node died; their rooms are not told",
                  json_pack("{s:s,s:s}", "user", r->user_id, "code", chat_errcode(status)));
    }
    if (!chat__map_get(&r->rt->users, r->user_id)) { /* not back here meanwhile */
        announce(r->rt, r->user_id, 0, &csv);
    }
    chat__buf_free(&csv);
    json_decref(rooms);
    free(r);
}

/* Users Redis now has offline and who are not on this node: their rooms come from the store,
 * then they are announced (unless back here meanwhile). */
static void announce_offline(chat_runtime *rt, json_t *ids, int reaped)
{
    for (size_t i = 0; i < json_array_size(ids); i++) {
        const char *id = json_string_value(json_array_get(ids, i));
        reaped_ctx *r = id && strlen(id) == 24 ? calloc(1, sizeof *r) : NULL;
        if (!r) {
            continue;
        }
        if (reaped) {
            rt->stats.presence_users_reaped++;
        }
        r->rt = rt;
        memcpy(r->user_id, id, 25);
        if (chat__store_call(rt->store, CHAT_STORE_ROOMS_FOR_USER,
                             json_pack("{s:s}", "userId", id), reaped_rooms, r)) {
            free(r);
        }
    }
}

static void beat_done(int status, json_t *reply, void *arg)
{
    chat_runtime *rt = arg;
    chat_presence *pr = rt->presence;
    if (!pr) { /* stopping: what Redis did stays done; the next node announces nothing */
        json_decref(reply);
        return;
    }
    pr->beat_pending = 0;
    if (status || !json_is_array(reply)) {
        if (pr->beats) {
            chat__log(CHAT_LOG_WARN, "presence_heartbeat_failed",
                      "could not renew this node's presence record",
                      json_pack("{s:s}", "code", chat_errcode(status ? status : CHAT_EINTERNAL)));
        }
        json_decref(reply);
        return;
    }
    int existed = json_integer_value(json_array_get(reply, 0)) == 1;
    json_int_t dead = json_integer_value(json_array_get(reply, 1));
    json_t *gone = json_array_get(reply, 2);
    if (!existed && pr->beats > 0) {
        chat__log(CHAT_LOG_WARN, "presence_record_lost",
                  "this node's presence record had expired (stalled or cut off from Redis "
                  "longer than presence_ttl_ms): its users were registered again",
                  json_pack("{s:i}", "users", (int)rt->users.len));
    }
    pr->beats++;
    if (dead > 0) {
        rt->stats.presence_nodes_reaped += (uint64_t)dead;
        chat__log(CHAT_LOG_INFO, "presence_nodes_reaped",
                  "nodes stopped renewing their presence; their users went offline",
                  json_pack("{s:I,s:i}", "nodes", dead, "users", (int)json_array_size(gone)));
    }
    announce_offline(rt, gone, 1);
    /* what the reconcile repaired: a leave or a join that never reached Redis */
    announce_offline(rt, json_array_get(reply, 3), 0);
    json_t *came = json_array_get(reply, 4);
    for (size_t i = 0; i < json_array_size(came); i++) {
        const char *id = json_string_value(json_array_get(came, i));
        if (id && chat__map_get(&rt->users, id)) {
            announce(rt, id, 1, NULL);
        }
    }
    json_decref(reply);
}

static void beat(uv_timer_t *t)
{
    chat_presence *pr = t->data;
    chat_runtime *rt = pr->rt;
    if (pr->beat_pending || chat__kv_ready(rt->kv)) {
        return; /* the last one has not come back, or Redis is down: try on the next tick */
    }
    /* the node's real users go with every beat: Redis's record of them is repaired from it */
    size_t n = 7 + rt->users.len;
    const char **argv = malloc(n * sizeof *argv);
    if (!argv) {
        return;
    }
    char now[24], ttl[24];
    snprintf(now, sizeof now, "%lld", (long long)chat__now_ms());
    snprintf(ttl, sizeof ttl, "%d", ttl_ms(rt));
    argv[0] = "EVAL";
    argv[1] = beat_script;
    argv[2] = "0";
    argv[3] = pr->inst;
    argv[4] = "-";
    argv[5] = now;
    argv[6] = ttl;
    size_t it = 0, k = 7;
    chat_user_state *u;
    while (k < n && (u = chat__map_next(&rt->users, &it))) {
        argv[k++] = u->id;
    }
    if (chat__kv_redis_command(rt->kv, (int)k, argv, NULL, beat_done, rt) == 0) {
        pr->beat_pending = 1;
    }
    free(argv);
}

int chat__presence_start(chat_runtime *rt)
{
    if (!chat__kv_impl(rt->kv, &chat__kv_redis)) {
        return 0; /* one node: nothing can die without the users' sockets */
    }
    chat_presence *pr = calloc(1, sizeof *pr);
    if (!pr) {
        return CHAT_ENOMEM;
    }
    char rnd[25];
    chat__objectid(rnd);
    snprintf(pr->inst, sizeof pr->inst, "%s.%s", rt->node_id, rnd + 8);
    pr->rt = rt;
    uv_timer_init(rt->loop, &pr->timer);
    pr->timer.data = pr;
    uv_timer_start(&pr->timer, beat, 0, (uint64_t)rt->cfg.presence_heartbeat_ms);
    uv_unref((uv_handle_t *)&pr->timer); /* never what keeps a loop running (chatd --run) */
    rt->presence = pr;
    return 0;
}

static void presence_closed(uv_handle_t *h) { free(h->data); }

void chat__presence_stop(chat_runtime *rt)
{
    chat_presence *pr = rt->presence;
    if (pr) {
        rt->presence = NULL;
        uv_timer_stop(&pr->timer);
        uv_close((uv_handle_t *)&pr->timer, presence_closed);
    }
}

void chat__presence_change(chat_runtime *rt, chat_user_state *u, int online)
{
    presence_ctx *p = calloc(1, sizeof *p);
    if (!p) {
        return;
    }
    p->rt = rt;
    p->online = online;
    memcpy(p->user_id, u->id, 25);
    for (uint32_t i = 0; !online && i < u->rooms.len; i++) {
        chat_room_state *r = u->rooms.items[i];
        if ((i && chat__buf_appendc(&p->rooms, ',')) || chat__buf_append(&p->rooms, r->id, 24)) {
            break;
        }
    }
    if (rt->presence || chat__kv_impl(rt->kv, &chat__kv_redis)) {
        /* with Redis after the stop (nothing after chat_runtime_stop): what is left of this
         * node's record expires with it and a live node takes it back */
        if (!rt->presence || presence_script(rt, p)) {
            chat__buf_free(&p->rooms);
            free(p);
        }
        return;
    }
    char key[48];
    snprintf(key, sizeof key, "user:%s:online", u->id);
    chat__kv_incr(rt->kv, key, online ? 1 : -1, 0, presence_counted, p);
}

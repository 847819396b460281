/* lua_crypto.c: chat.crypto: sha256, hmac_sha256, random_bytes, equals (constant time), hex. */
#include <lauxlib.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <pthread.h>

#include "script.h"

static EVP_MD *sha256_md;

static void sha256_fetch(void)
{
    sha256_md = EVP_MD_fetch(NULL, "SHA256", NULL);
}

/* SHA-256 fetched once: EVP_sha256() makes every digest look the implementation up again
 * (OpenSSL 3), which cost more than hashing a message. Never freed: one per process. */
static const EVP_MD *sha256(void)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, sha256_fetch);
    return sha256_md ? sha256_md : EVP_sha256();
}

static int crypto_sha256(lua_State *L)
{
    size_t len;
    const char *s = luaL_checklstring(L, 1, &len);
    unsigned char md[32];
    unsigned int n = 0;
    if (!EVP_Digest(s, len, md, &n, sha256(), NULL)) {
        return luaL_error(L, "sha256 failed");
    }
    lua_pushlstring(L, (const char *)md, n);
    return 1;
}

static int crypto_hmac_sha256(lua_State *L)
{
    size_t klen, len;
    const char *key = luaL_checklstring(L, 1, &klen);
    const char *s = luaL_checklstring(L, 2, &len);
    unsigned char md[32];
    unsigned int n = 0;
    if (!HMAC(EVP_sha256(), key, (int)klen, (const unsigned char *)s, len, md, &n)) {
        return luaL_error(L, "hmac failed");
    }
    lua_pushlstring(L, (const char *)md, n);
    return 1;
}

static int crypto_random_bytes(lua_State *L)
{
    lua_Integer n = luaL_checkinteger(L, 1);
    luaL_argcheck(L, n >= 0 && n <= 65536, 1, "between 0 and 65536 bytes");
    luaL_Buffer b;
    unsigned char *p = (unsigned char *)luaL_buffinitsize(L, &b, (size_t)n);
    if (n && RAND_bytes(p, (int)n) != 1) {
        return luaL_error(L, "the system random source failed");
    }
    luaL_pushresultsize(&b, (size_t)n);
    return 1;
}

static int crypto_equals(lua_State *L)
{
    size_t alen, blen;
    const char *a = luaL_checklstring(L, 1, &alen);
    const char *b = luaL_checklstring(L, 2, &blen);
    lua_pushboolean(L, alen == blen && CRYPTO_memcmp(a, b, alen) == 0);
    return 1;
}

static int crypto_hex(lua_State *L)
{
    size_t len;
    const unsigned char *s = (const unsigned char *)luaL_checklstring(L, 1, &len);
    static const char digits[] = "0123456789abcdef";
    luaL_Buffer b;
    char *p = luaL_buffinitsize(L, &b, len * 2);
    for (size_t i = 0; i < len; i++) {
        p[2 * i] = digits[s[i] >> 4];
        p[2 * i + 1] = digits[s[i] & 15];
    }
    luaL_pushresultsize(&b, len * 2);
    return 1;
}

static const luaL_Reg crypto_funcs[] = {
    {"sha256", crypto_sha256}, {"hmac_sha256", crypto_hmac_sha256},
    {"random_bytes", crypto_random_bytes}, {"equals", crypto_equals},
    {"hex", crypto_hex}, {NULL, NULL},
};

int luaopen_chat_crypto(lua_State *L)
{
    luaL_newlib(L, crypto_funcs);
    return 1;
}

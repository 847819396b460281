/* test_http_frame.c: request framing and Connection handling (runtime/src/http_frame.c). */
#include "http_frame.h"
#include "test.h"

static int framing(const char *cl, const char *te, uint64_t *len)
{
    return chat__http_body_framing(cl, te, len);
}

int main(void)
{
    uint64_t n;
    /* no body headers: no body, whatever the method */
    CHECK(framing(NULL, NULL, &n) == CHAT_BODY_NONE && n == 0);
    CHECK(framing("0", NULL, &n) == CHAT_BODY_NONE && n == 0);
    CHECK(framing("5", NULL, &n) == CHAT_BODY_LENGTH && n == 5);
    CHECK(framing(" 1000000 ", NULL, &n) == CHAT_BODY_LENGTH && n == 1000000);
    CHECK(framing("999999999999999999", NULL, &n) == CHAT_BODY_LENGTH);
    /* not one number: refused (400) */
    const char *bad[] = {"", " ", "-1", "+1", "0x10", "1e3", "2, 2", "2,3", "1 2", "12a",
                         "9999999999999999999", "\t"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        CHECK(framing(bad[i], NULL, &n) == CHAT_BODY_BAD);
    }
    /* Transfer-Encoding: 411 for chunked alone, 400 with Content-Length (smuggling) */
    CHECK(framing(NULL, "chunked", &n) == CHAT_BODY_CHUNKED);
    CHECK(framing(NULL, "gzip, Chunked ", &n) == CHAT_BODY_CHUNKED);
    CHECK(framing("4", "chunked", &n) == CHAT_BODY_BAD);
    CHECK(framing("0", "chunked", &n) == CHAT_BODY_BAD);
    CHECK(framing(NULL, "chunked, gzip", &n) == CHAT_BODY_BAD);
    CHECK(framing(NULL, "", &n) == CHAT_BODY_BAD);
    CHECK(framing(NULL, "identity", &n) == CHAT_BODY_BAD);

    /* Connection */
    CHECK(chat__http_wants_close("HTTP/1.1", NULL) == 0);
    CHECK(chat__http_wants_close(NULL, NULL) == 0);
    CHECK(chat__http_wants_close("HTTP/1.1", "keep-alive") == 0);
    CHECK(chat__http_wants_close("HTTP/1.1", "close") == 1);
    CHECK(chat__http_wants_close("HTTP/1.1", "Close") == 1);
    CHECK(chat__http_wants_close("HTTP/1.1", "keep-alive, close") == 1);
    CHECK(chat__http_wants_close("HTTP/1.1", " close ,Upgrade") == 1);
    CHECK(chat__http_wants_close("HTTP/1.1", "closed") == 0);
    CHECK(chat__http_wants_close("HTTP/1.1", "xclose") == 0);
    CHECK(chat__http_wants_close("HTTP/1.0", NULL) == 1);
    CHECK(chat__http_wants_close("HTTP/1.0", "keep-alive") == 1);

    return TEST_DONE("test_http_frame");
}

/* test_net.c: how chatd sets up libwebsockets 4.1.6 (runtime/src/net.c).
 *
 * The lws "validity" timer must stay off: with it, every accepted websocket inserts a timer
 * at the tail of one sorted list (O(connections held) per accept), and lws hangs up any
 * client that does not answer an lws-level ws PING within 10 s of the 300 s mark (clients
 * that only speak Engine.IO pings). Its window (310 s) is too long for an e2e test, so the
 * policy chatd hands lws is checked here. */
#include "rt.h"
#include "test.h"

int main(void)
{
    /* wsi-timeout.c:340: no validity timer is scheduled when secs_since_valid_hangup is 0;
     * secs_since_valid_ping 0 keeps lws from sending its own ws PINGs */
    CHECK(chat__net_no_validity.secs_since_valid_hangup == 0);
    CHECK(chat__net_no_validity.secs_since_valid_ping == 0);

    /* lws's fd table (scanned on every close in Debian's build) follows the connection
     * bound plus room for chatd's other descriptors, never above the open-file limit */
    CHECK(chat__net_fd_limit(20000, 19744) == 20000);
    CHECK(chat__net_fd_limit(1048576, 50000) == 50256);
    CHECK(chat__net_fd_limit(1024, 100000) == 1024);
    CHECK(chat__net_fd_limit(0, 1000) == 1256); /* open-file limit unknown or unlimited */
    /* no bound: never the 1M some containers allow */
    CHECK(chat__net_fd_limit(1048576, 0) == 65536);
    CHECK(chat__net_fd_limit(0, 0) == 65536);
    return TEST_DONE("test_net");
}

"""A python-socketio client (unmodified, from PyPI) that runs one scenario against chatd and
prints what it saw as one JSON line; protocol_python.test.js asserts on it.

    python sio_client.py <scenario> <url> <transport: polling|websocket|both> <json options>

Bytes are printed as {"bytes": [..]} so the test can tell binary from text."""
import json
import sys
import threading

import socketio

WAIT = 10


def plain(v):
    if isinstance(v, (bytes, bytearray)):
        return {"bytes": list(v)}
    if isinstance(v, (list, tuple)):
        return [plain(x) for x in v]
    if isinstance(v, dict):
        return {k: plain(x) for k, x in v.items()}
    return v


def client(url, transports, auth, namespaces=None):
    sio = socketio.Client(reconnection=False)
    got = {}
    cond = threading.Condition()
    errors = []

    @sio.on("*")
    def any_event(event, *args):
        with cond:
            got.setdefault(event, list(args))
            cond.notify_all()

    @sio.event
    def connect_error(data):
        errors.append(data)

    def wait(event):
        with cond:
            if not cond.wait_for(lambda: event in got, timeout=WAIT):
                raise TimeoutError(f"no {event} within {WAIT} s; got {list(got)}")
            return got[event]

    try:
        sio.connect(url, auth=auth, transports=transports, namespaces=namespaces or ["/"],
                    wait_timeout=WAIT)
    except socketio.exceptions.ConnectionError:
        sio.disconnect()
        return None, errors, wait
    return sio, errors, wait


def scenario_args(url, transports, opts):
    sio, errors, wait = client(url, transports, {"token": opts["token"]})
    assert sio, f"connect failed: {errors}"
    out = {}
    out["echo"] = sio.call("echo", (1, "2", {"three": [True]}), timeout=WAIT)
    out["echo_one"] = sio.call("echo", "only", timeout=WAIT)
    out["inspect"] = sio.call("inspect", ({"a": 1}, "two", 3), timeout=WAIT)
    out["reverse"] = sio.call(
        "reverse", (b"\x01\x02\x03", "text", {"nested": [b"ab", {"deeper": b"\x09\x08"}]}),
        timeout=WAIT)
    out["blobs_ack"] = sio.call("blobs", timeout=WAIT)
    out["blobs"] = wait("blobs")
    out["fanout_ack"] = sio.call("fanout", opts["roomId"], timeout=WAIT)
    out["to_socket"] = wait("to:socket")
    out["to_user"] = wait("to:user")
    out["to_room"] = wait("to:room")
    sio.disconnect()
    return out


def scenario_auth(url, transports, opts):
    out = {}
    # an opaque session token from a JWT-signed-in socket, then a connection with it
    sio, errors, _ = client(url, transports, {"token": opts["token"]})
    assert sio, f"connect failed: {errors}"
    session = sio.call("session:create", {}, timeout=WAIT)["session"]
    sio.disconnect()
    sio, errors, _ = client(url, transports, {"session": session})
    assert sio, f"session connect failed: {errors}"
    out["session_whoami"] = sio.call("whoami", {}, timeout=WAIT)
    sio.disconnect()
    # an anonymous visitor: connected, but the chat's own events need a user
    sio, errors, _ = client(url, transports, {"guest": True})
    assert sio, f"guest connect failed: {errors}"
    out["guest_whoami"] = sio.call("whoami", {}, timeout=WAIT)
    out["guest_create"] = sio.call(
        "room:create", {"name": "x", "type": "group", "participants": []}, timeout=WAIT)
    sio.disconnect()
    # refusals: the policy's message and data, and the token check when nothing decided
    _, errors, _ = client(url, transports, {"session": "nope"})
    out["refused_session"] = errors
    _, errors, _ = client(url, transports, {"token": "garbage"})
    out["refused_token"] = errors
    _, errors, _ = client(url, transports, {"case": "echo", "token": "t", "n": [1, None]})
    out["refused_echo"] = errors
    return out


def main():
    scenario, url, transport, opts = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
    transports = ["polling", "websocket"] if transport == "both" else [transport]
    result = globals()["scenario_" + scenario](url, transports, opts)
    print(json.dumps(plain(result)), flush=True)


if __name__ == "__main__":
    main()

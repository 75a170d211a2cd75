#!/usr/bin/env python3
"""A discard sink for bench/upload.sh: accepts one HTTP/1.1 request on 127.0.0.1:PORT, answers
"100 Continue" if asked, reads the body's Content-Length bytes into one 4 MiB buffer and drops them,
answers 200 and exits. What curl and the loopback move with no server work at all: the ceiling an
upload through the same client and socket could reach on this machine. Prints its own CPU seconds."""
import resource
import socket
import sys

port = int(sys.argv[1])
listener = socket.socket()
listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
listener.bind(("127.0.0.1", port))
listener.listen(1)
print("ready", flush=True)
conn, _ = listener.accept()
buffer = bytearray(4 << 20)
view = memoryview(buffer)
head = b""
while b"\r\n\r\n" not in head:
    n = conn.recv_into(view)
    if n == 0:
        sys.exit("the client closed before its headers ended")
    head += bytes(view[:n])
headers, _, rest = head.partition(b"\r\n\r\n")
lines = [line.split(b":", 1) for line in headers.split(b"\r\n")[1:]]
fields = {name.strip().lower(): value.strip() for name, value in lines}
length = int(fields[b"content-length"])
if fields.get(b"expect", b"").lower() == b"100-continue":
    conn.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
received = len(rest)
while received < length:
    n = conn.recv_into(view)
    if n == 0:
        sys.exit(f"the client closed after {received} of {length} bytes")
    received += n
conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
conn.close()
usage = resource.getrusage(resource.RUSAGE_SELF)
print(f"sink: {received} bytes, CPU {usage.ru_utime + usage.ru_stime:.2f} s", flush=True)

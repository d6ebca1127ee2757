#!/usr/bin/env python3
"""A stand-in ipamd for the CNI benchmark: speaks the plugin's unix-socket protocol (4-byte big-endian length +
JSON, see src/rpc.rs) over an in-memory address pool. Benchmark fixture only; the product server is
vpc_cni::rpc::Server. Usage: cni_ipamd_stub.py SOCKET CIDR_BASE COUNT"""
import ipaddress
import json
import os
import socket
import struct
import sys
import threading

path, base, count = sys.argv[1], ipaddress.IPv4Address(sys.argv[2]), int(sys.argv[3])
free = [str(base + i) for i in range(count)]
assigned = {}
lock = threading.Lock()


def answer(req):
    call = req["call"]
    method, p = call["method"], call.get("params", {})
    key = (p.get("networkName"), p.get("containerId"), p.get("ifName"))
    with lock:
        if method == "AddNetwork":
            if key not in assigned:
                if not free:
                    return {"error": {"code": "ResourceExhausted", "message": "pool empty"}}
                assigned[key] = free.pop(0)
            alloc = [{"ipv4Addr": assigned[key], "routeTableId": 0}]
            return {"ok": {"method": method, "result": {"success": True, "ipAllocations": alloc}}}
        if method == "DelNetwork":
            if key not in assigned:
                return {"error": {"code": "NotFound", "message": "unknown pod"}}
            ip = assigned.pop(key)
            free.append(ip)
            return {"ok": {"method": method, "result": {"success": True, "ipAllocations": [{"ipv4Addr": ip}]}}}
        if method == "Status":
            return {"ok": {"method": method, "result": {"ready": True}}}
    return {"error": {"code": "InvalidArgument", "message": "unsupported " + method}}


def serve(conn):
    with conn:
        while True:
            head = conn.recv(4, socket.MSG_WAITALL)
            if len(head) < 4:
                return
            (n,) = struct.unpack(">I", head)
            body = conn.recv(n, socket.MSG_WAITALL)
            out = json.dumps(answer(json.loads(body))).encode()
            conn.sendall(struct.pack(">I", len(out)) + out)


if os.path.exists(path):
    os.unlink(path)
srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
srv.bind(path)
os.chmod(path, 0o660)
srv.listen(128)
print("ready", flush=True)
while True:
    c, _ = srv.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()

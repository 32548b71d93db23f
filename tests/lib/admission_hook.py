#!/usr/bin/env python3
"""A small admission hook for tests/operations_test.sh (docs/operations.md, "Admission hook").

usage: admission_hook.py PORT_FILE ALLOW_FILE LOG_FILE [DELAY_FILE]

Listens on 127.0.0.1 (a free port, written to PORT_FILE). Each POST's JSON body is appended to
LOG_FILE as one line; the answer is {"allow": true} when the body's key is a line of ALLOW_FILE
(read on every request), else {"allow": false}. While DELAY_FILE exists, it waits as many
seconds as the file says before answering (a slow hook).
"""
import http.server
import json
import os
import sys
import time

port_file, allow_file, log_file = sys.argv[1:4]
delay_file = sys.argv[4] if len(sys.argv) > 4 else None


class Hook(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        request = json.loads(body)
        with open(log_file, "a") as log:
            log.write(json.dumps(request, sort_keys=True) + "\n")
        if delay_file and os.path.exists(delay_file):
            with open(delay_file) as f:
                time.sleep(float(f.read().strip() or "0"))
        with open(allow_file) as f:
            allowed = {line.strip() for line in f}
        answer = json.dumps({"allow": request.get("key") in allowed}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args):
        pass


server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hook)
with open(port_file + ".tmp", "w") as f:
    f.write(str(server.server_address[1]))
os.rename(port_file + ".tmp", port_file)
server.serve_forever()

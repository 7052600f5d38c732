#!/usr/bin/env python3
"""A login hook for portcullis ([hooks] on_login), with Python's standard library only.

At each sign-in portcullis POSTs the verified identity here. This app checks
the signature, finds the user in a SQLite `users` table by (provider, sub), or
by verified email among invited rows not yet linked, creates the user unless
INVITE_ONLY=1, and answers the local user id as the claim `user_id`, which
portcullis forwards as `X-Forwarded-User-Id` (see portcullis.toml here).

Environment:
  HOOK_SECRET   the same value as portcullis' hooks.secret (required)
  DATABASE      the SQLite file (default users.db)
  LISTEN        host:port to listen on (default 127.0.0.1:8080)
  INVITE_ONLY   1: only emails already in the table may sign in

Invite someone (inserts a row with their email):
  python3 app.py invite someone@example.com
"""

import hashlib
import hmac
import json
import os
import sqlite3
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

DATABASE = os.environ.get("DATABASE", "users.db")
INVITE_ONLY = os.environ.get("INVITE_ONLY") == "1"
# Older signatures are refused, so a recorded call cannot be replayed later.
MAX_AGE_SECONDS = 300
MAX_BODY = 1024 * 1024


def signature_ok(secret, header, body):
    """`X-Portcullis-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`."""
    try:
        fields = dict(part.split("=", 1) for part in header.split(","))
        timestamp = int(fields["t"])
        given = fields["v1"]
    except (KeyError, ValueError):
        return False
    if abs(time.time() - timestamp) > MAX_AGE_SECONDS:
        return False
    expected = hmac.new(secret, b"%d." % timestamp + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, given)


def connect():
    db = sqlite3.connect(DATABASE)
    db.execute(
        "CREATE TABLE IF NOT EXISTS users ("
        "id INTEGER PRIMARY KEY, provider TEXT, sub TEXT, email TEXT, created_at INTEGER)"
    )
    return db


def find_or_create(db, who):
    """The user's local id, or None when INVITE_ONLY and they were not invited."""
    row = db.execute(
        "SELECT id FROM users WHERE provider = ? AND sub = ?", (who["provider"], who["sub"])
    ).fetchone()
    if row:
        return row[0]
    email = who.get("email") if who.get("email_verified") is True else None
    if email:
        # An invitation: a row with this email that no sign-in has claimed yet.
        row = db.execute(
            "SELECT id FROM users WHERE lower(email) = lower(?) AND sub IS NULL", (email,)
        ).fetchone()
        if row:
            db.execute(
                "UPDATE users SET provider = ?, sub = ? WHERE id = ?",
                (who["provider"], who["sub"], row[0]),
            )
            return row[0]
    if INVITE_ONLY:
        return None
    return db.execute(
        "INSERT INTO users (provider, sub, email, created_at) VALUES (?, ?, ?, ?)",
        (who["provider"], who["sub"], email, int(time.time())),
    ).lastrowid


class Hook(BaseHTTPRequestHandler):
    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            return self.answer(413, {"error": "too large"})
        body = self.rfile.read(length)
        if not signature_ok(SECRET, self.headers.get("X-Portcullis-Signature", ""), body):
            return self.answer(401, {"error": "bad signature"})
        who = json.loads(body)
        with connect() as db:
            user_id = find_or_create(db, who)
        if user_id is None:
            return self.answer(200, {
                "allow": False,
                "message": "This site is invite-only, and %s has no invitation." % (
                    who.get("email") or who["sub"]),
            })
        self.answer(200, {"allow": True, "claims": {"user_id": str(user_id)}})

    def answer(self, status, value):
        data = json.dumps(value).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format, *args):
        sys.stderr.write("login-hook: %s\n" % (format % args))


if __name__ == "__main__":
    if sys.argv[1:2] == ["invite"]:
        with connect() as db:
            for email in sys.argv[2:]:
                db.execute(
                    "INSERT INTO users (email, created_at) VALUES (?, ?)", (email, int(time.time()))
                )
        sys.exit(0)
    SECRET = os.environ["HOOK_SECRET"].encode()
    host, port = os.environ.get("LISTEN", "127.0.0.1:8080").rsplit(":", 1)
    server = ThreadingHTTPServer((host, int(port)), Hook)
    print("login hook listening on %s:%s" % (host, port), flush=True)
    server.serve_forever()

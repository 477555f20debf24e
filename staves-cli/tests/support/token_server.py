#!/usr/bin/env python3
"""A registry token service for the end-to-end tests (the Docker Registry v2 token authentication protocol).

The CNCF distribution registry, configured with `auth: token: {realm, service, issuer, rootcertbundle}`, sends
clients here (`WWW-Authenticate: Bearer realm=...`). Clients ask `GET /token?service=S&scope=repository:NAME:pull,push`
with HTTP Basic credentials; this service checks them and answers `{"token": JWT}`, a JWT signed RS256 (by
`openssl dgst -sha256 -sign`, as Python's stdlib has no RSA) whose header carries the signing certificate (`x5c`),
which the registry verifies against its rootcertbundle.

Policy: the one user (--user/--password) may pull and push repositories under --prefix and list the catalog;
anonymous clients get a token that grants nothing; wrong credentials get 401. `POST /token` (the OAuth2 form docker
uses for identity tokens) accepts `grant_type=password` (username/password) and `grant_type=refresh_token` (the
refresh token this service hands out with `offline_token=true` or a password grant).

Only the standard library and the `openssl` program. Listens on 127.0.0.1 with TLS (--cert/--key).
"""

import argparse
import base64
import hmac
import json
import secrets
import ssl
import subprocess
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TOKEN_LIFETIME = 300


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def pem_to_der_b64(pem: str) -> str:
    """The standard base64 of the first certificate in `pem` (what `x5c` holds)."""
    lines = pem.strip().splitlines()
    start = lines.index("-----BEGIN CERTIFICATE-----")
    end = lines.index("-----END CERTIFICATE-----", start)
    body = "".join(lines[start + 1 : end])
    base64.b64decode(body, validate=True)
    return body


class Service:
    def __init__(self, args):
        self.args = args
        with open(args.sign_cert, encoding="ascii") as f:
            self.x5c = [pem_to_der_b64(f.read())]
        self.refresh_tokens = set()
        self.lock = threading.Lock()
        self.log = open(args.log, "a", encoding="utf-8", buffering=1) if args.log else sys.stderr

    def note(self, text: str):
        self.log.write(f"{time.strftime('%H:%M:%S')} {text}\n")

    def sign(self, signing_input: bytes) -> bytes:
        out = subprocess.run(
            ["openssl", "dgst", "-sha256", "-sign", self.args.sign_key],
            input=signing_input,
            capture_output=True,
            check=True,
        )
        return out.stdout

    def check_password(self, user: str, password: str) -> bool:
        return hmac.compare_digest(user.encode(), self.args.user.encode()) and hmac.compare_digest(
            password.encode(), self.args.password.encode()
        )

    def grant(self, account, scopes):
        """The access entries `account` (None: anonymous) gets out of the requested `scopes`."""
        access = []
        if account is None:
            return access
        for scope in scopes:
            for item in scope.split(" "):
                parts = item.split(":")
                if len(parts) < 3:
                    continue
                kind, name, actions = parts[0], ":".join(parts[1:-1]), parts[-1].split(",")
                if kind == "repository" and name.startswith(self.args.prefix):
                    allowed = [a for a in actions if a in ("pull", "push")]
                elif kind == "registry" and name == "catalog":
                    allowed = [a for a in actions if a == "*"]
                else:
                    allowed = []
                if allowed:
                    access.append({"type": kind, "name": name, "actions": allowed})
        return access

    def token(self, account, scopes) -> dict:
        now = int(time.time())
        header = {"typ": "JWT", "alg": "RS256", "x5c": self.x5c}
        claims = {
            "iss": self.args.issuer,
            "sub": account or "",
            "aud": self.args.service,
            "exp": now + TOKEN_LIFETIME,
            "nbf": now - 1,
            "iat": now,
            "jti": secrets.token_hex(16),
            "access": self.grant(account, scopes),
        }
        signing_input = (
            b64url(json.dumps(header, separators=(",", ":")).encode())
            + "."
            + b64url(json.dumps(claims, separators=(",", ":")).encode())
        ).encode("ascii")
        jwt = signing_input.decode("ascii") + "." + b64url(self.sign(signing_input))
        self.note(f"token for {account or '(anonymous)'}: {json.dumps(claims['access'])}")
        issued = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))
        return {"token": jwt, "access_token": jwt, "expires_in": TOKEN_LIFETIME, "issued_at": issued}

    def new_refresh_token(self, account: str) -> str:
        token = secrets.token_urlsafe(24)
        with self.lock:
            self.refresh_tokens.add((token, account))
        return token

    def refresh_account(self, token: str):
        with self.lock:
            for known, account in self.refresh_tokens:
                if hmac.compare_digest(known.encode(), token.encode()):
                    return account
        return None


def handler_for(service: Service):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt, *args):
            service.note(f"{self.address_string()} {fmt % args}")

        def answer(self, status: int, body: dict, challenge: bool = False):
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            if challenge:
                self.send_header("WWW-Authenticate", f'Basic realm="{service.args.service}"')
            self.end_headers()
            self.wfile.write(data)

        def basic_account(self):
            """(present, account): whether Basic credentials came, and the user when they are right."""
            header = self.headers.get("Authorization", "")
            scheme, _, value = header.partition(" ")
            if scheme.lower() != "basic":
                return False, None
            try:
                user, _, password = base64.b64decode(value.strip()).decode("utf-8").partition(":")
            except (ValueError, UnicodeDecodeError):
                return True, None
            return True, (user if service.check_password(user, password) else None)

        def wrong_service(self, params) -> bool:
            asked = params.get("service", [service.args.service])[0]
            if asked != service.args.service:
                self.answer(400, {"errors": [{"code": "UNSUPPORTED", "message": f"unknown service {asked}"}]})
                return True
            return False

        def do_GET(self):
            url = urllib.parse.urlsplit(self.path)
            if url.path != "/token":
                self.answer(404, {"errors": [{"code": "NOT_FOUND", "message": url.path}]})
                return
            params = urllib.parse.parse_qs(url.query)
            if self.wrong_service(params):
                return
            present, account = self.basic_account()
            if present and account is None:
                service.note("GET /token: wrong credentials")
                self.answer(401, {"errors": [{"code": "UNAUTHORIZED", "message": "wrong credentials"}]}, True)
                return
            body = service.token(account, params.get("scope", []))
            if account is not None and params.get("offline_token", ["false"])[0] == "true":
                body["refresh_token"] = service.new_refresh_token(account)
            self.answer(200, body)

        def do_POST(self):
            url = urllib.parse.urlsplit(self.path)
            length = int(self.headers.get("Content-Length", "0") or "0")
            form = urllib.parse.parse_qs(self.rfile.read(length).decode("utf-8"))
            if url.path != "/token":
                self.answer(404, {"errors": [{"code": "NOT_FOUND", "message": url.path}]})
                return
            if self.wrong_service(form):
                return
            grant = form.get("grant_type", [""])[0]
            account = None
            if grant == "password":
                user = form.get("username", [""])[0]
                if service.check_password(user, form.get("password", [""])[0]):
                    account = user
            elif grant == "refresh_token":
                account = service.refresh_account(form.get("refresh_token", [""])[0])
            if account is None:
                service.note(f"POST /token ({grant or 'no grant'}): refused")
                self.answer(401, {"error": "invalid_grant"})
                return
            body = service.token(account, form.get("scope", []))
            body["access_token"] = body.pop("token")
            if grant == "password" or form.get("access_type", [""])[0] == "offline":
                body["refresh_token"] = service.new_refresh_token(account)
            self.answer(200, body)

    return Handler


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--cert", required=True, help="TLS server certificate (PEM)")
    parser.add_argument("--key", required=True, help="TLS server key (PEM)")
    parser.add_argument("--sign-cert", required=True, help="the token signing certificate (PEM), sent as x5c")
    parser.add_argument("--sign-key", required=True, help="the token signing key (PEM)")
    parser.add_argument("--issuer", required=True)
    parser.add_argument("--service", required=True)
    parser.add_argument("--user", required=True)
    parser.add_argument("--password", required=True)
    parser.add_argument("--prefix", default="", help="repositories the user may pull and push")
    parser.add_argument("--log", help="append the log here (default: stderr)")
    args = parser.parse_args()

    service = Service(args)
    server = ThreadingHTTPServer(("127.0.0.1", args.port), handler_for(service))
    server.daemon_threads = True
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(args.cert, args.key)
    # The handshake happens on the first read, in the connection's thread, not in accept().
    server.socket = context.wrap_socket(server.socket, server_side=True, do_handshake_on_connect=False)
    service.note(f"listening on 127.0.0.1:{args.port}")
    server.serve_forever()


if __name__ == "__main__":
    main()

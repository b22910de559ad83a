#!/usr/bin/env python3
"""Benchmark driver: starts idbridge and the peer (oidc-provider) as fresh processes, drives
each workload with wrk, and records throughput, latency, server CPU time and memory.

Run through `bench/run`, which builds and installs what this needs. Standard library only.
Every process started here is stopped in a `finally` block and on SIGINT/SIGTERM.
"""

import argparse
import base64
import hashlib
import http.client
import json
import os
import re
import resource
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
LUA = os.path.join(BENCH_DIR, "wrk", "bench.lua")
PEER = os.path.join(BENCH_DIR, "peer", "server.mjs")
CLK_TCK = os.sysconf("SC_CLK_TCK")

# The same clients and user on both servers.
CC_ID, CC_SECRET = "bench-cc", "bench-cc-secret"
APP_ID, APP_SECRET = "bench-app", "bench-app-secret"
REDIRECT = "http://127.0.0.1:9/callback"
USER_LOGIN, USER_PASSWORD = "bench@example.com", "demo-password"
# argon2id of "demo-password" (the hash of config/dev.yaml).
USER_HASH = "$argon2id$v=19$m=19456,t=2,p=1$6+ZKYyf7vFEkiikOEIlChA$FyegNxq8Q3MBynrwsTKN3BpTb6r8hsYveCXsBRIqTiw"
PEER_RESOURCE = "https://api.bench.example"
LOGIN_SCOPE = "openid profile email"
REFRESH_SCOPES = '["openid","profile","email","offline_access"]'

LIVE = []  # processes to stop on the way out


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def basic(client_id, secret):
    return "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------------------------------------
# /proc readings


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # After the command name: state is field 3, utime 14 and stime 15 (1-based).
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def system_busy_seconds():
    """CPU time all processes on the machine spent in user and system mode (every core
    together). Interrupt and steal time are left out: loopback traffic is handled partly in
    softirq time, which belongs to the workload rather than to other work."""
    with open("/proc/stat") as f:
        user, nice, system = (int(x) for x in f.readline().split()[1:4])
    return (user + nice + system) / CLK_TCK


def context_switches(pid):
    """Voluntary and involuntary context switches of every live thread of `pid`."""
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/status") as f:
                for line in f:
                    if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")):
                        total += int(line.split()[1])
        except OSError:
            pass  # the thread ended meanwhile
    return total


def mem_kb(pid, key):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


# ---------------------------------------------------------------------------------------------
# A tiny HTTP client for the scripted logins (manual redirects, one cookie jar).


class Browser:
    def __init__(self, port):
        self.port = port
        self.cookies = {}

    def request(self, method, url, body=None, headers=None):
        parsed = urllib.parse.urlsplit(url)
        path = parsed.path + ("?" + parsed.query if parsed.query else "")
        h = dict(headers or {})
        if self.cookies:
            h["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        if body is not None:
            h.setdefault("Content-Type", "application/x-www-form-urlencoded")
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            conn.request(method, path, body=body, headers=h)
            resp = conn.getresponse()
            data = resp.read()
        finally:
            conn.close()
        for name, value in resp.getheaders():
            if name.lower() != "set-cookie":
                continue
            pair = value.split(";", 1)[0]
            k, _, v = pair.partition("=")
            if "expires=thu, 01 jan 1970" in value.lower() or "max-age=0" in value.lower():
                self.cookies.pop(k.strip(), None)
            else:
                self.cookies[k.strip()] = v.strip()
        return resp.status, resp.getheader("Location"), data

    def cookie_header(self):
        return "; ".join(f"{k}={v}" for k, v in self.cookies.items())


def follow_to_code(browser, url, base, step=None):
    """Follows redirects until the client's redirect URI; `step` handles HTML pages."""
    for _ in range(10):
        if url.startswith(REDIRECT):
            q = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)
            if "code" not in q:
                raise RuntimeError(f"authorization failed: {url}")
            return q["code"][0]
        if url.startswith("/"):
            url = base + url
        status, location, body = browser.request("GET", url)
        if status in (302, 303) and location:
            url = location
            continue
        if status == 200 and step:
            url = step(url, body)
            continue
        raise RuntimeError(f"unexpected {status} for {url}: {body[:300]!r}")
    raise RuntimeError("too many redirects")


def token_request(port, auth, form):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request(
            "POST",
            "/token",
            body=urllib.parse.urlencode(form),
            headers={"Authorization": auth, "Content-Type": "application/x-www-form-urlencoded"},
        )
        resp = conn.getresponse()
        data = resp.read()
    finally:
        conn.close()
    if resp.status != 200:
        raise RuntimeError(f"token request failed: {resp.status} {data[:300]!r}")
    return json.loads(data)


def http_json(port, method, path, headers=None, body=None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


# ---------------------------------------------------------------------------------------------
# Servers


class Server:
    """One server configuration; every `start()` is a fresh process."""

    kind = "?"

    def __init__(self, name, workdir):
        self.name = name
        self.workdir = workdir
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.proc = None
        self.log = None
        os.makedirs(workdir, exist_ok=True)

    def command(self):
        raise NotImplementedError

    def env(self):
        return dict(os.environ)

    ready_path = "/"

    def start(self):
        self.log = open(os.path.join(self.workdir, "server.log"), "ab")
        began = time.perf_counter()
        self.proc = subprocess.Popen(
            self.command(),
            cwd=self.workdir,
            env=self.env(),
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        LIVE.append(self.proc)
        deadline = began + 30
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}; see {self.workdir}/server.log")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                    s.sendall(f"GET {self.ready_path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
                    head = s.recv(64)
                if head.startswith(b"HTTP/1.1 200"):
                    return (time.perf_counter() - began) * 1000.0
            except OSError:
                pass
            if time.perf_counter() > deadline:
                raise RuntimeError(f"{self.name} not ready after 30 s")
            time.sleep(0.001)

    def stop(self):
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc in LIVE:
            LIVE.remove(self.proc)
        self.proc = None
        if self.log:
            self.log.close()
            self.log = None


class Idbridge(Server):
    kind = "idbridge"
    ready_path = "/readyz"

    def __init__(self, name, workdir, binary, storage, access_alg=None, pg_url=None):
        super().__init__(name, workdir)
        self.binary = binary
        self.storage = storage
        self.pg_url = pg_url
        self.db = os.path.join(workdir, "idbridge.db")
        self.config = os.path.join(workdir, "config.yaml")
        if storage == "sqlite":
            store = f"storage: {{type: sqlite, config: {{file: {self.db}}}}}"
        else:
            store = "storage: {type: postgres, config: {urlEnv: BENCH_PG_URL, maxConnections: 16}}"
        signer = "signer: {algorithm: RS256" + (f", accessTokenAlgorithm: {access_alg}" if access_alg else "") + "}"
        with open(self.config, "w") as f:
            f.write(
                f"""# Written by bench/harness.py for one benchmark server.
issuer: {self.base}
{store}
web: {{http: 127.0.0.1:{self.port}}}
logger: {{level: warn, format: text}}
rateLimits: {{enabled: false}}
{signer}
connectors:
  - {{type: local, id: local, name: Email}}
staticPasswords:
  - email: {USER_LOGIN}
    username: bench
    hash: "{USER_HASH}"
    userID: bench-user
    groups: [developers]
staticClients:
  - id: {CC_ID}
    secret: {CC_SECRET}
    grantTypes: [client_credentials]
    allowedScopes: [api]
  - id: {APP_ID}
    secret: {APP_SECRET}
    redirectURIs: [{REDIRECT}]
    skipApproval: true
    grantTypes: [authorization_code, refresh_token]
"""
            )
        self.session_cookie = None
        self.user_token = None
        self.cc_token = None
        self.user_id = None

    def command(self):
        return [self.binary, "serve", "--config", self.config]

    def env(self):
        e = dict(os.environ)
        e.pop("RUST_LOG", None)
        if self.pg_url:
            e["BENCH_PG_URL"] = self.pg_url
        return e

    def auth_path(self):
        q = urllib.parse.urlencode(
            {
                "client_id": APP_ID,
                "redirect_uri": REDIRECT,
                "response_type": "code",
                "scope": LOGIN_SCOPE,
                "state": "bench-state",
                "nonce": "bench-nonce",
            }
        )
        return f"/auth?{q}"

    def prepare(self):
        """First start: creates the keys; a scripted login creates the user and a session."""
        self.start()
        try:
            browser = Browser(self.port)

            def password_form(url, body):
                csrf = re.search(rb'name="csrf" value="([^"]+)"', body)
                if not csrf:
                    raise RuntimeError(f"no login form at {url}")
                form = urllib.parse.urlencode(
                    {"csrf": csrf.group(1).decode(), "login": USER_LOGIN, "password": USER_PASSWORD}
                )
                status, location, data = browser.request("POST", url, body=form)
                if status not in (302, 303):
                    raise RuntimeError(f"login failed: {status} {data[:300]!r}")
                return location

            code = follow_to_code(browser, self.base + self.auth_path(), self.base, password_form)
            tokens = token_request(
                self.port,
                basic(APP_ID, APP_SECRET),
                {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT},
            )
            self.user_token = tokens["access_token"]
            self.session_cookie = "idbridge_session=" + browser.cookies["idbridge_session"]
            self.cc_token = token_request(
                self.port, basic(CC_ID, CC_SECRET), {"grant_type": "client_credentials", "scope": "api"}
            )["access_token"]
            status, body = http_json(
                self.port, "GET", "/userinfo", {"Authorization": "Bearer " + self.user_token}
            )
            if status != 200:
                raise RuntimeError(f"userinfo failed: {status} {body[:200]!r}")
            self.user_id = json.loads(body)["sub"]
            self.check_introspection()
            # A second login from the session must not need the password again.
            b2 = Browser(self.port)
            b2.cookies = dict(browser.cookies)
            follow_to_code(b2, self.base + self.auth_path(), self.base)
        finally:
            self.stop()

    def check_introspection(self):
        status, body = http_json(
            self.port,
            "POST",
            "/introspect",
            {"Authorization": basic(CC_ID, CC_SECRET), "Content-Type": "application/x-www-form-urlencoded"},
            urllib.parse.urlencode({"token": self.cc_token}),
        )
        if status != 200 or not json.loads(body).get("active"):
            raise RuntimeError(f"introspection of the JWT access token is not active: {body[:200]!r}")

    # Direct database access, with the server stopped (or idle), for pre-minted refresh tokens
    # and the cost-growth filler rows.
    def sql(self, text):
        if self.storage == "sqlite":
            run = ["sqlite3", "-bail", self.db]
        else:
            run = ["psql", self.pg_url, "-q", "-v", "ON_ERROR_STOP=1", "-X", "-t", "-A"]
        r = subprocess.run(run, input=text.encode(), capture_output=True, timeout=600)
        if r.returncode != 0:
            raise RuntimeError(f"SQL failed: {r.stderr.decode()[:500]}")
        return r.stdout.decode().strip()

    def mint_refresh_tokens(self, n, path):
        """Inserts `n` live refresh tokens with known secrets (each its own family) and writes
        the presentable `id.secret` values to `path`, one a line."""
        now = int(time.time())
        rows, lines = [], []
        for _ in range(n):
            tid = b64url(os.urandom(16))
            secret = b64url(os.urandom(32))
            h = b64url(hashlib.sha256(secret.encode()).digest())
            lines.append(f"{tid}.{secret}")
            rows.append(
                f"('{tid}','{h}','{tid}','{APP_ID}','{self.user_id}','local','{REFRESH_SCOPES}',NULL,NULL,"
                f"{now},{now},{now},{now + 2592000},{now + 7776000},NULL,FALSE)"
            )
        cols = (
            "id,secret_hash,family_id,client_id,user_id,connector_id,scopes,nonce,session_id,auth_time,"
            "created_at,last_used_at,expires_at,absolute_expires_at,rotated_at,revoked"
        )
        parts = ["BEGIN;"]
        for i in range(0, len(rows), 1000):
            parts.append(f"INSERT INTO refresh_tokens ({cols}) VALUES " + ",".join(rows[i : i + 1000]) + ";")
        parts.append("COMMIT;")
        self.sql("\n".join(parts))
        with open(path, "w") as f:
            f.write("\n".join(lines) + "\n")

    def clear_measurement_rows(self):
        """Removes the rows a measured run left: its refresh tokens and authorization codes."""
        self.sql(
            f"DELETE FROM refresh_tokens WHERE client_id = '{APP_ID}'; DELETE FROM auth_codes; "
            "DELETE FROM auth_requests; DELETE FROM revoked_grants;"
        )


class Peer(Server):
    kind = "peer"
    ready_path = "/.well-known/openid-configuration"

    def __init__(self, name, workdir):
        super().__init__(name, workdir)
        self.keys = os.path.join(workdir, "peer-keys.json")
        self.session_cookie = None
        self.user_token = None
        self.cc_token = None

    def command(self):
        return ["node", PEER]

    def env(self):
        e = dict(os.environ)
        e.update({"PORT": str(self.port), "KEYS_FILE": self.keys, "NODE_ENV": "production"})
        return e

    def auth_path(self):
        q = urllib.parse.urlencode(
            {
                "client_id": APP_ID,
                "redirect_uri": REDIRECT,
                "response_type": "code",
                "scope": LOGIN_SCOPE,
                "state": "bench-state",
                "nonce": "bench-nonce",
            }
        )
        return f"/auth?{q}"

    def prepare(self):
        self.start()
        self.stop()

    def after_start(self):
        """The peer keeps grants and tokens in memory: log in again after every start."""
        browser = Browser(self.port)
        code = follow_to_code(browser, self.base + self.auth_path(), self.base)
        tokens = token_request(
            self.port,
            basic(APP_ID, APP_SECRET),
            {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT},
        )
        self.user_token = tokens["access_token"]
        self.session_cookie = browser.cookie_header()
        # The session alone must now yield a code (no interaction): the login workload needs it.
        b2 = Browser(self.port)
        b2.cookies = dict(browser.cookies)
        follow_to_code(b2, self.base + self.auth_path(), self.base)
        self.cc_token = token_request(
            self.port, basic(CC_ID, CC_SECRET), {"grant_type": "client_credentials", "scope": "api"}
        )["access_token"]
        status, body = http_json(
            self.port,
            "POST",
            "/token/introspection",
            {"Authorization": basic(CC_ID, CC_SECRET), "Content-Type": "application/x-www-form-urlencoded"},
            urllib.parse.urlencode({"token": self.cc_token}),
        )
        if status != 200 or not json.loads(body).get("active"):
            raise RuntimeError(f"peer introspection of its opaque token is not active: {body[:200]!r}")


# ---------------------------------------------------------------------------------------------
# Workloads: each maps a server to the wrk environment that drives it.


def form(d):
    return urllib.parse.urlencode(d)


def wl_discovery(s):
    return {"BENCH_MODE": "get", "BENCH_PATH": "/.well-known/openid-configuration"}


def wl_jwks(s):
    return {"BENCH_MODE": "get", "BENCH_PATH": "/keys" if s.kind == "idbridge" else "/jwks"}


def wl_cc(s, opaque=False):
    body = {"grant_type": "client_credentials", "scope": "api"}
    if s.kind == "peer" and not opaque:
        body["resource"] = PEER_RESOURCE
    return {
        "BENCH_MODE": "post",
        "BENCH_PATH": "/token",
        "BENCH_BODY": form(body),
        "BENCH_AUTH": basic(CC_ID, CC_SECRET),
    }


def wl_introspect(s):
    return {
        "BENCH_MODE": "post",
        "BENCH_PATH": "/introspect" if s.kind == "idbridge" else "/token/introspection",
        "BENCH_BODY": form({"token": s.cc_token}),
        "BENCH_AUTH": basic(CC_ID, CC_SECRET),
    }


def wl_userinfo(s):
    return {
        "BENCH_MODE": "get",
        "BENCH_PATH": "/userinfo" if s.kind == "idbridge" else "/me",
        "BENCH_AUTH": "Bearer " + s.user_token,
    }


def wl_login(s):
    return {
        "BENCH_MODE": "login",
        "BENCH_AUTH_PATH": s.auth_path(),
        "BENCH_COOKIE": s.session_cookie,
        "BENCH_REDIRECT": urllib.parse.quote(REDIRECT, safe=""),
        "BENCH_TOKEN_PATH": "/token",
        "BENCH_AUTH": basic(APP_ID, APP_SECRET),
    }


def wl_refresh(s):
    return {
        "BENCH_MODE": "refresh",
        "BENCH_TOKENS": os.path.join(s.workdir, "refresh-tokens.txt"),
        "BENCH_TOKEN_PATH": "/token",
        "BENCH_AUTH": basic(APP_ID, APP_SECRET),
    }


# ---------------------------------------------------------------------------------------------
# One measured run


class Runner:
    def __init__(self, args):
        self.args = args
        self.results_path = os.path.join(args.results, "runs.jsonl")
        self.refresh_tokens_per_run = args.refresh_tokens
        self.records = []

    def wrk(self, server, env_extra, out_path):
        env = dict(os.environ)
        env.update(env_extra)
        env["BENCH_OUT"] = out_path
        env["BENCH_THREADS"] = str(self.args.threads)
        cmd = [
            "wrk",
            f"-t{self.args.threads}",
            f"-c{self.args.connections}",
            f"-d{self.args.duration}s",
            "--timeout",
            "10s",
            "-s",
            LUA,
            server.base,
        ]
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        r = subprocess.run(cmd, env=env, capture_output=True, timeout=self.args.duration + 60)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if r.returncode != 0:
            raise RuntimeError(f"wrk failed: {r.stderr.decode()[:500]}")
        with open(out_path) as f:
            summary = json.load(f)
        summary["wrk_cpu_s"] = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
        return summary

    def run(self, workload, variant, server, wl, rep, extra=None):
        pre = None
        if workload.startswith("refresh"):
            path = os.path.join(server.workdir, "refresh-tokens.txt")
            server.mint_refresh_tokens(self.refresh_tokens_per_run, path)
        if extra is not None:
            extra = dict(extra)
            extra["stored_refresh_tokens"] = int(server.sql("SELECT count(*) FROM refresh_tokens;"))
            extra["stored_sessions"] = int(server.sql("SELECT count(*) FROM sessions;"))
        ready_ms = server.start()
        try:
            time.sleep(0.5)  # let start-up work settle before reading idle memory
            idle_kb = mem_kb(server.proc.pid, "VmRSS")
            if isinstance(server, Peer):
                server.after_start()
            env = wl(server)
            cpu0 = cpu_seconds(server.proc.pid)
            busy0 = system_busy_seconds()
            cs0 = context_switches(server.proc.pid)
            t0 = time.perf_counter()
            out = os.path.join(server.workdir, f"wrk-{workload}-{rep}.json")
            perf = None
            if self.args.perf and isinstance(server, Idbridge):
                os.makedirs(self.args.perf, exist_ok=True)
                perf = subprocess.Popen(
                    ["perf", "record", "-q", "-F", "1999", "--call-graph", self.args.perf_callgraph,
                     "-p", str(server.proc.pid), "-o",
                     os.path.join(self.args.perf, f"{workload}-{variant.replace(' ', '-')}-{rep}.data")],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
                )
                LIVE.append(perf)
            try:
                summary = self.wrk(server, env, out)
            finally:
                if perf:
                    perf.send_signal(signal.SIGINT)
                    perf.wait(timeout=120)
                    LIVE.remove(perf)
            wall = time.perf_counter() - t0
            cpu1 = cpu_seconds(server.proc.pid)
            busy1 = system_busy_seconds()
            cs1 = context_switches(server.proc.pid)
            rss_after = mem_kb(server.proc.pid, "VmRSS")
            hwm = mem_kb(server.proc.pid, "VmHWM")
        finally:
            server.stop()
        if workload.startswith("refresh") or workload.startswith("login"):
            if isinstance(server, Idbridge):
                server.clear_measurement_rows()
        flow = workload.split("@")[0] in ("login", "refresh")
        done = summary["flows"] if flow else summary["requests"] - summary["status_errors"]
        seconds = summary["duration_us"] / 1e6
        rec = {
            "workload": workload,
            "variant": variant,
            "server": server.kind,
            "rep": rep,
            "completed": done,
            "rate": done / seconds,
            "requests": summary["requests"],
            "request_rate": summary["requests"] / seconds,
            "p50_ms": summary["p50_us"] / 1000,
            "p90_ms": summary["p90_us"] / 1000,
            "p99_ms": summary["p99_us"] / 1000,
            "errors": summary["status_errors"] + summary["connect_errors"] + summary["read_errors"]
            + summary["write_errors"] + summary["timeouts"] + summary["bad"],
            "exhausted": summary["exhausted"],
            "bad_sample": summary["bad_sample"],
            "cpu_s": cpu1 - cpu0,
            "cpu_us_per_op": (cpu1 - cpu0) / max(done, 1) * 1e6,
            "wrk_cpu_s": summary["wrk_cpu_s"],
            "ctx_switches_per_op": (cs1 - cs0) / max(done, 1),
            "wall_s": wall,
            # CPU used by anything other than the server and wrk during the run, as a share
            # of the machine: other work on a shared machine distorts the figures.
            "foreign_cpu_share": max(
                0.0, ((busy1 - busy0) - (cpu1 - cpu0) - summary["wrk_cpu_s"]) / (wall * os.cpu_count())
            ),
            "ready_ms": ready_ms,
            "idle_rss_kb": idle_kb,
            "rss_after_kb": rss_after,
            "hwm_kb": hwm,
        }
        if extra:
            rec.update(extra)
        self.records.append(rec)
        with open(self.results_path, "a") as f:
            f.write(json.dumps(rec) + "\n")
        log(
            f"  {workload:<22} {variant:<18} rep {rep}: {rec['rate']:9.0f}/s  p50 {rec['p50_ms']:7.2f} ms  "
            f"p99 {rec['p99_ms']:7.2f} ms  cpu {rec['cpu_us_per_op']:8.1f} us/op  cs/op {rec['ctx_switches_per_op']:5.1f}  ready {ready_ms:6.1f} ms  "
            f"idle {idle_kb / 1024:5.1f} MB  hwm {hwm / 1024:5.1f} MB  other {rec['foreign_cpu_share']:.0%}  errors {rec['errors']}"
            + (f" ({rec['bad_sample'][:80]})" if rec["errors"] else "")
        )
        if rec["exhausted"]:
            log(f"  WARNING: {rec['exhausted']} refresh requests found no unused token; raise --refresh-tokens")
        return rec


def seed_growth(server, refresh_total, sessions_total):
    """Tops the filler rows up to the given totals with one set-based INSERT per table (the
    sqlite3 command line, a recursive CTE, random keys so the B-trees grow as in production)."""
    now = int(time.time())
    have_rt = int(server.sql("SELECT count(*) FROM refresh_tokens WHERE client_id = 'filler';") or 0)
    have_ss = int(server.sql("SELECT count(*) FROM sessions WHERE id LIKE 'filler-%';") or 0)
    data = json.dumps({"filler": True, "csrf": "x" * 43, "clients": ["bench-app"], "pending": []}).replace("'", "''")
    server.sql(
        f"""
PRAGMA journal_mode=WAL;
BEGIN;
WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < {max(refresh_total - have_rt, 0)})
INSERT INTO refresh_tokens (id, secret_hash, family_id, client_id, user_id, connector_id, scopes, nonce,
  session_id, auth_time, created_at, last_used_at, expires_at, absolute_expires_at,
  rotated_at, revoked)
SELECT lower(hex(randomblob(16))), lower(hex(randomblob(32))), lower(hex(randomblob(16))), 'filler',
  'filler-user-' || (abs(random()) % 100000), 'local', '{REFRESH_SCOPES}', NULL, NULL, {now},
  {now}, {now}, {now + 2592000}, {now + 7776000}, NULL, 0 FROM c WHERE {refresh_total - have_rt} > 0;
WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < {max(sessions_total - have_ss, 0)})
INSERT INTO sessions (id, user_id, data, expires_at)
SELECT 'filler-' || lower(hex(randomblob(16))), 'filler-user-' || (abs(random()) % 100000), '{data}',
  {now + 43200} FROM c WHERE {sessions_total - have_ss} > 0;
COMMIT;
"""
    )
    return (
        int(server.sql("SELECT count(*) FROM refresh_tokens;")),
        int(server.sql("SELECT count(*) FROM sessions;")),
    )


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--bin", required=True)
    p.add_argument("--results", required=True)
    p.add_argument("--duration", type=int, default=10)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--connections", type=int, default=64)
    p.add_argument("--pg-url")
    p.add_argument("--refresh-tokens", type=int, default=30000)
    p.add_argument("--growth-small", type=int, default=10_000)
    p.add_argument("--growth-large", type=int, default=1_000_000)
    p.add_argument("--only", help="comma-separated workloads (default: all)")
    p.add_argument("--skip-growth", action="store_true")
    p.add_argument("--skip-peer", action="store_true")
    p.add_argument("--perf", metavar="DIR", help="profile idbridge with perf record during each run, into DIR")
    p.add_argument("--perf-callgraph", default="dwarf,16384", help="perf --call-graph mode (fp, dwarf,SIZE)")
    args = p.parse_args()

    work = os.path.join(args.results, "work")
    os.makedirs(work, exist_ok=True)
    runner = Runner(args)
    open(runner.results_path, "w").close()

    def stop_all(*_):
        for proc in list(LIVE):
            if proc.poll() is None:
                proc.kill()
        sys.exit(130)

    signal.signal(signal.SIGTERM, stop_all)
    signal.signal(signal.SIGINT, stop_all)

    servers = {
        "idbridge": Idbridge("idbridge", os.path.join(work, "idbridge"), args.bin, "sqlite"),
        "idbridge-es256": Idbridge("idbridge-es256", os.path.join(work, "idbridge-es256"), args.bin, "sqlite", "ES256"),
        "idbridge-eddsa": Idbridge("idbridge-eddsa", os.path.join(work, "idbridge-eddsa"), args.bin, "sqlite", "EdDSA"),
    }
    if args.pg_url:
        servers["idbridge-pg"] = Idbridge("idbridge-pg", os.path.join(work, "idbridge-pg"), args.bin, "postgres", pg_url=args.pg_url)
    if not args.skip_peer:
        servers["peer"] = Peer("peer", os.path.join(work, "peer"))

    # (workload, [(variant label, server key, workload function)]); the peer's line, when
    # present, is the reference for the ratios. PostgreSQL runs only where storage is touched.
    def v(*items):
        return [i for i in items if i[1] in servers]

    plan = [
        ("discovery", v(("idbridge", "idbridge", wl_discovery), ("peer", "peer", wl_discovery))),
        ("jwks", v(("idbridge", "idbridge", wl_jwks), ("peer", "peer", wl_jwks))),
        (
            "cc-rs256",
            v(
                ("idbridge", "idbridge", wl_cc),
                ("peer", "peer", wl_cc),
                ("peer opaque", "peer", lambda s: wl_cc(s, opaque=True)),
            ),
        ),
        ("cc-es256", v(("idbridge ES256", "idbridge-es256", wl_cc))),
        ("cc-eddsa", v(("idbridge EdDSA", "idbridge-eddsa", wl_cc))),
        (
            "introspection",
            v(("idbridge", "idbridge", wl_introspect), ("idbridge pg", "idbridge-pg", wl_introspect), ("peer", "peer", wl_introspect)),
        ),
        (
            "userinfo",
            v(("idbridge", "idbridge", wl_userinfo), ("idbridge pg", "idbridge-pg", wl_userinfo), ("peer", "peer", wl_userinfo)),
        ),
        (
            "login",
            v(("idbridge", "idbridge", wl_login), ("idbridge pg", "idbridge-pg", wl_login), ("peer", "peer", wl_login)),
        ),
        ("refresh", v(("idbridge", "idbridge", wl_refresh), ("idbridge pg", "idbridge-pg", wl_refresh))),
    ]
    if args.only:
        wanted = set(args.only.split(","))
        plan = [item for item in plan if item[0] in wanted]

    try:
        log("preparing servers (first start creates keys; scripted login creates the user and a session)")
        for s in servers.values():
            s.prepare()
        for rep in range(1, args.reps + 1):
            log(f"repetition {rep}/{args.reps}")
            for workload, variants in plan:
                for label, key, fn in variants:
                    runner.run(workload, label, servers[key], fn, rep)

        if not args.skip_growth and (not args.only or "growth" in args.only.split(",")):
            g = Idbridge("idbridge-growth", os.path.join(work, "idbridge-growth"), args.bin, "sqlite")
            g.prepare()
            # Mint only what a run can use, so the small level stays close to its nominal size.
            rates = [r["rate"] for r in runner.records if r["workload"] == "refresh" and r["variant"] == "idbridge"]
            if rates:
                runner.refresh_tokens_per_run = int(max(rates) * args.duration * 1.3) + 500
            for level in (args.growth_small, args.growth_large):
                t0 = time.perf_counter()
                rt, ss = seed_growth(g, max(level - runner.refresh_tokens_per_run, 0), level)
                log(f"growth: {rt} refresh tokens and {ss} sessions stored ({time.perf_counter() - t0:.1f} s to load)")
                for rep in range(1, args.reps + 1):
                    for workload, fn in (("refresh", wl_refresh), ("login", wl_login)):
                        runner.run(
                            f"{workload}@{level}",
                            f"idbridge {level:,} rows",
                            g,
                            fn,
                            rep,
                            {"level": level},
                        )
    finally:
        for s in servers.values():
            s.stop()
        for proc in list(LIVE):
            if proc.poll() is None:
                proc.kill()


if __name__ == "__main__":
    main()

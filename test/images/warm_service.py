"""A slow-booting HTTP service: the lazarus-test/warm image's workload.

Initialisation does real work, so a cold start takes seconds:
  1. imports a set of stdlib modules (as a real service loads its code);
  2. draws a random nonce (different on every cold start);
  3. runs a sieve of Eratosthenes up to WARM_SIEVE_LIMIT;
  4. builds a table of WARM_TABLE_ROUNDS chained SHA-256 digests seeded by
     the nonce and the primes.
Then it serves HTTP on WARM_PORT and prints "ready" on stdout.

Every answer is one JSON object derived from that state: the nonce, the
moment initialisation started (wall clock), how long it took, the prime
count and largest prime, the final digest of the table, the number of
requests served so far, and the seconds since initialisation started. A
process restored from a checkpoint answers with its original nonce,
init_started and digest at once; a fresh start would draw a new nonce and
need the whole initialisation again.

Environment: WARM_PORT (8080), WARM_SIEVE_LIMIT (5000000),
WARM_TABLE_ROUNDS (7000000).
"""

import os
import time

INIT_STARTED = time.time()
INIT_T0 = time.monotonic()

# 1. Load code, as a real service does before it can answer.
import base64  # noqa: E402
import collections  # noqa: E402
import decimal  # noqa: E402
import email.parser  # noqa: E402
import hashlib  # noqa: E402
import http.server  # noqa: E402
import json  # noqa: E402
import socketserver  # noqa: E402
import statistics  # noqa: E402
import threading  # noqa: E402
import urllib.parse  # noqa: E402
import xml.etree.ElementTree  # noqa: E402
import zipfile  # noqa: E402

PORT = int(os.environ.get("WARM_PORT", "8080"))
SIEVE_LIMIT = int(os.environ.get("WARM_SIEVE_LIMIT", "5000000"))
TABLE_ROUNDS = int(os.environ.get("WARM_TABLE_ROUNDS", "7000000"))


def sieve(limit):
    """The primes below `limit`."""
    flags = bytearray([1]) * limit
    flags[0:2] = b"\x00\x00"
    for i in range(2, int(limit**0.5) + 1):
        if flags[i]:
            flags[i * i :: i] = bytes(len(range(i * i, limit, i)))
    return [i for i, f in enumerate(flags) if f]


def digest_table(seed, primes, rounds):
    """`rounds` chained SHA-256 digests; every 1000th is kept in the table."""
    h = hashlib.sha256(seed).digest()
    table = collections.OrderedDict()
    n = len(primes)
    for i in range(rounds):
        h = hashlib.sha256(h + primes[i % n].to_bytes(4, "little")).digest()
        if i % 1000 == 0:
            table[i] = h
    return h, table


# 2.-4. Precompute the state the service answers from.
NONCE = base64.b16encode(os.urandom(8)).decode().lower()
PRIMES = sieve(SIEVE_LIMIT)
FINAL, TABLE = digest_table(NONCE.encode(), PRIMES, TABLE_ROUNDS)
STATE = {
    "nonce": NONCE,
    "init_started": INIT_STARTED,
    "init_seconds": round(time.monotonic() - INIT_T0, 3),
    "primes": len(PRIMES),
    "largest_prime": PRIMES[-1],
    "table_entries": len(TABLE),
    "digest": FINAL.hex(),
}
LOCK = threading.Lock()
REQUESTS = 0


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        global REQUESTS
        with LOCK:
            REQUESTS += 1
            served = REQUESTS
        answer = dict(STATE)
        answer["requests"] = served
        answer["since_init_started"] = round(time.time() - INIT_STARTED, 3)
        body = (json.dumps(answer, sort_keys=True) + "\n").encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, fmt, *args):
        pass


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True


server = Server(("0.0.0.0", PORT), Handler)
print(
    "ready port=%d nonce=%s init_seconds=%.3f" % (PORT, NONCE, STATE["init_seconds"]),
    flush=True,
)
server.serve_forever()

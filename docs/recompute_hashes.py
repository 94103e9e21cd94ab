#!/usr/bin/env python3
"""An auditor's independent implementation of Invario hash chain format v1.

It uses nothing but Python's standard library, to show the format can be
recomputed from the rows alone. Run it to print the published test vectors:

    python3 docs/recompute_hashes.py

or feed it pages from `GET /v1/ledger/entries` (one JSON document per line on
stdin) with `--verify` to re-verify a ledger from outside:

    curl -s -H "Authorization: Bearer $KEY" 'localhost:8000/v1/ledger/entries?after=0&limit=1000' \
      | python3 docs/recompute_hashes.py --verify
"""
import datetime
import hashlib
import json
import struct
import sys
import uuid

DOMAIN = b"invario.ledger.v1\x00"
ABSENT = b"\x80" + b"\x00" * 7


def micros(rfc3339):
    """Microseconds since the Unix epoch of an RFC 3339 time (at most 6 fraction digits)."""
    moment = datetime.datetime.fromisoformat(rfc3339.replace("Z", "+00:00"))
    delta = moment - datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def length_prefixed(data):
    return struct.pack(">I", len(data)) + data


def entry_hash(prev_hash, sequence_number, transaction_id, amount, currency,
               occurred_at, recorded_at, metadata):
    body = bytearray(DOMAIN)
    body += prev_hash
    body += struct.pack(">Q", sequence_number)
    body += uuid.UUID(transaction_id).bytes
    body += length_prefixed(amount.encode("ascii"))
    body += currency.encode("ascii")
    body += ABSENT if occurred_at is None else struct.pack(">q", micros(occurred_at))
    body += struct.pack(">q", micros(recorded_at))
    items = sorted((k.encode("utf-8"), v.encode("utf-8")) for k, v in metadata.items())
    body += struct.pack(">I", len(items))
    for key, value in items:
        body += length_prefixed(key) + length_prefixed(value)
    return hashlib.sha256(bytes(body)).hexdigest()


VECTORS = [
    # (sequence, transaction_id, amount, currency, occurred_at, recorded_at, metadata)
    (1, "00000000-0000-4000-8000-000000000001", "100.50", "BRL",
     "2023-10-27T10:00:00.000000Z", "2023-10-27T10:00:01.123456Z", {}),
    (2, "00000000-0000-4000-8000-000000000002", "-0.005", "USD",
     "2023-10-27T09:59:59.999999Z", "2023-10-27T10:00:02.000000Z", {}),
    (3, "00000000-0000-4000-8000-000000000003", "1", "JPY",
     None, "2023-10-27T10:00:03.000000Z", {}),
    (4, "00000000-0000-4000-8000-000000000004", "12.3400", "EUR",
     "2023-10-27T10:00:00.000000Z", "2023-10-27T10:00:04.000000Z",
     {"zeta": "last", "alpha": "first", "Mid": "upper-case sorts first", "_x": "underscore"}),
    (5, "00000000-0000-4000-8000-000000000005", "999999999.99", "GBP",
     "1969-07-20T20:17:40.000000Z", "2023-10-27T10:00:05.000000Z",
     {"payee": "São Paulo — 東京 ✓"}),
]


def print_vectors():
    prev = bytes(32)
    for sequence, tid, amount, currency, occurred, recorded, metadata in VECTORS:
        digest = entry_hash(prev, sequence, tid, amount, currency, occurred, recorded, metadata)
        print(f"{sequence} {digest}")
        prev = bytes.fromhex(digest)


def verify_pages(lines):
    prev, expected_sequence, previous_recorded = bytes(32), 1, None
    for line in lines:
        for entry in json.loads(line)["entries"]:
            if entry["sequence_number"] != expected_sequence:
                sys.exit(f"gap: expected sequence {expected_sequence}, got {entry['sequence_number']}")
            if bytes.fromhex(entry["prev_hash"]) != prev:
                sys.exit(f"broken link at sequence {expected_sequence}")
            digest = entry_hash(prev, entry["sequence_number"], entry["transaction_id"], entry["amount"],
                                entry["currency"], entry["occurred_at"], entry["recorded_at"],
                                entry["metadata"])
            if digest != entry["entry_hash"]:
                sys.exit(f"hash mismatch at sequence {expected_sequence}: stored {entry['entry_hash']}, recomputed {digest}")
            recorded = micros(entry["recorded_at"])
            if previous_recorded is not None and recorded < previous_recorded:
                sys.exit(f"recorded_at decreases at sequence {expected_sequence}: "
                         f"earlier than at sequence {expected_sequence - 1}")
            prev, expected_sequence, previous_recorded = bytes.fromhex(digest), expected_sequence + 1, recorded
    print(f"intact: {expected_sequence - 1} entries, head {prev.hex()}")


if __name__ == "__main__":
    if sys.argv[1:] == ["--verify"]:
        verify_pages(sys.stdin)
    else:
        print_vectors()

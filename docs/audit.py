#!/usr/bin/env python3
"""An auditor's independent check of Invario's Merkle tree proofs (RFC 9162).

Python's standard library only, written from the RFC and docs/verifiability.md, not
from the Rust code, for auditors who will not run our binary. It recomputes
every entry hash from the receipt's fields (docs/recompute_hashes.py holds the
chain format v1), derives the leaf from it, and checks the audit path.

    python3 docs/audit.py vectors docs/vectors/merkle.json
    python3 docs/audit.py checkpoint-vectors docs/vectors/checkpoint.json
    python3 docs/audit.py tlog-proof-vectors docs/vectors/tlog-proof.json
    python3 docs/audit.py checkpoint --url http://localhost:8000 --key "$KEY" --vkey VKEY --state DIR [--full]
        [--witness-vkey WVKEY ... --quorum K]
    python3 docs/audit.py tlog-proof --proof FILE.tlog-proof --vkey VKEY [--witness-vkey WVKEY ... --quorum K | --policy FILE]
    python3 docs/audit.py tiles (--url PREFIX [--key "$KEY"] | --dir MIRROR) --vkey VKEY
    python3 docs/audit.py inclusion --url http://localhost:8000 --key "$KEY" --id UUID [--tree-size N] [--root HEX]
    python3 docs/audit.py consistency --url http://localhost:8000 --key "$KEY" --first M [--second N]
        [--first-root HEX] [--second-root HEX]

Exit status: 0 proven, 1 refuted (the reason is printed), 2 could not run.
Without a pinned root the server's root is used, and the output says so.
"""
import argparse
import base64
import binascii
import hashlib
import os
import json
import re
import string
import sys
import urllib.error
import urllib.request
import uuid

from recompute_hashes import entry_hash

MAX_PROOF_HASHES = 64
MAX_NOTE_BYTES = 64 * 1024
MAX_SIGNATURES = 128


# --- Ed25519 verification: RFC 8032 section 6 (reference code), plus the
# strict checks Invario's signer expects (canonical S, no small-order key).

ED_P = 2 ** 255 - 19
ED_L = 2 ** 252 + 27742317777372353535851937790883648493
ED_D = -121665 * pow(121666, ED_P - 2, ED_P) % ED_P
ED_SQRT_M1 = pow(2, (ED_P - 1) // 4, ED_P)


def _point_add(P, Q):
    A, B = (P[1] - P[0]) * (Q[1] - Q[0]) % ED_P, (P[1] + P[0]) * (Q[1] + Q[0]) % ED_P
    C, D = 2 * P[3] * Q[3] * ED_D % ED_P, 2 * P[2] * Q[2] % ED_P
    E, F, G, H = B - A, D - C, D + C, B + A
    return (E * F, G * H, F * G, E * H)


def _point_mul(s, P):
    Q = (0, 1, 1, 0)
    while s > 0:
        if s & 1:
            Q = _point_add(Q, P)
        P = _point_add(P, P)
        s >>= 1
    return Q


def _point_equal(P, Q):
    return (P[0] * Q[2] - Q[0] * P[2]) % ED_P == 0 and (P[1] * Q[2] - Q[1] * P[2]) % ED_P == 0


def _recover_x(y, sign):
    if y >= ED_P:
        return None
    x2 = (y * y - 1) * pow(ED_D * y * y + 1, ED_P - 2, ED_P)
    if x2 == 0:
        return None if sign else 0
    x = pow(x2, (ED_P + 3) // 8, ED_P)
    if (x * x - x2) % ED_P != 0:
        x = x * ED_SQRT_M1 % ED_P
    if (x * x - x2) % ED_P != 0:
        return None
    if (x & 1) != sign:
        x = ED_P - x
    return x


def _point_decompress(s):
    if len(s) != 32:
        return None
    y = int.from_bytes(s, "little")
    sign = y >> 255
    y &= (1 << 255) - 1
    x = _recover_x(y, sign)
    if x is None:
        return None
    return (x, y, 1, x * y % ED_P)


_G_Y = 4 * pow(5, ED_P - 2, ED_P) % ED_P
_G = (_recover_x(_G_Y, 0), _G_Y, 1, _recover_x(_G_Y, 0) * _G_Y % ED_P)
_IDENTITY = (0, 1, 1, 0)


def ed25519_verify(public, message, signature):
    if len(public) != 32 or len(signature) != 64:
        return False
    A = _point_decompress(public)
    R = _point_decompress(signature[:32])
    if A is None or R is None or _point_equal(_point_mul(8, A), _IDENTITY):
        return False
    s = int.from_bytes(signature[32:], "little")
    if s >= ED_L:
        return False
    h = int.from_bytes(hashlib.sha512(signature[:32] + public + message).digest(), "little") % ED_L
    return _point_equal(_point_mul(s, _G), _point_add(R, _point_mul(h, A)))


# --- C2SP signed notes and tlog-checkpoints.

def b64decode(text):
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise Refuted(f"not standard base64: {text!r}")
    # Canonical only: unused trailing bits must be zero, or one signature has many spellings.
    if base64.b64encode(raw).decode("ascii") != text:
        raise Refuted(f"not canonical base64: {text!r}")
    return raw


def parse_vkey(text):
    """<name>+<key ID hex>+<base64(algorithm || public key)>, the ID checked."""
    parts = text.strip().split("+", 2)
    if len(parts) != 3 or not parts[0] or len(parts[1]) != 8:
        raise Refuted(f"not a verifier key: {text!r}")
    name, key_id, key = parts[0], bytes.fromhex(parts[1]), b64decode(parts[2])
    if len(key) != 33 or key[0] not in (1, 4):
        raise Refuted("a verifier key is an algorithm byte and 32 key bytes")
    if hashlib.sha256(name.encode() + b"\n" + key).digest()[:4] != key_id:
        raise Refuted("the verifier key's ID does not match its name and key")
    return {"name": name, "id": key_id, "algorithm": key[0], "public": key[1:]}


def parse_note(data):
    """(text, [(name, key ID, payload)]) of a signed note, refusing what the spec refuses."""
    if len(data) > MAX_NOTE_BYTES:
        raise Refuted("the note is too large")
    try:
        note = data.decode("utf-8")
    except UnicodeDecodeError:
        raise Refuted("the note is not UTF-8")
    if any(ord(c) < 0x20 and c != "\n" or 0x7f <= ord(c) < 0xa0 for c in note):
        raise Refuted("the note holds control characters")
    split = note.rfind("\n\n")
    if split < 0 or not note.endswith("\n"):
        raise Refuted("the note has no signature block")
    text, block = note[:split + 1], note[split + 2:-1]
    lines = block.split("\n")
    if len(lines) > MAX_SIGNATURES:
        raise Refuted("too many signatures")
    signatures = []
    for line in lines:
        if not line.startswith("\u2014 ") or line.count(" ") != 2:
            raise Refuted(f"not a signature line: {line!r}")
        _, name, encoded = line.split(" ")
        raw = b64decode(encoded)
        if len(raw) < 5:
            raise Refuted("a signature is too short")
        signatures.append((name, raw[:4], raw[4:]))
    return text, signatures


def verify_checkpoint(data, vkey):
    """The checkpoint (origin, size, root) of a note the log's key signed."""
    text, signatures = parse_note(data)
    verified = False
    for name, key_id, payload in signatures:
        if name == vkey["name"] and key_id == vkey["id"] and vkey["algorithm"] == 1:
            if not ed25519_verify(vkey["public"], text.encode(), payload):
                raise Refuted(f"the signature of {name} does not verify")
            verified = True
    if not verified:
        raise Refuted("no signature from the log's key")
    lines = text[:-1].split("\n")
    if len(lines) != 3 or lines[0] != vkey["name"]:
        raise Refuted("a checkpoint is exactly origin, tree size and root, for the key's origin")
    if not lines[1].isdigit() or (lines[1] != "0" and lines[1].startswith("0")):
        raise Refuted("the tree size is not a canonical decimal")
    root = b64decode(lines[2])
    if len(root) != 32:
        raise Refuted("the root is not 32 bytes")
    return lines[0], int(lines[1]), root


def cosignature_message(text, time):
    """What a witness signs (C2SP tlog-cosignature): a header with the time, then the checkpoint."""
    return f"cosignature/v1\ntime {time}\n".encode() + text.encode()


def verified_cosigners(data, witnesses):
    """{witness name: cosignature time} of the trusted witnesses whose cosignature verifies.

    Lines from unknown keys are ignored, as the signed-note spec says; a line
    that claims a trusted witness's name and key ID but does not verify refutes
    the note (it was damaged or forged).
    """
    text, signatures = parse_note(data)
    cosigners = {}
    for name, key_id, payload in signatures:
        for witness in witnesses:
            if witness["algorithm"] != 4 or (name, key_id) != (witness["name"], witness["id"]):
                continue
            if len(payload) != 72:
                raise Refuted(f"the cosignature of {name} is not a time and a signature")
            time = int.from_bytes(payload[:8], "big")
            if not ed25519_verify(witness["public"], cosignature_message(text, time), payload[8:]):
                raise Refuted(f"the cosignature of {name} does not verify")
            cosigners.setdefault(name, time)
    return cosigners


def check_quorum(data, witnesses, quorum):
    """Refutes a note fewer than `quorum` of `witnesses` cosigned; returns how many did."""
    got = len(verified_cosigners(data, witnesses))
    if got < quorum:
        raise Refuted(f"witnesses: {got} of the required {quorum} witnesses cosigned this checkpoint")
    return got


# --- C2SP tlog-policy (https://c2sp.org/tlog-policy): trusted logs,
# witnesses, and a quorum rule of witnesses and groups ("k of n").

def parse_policy(data):
    """Parses a policy file; every error names its line."""
    if len(data) > 64 * 1024:
        raise Refuted("the policy file is larger than 64 KiB")
    logs, witnesses, groups, quorum = [], {}, {}, None
    seen_keys = set()

    def key(text, algorithm, role, number):
        try:
            parsed = parse_vkey(text)
        except Refuted as error:
            raise Refuted(f"policy line {number}: {role} key: {error}")
        if parsed["algorithm"] != algorithm:
            raise Refuted(f"policy line {number}: {text!r} is not a {role} key")
        if parsed["public"] in seen_keys:
            raise Refuted(f"policy line {number}: the key of {text!r} is listed twice")
        seen_keys.add(parsed["public"])
        return parsed

    for number, raw in enumerate(data.split(b"\n"), start=1):
        if any((byte < 0x20 and byte != 0x09) or byte == 0x7F for byte in raw):
            raise Refuted(f"policy line {number}: a control character other than tab")
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise Refuted(f"policy line {number}: not UTF-8")
        items = [item for item in re.split(r"[ \t]+", line) if item]
        if not items or items[0].startswith("#"):
            continue
        kind, args = items[0], items[1:]
        defined = lambda name: name in witnesses or name in groups
        if kind == "log" and len(args) in (1, 2):
            logs.append(key(args[0], 1, "log", number))
        elif kind == "witness" and len(args) in (2, 3):
            if args[0] == "none" or defined(args[0]):
                raise Refuted(f"policy line {number}: the name {args[0]!r} is already defined")
            witnesses[args[0]] = key(args[1], 4, "witness", number)
        elif kind == "group" and len(args) >= 3:
            name, threshold, members = args[0], args[1], args[2:]
            if name == "none" or defined(name):
                raise Refuted(f"policy line {number}: the name {name!r} is already defined")
            if len(set(members)) != len(members) or not all(defined(member) for member in members):
                raise Refuted(f"policy line {number}: members must be distinct witnesses or groups defined above")
            if threshold == "all":
                k = len(members)
            elif threshold == "any":
                k = 1
            elif threshold.isdigit() and not threshold.startswith("0") and 1 <= int(threshold) <= len(members):
                k = int(threshold)
            else:
                raise Refuted(f"policy line {number}: the threshold must be all, any or 1 to {len(members)}")
            groups[name] = (k, members)
        elif kind == "quorum" and len(args) == 1:
            if quorum is not None:
                raise Refuted(f"policy line {number}: a second quorum line")
            if args[0] != "none" and not defined(args[0]):
                raise Refuted(f"policy line {number}: {args[0]!r} is not none or defined above")
            quorum = args[0]
        else:
            raise Refuted(f"policy line {number}: not a log, witness, group or quorum line of the right length")
    if quorum is None:
        raise Refuted("the policy has no quorum line")
    return {"logs": logs, "witnesses": witnesses, "groups": groups, "quorum": quorum}


def policy_cosigners(data, policy):
    """The policy names of the witnesses whose cosignature on note `data` verifies."""
    # One witness at a time: two witnesses may share a key name (their key IDs differ).
    return sorted(name for name, witness in policy["witnesses"].items() if verified_cosigners(data, [witness]))


def policy_met(policy, cosigners, name=None):
    name = policy["quorum"] if name is None else name
    if name == "none":
        return True
    if name in policy["witnesses"]:
        return name in cosigners
    k, members = policy["groups"][name]
    return sum(policy_met(policy, cosigners, member) for member in members) >= k


def check_policy(data, policy):
    """Refutes a note whose cosignatures do not meet the policy's quorum; returns the cosigners."""
    cosigners = policy_cosigners(data, policy)
    if not policy_met(policy, cosigners):
        raise Refuted(f"the policy's witness quorum is not met (cosigned by {', '.join(cosigners) or 'no listed witness'})")
    return cosigners


def policy_log(policy, note):
    text, _ = parse_note(note)
    origin = text.split("\n", 1)[0]
    for log in policy["logs"]:
        if log["name"] == origin:
            return log
    raise Refuted(f"the policy lists no log with the origin {origin!r}")


def same_checkpoint(first, second):
    """Two notes sign the same checkpoint if their texts match; cosignatures may differ."""
    try:
        return parse_note(first)[0] == parse_note(second)[0]
    except Refuted:
        return first == second


def check_checkpoint_vectors(path):
    with open(path, encoding="utf-8") as file:
        vectors = json.load(file)
    note = vectors["note"].encode()
    origin, size, root = verify_checkpoint(note, parse_vkey(vectors["log_vkey"]))
    if (origin, size, root.hex()) != (vectors["origin"], vectors["tree_size"], vectors["root_hash"]):
        raise SystemExit("the golden checkpoint does not say what the vectors say")
    witness = parse_vkey(vectors["witness_vkey"])
    if verified_cosigners(note, [witness]) != {witness["name"]: vectors["cosignature_time"]}:
        raise SystemExit("the golden note has no cosignature from the witness at the vectors' time")
    if check_quorum(note, [witness], 1) != 1:
        raise SystemExit("the golden note does not meet a quorum of 1")
    expect_refused(lambda: check_quorum(note, [witness], 2), "a quorum of 2 from one witness")
    other = dict(witness, public=hashlib.sha256(b"another witness").digest())
    expect_refused(lambda: verified_cosigners(note, [other]), "a cosignature checked with another witness's key")
    stripped = note[: note.index("\u2014 witness".encode())]
    expect_refused(lambda: check_quorum(stripped, [witness], 1), "the note without its cosignature")
    parse_vkey(vectors["spec_example_vkey"])
    for position in range(len(note)):
        damaged = bytearray(note)
        damaged[position] ^= 0x01
        try:
            verify_checkpoint(bytes(damaged), parse_vkey(vectors["log_vkey"]))
        except Refuted:
            continue
        # A flip inside the witness's line leaves the log's signature intact: ignored, as the spec says.
        if position < note.index("\u2014 witness".encode()):
            raise SystemExit(f"a flipped bit at byte {position} was accepted")
    print("checkpoint vectors intact: the log signature and the witness cosignature verify, every damaged note refused")


class Refuted(Exception):
    """The proof or the receipt does not check out."""


def sha256(data):
    return hashlib.sha256(data).digest()


def leaf_hash(data):
    return sha256(b"\x00" + data)


def node_hash(left, right):
    return sha256(b"\x01" + left + right)


def tree_hash(leaves):
    """MTH over leaf hashes, by the RFC's recursive definition."""
    if not leaves:
        return sha256(b"")
    if len(leaves) == 1:
        return leaves[0]
    split = 1 << ((len(leaves) - 1).bit_length() - 1)
    return node_hash(tree_hash(leaves[:split]), tree_hash(leaves[split:]))


def decode_hash(text, field):
    """Exactly 64 hexadecimal characters, nothing else."""
    if not isinstance(text, str) or len(text) != 64 or any(c not in string.hexdigits for c in text):
        raise Refuted(f"{field} is not a 32-byte hex hash: {text!r}")
    return bytes.fromhex(text)


def decode_path(items, field):
    if not isinstance(items, list):
        raise Refuted(f"{field} is not a list of hashes")
    if len(items) > MAX_PROOF_HASHES:
        raise Refuted(f"{field} holds {len(items)} hashes; no tree needs more than {MAX_PROOF_HASHES}")
    return [decode_hash(item, f"{field}[{i}]") for i, item in enumerate(items)]


def verify_inclusion(leaf_index, tree_size, leaf, path, root):
    """RFC 9162 section 2.1.3.2."""
    if len(path) > MAX_PROOF_HASHES:
        raise Refuted("the proof is too long")
    if leaf_index >= tree_size:
        raise Refuted(f"leaf index {leaf_index} is not inside a tree of size {tree_size}")
    fn, sn, r = leaf_index, tree_size - 1, leaf
    for p in path:
        if sn == 0:
            raise Refuted("the proof has more hashes than the tree has levels")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise Refuted("the proof has fewer hashes than the tree has levels")
    if r != root:
        raise Refuted("the audit path does not lead to the root")


def verify_consistency(first, second, first_root, second_root, path):
    """RFC 9162 section 2.1.4.2, with the edge cases of docs/verifiability.md section 1."""
    if len(path) > MAX_PROOF_HASHES:
        raise Refuted("the proof is too long")
    if first > second:
        raise Refuted(f"no consistency proof exists from size {first} to size {second}")
    if first == second:
        if path or first_root != second_root:
            raise Refuted("equal sizes are consistent only with an empty proof and equal roots")
        return
    if first == 0:
        if path:
            raise Refuted("a proof from the empty tree must be empty")
        return
    if not path:
        raise Refuted("the proof is empty")
    if first & (first - 1) == 0:
        path = [first_root] + path
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise Refuted("the proof has more hashes than the trees have levels")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise Refuted("the proof has fewer hashes than the trees have levels")
    if fr != first_root or sr != second_root:
        raise Refuted("the proof does not lead to both roots")


def receipt_leaf(receipt):
    """The leaf of a receipt: its entry hash recomputed from its fields."""
    try:
        recomputed = entry_hash(
            decode_hash(receipt["prev_hash"], "prev_hash"), receipt["sequence_number"],
            receipt["transaction_id"], receipt["amount"], receipt["currency"], receipt.get("occurred_at"),
            receipt["recorded_at"], receipt.get("metadata") or {})
    except (KeyError, TypeError, ValueError) as error:
        raise Refuted(f"the receipt cannot be read: {error}")
    if recomputed != receipt.get("entry_hash"):
        raise Refuted(f"the receipt's fields hash to {recomputed}, but it states entry_hash {receipt.get('entry_hash')}")
    return leaf_hash(bytes.fromhex(recomputed))


def check_inclusion_response(response, pinned_size=None, pinned_root=None):
    leaf = receipt_leaf(response["receipt"])
    index, size = response["leaf_index"], response["tree_size"]
    if index != response["receipt"]["sequence_number"] - 1:
        raise Refuted(f"leaf_index {index} is not the receipt's sequence_number - 1")
    root = decode_hash(response["root_hash"], "root_hash")
    if pinned_root is not None and (size != pinned_size or root != pinned_root):
        raise Refuted(f"the response is for tree size {size} with root {root.hex()}, not the pinned one")
    verify_inclusion(index, size, leaf, decode_path(response["inclusion"], "inclusion"), root)
    return index, size, root


def check_consistency_response(response, first_root=None, second_root=None):
    first, second = response["first"], response["second"]
    got_first = decode_hash(response["first_root"], "first_root")
    got_second = decode_hash(response["second_root"], "second_root")
    if first_root is not None and got_first != first_root:
        raise Refuted("first_root is not the pinned root")
    if second_root is not None and got_second != second_root:
        raise Refuted("second_root is not the pinned root")
    verify_consistency(first, second, got_first, got_second, decode_path(response["consistency"], "consistency"))
    return first, second, got_first, got_second


TLOG_PROOF_HEADER = "c2sp.org/tlog-proof@v1"
MAX_EXTRA_BYTES = 64 * 1024
MAX_TLOG_PROOF_BYTES = 128 + MAX_EXTRA_BYTES * 4 // 3 + 32 + MAX_PROOF_HASHES * 46 + MAX_NOTE_BYTES


def parse_tlog_proof(data):
    """(extra bytes or None, index, [hash], checkpoint note bytes) of a c2sp.org/tlog-proof@v1."""
    if len(data) > MAX_TLOG_PROOF_BYTES:
        raise Refuted("the tlog-proof is too large")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise Refuted("the tlog-proof is not UTF-8")
    head, separator, note = text.partition("\n\n")
    if not separator or not note:
        raise Refuted("the tlog-proof has no checkpoint after an empty line")
    lines = head.split("\n")
    if lines[0] != TLOG_PROOF_HEADER:
        raise Refuted(f"the tlog-proof's first line is not {TLOG_PROOF_HEADER}")
    lines = lines[1:]
    extra = None
    if lines and lines[0].startswith("extra"):
        if not lines[0].startswith("extra "):
            raise Refuted("the extra line is not 'extra <base64>'")
        extra = b64decode(lines[0][len("extra "):]) if lines[0] != "extra " else b""
        if len(extra) > MAX_EXTRA_BYTES:
            raise Refuted("the extra data is too large")
        lines = lines[1:]
    if not lines or not re.fullmatch(r"index (0|[1-9][0-9]*)", lines[0]):
        raise Refuted("the index line is not 'index <decimal>' without leading zeroes")
    index = int(lines[0][len("index "):])
    path = lines[1:]
    if len(path) > MAX_PROOF_HASHES:
        raise Refuted("the inclusion proof is too long")
    hashes = []
    for number, line in enumerate(path, 1):
        raw = b64decode(line)
        if len(raw) != 32:
            raise Refuted(f"inclusion proof line {number} is not a 32-byte hash")
        hashes.append(raw)
    return extra, index, hashes, note.encode("utf-8")


RECEIPT_FIELDS = ["transaction_id", "amount", "currency", "occurred_at", "metadata", "recorded_at",
                  "sequence_number", "prev_hash", "entry_hash"]
RFC3339_MICROS = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{6}Z")


def check_receipt_as_written(receipt, extra):
    """The receipt must be byte for byte as the log writes it: compact JSON, its fields in
    order, the id in lower case, times with six fraction digits and Z, metadata keys sorted.
    Edits that hash the same (an upper-case id, another spelling of a time) are still edits."""
    altered = "the extra data is not the entry's receipt exactly as the log wrote it: "
    if list(receipt) != RECEIPT_FIELDS:
        raise Refuted(altered + f"its fields must be {', '.join(RECEIPT_FIELDS)}, in that order")
    try:
        canonical_id = str(uuid.UUID(receipt["transaction_id"]))
    except (TypeError, ValueError, AttributeError):
        raise Refuted(altered + "transaction_id is not a UUID")
    if receipt["transaction_id"] != canonical_id:
        raise Refuted(altered + "transaction_id is not in lower-case hyphenated form")
    for field in ("occurred_at", "recorded_at"):
        value = receipt[field]
        if not (value is None and field == "occurred_at") and not (
                isinstance(value, str) and RFC3339_MICROS.fullmatch(value)):
            raise Refuted(altered + f"{field} is not written as YYYY-MM-DDTHH:MM:SS.ffffffZ")
    metadata = receipt["metadata"]
    if not isinstance(metadata, dict) or list(metadata) != sorted(metadata, key=lambda key: key.encode("utf-8")):
        raise Refuted(altered + "metadata keys are not in byte order")
    if json.dumps(receipt, separators=(",", ":"), ensure_ascii=False).encode("utf-8") != extra:
        raise Refuted(altered + "it is not compact JSON as written")


def check_tlog_proof(data, vkey, witnesses, quorum, policy=None):
    """Checks a tlog-proof of a ledger entry; returns (receipt, origin, size, root, cosigners).
    With a policy, the log (when vkey is None) and the quorum rule come from it."""
    extra, index, hashes, note = parse_tlog_proof(data)
    if extra is None:
        raise Refuted("the tlog-proof has no extra line: the entry's receipt is missing")
    try:
        receipt = json.loads(extra.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as error:
        raise Refuted(f"the extra data is not the entry's receipt as JSON: {error}")
    if not isinstance(receipt, dict):
        raise Refuted("the extra data is not the entry's receipt as a JSON object")
    # The leaf comes from the receipt's fields; the stated entry_hash must match what they hash to.
    leaf = receipt_leaf(receipt)
    check_receipt_as_written(receipt, extra)
    if not isinstance(receipt.get("sequence_number"), int) or index != receipt["sequence_number"] - 1:
        raise Refuted(f"index {index} is not the receipt's sequence_number - 1")
    if policy is not None:
        origin, size, root = verify_checkpoint(note, vkey if vkey is not None else policy_log(policy, note))
        cosigners = check_policy(note, policy)
    else:
        origin, size, root = verify_checkpoint(note, vkey)
        cosigners = verified_cosigners(note, witnesses)
        if len(cosigners) < quorum:
            raise Refuted(f"witnesses: {len(cosigners)} of the required {quorum} witnesses cosigned this checkpoint")
    verify_inclusion(index, size, leaf, hashes, root)
    return receipt, origin, size, root, sorted(cosigners)


def check_tlog_proof_vectors(path):
    """Every proof of the shared tlog-proof vectors verifies, and a changed character in any is refused."""
    with open(path, encoding="utf-8") as file:
        vectors = json.load(file)
    vkey, witness = parse_vkey(vectors["log_vkey"]), parse_vkey(vectors["witness_vkey"])
    for number, vector in enumerate(vectors["proofs"], start=1):
        text = vector["proof"]
        receipt, _, size, _, cosigners = check_tlog_proof(text.encode(), vkey, [witness], 1)
        if receipt["sequence_number"] != number or vector["sequence_number"] != number or size != len(vectors["proofs"]):
            raise Refuted(f"tlog-proof vector {number} proves another entry or tree")
        if cosigners != [witness["name"]]:
            raise Refuted(f"tlog-proof vector {number}: cosigners {cosigners}")
        for position in range(0, len(text), 7):
            altered = text[:position] + ("B" if text[position] == "A" else "A") + text[position + 1:]
            expect_refused(lambda: check_tlog_proof(altered.encode(), vkey, [witness], 1),
                           f"tlog-proof vector {number} with character {position} changed")
    print(f"ok: {len(vectors['proofs'])} tlog-proofs verify, every altered one is refused")


def expect_refused(check, what):
    try:
        check()
    except Refuted:
        return
    raise SystemExit(f"vector check failed: {what} was accepted")


def check_vector_file(path):
    with open(path, encoding="utf-8") as file:
        vectors = json.load(file)
    checks = 0
    rfc = vectors["rfc6962"]
    leaves = [leaf_hash(bytes.fromhex(text)) for text in rfc["leaf_inputs"]]
    if tree_hash([]).hex() != rfc["empty_root"]:
        raise SystemExit("empty root differs")
    sections = [("rfc6962", leaves, rfc)]
    invario = vectors["invario"]
    prev, invario_leaves = bytes(32), []
    for receipt in invario["receipts"]:
        if decode_hash(receipt["prev_hash"], "prev_hash") != prev:
            raise SystemExit(f"receipt {receipt['sequence_number']} does not link to the one before")
        invario_leaves.append(receipt_leaf(receipt))
        prev = bytes.fromhex(receipt["entry_hash"])
        checks += 1
    sections.append(("invario", invario_leaves, invario))
    for name, section_leaves, section in sections:
        roots = [tree_hash(section_leaves[:n]) for n in range(1, len(section_leaves) + 1)]
        if [root.hex() for root in roots] != section["roots"]:
            raise SystemExit(f"{name}: roots differ")
        checks += len(roots)
        for vector in section["inclusion"]:
            index, size = vector["leaf_index"], vector["tree_size"]
            path = decode_path(vector["path"], "path")
            leaf, root = section_leaves[index], roots[size - 1]
            verify_inclusion(index, size, leaf, path, root)
            for i in range(len(path)):
                damaged = list(path)
                damaged[i] = bytes([damaged[i][0] ^ 1]) + damaged[i][1:]
                expect_refused(lambda: verify_inclusion(index, size, leaf, damaged, root), f"{name} damaged inclusion")
            expect_refused(lambda: verify_inclusion(index, size, leaf, path + [root], root), f"{name} extended inclusion")
            if index + 1 < size:
                expect_refused(lambda: verify_inclusion(index + 1, size, leaf, path, root), f"{name} wrong index")
            checks += 1
        for vector in section["consistency"]:
            first, second = vector["first"], vector["second"]
            path = decode_path(vector["proof"], "proof")
            first_root, second_root = roots[first - 1], roots[second - 1]
            verify_consistency(first, second, first_root, second_root, path)
            for i in range(len(path)):
                damaged = list(path)
                damaged[i] = bytes([damaged[i][0] ^ 1]) + damaged[i][1:]
                expect_refused(lambda: verify_consistency(first, second, first_root, second_root, damaged),
                               f"{name} damaged consistency")
            expect_refused(lambda: verify_consistency(first, second, first_root, second_root, path[:-1]),
                           f"{name} truncated consistency")
            checks += 1
    print(f"vectors intact: {checks} checks passed, every damaged proof refused")


LEDGER_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")


def ledger_path(ledger, path):
    """`path`, a route of the default ledger, in ledger `ledger` (its /v1/ledgers/<name>/… twin)."""
    if ledger == "default":
        return path
    if path.startswith("/v1/ledger/"):
        return f"/v1/ledgers/{ledger}/" + path[len("/v1/ledger/"):]
    if path.startswith("/v1/transactions"):
        return f"/v1/ledgers/{ledger}/transactions" + path[len("/v1/transactions"):]
    return path


def ledger_name(text):
    if not LEDGER_NAME.match(text):
        raise argparse.ArgumentTypeError(f"ledger name {text!r} is not allowed: 1 to 63 of a-z, 0-9, '_' and '-'")
    return text


def fetch(url, key, path, raw=False):
    headers = {} if key is None else {"Authorization": f"Bearer {key}"}
    request = urllib.request.Request(url.rstrip("/") + path, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.read() if raw else json.load(response)
    except urllib.error.HTTPError as error:
        try:
            message = json.load(error)["error"]["message"]
        except (ValueError, KeyError, TypeError):
            message = error.reason
        raise SystemExit(f"error: {url}{path} answered {error.code}: {message}") from None
    except (urllib.error.URLError, OSError, ValueError) as error:
        raise SystemExit(f"error: cannot fetch {url}{path}: {error}") from None


# --- C2SP tlog-tiles (https://c2sp.org/tlog-tiles), read from the
# specification: a tile is up to 256 hashes of one level (level 0: leaf
# hashes; level L+1: the root of each full level-L tile); an entry bundle is
# each leaf's data behind a big-endian u16 length. Every tile read is
# authenticated: leaves from the bundles, every tile recomputed from them,
# the root of all leaves against the signed checkpoint.

TILE_WIDTH = 256


def tile_path(level, index, width):
    """`tile/<L>/<N>[.p/<W>]`, N in 3-digit elements, all but the last prefixed with x."""
    elements = [f"{index % 1000:03d}"]
    index //= 1000
    while index:
        elements.append(f"x{index % 1000:03d}")
        index //= 1000
    path = f"tile/{level}/" + "/".join(reversed(elements))
    return path if width == TILE_WIDTH else f"{path}.p/{width}"


def split_bundle(data, path):
    entries, position = [], 0
    while position < len(data):
        if position + 2 > len(data):
            raise Refuted(f"{path}: a length prefix is cut off")
        length = int.from_bytes(data[position:position + 2], "big")
        position += 2
        if position + length > len(data):
            raise Refuted(f"{path}: an entry runs past the end of the bundle")
        entries.append(data[position:position + length])
        position += length
    return entries


def check_tiles(read, vkey):
    """Rebuilds the tree from a tiled log's bundles and checks every tile and the signed root.
    `read(path)` returns a resource's bytes. Returns (size, root, resources read)."""
    origin, size, root = verify_checkpoint(read("checkpoint"), vkey)
    read_count = 0
    leaves = []
    for index in range((size + TILE_WIDTH - 1) // TILE_WIDTH):
        width = min(TILE_WIDTH, size - index * TILE_WIDTH)
        path = tile_path("entries", index, width)
        entries = split_bundle(read(path), path)
        read_count += 1
        if len(entries) != width:
            raise Refuted(f"{path}: {len(entries)} entries, not {width}")
        leaves.extend(leaf_hash(entry) for entry in entries)
    if tree_hash(leaves) != root:
        raise Refuted(f"the {size} entries do not hash to the signed root {root.hex()}")
    hashes, level = leaves, 0
    while hashes:
        for index in range((len(hashes) + TILE_WIDTH - 1) // TILE_WIDTH):
            width = min(TILE_WIDTH, len(hashes) - index * TILE_WIDTH)
            path = tile_path(level, index, width)
            data = read(path)
            read_count += 1
            if data != b"".join(hashes[index * TILE_WIDTH:index * TILE_WIDTH + width]):
                raise Refuted(f"{path}: its hashes are not the ones the entries hash to")
        hashes = [tree_hash(hashes[start:start + TILE_WIDTH])
                  for start in range(0, len(hashes) - TILE_WIDTH + 1, TILE_WIDTH)]
        level += 1
    return origin, size, root, read_count


def tiles_reader(args):
    if args.dir is not None:
        def read(path):
            try:
                with open(os.path.join(args.dir, path), "rb") as file:
                    return file.read()
            except FileNotFoundError:
                raise Refuted(f"{path} is missing from {args.dir}") from None
            except OSError as error:
                raise SystemExit(f"error: cannot read {path} in {args.dir}: {error}") from None
        return read
    return lambda path: fetch(args.url, args.key, "/" + path, raw=True)


def remember(state, size, note):
    """Keeps an accepted checkpoint: per size (never replaced by another) and as the latest."""
    os.makedirs(state, exist_ok=True)
    per_size = os.path.join(state, f"{size}.checkpoint")
    if os.path.exists(per_size):
        with open(per_size, "rb") as file:
            if not same_checkpoint(file.read(), note):
                raise Refuted(f"two different checkpoints for tree size {size}")
    for path in (per_size, os.path.join(state, "checkpoint")):
        temporary = path + ".tmp"
        with open(temporary, "wb") as file:
            file.write(note)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)


def audit_checkpoint(args):
    vkey = parse_vkey(args.vkey)
    served = fetch(args.url, args.key, ledger_path(args.ledger, "/v1/ledger/checkpoint"), raw=True)
    latest_path = os.path.join(args.state, "checkpoint")
    old = None
    if os.path.exists(latest_path):
        with open(latest_path, "rb") as file:
            old_note = file.read()
        try:
            old = verify_checkpoint(old_note, vkey)
        except Refuted as error:
            raise SystemExit(f"error: the remembered checkpoint does not verify: {error}")
    witnesses = [parse_vkey(text) for text in args.witness_vkey]
    if args.quorum > len(witnesses):
        raise SystemExit(f"error: --quorum {args.quorum} needs at least that many --witness-vkey (got {len(witnesses)})")
    try:
        _, size, root = verify_checkpoint(served, vkey)
        policy = read_policy_arg(args)
        if policy is not None:
            cosigned = len(check_policy(served, policy))
        else:
            cosigned = check_quorum(served, witnesses, args.quorum) if args.quorum else 0
        if old is not None:
            _, old_size, old_root = old
            if old_size > size:
                raise Refuted(f"the log shrank from {old_size} to {size} entries")
            proof = fetch(args.url, args.key,
                          ledger_path(args.ledger, f"/v1/ledger/proof/consistency?first={old_size}&second={size}"))
            check_consistency_response(proof, old_root, root)
        if args.full:
            prev, leaves, after = bytes(32), [], 0
            while len(leaves) < size:
                page = fetch(args.url, args.key, ledger_path(args.ledger, f"/v1/ledger/entries?after={after}&limit=1000"))
                if not page["entries"]:
                    raise Refuted(f"the server has {len(leaves)} entries, the checkpoint says {size}")
                for receipt in page["entries"][: size - len(leaves)]:
                    if decode_hash(receipt["prev_hash"], "prev_hash") != prev:
                        raise Refuted(f"entry {receipt['sequence_number']} does not link to the one before")
                    leaves.append(receipt_leaf(receipt))
                    prev, after = bytes.fromhex(receipt["entry_hash"]), receipt["sequence_number"]
            if tree_hash(leaves) != root:
                raise Refuted("the entries do not give the checkpoint's root")
        remember(args.state, size, served)
    except Refuted as error:
        print(f"INCONSISTENT: {error}")
        if old is not None:
            print("--- remembered:\n" + old_note.decode("utf-8", "replace"))
        print("--- served now:\n" + served.decode("utf-8", "replace"))
        sys.exit(1)
    print(f"consistent: checkpoint at tree size {size} (root {root.hex()})"
          + ("" if old is None else f" extends the one remembered at size {old[1]}")
          + (f", cosigned by {cosigned} of the {len(witnesses)} trusted witnesses" if args.quorum else "")
          + (f", meeting the policy's witness quorum ({cosigned} cosigned)" if args.policy else ""))


def read_policy_arg(args):
    """The --policy file parsed, or None; a bad file cannot run (exit 2)."""
    if getattr(args, "policy", None) is None:
        return None
    if args.witness_vkey or args.quorum:
        raise SystemExit("error: --policy replaces --witness-vkey and --quorum; give one or the other")
    try:
        with open(args.policy, "rb") as file:
            return parse_policy(file.read())
    except OSError as error:
        raise SystemExit(f"error: --policy {args.policy}: {error}")
    except Refuted as error:
        raise SystemExit(f"error: --policy {args.policy}: {error}")


def pinned(text, flag):
    if text is None:
        return None
    try:
        return decode_hash(text, flag)
    except Refuted as error:
        raise SystemExit(f"error: {error}") from None


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    vectors = commands.add_parser("vectors", help="check a shared vector file")
    vectors.add_argument("file")
    checkpoint_vectors = commands.add_parser("checkpoint-vectors", help="check the golden signed checkpoint")
    checkpoint_vectors.add_argument("file")
    tlog_proof_vectors = commands.add_parser("tlog-proof-vectors", help="check the shared tlog-proof vectors")
    tlog_proof_vectors.add_argument("file")
    checkpoint = commands.add_parser("checkpoint", help="verify and remember a server's signed checkpoint")
    checkpoint.add_argument("--url", required=True)
    checkpoint.add_argument("--key", required=True)
    checkpoint.add_argument("--vkey", required=True)
    checkpoint.add_argument("--state", required=True)
    checkpoint.add_argument("--full", action="store_true")
    checkpoint.add_argument("--witness-vkey", action="append", default=[],
                            help="a witness's verifier key (repeatable)")
    checkpoint.add_argument("--quorum", type=int, default=0,
                            help="refuse a checkpoint fewer than this many of the witnesses cosigned")
    tlog_proof = commands.add_parser("tlog-proof", help="verify a saved .tlog-proof offline (no network)")
    tlog_proof.add_argument("--proof", required=True, help="the .tlog-proof file")
    tlog_proof.add_argument("--vkey", help="the log's verifier key (optional with --policy)")
    tlog_proof.add_argument("--witness-vkey", action="append", default=[],
                            help="a witness's verifier key (repeatable)")
    tlog_proof.add_argument("--quorum", type=int, default=0,
                            help="refuse a proof fewer than this many of the witnesses cosigned")
    for command in (tlog_proof, checkpoint):
        command.add_argument("--policy", help="a C2SP tlog-policy file (instead of --witness-vkey and --quorum)")
    tiles = commands.add_parser("tiles", help="rebuild a tlog-tiles log (a server or a mirror) and check every tile")
    tiles_source = tiles.add_mutually_exclusive_group(required=True)
    tiles_source.add_argument("--url", help="the log's tlog-tiles prefix, e.g. http://localhost:8000/v1/ledger/tlog")
    tiles_source.add_argument("--dir", help="a mirror's folder (from invario mirror)")
    tiles.add_argument("--key", help="a key with the read scope (not for --dir or a public log)")
    tiles.add_argument("--vkey", required=True, help="the log's verifier key")
    inclusion = commands.add_parser("inclusion", help="prove a transaction is in the tree")
    consistency = commands.add_parser("consistency", help="prove an older tree is a prefix of a newer one")
    for command in (inclusion, consistency):
        command.add_argument("--url", required=True)
        command.add_argument("--key", required=True)
    for command in (checkpoint, inclusion, consistency):
        command.add_argument("--ledger", type=ledger_name, default="default",
                             help="the ledger (its checkpoints are signed under <origin>/<ledger>)")
    inclusion.add_argument("--id", required=True)
    inclusion.add_argument("--tree-size", type=int)
    inclusion.add_argument("--root")
    consistency.add_argument("--first", type=int, required=True)
    consistency.add_argument("--second", type=int)
    consistency.add_argument("--first-root")
    consistency.add_argument("--second-root")
    args = parser.parse_args()
    # argparse exits 2 on bad arguments, as "could not run" should.

    if args.command == "vectors":
        check_vector_file(args.file)
        return
    if args.command == "checkpoint-vectors":
        check_checkpoint_vectors(args.file)
        return
    if args.command == "tlog-proof-vectors":
        try:
            check_tlog_proof_vectors(args.file)
        except Refuted as error:
            print(f"refuted: {error}")
            sys.exit(1)
        return
    if args.command == "tlog-proof":
        policy = read_policy_arg(args)
        if args.vkey is None and policy is None:
            raise SystemExit("error: --vkey or --policy is required")
        try:
            vkey = None if args.vkey is None else parse_vkey(args.vkey)
            witnesses = [parse_vkey(text) for text in args.witness_vkey]
        except Refuted as error:
            raise SystemExit(f"error: {error}")
        if args.quorum > len(witnesses):
            raise SystemExit(f"error: --quorum {args.quorum} needs at least that many --witness-vkey")
        try:
            with open(args.proof, "rb") as file:
                data = file.read(MAX_TLOG_PROOF_BYTES + 1)
        except OSError as error:
            raise SystemExit(f"error: --proof {args.proof}: {error}")
        try:
            receipt, origin, size, root, cosigners = check_tlog_proof(data, vkey, witnesses, args.quorum, policy)
        except Refuted as error:
            print(f"refuted: {error}")
            sys.exit(1)
        witnessed = f", cosigned by {', '.join(cosigners)}" if cosigners else ""
        print(f"proven: transaction {receipt['transaction_id']} is entry {receipt['sequence_number']} of {origin}, "
              f"in the checkpoint of size {size} with root {root.hex()} signed by the log{witnessed}")
        return
    if args.command == "tiles":
        try:
            vkey = parse_vkey(args.vkey)
        except Refuted as error:
            raise SystemExit(f"error: {error}")
        try:
            origin, size, root, read_count = check_tiles(tiles_reader(args), vkey)
        except Refuted as error:
            print(f"refuted: {error}")
            sys.exit(1)
        print(f"consistent: {origin} holds {size} entries with root {root.hex()} as signed; "
              f"{read_count} tiles and bundles read, every one checked")
        return
    if args.command == "checkpoint":
        try:
            audit_checkpoint(args)
        except Refuted as error:
            raise SystemExit(f"error: {error}")
        return
    try:
        if args.command == "inclusion":
            if args.root is not None and args.tree_size is None:
                raise SystemExit("error: --root needs --tree-size")
            query = "" if args.tree_size is None else f"?tree_size={args.tree_size}"
            response = fetch(args.url, args.key, ledger_path(args.ledger, f"/v1/transactions/{args.id}/proof{query}"))
            index, size, root = check_inclusion_response(response, args.tree_size, pinned(args.root, "--root"))
            print(f"proven: transaction {args.id} is leaf {index} of the tree of size {size} with root {root.hex()}")
            unpinned = args.root is None
        else:
            query = f"?first={args.first}" + ("" if args.second is None else f"&second={args.second}")
            response = fetch(args.url, args.key, ledger_path(args.ledger, f"/v1/ledger/proof/consistency{query}"))
            first, second, first_root, second_root = check_consistency_response(
                response, pinned(args.first_root, "--first-root"), pinned(args.second_root, "--second-root"))
            print(f"proven: the tree of size {first} (root {first_root.hex()}) is a prefix of "
                  f"the tree of size {second} (root {second_root.hex()})")
            unpinned = args.first_root is None or args.second_root is None
        if unpinned:
            print("note: the root came from the server, unsigned; pin one you trust with --root")
    except Refuted as error:
        print(f"refuted: {error}")
        sys.exit(1)
    except (KeyError, TypeError) as error:
        print(f"refuted: the response is not shaped as documented ({error})")
        sys.exit(1)


if __name__ == "__main__":
    try:
        main()
    except SystemExit as stop:
        if isinstance(stop.code, str):
            print(stop.code, file=sys.stderr)
            sys.exit(2)
        raise

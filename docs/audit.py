#!/usr/bin/env python3
"""An auditor's independent check of Invario's Merkle tree proofs (RFC 9162).

Python's standard library only, written from the RFC and VERIFIABILITY.md, not
from the Rust code, for auditors who will not run our binary. It recomputes
every entry hash from the receipt's fields (docs/recompute_hashes.py holds the
chain format v1), derives the leaf from it, and checks the audit path.

    python3 docs/audit.py vectors docs/vectors/merkle.json
    python3 docs/audit.py inclusion --url http://localhost:8000 --key "$KEY" --id UUID [--tree-size N] [--root HEX]
    python3 docs/audit.py consistency --url http://localhost:8000 --key "$KEY" --first M [--second N]
        [--first-root HEX] [--second-root HEX]

Exit status: 0 proven, 1 refuted (the reason is printed), 2 could not run.
Without a pinned root the server's root is used, and the output says so.
"""
import argparse
import hashlib
import json
import string
import sys
import urllib.error
import urllib.request

from recompute_hashes import entry_hash

MAX_PROOF_HASHES = 64


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
    """RFC 9162 section 2.1.4.2, with the edge cases of VERIFIABILITY.md section 1."""
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


def fetch(url, key, path):
    request = urllib.request.Request(url.rstrip("/") + path, headers={"Authorization": f"Bearer {key}"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.load(response)
    except urllib.error.HTTPError as error:
        try:
            message = json.load(error)["error"]["message"]
        except (ValueError, KeyError, TypeError):
            message = error.reason
        raise SystemExit(f"error: {url}{path} answered {error.code}: {message}") from None
    except (urllib.error.URLError, OSError, ValueError) as error:
        raise SystemExit(f"error: cannot fetch {url}{path}: {error}") from None


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
    inclusion = commands.add_parser("inclusion", help="prove a transaction is in the tree")
    consistency = commands.add_parser("consistency", help="prove an older tree is a prefix of a newer one")
    for command in (inclusion, consistency):
        command.add_argument("--url", required=True)
        command.add_argument("--key", required=True)
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
    try:
        if args.command == "inclusion":
            if args.root is not None and args.tree_size is None:
                raise SystemExit("error: --root needs --tree-size")
            query = "" if args.tree_size is None else f"?tree_size={args.tree_size}"
            response = fetch(args.url, args.key, f"/v1/transactions/{args.id}/proof{query}")
            index, size, root = check_inclusion_response(response, args.tree_size, pinned(args.root, "--root"))
            print(f"proven: transaction {args.id} is leaf {index} of the tree of size {size} with root {root.hex()}")
            unpinned = args.root is None
        else:
            query = f"?first={args.first}" + ("" if args.second is None else f"&second={args.second}")
            response = fetch(args.url, args.key, f"/v1/ledger/proof/consistency{query}")
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

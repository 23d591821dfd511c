"""Allocation-heavy Python: objects, dicts, strings, JSON round trips.

Deterministic (fixed seed); prints a checksum of what it built.
"""

import hashlib
import json
import random
import sys


class Node:
    __slots__ = ("key", "tags", "children")

    def __init__(self, key, tags):
        self.key = key
        self.tags = tags
        self.children = []


def build_tree(rng, n):
    nodes = [Node(f"n{i}", [rng.randrange(1000) for _ in range(rng.randrange(1, 6))]) for i in range(n)]
    for i in range(1, n):
        nodes[rng.randrange(i)].children.append(nodes[i])
    return nodes[0], nodes


def walk(root):
    total, stack = 0, [root]
    while stack:
        node = stack.pop()
        total += len(node.key) + sum(node.tags)
        stack.extend(node.children)
    return total


def main():
    scale = int(sys.argv[1]) if len(sys.argv) > 1 else 1
    rng = random.Random(42)
    digest = hashlib.sha256()
    for round_ in range(2 * scale):
        root, nodes = build_tree(rng, 40000)
        digest.update(str(walk(root)).encode())
        del root, nodes
        index = {}
        for i in range(30000):
            word = "".join(rng.choice("abcdefghij") for _ in range(rng.randrange(3, 12)))
            index.setdefault(word, []).append(i)
        records = [
            {"id": i, "name": word * 3, "hits": len(ids), "ids": ids[:8], "score": len(word) / 7}
            for i, (word, ids) in enumerate(sorted(index.items()))
        ]
        blob = json.dumps(records)
        back = json.loads(blob)
        digest.update(hashlib.sha256(blob.encode()).digest())
        text = " ".join(r["name"] for r in back)
        parts = sorted(set(text.split()), key=lambda w: (len(w), w))
        digest.update("|".join(parts[:1000]).encode())
        digest.update(str(round_).encode())
    print("python checksum", digest.hexdigest()[:16])


main()

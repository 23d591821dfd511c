"""Generate the inputs of compare.sh's real-program workloads.

    python3 gen_inputs.py OUTDIR

writes, deterministically (fixed seed):
  OUTDIR/git.fi     a git fast-import stream: 300 commits over 120 files
  OUTDIR/data.csv   120k lines of CSV for the gawk workload
  OUTDIR/data.json  a JSON array of 30k objects for the jq workload
"""

import json
import os
import random
import sys

WORDS = (
    "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi omicron pi rho "
    "sigma tau upsilon phi chi psi omega malloc free slab arena cache page guard canary"
).split()
CITIES = ["Oslo", "Lima", "Pune", "Kyiv", "Riga", "Baku", "Doha", "Nuuk", "Apia", "Bern", "Quito", "Suva"]


def line(rng):
    return " ".join(rng.choice(WORDS) for _ in range(rng.randrange(3, 12)))


def gen_git(path, rng, commits=300, files=120):
    contents = {f"src/mod{i // 20}/file{i}.txt": [line(rng) for _ in range(rng.randrange(80, 300))] for i in range(files)}
    names = sorted(contents)
    with open(path, "wb") as out:
        def w(s):
            out.write(s.encode() if isinstance(s, str) else s)

        for c in range(commits):
            changed = names if c == 0 else sorted(rng.sample(names, 6))
            if c > 0:
                for name in changed:
                    lines = contents[name]
                    for _ in range(rng.randrange(1, 12)):
                        op = rng.randrange(3)
                        at = rng.randrange(len(lines))
                        if op == 0:
                            lines.insert(at, line(rng))
                        elif op == 1 and len(lines) > 20:
                            del lines[at]
                        else:
                            lines[at] = line(rng)
            w(f"commit refs/heads/main\nmark :{c + 1}\n")
            w(f"author Bench <bench@example.invalid> {1700000000 + c * 3600} +0000\n")
            w(f"committer Bench <bench@example.invalid> {1700000000 + c * 3600} +0000\n")
            msg = f"commit {c}: {line(rng)}\n"
            w(f"data {len(msg.encode())}\n{msg}")
            if c > 0:
                w(f"from :{c}\n")
            for name in changed:
                data = ("\n".join(contents[name]) + "\n").encode()
                w(f"M 100644 inline {name}\ndata {len(data)}\n")
                w(data)
                w("\n")
            w("\n")


def gen_csv(path, rng, rows=120000):
    with open(path, "w") as out:
        out.write("id,name,city,score,words\n")
        for i in range(rows):
            out.write(f"{i},{rng.choice(WORDS)}{rng.randrange(1000)},{rng.choice(CITIES)},{rng.randrange(1000)},{line(rng)}\n")


def gen_json(path, rng, n=30000):
    items = [
        {
            "id": i,
            "name": f"{rng.choice(WORDS)}-{rng.randrange(5000)}",
            "city": rng.choice(CITIES),
            "score": rng.randrange(1000),
            "tags": rng.sample(WORDS, rng.randrange(1, 6)),
            "nested": {"a": rng.random(), "b": [rng.randrange(100) for _ in range(rng.randrange(0, 5))]},
        }
        for i in range(n)
    ]
    with open(path, "w") as out:
        json.dump(items, out)


def main():
    outdir = sys.argv[1]
    os.makedirs(outdir, exist_ok=True)
    gen_git(os.path.join(outdir, "git.fi"), random.Random(1))
    gen_csv(os.path.join(outdir, "data.csv"), random.Random(2))
    gen_json(os.path.join(outdir, "data.json"), random.Random(3))


main()

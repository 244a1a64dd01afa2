#!/usr/bin/env python3
"""Reference check of vx's BM25 scores against the bm25s package.

Usage:  python bm25_reference.py IN.json
        python bm25_reference.py --self-test

IN.json: {"k1": float, "b": float,
          "docs":    [[token, ...], ...],   tokens after stop-word removal
          "queries": [[token, ...], ...],
          "scores":  [[[doc_index, score], ...], ...]}
scores[i] lists, for query i, every document vx gave a non-zero score (any
order). Tokens are used as given: bm25s does no tokenizing, stemming or
stop-word removal here.

Formula checked (Lucene idf with the (k1 + 1) numerator, float64):
  idf(t)     = ln(1 + (N - n_t + 0.5) / (n_t + 0.5))
  score(d,q) = sum over the tokens t of q (a repeated token counts each time)
               of idf(t) * tf(t,d) * (k1 + 1) / (tf(t,d) + k1 * (1 - b + b * |d| / avgdl))
  N = all documents (empty ones too), avgdl = total tokens / N.

bm25s's method="lucene" leaves out the (k1 + 1) factor (its score is the one
above divided by k1 + 1). Its method="atire" has the (k1 + 1) factor but
idf = ln(N / n_t); its idf_method parameter takes the idf from another
method, so BM25(method="atire", idf_method="lucene") is exactly the formula
above, no correction factor. dtype="float64" makes it score in float64 (the
default is float32).

Prints one JSON line {"docs", "queries", "pairs", "max_abs_diff",
"max_rel_diff", "missing", "extra", "reference"} where pairs counts the
(query, document) pairs both sides score, missing counts documents bm25s
scores > 0 that vx does not list, extra counts documents vx lists with a
non-zero score that bm25s scores 0. The differences are over the pairs.
Exit status 1 if max_rel_diff > 1e-5 or missing or extra > 0, 2 on bad
input.
"""
import json
import math
import os
import random
import sys
import tempfile

import numpy as np
import bm25s

REL_TOL = 1e-5
METHOD = "atire"
IDF_METHOD = "lucene"
DTYPE = "float64"


def reference_label():
    return f"bm25s {bm25s.__version__} method={METHOD} idf_method={IDF_METHOD} dtype={DTYPE}"


def reference_scores(k1, b, docs, queries):
    """Yields, for each query, bm25s's float64 score of every document."""
    n = len(docs)
    vocab = set()
    for d in docs:
        vocab.update(d)
    if not vocab:  # no token at all: nothing scores
        for _ in queries:
            yield np.zeros(n)
        return
    retriever = bm25s.BM25(k1=k1, b=b, method=METHOD, idf_method=IDF_METHOD, dtype=DTYPE)
    # create_empty_token=False: the "" entry it would add has no column in the
    # score matrix (get_scores raises on it) and is not needed here.
    retriever.index(docs, create_empty_token=False, show_progress=False)
    for q in queries:
        # get_scores drops unknown tokens itself but fails on an empty list.
        known = [t for t in q if t in vocab]
        if not known:
            yield np.zeros(n)
        else:
            yield np.asarray(retriever.get_scores(known), dtype=np.float64)


class BadInput(Exception):
    pass


def validate(data):
    for key in ("k1", "b", "docs", "queries", "scores"):
        if key not in data:
            raise BadInput(f"missing key {key!r}")
    for what in ("docs", "queries"):
        for i, toks in enumerate(data[what]):
            if not isinstance(toks, list) or not all(isinstance(t, str) for t in toks):
                raise BadInput(f"{what}[{i}] is not a list of strings")
    if len(data["scores"]) != len(data["queries"]):
        raise BadInput(f"{len(data['scores'])} score lists for {len(data['queries'])} queries")
    n = len(data["docs"])
    for i, lst in enumerate(data["scores"]):
        seen = set()
        for pair in lst:
            if len(pair) != 2:
                raise BadInput(f"scores[{i}]: {pair!r} is not [doc_index, score]")
            d = pair[0]
            if not isinstance(d, int) or isinstance(d, bool) or not 0 <= d < n:
                raise BadInput(f"scores[{i}]: document index {d!r} out of range 0..{n - 1}")
            if d in seen:
                raise BadInput(f"scores[{i}]: document {d} listed twice")
            seen.add(d)


def check(data):
    """Compares vx's scores with the reference; returns the result dict."""
    validate(data)
    k1, b = float(data["k1"]), float(data["b"])
    docs, queries = data["docs"], data["queries"]
    pairs = missing = extra = 0
    max_abs = max_rel = 0.0
    for ref, vx_list in zip(reference_scores(k1, b, docs, queries), data["scores"]):
        vx = {d: float(s) for d, s in vx_list}
        for d in np.flatnonzero(ref > 0).tolist():
            if d not in vx:
                missing += 1
                continue
            pairs += 1
            r, v = float(ref[d]), vx.pop(d)
            diff = abs(v - r)
            if math.isnan(diff):
                diff = math.inf
            max_abs = max(max_abs, diff)
            max_rel = max(max_rel, diff / abs(r))
        # What is left in vx, bm25s scores 0 (idf > 0, so only documents
        # without any query token); a listed 0 is tolerated.
        extra += sum(1 for s in vx.values() if s != 0.0)
    return {
        "docs": len(docs),
        "queries": len(queries),
        "pairs": pairs,
        "max_abs_diff": max_abs,
        "max_rel_diff": max_rel,
        "missing": missing,
        "extra": extra,
        "reference": reference_label(),
    }


def failed(result):
    return not (result["max_rel_diff"] <= REL_TOL) or result["missing"] > 0 or result["extra"] > 0


# ---------------------------------------------------------------- self-test

def direct_scores(k1, b, docs, query):
    """The formula written out in plain Python, independent of bm25s."""
    n = len(docs)
    avgdl = sum(len(d) for d in docs) / n
    out = {}
    for i, d in enumerate(docs):
        s = 0.0
        for t in query:  # a repeated query token counts each time
            tf = d.count(t)
            if tf == 0:
                continue
            df = sum(1 for e in docs if t in e)
            idf = math.log(1 + (n - df + 0.5) / (df + 0.5))
            s += idf * tf * (k1 + 1) / (tf + k1 * (1 - b + b * len(d) / avgdl))
        if s != 0.0:
            out[i] = s
    return out


def self_test():
    ln = math.log
    # Case A, k1 = 1.2, b = 0.75: an empty document (counts in N and avgdl),
    # "b" in every non-empty document, a repeated query token, an unknown
    # token and an empty query. N = 4, avgdl = 9 / 4 = 2.25.
    # idf: a (n=2) ln(1 + 2.5/2.5) = ln 2; b (n=3) ln(1 + 1.5/3.5) = ln(10/7);
    #      c (n=2) ln 2; d (n=1) ln(1 + 3.5/1.5) = ln(10/3).
    # k1 (1 - b + b |d| / avgdl) = 1.2 (0.25 + |d| / 3): |d|=3 1.5, |d|=2 1.1, |d|=4 1.9.
    # k1 + 1 = 2.2.
    case_a = {
        "k1": 1.2, "b": 0.75,
        "docs": [["a", "b", "a"], [], ["b", "c"], ["a", "b", "c", "d"]],
        "queries": [["a", "a", "d"], ["b"], ["c", "b"], ["zzz"], [], ["zzz", "d"]],
        "expected": [
            # "a" twice: 2 * idf(a) * tf 2 * 2.2 / (2 + 1.5) in doc 0
            {0: 2 * ln(2) * 2 * 2.2 / 3.5,
             3: 2 * ln(2) * 2.2 / 2.9 + ln(10 / 3) * 2.2 / 2.9},
            {0: ln(10 / 7) * 2.2 / 2.5, 2: ln(10 / 7) * 2.2 / 2.1, 3: ln(10 / 7) * 2.2 / 2.9},
            {0: ln(10 / 7) * 2.2 / 2.5,
             2: ln(2) * 2.2 / 2.1 + ln(10 / 7) * 2.2 / 2.1,
             3: ln(2) * 2.2 / 2.9 + ln(10 / 7) * 2.2 / 2.9},
            {},
            {},
            {3: ln(10 / 3) * 2.2 / 2.9},
        ],
    }
    # Case B, k1 = 1.5, b = 0.75: "the" in every document (n = N = 3, the
    # smallest idf, ln(1 + 0.5 / 3.5) = ln(8/7)). avgdl = 6 / 3 = 2.
    # k1 (1 - b + b |d| / avgdl) = 1.5 (0.25 + 0.375 |d|): |d|=2 1.5, |d|=1 0.9375,
    # |d|=3 2.0625. k1 + 1 = 2.5.
    case_b = {
        "k1": 1.5, "b": 0.75,
        "docs": [["the", "x"], ["the"], ["the", "the", "y"]],
        "queries": [["the"], ["the", "the"], ["y", "the"]],
        "expected": [
            {0: ln(8 / 7) * 2.5 / 2.5, 1: ln(8 / 7) * 2.5 / 1.9375, 2: ln(8 / 7) * 2 * 2.5 / 4.0625},
            {0: 2 * ln(8 / 7), 1: 2 * ln(8 / 7) * 2.5 / 1.9375, 2: 2 * ln(8 / 7) * 2 * 2.5 / 4.0625},
            {0: ln(8 / 7), 1: ln(8 / 7) * 2.5 / 1.9375,
             2: ln(8 / 7) * 2 * 2.5 / 4.0625 + ln(1 + 2.5 / 1.5) * 2.5 / (1 + 2.0625)},
        ],
    }
    # Case C: all documents empty.
    case_c = {"k1": 1.2, "b": 0.75, "docs": [[], []], "queries": [["a"], []], "expected": [{}, {}]}

    def as_input(case, expected):
        return {k: case[k] for k in ("k1", "b", "docs", "queries")} | {
            "scores": [[[d, s] for d, s in sorted(e.items())] for e in expected]}

    problems = []

    def expect(name, cond):
        print(("ok   " if cond else "FAIL ") + name)
        if not cond:
            problems.append(name)

    for name, case in (("A", case_a), ("B", case_b), ("C", case_c)):
        # the hand values agree with the plain-Python formula
        for qi, q in enumerate(case["queries"]):
            direct = direct_scores(case["k1"], case["b"], case["docs"], q)
            hand = case["expected"][qi]
            expect(f"case {name} query {qi}: hand values == direct formula",
                   direct.keys() == hand.keys()
                   and all(abs(direct[d] - hand[d]) <= 1e-12 * hand[d] for d in hand))
        # bm25s agrees with the hand values
        r = check(as_input(case, case["expected"]))
        print("     ", json.dumps(r))
        expect(f"case {name}: bm25s == hand values (rel diff {r['max_rel_diff']:.1e})",
               not failed(r) and r["max_rel_diff"] <= 1e-12
               and r["pairs"] == sum(len(e) for e in case["expected"]))

    # the check catches what it should
    exp = case_a["expected"]
    r = check(as_input(case_a, [{k: v for k, v in e.items() if k != 3} for e in exp]))
    expect("a dropped document is missing", r["missing"] == 4 and r["extra"] == 0 and failed(r))
    r = check(as_input(case_a, [e | {1: 0.5} for e in exp]))
    expect("a document without query tokens is extra", r["extra"] == 6 and r["missing"] == 0 and failed(r))
    r = check(as_input(case_a, [e | {1: 0.0} for e in exp]))
    expect("a listed zero score is tolerated", not failed(r))
    r = check(as_input(case_a, [{d: s * (1 + 2e-5) for d, s in e.items()} for e in exp]))
    expect("a relative error of 2e-5 fails", failed(r) and abs(r["max_rel_diff"] - 2e-5) < 1e-9)
    r = check(as_input(case_a, [{d: s * (1 + 5e-6) for d, s in e.items()} for e in exp]))
    expect("a relative error of 5e-6 passes", not failed(r))
    r = check(as_input(case_a, [{d: s / 2.2 for d, s in e.items()} for e in exp]))
    expect("scores without the (k1 + 1) factor fail", failed(r))
    r = check(as_input(case_a, [{d: float(np.float32(s)) for d, s in e.items()} for e in exp]))
    expect(f"float32-rounded scores pass (rel diff {r['max_rel_diff']:.1e})", not failed(r))
    try:
        check(as_input(case_a, exp[:-1]))
        expect("a missing score list is bad input", False)
    except BadInput:
        expect("a missing score list is bad input", True)

    # a random corpus against the plain-Python formula, duplicates in queries
    rng = random.Random(7)
    words = [f"w{i}" for i in range(40)]
    docs = [[rng.choice(words[: rng.randint(1, 40)]) for _ in range(rng.randint(0, 30))]
            for _ in range(200)]
    queries = [[rng.choice(words) for _ in range(rng.randint(0, 6))] for _ in range(50)]
    queries.append(["w1", "w1", "w1", "w2"])
    k1, b = 0.9, 0.4
    data = {"k1": k1, "b": b, "docs": docs, "queries": queries,
            "scores": [sorted(direct_scores(k1, b, docs, q).items()) for q in queries]}
    r = check(data)
    print("     ", json.dumps(r))
    expect(f"random corpus: bm25s == direct formula (rel diff {r['max_rel_diff']:.1e})",
           not failed(r) and r["max_rel_diff"] <= 1e-12)

    # the command line, end to end
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(data, f)
    try:
        import subprocess
        out = subprocess.run([sys.executable, os.path.abspath(__file__), f.name],
                             capture_output=True, text=True)
        line = json.loads(out.stdout)
        expect("command line: exit 0, one JSON line", out.returncode == 0 and line == r)
        data["scores"][-1] = []  # the ["w1", "w1", "w1", "w2"] query
        with open(f.name, "w") as g:
            json.dump(data, g)
        out = subprocess.run([sys.executable, os.path.abspath(__file__), f.name],
                             capture_output=True, text=True)
        expect("command line: exit 1 on a mismatch", out.returncode == 1)
    finally:
        os.unlink(f.name)

    print(f"self-test: {'FAILED ' + str(len(problems)) if problems else 'passed'} ({reference_label()})")
    return 1 if problems else 0


def main(argv):
    if len(argv) != 2:
        print(__doc__.split("\n\n")[0], file=sys.stderr)
        return 2
    if argv[1] == "--self-test":
        return self_test()
    with open(argv[1]) as f:
        data = json.load(f)
    try:
        result = check(data)
    except BadInput as e:
        print(f"bm25_reference.py: bad input: {e}", file=sys.stderr)
        return 2
    print(json.dumps(result))
    return 1 if failed(result) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

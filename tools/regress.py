#!/usr/bin/env python3
"""Performance regression check: the latest bench results against benches/baselines.json.

    python tools/regress.py                      # compare; exit 1 if a tracked metric is > 5% worse
    python tools/regress.py --threshold 10       # another tolerance (percent)
    python tools/regress.py --only-flagged       # print only the metrics that moved past the threshold
    python tools/regress.py --history scan/cosine/100K/f16/c-avx512/best_ms
    python tools/regress.py --history 'scan/cosine/100K/f16/*/best_ms'   # a glob: one table per metric
    python tools/regress.py --list 'stream/*c-avx512*'                    # metrics in the latest results
    python tools/regress.py --update             # baselines <- latest values (tracked metrics only)
    python tools/regress.py --update --add-new   # ... and start tracking new metrics (default policy)
    python tools/regress.py --update --add-new --match 'scan/*/1M/*/best_ms'   # track exactly these too
    python tools/regress.py --update --prune     # ... and drop tracked metrics the results no longer have
    python tools/regress.py --update --runs 3    # each baseline = median of the 3 latest runs (a steadier seed)
    python tools/regress.py --bench scan --bench stream   # only these benches (any command)

Where the numbers come from. Every bench (benches/*.py) writes
``benches/results/<bench>-<UTC stamp>.json`` and ``<bench>-latest.json``; each row has a
stable ``key`` (e.g. ``scan/cosine/100K/f16/c-avx512``). A metric is a row's numeric
field with a known unit: ``<key>/<field>`` (``best_ms``, ``p95_us``, ``gb_s``, ...), or
``<key>/speedup_vs/<peer>`` for the speed-up against a peer measured in the same run.
Units and directions follow the field's name: ``*_ms``, ``*_us``, ``*_ns``, ``ns_per_*``
are times (lower is better); ``gb_s``, ``melem_s`` and ``speedup_vs`` are rates (higher
is better). Rows without a ``key`` (older result files, benches that do not write one)
get one derived from their config/name fields, so their history still lines up.

What is compared. benches/baselines.json holds one entry per tracked metric: name,
value, unit, direction, the machine it was measured on (one-line summary), date, git
commit and source file. ``regress`` reads every ``*-latest.json``, finds each tracked
metric and computes the change; "worse" means slower (a time went up, a rate or a
speed-up went down). A metric more than --threshold percent worse (default: the
baselines' ``threshold_pct``, 5) is REGRESSED and the exit code is 1. Metrics the
latest results lack are "missing" and results from another machine kind are
"other-machine"; neither fails the run unless --strict.

Noise. The benches report best-of-N times (scan, stream) and percentiles over 1,000
calls (profile, spread); best-of-N is the most stable figure a shared machine gives,
and speed-ups against a peer measured in the same run are more stable still. The
machines are shared and noisy (+-15% between runs is common, more while other jobs run:
each result file records the load average). A flag past 5% is a reason to re-run that
bench and regress again, not yet a finding: believe it when it repeats.
"""
from __future__ import annotations

import argparse
import datetime as dt
import fnmatch
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benches" / "results"
BASELINES = ROOT / "benches" / "baselines.json"
DEFAULT_THRESHOLD = 5.0
STAMP = re.compile(r"^(?P<bench>.+)-(?P<stamp>\d{8}T\d{6}Z)\.json$")


# ----------------------------------------------------------------- metrics from result files

sys.path.insert(0, str(ROOT / "benches"))
from _common import human, slug  # noqa: E402  (the key format the benches write)


def row_key(bench: str, row: dict) -> str:
    """The row's "key", or one derived from its fields (result files written before keys existed)."""
    if row.get("key"):
        return row["key"]
    if bench == "scan" and {"metric", "n", "dtype", "name"} <= row.keys():
        nq = row.get("nq", 1)
        parts = ["scan", row["metric"], human(int(row["n"])), row["dtype"]] + ([f"x{nq}"] if nq and nq > 1 else []) + [row["name"]]
        return "/".join(slug(p) for p in parts)
    parts = [bench] + [row[f] for f in ("config", "cache", "name", "path") if row.get(f) not in (None, "")]
    return "/".join(slug(p) for p in parts)


def field_unit(field: str):
    """(unit, direction) of a metric field, or None if the field is not a metric."""
    if field.startswith("speedup_vs/"):
        return "x", "higher"
    if field.endswith("_ms"):
        return "ms", "lower"
    if field.endswith("_us"):
        return "us", "lower"
    if field.endswith("_ns") or field.startswith("ns_per_") or field.startswith("median_ns_per"):
        return "ns", "lower"
    if field == "gb_s":
        return "GB/s", "higher"
    if field == "melem_s":
        return "M elem/s", "higher"
    return None


def file_metrics(path: Path) -> dict:
    """{metric name: (value, unit, direction, row)} of one result file."""
    doc = json.loads(path.read_text())
    bench = doc.get("bench")
    if not bench:
        m = STAMP.match(path.name)
        bench = m.group("bench") if m else path.name.split("-latest")[0].removesuffix(".json")
    out = {}
    for row in doc.get("rows", []):
        key = row_key(bench, row)
        for field, value in row.items():
            if isinstance(value, dict):
                items = [(f"{field}/{slug(k)}", v) for k, v in value.items()]
            else:
                items = [(field, value)]
            for name, v in items:
                if isinstance(v, bool) or not isinstance(v, (int, float)):
                    continue
                uf = field_unit(name)
                if uf is None:
                    continue
                metric = f"{key}/{name}"
                if metric in out:             # duplicate keys in one file: keep the first, say so once
                    out.setdefault("__dupes__", set()).add(metric)
                    continue
                out[metric] = (float(v), uf[0], uf[1], row)
    dupes = out.pop("__dupes__", None)
    if dupes:
        print(f"warning: {path.name}: {len(dupes)} metrics appear twice (rows share a key), e.g. {sorted(dupes)[0]}",
              file=sys.stderr)
    return out


def load_doc(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        sys.exit(f"cannot read {path}: {e}")


def machine_summary(m: dict) -> str:
    l3 = m.get("l3_bytes")
    return (f"{m.get('cpu_model', '?')}; {m.get('cores', '?')} cores; "
            f"ISAs {'/'.join(m.get('cpu_isas') or ['?'])}; L3 {l3 // 2 ** 20 if l3 else '?'} MiB")


def latest_files(results: Path, benches=None) -> dict:
    """{bench: path} of every <bench>-latest.json (only these benches, if given)."""
    found = {p.name[:-len("-latest.json")]: p for p in sorted(results.glob("*-latest.json"))}
    return {b: p for b, p in found.items() if not benches or b in benches}


def stamped_twin(latest: Path, bench: str) -> str:
    """The name of the timestamped file <bench>-latest.json is a copy of (else the latest's own name)."""
    data = latest.read_bytes()
    for p in sorted(latest.parent.glob(f"{bench}-*.json"), reverse=True):
        m = STAMP.match(p.name)
        if m and m.group("bench") == bench and p.stat().st_size == len(data) and p.read_bytes() == data:
            return p.name
    return latest.name


def latest_metrics(results: Path, benches=None):
    """({metric: (value, unit, direction, row, bench)}, {bench: doc})."""
    metrics, docs = {}, {}
    for bench, path in latest_files(results, benches).items():
        doc = load_doc(path)
        docs[bench] = {"doc": doc, "path": path, "source": stamped_twin(path, bench)}
        for name, (v, unit, direction, row) in file_metrics(path).items():
            metrics[name] = (v, unit, direction, row, bench)
    return metrics, docs


# ----------------------------------------------------------------- default tracking policy

STREAM_PRIMARY = {"decay": "melem_s", "crc32c": "gb_s", "crc32c-records": "ns_per_call"}


def default_role(name: str, row: dict, bench: str, doc: dict):
    """How --add-new tracks a metric: "tracked" (can fail the run), "reference" (a peer's figure,
    shown to gauge the machine's drift, never fails) or None (not tracked). See benches/README.md."""
    kind, rname = row.get("kind"), row.get("name")
    field = name[len(row_key(bench, row)) + 1:]
    isas = (doc.get("machine") or {}).get("cpu_isas") or []
    c_best = f"c/{isas[0]}" if isas else None
    if bench == "profile":
        if kind == "stage":
            return "tracked" if field in ("p50_ms", "p95_ms", "p99_ms") else None
        return "reference" if field == "p50_ms" else None           # the kernel-alone diagnostic
    if bench == "scan":
        if kind == "engram" and rname != "numpy":
            return "tracked" if field == "best_ms" or (
                rname == c_best and field in ("speedup_vs/numpy-peer-1T", "speedup_vs/faiss")) else None
        # single-threaded peers only: a multi-threaded one swings with whatever else runs on the other core
        single = row.get("blas_threads") == 1 or row.get("faiss_threads") == 1
        return "reference" if kind == "peer" and single and field == "best_ms" else None
    if bench == "stream":
        primary = STREAM_PRIMARY.get(row.get("op"))
        if kind == "engram" and rname != "numpy":
            peer = "speedup_vs/numpy-f32" if row.get("op") == "decay" else "speedup_vs/crc32c-pkg"
            return "tracked" if field == primary or (rname == c_best and field == peer) else None
        return "reference" if kind in ("peer", "diagnostic") and field == primary else None
    if bench == "spread":
        if kind == "engram":
            return "tracked" if field == "p50_us" and row.get("path") in ("api", "internal") else None
        return "reference" if kind == "peer" and field == "p50_us" else None
    if kind in (None, "engram"):
        return "tracked" if field in ("best_ms", "p50_ms", "p50_us") else None
    return "reference" if kind == "peer" and field in ("best_ms", "p50_ms", "p50_us") else None


# ----------------------------------------------------------------- baselines

def load_baselines(path: Path) -> dict:
    if not path.exists():
        return {"schema": 1, "threshold_pct": DEFAULT_THRESHOLD, "metrics": []}
    return load_doc(path)


def save_baselines(path: Path, base: dict) -> None:
    base["metrics"] = sorted(base["metrics"], key=lambda e: e["name"])
    base["updated_utc"] = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    path.write_text(json.dumps(base, indent=1) + "\n")


def entry_for(name, value, unit, direction, d, role="tracked") -> dict:
    doc = d["doc"]
    m = doc.get("machine") or {}
    e = {"name": name, "value": value, "unit": unit, "direction": direction,
         "machine": machine_summary(m), "date": m.get("date_utc"), "git": m.get("git"),
         "source": d["source"], "quick": bool(doc.get("quick"))}
    if role != "tracked":
        e["role"] = role
    return e


# ----------------------------------------------------------------- commands

def fmt(v: float) -> str:
    if v == 0:
        return "0"
    a = abs(v)
    if a >= 1000:
        return f"{v:,.0f}"
    if a >= 100:
        return f"{v:.1f}"
    if a >= 1:
        return f"{v:.3f}"
    return f"{v:.4f}"


def median(values):
    v = sorted(values)
    n = len(v)
    return None if n == 0 else (v[n // 2] if n % 2 else 0.5 * (v[n // 2 - 1] + v[n // 2]))


def cmd_compare(args, base) -> int:
    threshold = args.threshold if args.threshold is not None else float(base.get("threshold_pct", DEFAULT_THRESHOLD))
    metrics, docs = latest_metrics(args.results, args.bench)
    entries = [e for e in base.get("metrics", []) if not args.bench or e["name"].split("/", 1)[0] in args.bench]
    if not entries:
        print(f"no tracked metrics in {args.baselines}: run the benches, then tools/regress.py --update --add-new")
        return 0
    n_ref = sum(e.get("role") == "reference" for e in entries)
    shown = args.baselines.relative_to(ROOT) if args.baselines.is_relative_to(ROOT) else args.baselines
    print(f"regress: {len(entries) - n_ref} tracked metrics and {n_ref} peer references ({shown}) vs the latest "
          f"results in {args.results}; threshold {threshold:g}% worse"
          + (" after adjusting for the peers' drift" if args.adjust_for_peers else ""))

    # first pass: changes, and each bench's drift = median "worse %" of its peers (reference metrics)
    measured = []
    drift: dict = {}
    for e in sorted(entries, key=lambda e: e["name"]):
        got = metrics.get(e["name"])
        if got is None:
            measured.append((e, None, None, None, None))
            continue
        latest, bench = got[0], got[4]
        change = 100.0 * (latest - e["value"]) / e["value"] if e["value"] else 0.0
        worse = change if e["direction"] == "lower" else -change
        other = bool(e.get("machine")) and machine_summary(docs[bench]["doc"].get("machine") or {}) != e["machine"]
        measured.append((e, latest, change, worse, bench if not other else "__other__"))
        if e.get("role") == "reference" and not other:
            drift.setdefault(bench, []).append(worse)
    drift = {b: median(v) for b, v in drift.items()}

    for bench, d in docs.items():
        m = d["doc"].get("machine") or {}
        la = m.get("loadavg_at_start")
        dr = drift.get(bench)
        print(f"  {bench:<8} {d['source']}: {m.get('date_utc', '?')}, git {m.get('git', '?')}"
              + (f", load {la[0]:.1f}" if la else "") + (", --quick run (fewer repeats)" if d["doc"].get("quick") else "")
              + ("" if dr is None else "; peers unchanged since the baseline (median)" if abs(dr) < 0.05 else
                 f"; peers {abs(dr):.1f}% {'slower' if dr > 0 else 'faster'} than at the baseline (median)"))

    rows, counts = [], {"ok": 0, "REGRESSED": 0, "improved": 0, "missing": 0, "other-machine": 0}
    refs = {"peer ok": 0, "peer moved": 0}
    for e, latest, change, worse, bench in measured:
        ref = e.get("role") == "reference"
        adj = None
        if latest is None:
            status = "missing"
        elif bench == "__other__":
            status = "other-machine"
        else:
            # speed-ups are already relative to a peer of the same run: no second adjustment
            adj = worse - drift[bench] if bench in drift and "/speedup_vs/" not in e["name"] else None
            judged = adj if (args.adjust_for_peers and adj is not None and not ref) else worse
            if ref:
                status = "peer moved" if abs(worse) > threshold else "peer ok"
            elif judged > threshold:
                status = "REGRESSED"
            elif judged < -threshold:
                status = "improved"
            else:
                status = "ok"
        if status in refs:
            refs[status] += 1
        elif ref and status == "missing":
            refs.setdefault("peer missing", 0)
            refs["peer missing"] += 1
        else:
            counts[status] += 1
        rows.append((e, latest, change, adj, status, ref))

    width = max(len(r[0]["name"]) for r in rows)
    hdr = (f"{'metric':<{width}} {'baseline':>10} {'latest':>10} {'unit':<8} {'change':>8} {'vs peers':>9}  "
           f"{'better':<6}  status")
    print()
    print(hdr)
    print("-" * len(hdr))
    for e, latest, change, adj, status, ref in rows:
        if args.only_flagged and status in ("ok", "peer ok"):
            continue
        if args.only_flagged and ref:
            continue
        # "vs peers": this metric's "worse %" minus its bench's median peer "worse %" (positive = worse)
        print(f"{e['name']:<{width}} {fmt(e['value']):>10} {fmt(latest) if latest is not None else '-':>10} "
              f"{e['unit']:<8} {(f'{change:+.1f}%' if change is not None else '-'):>8} "
              f"{(f'{adj:+.1f}%' if adj is not None and not ref else '-'):>9}  {e['direction']:<6}  {status}")
    print()
    print("  ".join(f"{k}: {v}" for k, v in counts.items()) + "   |   " + "  ".join(f"{k}: {v}" for k, v in refs.items()))
    print("change: latest vs baseline; vs peers: how much worse (+) or better (-) than the bench's peers moved "
          "(median of its peer references; a shift of the machine moves both)")
    if counts["other-machine"]:
        print("other-machine: the latest results come from another machine kind than the baseline "
              "(compare like with like, or re-seed with --update on this machine)")
    if counts["missing"]:
        print("missing: tracked metrics the latest results do not have (a bench not run, a --quick run without "
              "that size, or renamed keys: --update --prune drops them)")
    if counts["REGRESSED"]:
        moved = [b for b, v in drift.items() if v is not None and abs(v) > threshold]
        print(f"{counts['REGRESSED']} metric(s) more than {threshold:g}% worse. The machine is shared and noisy and "
              "these are best-of-N figures: re-run the bench(es) and regress again before believing a flag.")
        if moved:
            print(f"The peers of {', '.join(moved)} moved by more than {threshold:g}% too: much of the change is "
                  "likely the machine (see 'vs peers'; --adjust-for-peers judges by that instead).")
    fail = counts["REGRESSED"] > 0 or (args.strict and (counts["missing"] or counts["other-machine"]))
    return 1 if fail else 0


def history_files(results: Path, bench: str):
    files = []
    for p in results.glob(f"{bench}-*.json"):
        m = STAMP.match(p.name)
        if m and m.group("bench") == bench:
            files.append((m.group("stamp"), p))
    return [p for _, p in sorted(files)]


def cmd_history(args, base) -> int:
    pattern = args.history
    bench = pattern.split("/", 1)[0]
    if any(c in bench for c in "*?["):
        sys.exit("--history: the first component (the bench: scan, stream, profile, spread, ...) must be literal")
    files = history_files(args.results, bench)
    if not files:
        sys.exit(f"no result files {bench}-<stamp>.json in {args.results}")
    series = {}
    for p in files:
        doc = load_doc(p)
        mets = file_metrics(p)
        m = doc.get("machine") or {}
        for name, (v, unit, direction, _row) in mets.items():
            if fnmatch.fnmatchcase(name, pattern):
                series.setdefault(name, []).append((p, doc, m, v, unit, direction))
    if not series:
        sys.exit(f"no metric matches {pattern!r} in {len(files)} {bench} result files (try --list '{bench}/*')")
    baseline = {e["name"]: e for e in base.get("metrics", [])}
    names = sorted(series)
    if len(names) > args.max_history:
        print(f"{len(names)} metrics match; showing the first {args.max_history} (--max-history)")
        names = names[:args.max_history]
    for name in names:
        pts = series[name]
        unit, direction = pts[0][4], pts[0][5]
        b = baseline.get(name)
        print(f"\n{name}  ({unit}, {direction} is better)"
              + (f"; baseline {fmt(b['value'])} from {b.get('source')}" if b else "; not tracked"))
        hdr = f"  {'run (UTC)':<22} {'git':<16} {'value':>10} {'vs first':>9} {'vs base':>9}  {'load':>5}  note"
        print(hdr)
        print("  " + "-" * (len(hdr) - 2))
        first = pts[0][3]
        for p, doc, m, v, _, _ in pts:
            la = m.get("loadavg_at_start")
            vs_first = f"{100 * (v - first) / first:+.1f}%" if first else "-"
            vs_base = f"{100 * (v - b['value']) / b['value']:+.1f}%" if b and b["value"] else "-"
            note = "quick" if doc.get("quick") else ""
            print(f"  {str(m.get('date_utc', '?'))[:19]:<22} {str(m.get('git', '?'))[:16]:<16} {fmt(v):>10} "
                  f"{vs_first:>9} {vs_base:>9}  {(f'{la[0]:.1f}' if la else '-'):>5}  {note}")
    return 0


def cmd_list(args, base) -> int:
    metrics, _ = latest_metrics(args.results, args.bench)
    tracked = {e["name"] for e in base.get("metrics", [])}
    pattern = args.list or "*"
    names = sorted(n for n in metrics if fnmatch.fnmatchcase(n, pattern))
    for n in names:
        v, unit, direction, _row, _bench = metrics[n]
        print(f"{'*' if n in tracked else ' '} {n}  {fmt(v)} {unit} ({direction} is better)")
    print(f"{len(names)} metrics ({sum(n in tracked for n in names)} tracked, marked *)")
    return 0


def recent_medians(results: Path, docs: dict, runs: int, metrics: dict) -> dict:
    """metrics with each value replaced by its median over the bench's `runs` most recent result files
    that match the latest one (same machine summary, same --quick); docs[bench]["source"] notes the runs."""
    out = dict(metrics)
    for bench, d in docs.items():
        want_machine = machine_summary(d["doc"].get("machine") or {})
        want_quick = bool(d["doc"].get("quick"))
        picked = []
        for p in reversed(history_files(results, bench)):
            doc = load_doc(p)
            if machine_summary(doc.get("machine") or {}) == want_machine and bool(doc.get("quick")) == want_quick:
                picked.append(p)
            if len(picked) == runs:
                break
        if len(picked) < 2:
            continue
        values: dict = {}
        for p in picked:
            for name, (v, *_rest) in file_metrics(p).items():
                values.setdefault(name, []).append(v)
        for name, (v, unit, direction, row, b) in metrics.items():
            if b == bench and values.get(name):
                out[name] = (median(values[name]), unit, direction, row, b)
        d["source"] = f"median of {len(picked)} runs: {picked[-1].name} .. {picked[0].name}"
        print(f"  {bench}: median of {len(picked)} runs ({picked[-1].name} .. {picked[0].name})")
    return out


def cmd_update(args, base) -> int:
    metrics, docs = latest_metrics(args.results, args.bench)
    if args.runs > 1:
        metrics = recent_medians(args.results, docs, args.runs, metrics)
    entries = {e["name"]: e for e in base.get("metrics", [])}
    updated, added, dropped, kept = 0, 0, 0, []
    for name in list(entries):
        if args.bench and name.split("/", 1)[0] not in args.bench:
            continue                  # another bench's entry: left as it is
        got = metrics.get(name)
        if got is None:
            if args.prune:
                del entries[name]
                dropped += 1
            else:
                kept.append(name)
            continue
        v, unit, direction, _row, bench = got
        entries[name] = entry_for(name, v, unit, direction, docs[bench], entries[name].get("role", "tracked"))
        updated += 1
    if args.add_new:
        for name, (v, unit, direction, row, bench) in metrics.items():
            if name in entries:
                continue
            doc = docs[bench]["doc"]
            role = ("tracked" if fnmatch.fnmatchcase(name, args.match) else None) if args.match \
                else default_role(name, row, bench, doc)
            if role:
                entries[name] = entry_for(name, v, unit, direction, docs[bench], role)
                added += 1
    base["metrics"] = list(entries.values())
    base.setdefault("schema", 1)
    base.setdefault("threshold_pct", DEFAULT_THRESHOLD)
    base["note"] = ("Baselines for tools/regress.py: one entry per tracked metric (best-of-N times, rates, "
                    "percentiles, speed-ups vs peers in the same run). Valid only on the machine kind named in each "
                    "entry. Refresh with: python tools/regress.py --update (see benches/README.md).")
    save_baselines(args.baselines, base)
    n_ref = sum(e.get("role") == "reference" for e in entries.values())
    print(f"{args.baselines}: {updated} updated, {added} added, {dropped} dropped; "
          f"{len(entries) - n_ref} tracked metrics and {n_ref} peer references")
    if kept:
        print(f"{len(kept)} tracked metrics not in the latest results were left as they were (--prune drops them), "
              f"e.g. {kept[0]}")
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n\n", 2)[2])
    ap.add_argument("--results", type=Path, default=RESULTS, help=f"result directory (default {RESULTS})")
    ap.add_argument("--baselines", type=Path, default=BASELINES, help=f"baselines file (default {BASELINES})")
    ap.add_argument("--threshold", type=float, default=None, metavar="PCT",
                    help="percent worse that counts as a regression (default: baselines' threshold_pct, 5)")
    ap.add_argument("--bench", action="append", metavar="NAME",
                    help="only this bench's results and baselines (repeatable: --bench scan --bench stream)")
    ap.add_argument("--only-flagged", action="store_true", help="print only metrics that are not 'ok'")
    ap.add_argument("--strict", action="store_true", help="also fail on missing and other-machine metrics")
    ap.add_argument("--adjust-for-peers", action="store_true",
                    help="judge each metric by its change relative to its bench's peers (the 'vs peers' column)")
    ap.add_argument("--history", metavar="METRIC", help="print METRIC (a name or glob) across all timestamped results")
    ap.add_argument("--max-history", type=int, default=20, help="at most this many metrics for a --history glob")
    ap.add_argument("--list", nargs="?", const="*", metavar="GLOB", help="list the metrics in the latest results")
    ap.add_argument("--update", action="store_true", help="rewrite the baselines from the latest results")
    ap.add_argument("--add-new", action="store_true", help="with --update: also track new metrics (default policy)")
    ap.add_argument("--match", metavar="GLOB", help="with --add-new: add the metrics matching GLOB instead of the policy")
    ap.add_argument("--prune", action="store_true", help="with --update: drop tracked metrics the latest results lack")
    ap.add_argument("--runs", type=int, default=1, metavar="N",
                    help="with --update: each value is the median over the N most recent runs of its bench "
                         "(same machine, same --quick as the latest; default 1: the latest run only)")
    args = ap.parse_args(argv)
    if (args.add_new or args.prune) and not args.update:
        ap.error("--add-new and --prune go with --update")
    if args.runs != 1 and not args.update:
        ap.error("--runs goes with --update")
    if args.match and not args.add_new:
        ap.error("--match goes with --update --add-new")
    base = load_baselines(args.baselines)
    if args.history:
        return cmd_history(args, base)
    if args.list is not None:
        return cmd_list(args, base)
    if args.update:
        return cmd_update(args, base)
    return cmd_compare(args, base)


if __name__ == "__main__":
    sys.exit(main())

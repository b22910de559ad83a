#!/usr/bin/env python3
"""Turns bench/harness.py's runs.jsonl (and the signing ceilings) into the summary tables, the
target checklist and an SVG chart. Standard library only.

    report.py RESULTS_DIR     reads runs.jsonl, ceiling.json, machine.txt; writes summary.md
                              and throughput.svg there and prints summary.md
"""

import html
import json
import math
import os
import statistics
import sys

LABELS = {
    "discovery": "discovery",
    "jwks": "JWKS",
    "cc-rs256": "client credentials, RS256 JWT",
    "cc-es256": "client credentials, ES256 JWT",
    "cc-eddsa": "client credentials, EdDSA JWT",
    "introspection": "introspection",
    "userinfo": "userinfo",
    "login": "login with a session (authorize + code exchange)",
    "refresh": "refresh grant (rotation)",
}
# The peer line each workload is compared with: (workload, variant).
REFERENCE = {
    "discovery": ("discovery", "peer"),
    "jwks": ("jwks", "peer"),
    "cc-rs256": ("cc-rs256", "peer"),
    "cc-es256": ("cc-rs256", "peer"),
    "cc-eddsa": ("cc-rs256", "peer"),
    "introspection": ("introspection", "peer"),
    "userinfo": ("userinfo", "peer"),
    "login": ("login", "peer"),
}
ORDER = list(LABELS)


def label(wl, variant):
    if wl == "cc-rs256" and variant == "peer opaque":
        return "client credentials, opaque token"
    return LABELS.get(wl, wl)


def load(results):
    runs = []
    with open(os.path.join(results, "runs.jsonl")) as f:
        for line in f:
            if line.strip():
                runs.append(json.loads(line))
    # The ceiling is measured before and after the runs; the better figure of each counts.
    ceiling = {}
    for name in ("ceiling.json", "ceiling-after.json"):
        path = os.path.join(results, name)
        if os.path.exists(path):
            with open(path) as f:
                for alg, figures in json.load(f).items():
                    best = ceiling.setdefault(alg, {})
                    for k, v in figures.items():
                        best[k] = max(best.get(k, 0), v)
    machine = ""
    path = os.path.join(results, "machine.txt")
    if os.path.exists(path):
        with open(path) as f:
            machine = f.read().strip()
    return runs, ceiling, machine


def group(runs):
    out = {}
    for r in runs:
        out.setdefault((r["workload"], r["variant"]), []).append(r)
    return out


def med(rs, key):
    return statistics.median(r[key] for r in rs)


def summarize(rs):
    return {
        "n": len(rs),
        "rate": med(rs, "rate"),
        "rate_min": min(r["rate"] for r in rs),
        "rate_max": max(r["rate"] for r in rs),
        "p50": med(rs, "p50_ms"),
        "p99": med(rs, "p99_ms"),
        "cpu": med(rs, "cpu_us_per_op"),
        "hwm": max(r["hwm_kb"] for r in rs) / 1024,
        "rss_after": max(r["rss_after_kb"] for r in rs) / 1024,
        "idle": med(rs, "idle_rss_kb") / 1024,
        "ready": med(rs, "ready_ms"),
        "errors": sum(r["errors"] for r in rs),
        "wrk_cpu": med(rs, "wrk_cpu_s"),
        "cpu_s": med(rs, "cpu_s"),
        "foreign": max(r.get("foreign_cpu_share", 0.0) for r in rs),
        "cs": med(rs, "ctx_switches_per_op") if all("ctx_switches_per_op" in r for r in rs) else float("nan"),
    }


def fmt_rate(x):
    return f"{x:,.0f}"


def main():
    results = sys.argv[1]
    runs, ceiling, machine = load(results)
    groups = group(runs)
    stats = {k: summarize(v) for k, v in groups.items()}
    main_keys = sorted(
        (k for k in stats if "@" not in k[0]),
        key=lambda k: (ORDER.index(k[0]) if k[0] in ORDER else 99, k[1] != "idbridge", k[1]),
    )
    lines = []
    w = lines.append
    if machine:
        w("Machine: " + machine)
        w("")
    w("| workload | server | per s, median (min-max) | p50 ms | p99 ms | server CPU us per op | peak RSS MB | context switches per op | vs peer: throughput | vs peer: CPU per op | errors | other load, max |")
    w("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for key in main_keys:
        s = stats[key]
        wl, variant = key
        ref = REFERENCE.get(wl)
        ratio = cpu_ratio = ""
        if ref and ref in stats and not variant.startswith("peer"):
            r = stats[ref]
            ratio = f"{s['rate'] / r['rate']:.2f}x"
            cpu_ratio = f"{s['cpu'] / r['cpu']:.2f}"
        w(
            f"| {label(wl, variant)} | {variant} | {fmt_rate(s['rate'])} ({fmt_rate(s['rate_min'])}-{fmt_rate(s['rate_max'])}) "
            f"| {s['p50']:.2f} | {s['p99']:.2f} | {s['cpu']:.0f} | {s['hwm']:.1f} | {s['cs']:.1f} | {ratio} | {cpu_ratio} | {s['errors']} | {s['foreign']:.0%} |"
        )
    w("")
    w("For login and refresh, a completed operation is a whole flow (login: the `/auth` redirect with a code and the")
    w("code exchange; refresh: one rotation), and the latencies are those of the individual HTTP requests.")
    w("CPU per op is the server process's user+system CPU time over the run divided by completed operations.")
    w("Other load is the share of the machine's CPU (user and system time) used by processes other than the")
    w("server and wrk during a run: other work on a shared machine, and for the PostgreSQL lines the database")
    w("server itself, whose CPU is not in the CPU-per-op column. Figures from runs with a high share are pessimistic.")
    w("")

    # Start-up and memory.
    idb = [r for r in runs if r["server"] == "idbridge"]
    sqlite_idb = [r for r in idb if "pg" not in r["variant"]]
    peer = [r for r in runs if r["server"] == "peer"]
    mem = {}
    if idb:
        mem = {
            "idle_med": statistics.median(r["idle_rss_kb"] for r in sqlite_idb) / 1024,
            "idle_max": max(r["idle_rss_kb"] for r in sqlite_idb) / 1024,
            "after_max": max(r["rss_after_kb"] for r in sqlite_idb) / 1024,
            "hwm_max": max(r["hwm_kb"] for r in sqlite_idb) / 1024,
            "ready_med": statistics.median(r["ready_ms"] for r in sqlite_idb),
            "ready_max": max(r["ready_ms"] for r in sqlite_idb),
            "n": len(sqlite_idb),
        }
        w("| start-up and memory | idbridge (SQLite) | " + ("idbridge (PostgreSQL) | " if any("pg" in r["variant"] for r in idb) else "") + ("peer |" if peer else ""))
        pg = [r for r in idb if "pg" in r["variant"]]
        w("| --- | --- | " + ("--- | " if pg else "") + ("--- |" if peer else ""))

        def row(label, fn):
            cells = [fn(sqlite_idb)]
            if pg:
                cells.append(fn(pg))
            if peer:
                cells.append(fn(peer))
            w(f"| {label} | " + " | ".join(cells) + " |")

        row("starts measured", lambda rs: str(len(rs)))
        row("spawn to ready, median (max) ms", lambda rs: f"{statistics.median(r['ready_ms'] for r in rs):.1f} ({max(r['ready_ms'] for r in rs):.1f})")
        row("idle RSS after start, median (max) MB", lambda rs: f"{statistics.median(r['idle_rss_kb'] for r in rs) / 1024:.1f} ({max(r['idle_rss_kb'] for r in rs) / 1024:.1f})")
        row("RSS after the load, max MB", lambda rs: f"{max(r['rss_after_kb'] for r in rs) / 1024:.1f}")
        row("peak RSS (VmHWM), max MB", lambda rs: f"{max(r['hwm_kb'] for r in rs) / 1024:.1f}")
        w("")
        w("Ready means the first 200 from `/readyz` (idbridge) or the discovery document (peer), polled every")
        w("millisecond from the moment the process is spawned, over a database that already holds the keys.")
        w("")

    # Cost growth.
    growth = sorted({(r["workload"].split("@")[0], r["level"]) for r in runs if "@" in r["workload"]}, key=lambda x: (x[0], x[1]))
    gstats = {}
    if growth:
        w("| cost growth (SQLite) | stored refresh tokens | stored sessions | per s, median | p50 ms | p99 ms, median (min-max) | CPU us per op |")
        w("| --- | --- | --- | --- | --- | --- | --- |")
        for wl, level in growth:
            rs = [r for r in runs if r["workload"] == f"{wl}@{level}"]
            s = summarize(rs)
            gstats[(wl, level)] = s
            w(
                f"| {LABELS.get(wl, wl)} | {statistics.median(r['stored_refresh_tokens'] for r in rs):,.0f} "
                f"| {statistics.median(r['stored_sessions'] for r in rs):,.0f} | {fmt_rate(s['rate'])} | {s['p50']:.2f} "
                f"| {s['p99']:.2f} ({min(r['p99_ms'] for r in rs):.2f}-{max(r['p99_ms'] for r in rs):.2f}) | {s['cpu']:.0f} |"
            )
        w("")

    # Signing ceilings.
    if ceiling:
        w("| signing ceiling (aws-lc-rs, pre-parsed key, whole JWS) | 1 thread | 2 threads | raw signature, 2 threads | jsonwebtoken::encode, 2 threads |")
        w("| --- | --- | --- | --- | --- |")
        for alg in ("RS256", "ES256", "EdDSA"):
            c = ceiling.get(alg)
            if c:
                w(f"| {alg} | {fmt_rate(c['jws_1'])}/s | {fmt_rate(c['jws_2'])}/s | {fmt_rate(c['raw_2'])}/s | {fmt_rate(c['jsonwebtoken_2'])}/s |")
        w("")

    # Targets.
    checks = []

    def get(wl, variant="idbridge"):
        return stats.get((wl, variant))

    def ratio_check(name, wl, variant, ref, need):
        a, b = get(wl, variant), stats.get(ref)
        if a and b:
            x = a["rate"] / b["rate"]
            checks.append((name, f"{x:.2f}x", x >= need))

    ratio_check("client credentials RS256 >= 2x the peer (RS256 JWT)", "cc-rs256", "idbridge", ("cc-rs256", "peer"), 2)
    if ceiling and get("cc-rs256"):
        x = get("cc-rs256")["rate"] / ceiling["RS256"]["jws_2"]
        checks.append(("client credentials RS256 >= 75% of the two-core RS256 ceiling", f"{x:.0%}", x >= 0.75))
    ratio_check("client credentials ES256 >= 10x the peer (RS256 JWT)", "cc-es256", "idbridge ES256", ("cc-rs256", "peer"), 10)
    ratio_check("client credentials EdDSA >= 10x the peer (RS256 JWT)", "cc-eddsa", "idbridge EdDSA", ("cc-rs256", "peer"), 10)
    for wl in ("introspection", "userinfo", "discovery", "jwks"):
        a, b = get(wl), stats.get((wl, "peer"))
        if a and b:
            x = a["rate"] / b["rate"]
            checks.append((f"{LABELS[wl]} >= 3x the peer's throughput", f"{x:.2f}x", x >= 3))
            y = a["cpu"] / b["cpu"]
            checks.append((f"{LABELS[wl]} CPU per request <= 1/5 of the peer's", f"{y:.3f} ({a['cpu']:.0f} vs {b['cpu']:.0f} us)", y <= 0.2))
    if ceiling and get("login"):
        need = 0.6 * ceiling["RS256"]["jws_2"] / 2
        x = get("login")["rate"]
        checks.append((f"login with a session >= 60% of half the two-core RS256 ceiling ({need:,.0f}/s)", f"{x:,.0f}/s ({x / (ceiling['RS256']['jws_2'] / 2):.0%} of half)", x >= need))
    if mem:
        checks.append(("idle memory <= 17 MB", f"median {mem['idle_med']:.1f} MB, max {mem['idle_max']:.1f} MB", mem["idle_max"] <= 17))
        checks.append(("memory after the load <= 40 MB", f"max RSS after load {mem['after_max']:.1f} MB (peak {mem['hwm_max']:.1f} MB)", mem["after_max"] <= 40))
        checks.append(("ready in < 100 ms with existing keys", f"median {mem['ready_med']:.1f} ms, max {mem['ready_max']:.1f} ms", mem["ready_max"] < 100))
    levels = sorted({lv for _, lv in growth})
    if len(levels) >= 2:
        for wl in sorted({wl for wl, _ in growth}):
            lo, hi = gstats.get((wl, levels[0])), gstats.get((wl, levels[-1]))
            if lo and hi:
                x = hi["p99"] / lo["p99"]
                checks.append((f"{wl}: token endpoint p99 within 1.5x from {levels[0]:,} to {levels[-1]:,} rows", f"{x:.2f}x ({lo['p99']:.2f} -> {hi['p99']:.2f} ms)", x <= 1.5))
    if checks:
        w("| target | measured | met |")
        w("| --- | --- | --- |")
        for name, value, ok in checks:
            w(f"| {name} | {value} | {'yes' if ok else '**no**'} |")
        w("")

    text = "\n".join(lines) + "\n"
    with open(os.path.join(results, "summary.md"), "w") as f:
        f.write(text)
    with open(os.path.join(results, "targets.json"), "w") as f:
        json.dump([{"target": n, "measured": v, "met": ok} for n, v, ok in checks], f, indent=1)
    write_svg(os.path.join(results, "throughput.svg"), stats, main_keys)
    print(text)


def write_svg(path, stats, keys):
    """Horizontal bars on a log scale: operations per second, and server CPU per operation."""
    rows = [(label(wl, variant), variant, stats[(wl, variant)]) for wl, variant in keys]
    bar_h, gap, left, width = 16, 4, 330, 300
    panel_gap = 60
    top = 50
    height = top + len(rows) * (bar_h + gap) + 50
    total_w = left + width + panel_gap + 150 + width + 20

    def scale(v, lo, hi):
        v = max(v, lo)
        return (math.log10(v) - math.log10(lo)) / (math.log10(hi) - math.log10(lo)) * width

    rates = [s["rate"] for _, _, s in rows] or [1]
    cpus = [s["cpu"] for _, _, s in rows] or [1]
    r_lo, r_hi = 10 ** math.floor(math.log10(min(rates))), 10 ** math.ceil(math.log10(max(rates)))
    c_lo, c_hi = 10 ** math.floor(math.log10(min(cpus))), 10 ** math.ceil(math.log10(max(cpus)))
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{total_w}" height="{height}" font-family="sans-serif" font-size="11">',
        '<rect width="100%" height="100%" fill="white"/>',
        f'<text x="{left}" y="20" font-size="13" font-weight="bold">operations per second (log scale, median of runs)</text>',
        f'<text x="{left + width + panel_gap + 150}" y="20" font-size="13" font-weight="bold">server CPU us per operation (log)</text>',
    ]
    x2 = left + width + panel_gap + 150

    def axis(x0, lo, hi):
        d = lo
        while d <= hi * 1.0001:
            x = x0 + scale(d, lo, hi)
            out.append(f'<line x1="{x:.1f}" y1="{top - 8}" x2="{x:.1f}" y2="{height - 40}" stroke="#ddd"/>')
            out.append(f'<text x="{x:.1f}" y="{height - 26}" text-anchor="middle" fill="#555">{d:,.0f}</text>')
            d *= 10

    axis(left, r_lo, r_hi)
    axis(x2, c_lo, c_hi)
    for i, (name, variant, s) in enumerate(rows):
        y = top + i * (bar_h + gap)
        color = "#c0504d" if variant.startswith("peer") else ("#4f81bd" if "pg" not in variant else "#9bbb59")
        out.append(f'<text x="{left - 6}" y="{y + 12}" text-anchor="end">{html.escape(name)} - {html.escape(variant)}</text>')
        wv = scale(s["rate"], r_lo, r_hi)
        out.append(f'<rect x="{left}" y="{y}" width="{wv:.1f}" height="{bar_h}" fill="{color}"/>')
        out.append(f'<text x="{left + wv + 4:.1f}" y="{y + 12}">{s["rate"]:,.0f}</text>')
        wc = scale(s["cpu"], c_lo, c_hi)
        out.append(f'<rect x="{x2}" y="{y}" width="{wc:.1f}" height="{bar_h}" fill="{color}"/>')
        out.append(f'<text x="{x2 + wc + 4:.1f}" y="{y + 12}">{s["cpu"]:,.0f}</text>')
    legend_y = height - 10
    for j, (name, color) in enumerate((("idbridge, SQLite", "#4f81bd"), ("idbridge, PostgreSQL", "#9bbb59"), ("peer (oidc-provider 9)", "#c0504d"))):
        x = left + j * 170
        out.append(f'<rect x="{x}" y="{legend_y - 10}" width="12" height="12" fill="{color}"/>')
        out.append(f'<text x="{x + 16}" y="{legend_y}">{name}</text>')
    out.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(out) + "\n")


if __name__ == "__main__":
    main()

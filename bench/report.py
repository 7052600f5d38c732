#!/usr/bin/env python3
"""Turns bench/load.sh's measurements into the results table and the verdicts on
issue #4's targets; prints them, and with --write puts them into BENCHMARKS.md
between the load-results markers."""

import argparse
import datetime
import os
import platform
import statistics
import sys

BEGIN = "<!-- load-results:begin -->"
END = "<!-- load-results:end -->"
LABELS = {
    "direct": "direct upstream (nginx `return 200`)",
    "nginx": "nginx `proxy_pass`, keep-alive pool (same request)",
    "nginx-nocookie": "nginx `proxy_pass`, request without the cookie (for reference)",
    "hyper-floor": "bare hyper proxy, no auth (`examples/hyper_floor.rs`, same request)",
    "portcullis": "portcullis, signed in",
    "portcullis-anonymous": "portcullis, anonymous (302 to sign-in)",
    "portcullis-redis": "portcullis, signed in, `store = \"redis\"` (cached; CPU and RSS include redis-server)",
}
RSS_LIMIT_KB = 20 * 1024
# The RSS-at-256 verdict stands only if this many client connections were open
# when RSS was sampled.
RSS_CONNECTIONS = 256
# RSS counts as flat when no later sample exceeds the first warm one by more than
# this. A fall is not growth: idle upstream connections close after a minute and
# their memory goes back.
FLAT_TOLERANCE_KB = 1024


def read_runs(path):
    runs = {}
    with open(path) as f:
        for line in f:
            target, _round, requests, duration_us, p50, p99, ticks, rss, refreshed = line.split("\t")
            runs.setdefault(target, []).append(
                {
                    "requests": int(requests),
                    "rps": int(requests) / (int(duration_us) / 1e6),
                    "p50": int(p50),
                    "p99": int(p99),
                    "ticks": int(ticks),
                    "rss": int(rss),
                    "refreshed": int(refreshed),
                }
            )
    return runs


def summarise(runs, clk_tck):
    out = {}
    for target, rs in runs.items():
        rps = [r["rps"] for r in rs]
        requests = sum(r["requests"] for r in rs)
        out[target] = {
            "rps": statistics.median(rps),
            "rps_min": min(rps),
            "rps_max": max(rps),
            "p50": statistics.median(r["p50"] for r in rs),
            "p99": statistics.median(r["p99"] for r in rs),
            # Summed over the rounds: clock ticks are coarse (10 ms).
            "cpu_us": sum(r["ticks"] for r in rs) * 1e6 / clk_tck / requests,
            "rss": rs[-1]["rss"],
            "refreshed": sum(r["refreshed"] for r in rs),
        }
    return out


def read_memory(path):
    """The runs with 256 connections, by kind ("rss256": portcullis, "floor256":
    the hyper floor, "nginx256": nginx; the last two absent from older runs),
    each as RSS (kB, nginx's master and worker summed) and the open
    connections counted then (an int, or None when the count was not a number);
    and portcullis' series across requests."""
    at256, series = {}, []
    with open(path) as f:
        for line in f:
            kind, a, b = line.rstrip("\n").split("\t")
            if kind in ("rss256", "floor256", "nginx256"):
                try:
                    conns = int(b.strip())
                except ValueError:
                    conns = None
                at256[kind] = (int(a), conns)
            else:
                series.append((int(a), int(b)))
    return at256, series


def rss256_cell(at256, kind):
    """RSS at 256 connections for `kind`: the kB, or None unless all 256 were
    open when RSS was sampled (no verdict and no ratio then), and its text."""
    if kind not in at256:
        return None, "not recorded"
    kb, conns = at256[kind]
    if conns is None:
        return None, f"{mb(kb)} (open connections not counted)"
    if conns != RSS_CONNECTIONS:
        return None, f"{mb(kb)} with {conns} connections open, not {RSS_CONNECTIONS}"
    return kb, f"{mb(kb)} ({conns} connections open)"


def ratio(a, b):
    """`a / b` as a table cell; "–" when either is missing or `b` is zero (a run
    too short for a single clock tick, say)."""
    return f"{a / b:.2f}×" if a is not None and b else "–"


def read_sign_ins(path, clk_tck):
    with open(path) as f:
        fields = dict(item.split("=", 1) for item in f.read().split())
    done = int(fields["sign_ins"])
    cpu_us = int(fields["cpu_ticks"]) * 1e6 / clk_tck / done if done else float("inf")
    return float(fields["per_second"]), cpu_us, done


def us(v):
    return f"{v / 1000:.2f} ms" if v >= 1000 else f"{v:.0f} µs"


def mb(kb):
    return f"{kb / 1024:.1f} MB"


def verdict(ok):
    return "**met**" if ok else "**not met**"


def render(args, s, memory, sign_ins):
    direct, nginx = s["direct"], s["nginx"]
    model = "unknown CPU"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        f"Measured {now} on {os.cpu_count()} × {model}, Linux {platform.release()}; "
        f"nginx {args.nginx_version}, wrk {args.wrk_version}.",
        "",
        f"Command: `{args.command}` (wrk -t1 -c{args.connections} -d{args.duration}s per run, "
        f"{args.rounds} interleaved round{'s' if args.rounds != 1 else ''}; servers pinned to "
        "core 0, wrk to core 1; every response checked for status and exact body, which "
        "names the identity and cookie the upstream received).",
        "",
        "| target | req/s median (min–max) | p50 | p99 | server CPU per request | RSS after | "
        "req/s vs direct | req/s vs nginx | CPU vs nginx |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    # The ratios and the verdicts compare with "nginx", which gets the same request as
    # portcullis; "nginx-nocookie" and "hyper-floor" are only shown (and absent from
    # older runs).
    shown = [
        "direct",
        "nginx",
        "nginx-nocookie",
        "hyper-floor",
        "portcullis",
        "portcullis-anonymous",
        "portcullis-redis",
    ]
    for target in shown:
        if target not in s:
            continue
        t = s[target]
        lines.append(
            f"| {LABELS[target]} | {t['rps']:,.0f} ({t['rps_min']:,.0f}–{t['rps_max']:,.0f}) "
            f"| {us(t['p50'])} | {us(t['p99'])} | {t['cpu_us']:.1f} µs | {mb(t['rss'])} "
            f"| {ratio(t['rps'], direct['rps'])} | {ratio(t['rps'], nginx['rps'])} "
            f"| {ratio(t['cpu_us'], nginx['cpu_us'])} |"
        )
    signed, anon = s["portcullis"], s["portcullis-anonymous"]
    at256, series = memory
    rss256, rss256_measured = rss256_cell(at256, "rss256")
    rss256_verdict = "**not measured**" if rss256 is None else verdict(rss256 <= RSS_LIMIT_KB)
    warm = series[1][1] if len(series) > 1 else series[0][1]
    last_requests, last = series[-1]
    flat = max(r for _, r in series[1:] or series) - warm <= FLAT_TOLERANCE_KB
    peak = max(r for _, r in series)
    sign_in_rate, sign_in_cpu, sign_in_count = sign_ins
    cpu_bound_rate = 1e6 / sign_in_cpu if sign_in_cpu else float("inf")
    cookie = f" of {args.cookie_bytes:,} bytes" if args.cookie_bytes is not None else ""
    proxies = "nginx, the hyper floor" if "hyper-floor" in s else "nginx"
    same = (
        f"The direct upstream, {proxies} and signed-in portcullis all get the identical request: "
        f"the same headers, the `Cookie` with the session cookie{cookie} included (only the "
        "port in `Host` differs); the ratios and the verdicts compare with that nginx row."
    )
    if "nginx-nocookie" in s:
        same += " The nginx row without the cookie is what earlier runs measured, shown for comparison."
    lines += [
        "",
        same,
        "",
        f"Session cookie refreshed by portcullis during the signed-in runs: {signed['refreshed']} times "
        "(`idle_timeout` is unset, so none are expected; refresh handling is not exercised).",
        "",
        "| target (issue #4) | measured | verdict |",
        "|---|---|---|",
        f"| signed-in GET throughput ≥ 1.0× nginx proxy_pass | {ratio(signed['rps'], nginx['rps'])} "
        f"| {verdict(signed['rps'] >= nginx['rps'])} |",
        f"| server CPU per request ≤ 1.0× nginx | {signed['cpu_us']:.1f} µs vs {nginx['cpu_us']:.1f} µs "
        f"= {ratio(signed['cpu_us'], nginx['cpu_us'])} | {verdict(signed['cpu_us'] <= nginx['cpu_us'])} |",
        f"| p99 at {args.connections} connections no worse than nginx | {us(signed['p99'])} vs "
        f"{us(nginx['p99'])} | {verdict(signed['p99'] <= nginx['p99'])} |",
        f"| anonymous 302 at least as fast as signed-in | {anon['rps']:,.0f} vs {signed['rps']:,.0f} req/s "
        f"| {verdict(anon['rps'] >= signed['rps'])} |",
        f"| RSS ≤ 20 MB with 256 keep-alive connections | {rss256_measured} | {rss256_verdict} |",
        f"| RSS flat across 1M requests | {mb(warm)} after the first run, {mb(last)} after "
        f"{last_requests:,} requests (peak {mb(peak)}) | {verdict(flat and last_requests >= 1_000_000)} |",
        f"| ≥ 1,000 sign-ins/s (callback: code exchange, id_token verification, JWKS cached) "
        f"| {sign_in_rate:,.0f}/s end to end ({sign_in_count:,} sign-ins, the demo provider and the "
        f"client sharing one core); portcullis spent {sign_in_cpu:.0f} µs of CPU per sign-in "
        f"(start + callback) = {cpu_bound_rate:,.0f}/s per core | {verdict(sign_in_rate >= 1000)} |",
        "",
        "RSS across the requests (requests so far: RSS): "
        + ", ".join(f"{n:,}: {mb(r)}" for n, r in series)
        + ".",
    ]
    if "hyper-floor" in s:
        lines += ["", *floor_table(signed, s["hyper-floor"], nginx, at256, args.connections)]
    lines += render_shapes(read_shapes(args.shapes), args.clk_tck)
    return "\n".join(lines)


def floor_table(signed, floor, nginx, at256, connections):
    """portcullis against the hyper floor, and the floor against nginx: how much
    of the gap to nginx is the HTTP stack's rather than portcullis' own."""

    signed_rss, signed_rss_text = rss256_cell(at256, "rss256")
    floor_rss, floor_rss_text = rss256_cell(at256, "floor256")
    nginx_rss, nginx_rss_text = rss256_cell(at256, "nginx256")
    return [
        "**portcullis against the hyper floor.** The floor (`examples/hyper_floor.rs`) is a bare "
        "reverse proxy on hyper's HTTP/1 server and client connections, with the kind of "
        "per-thread pool portcullis uses and no authentication, header rewriting, timers, "
        "HTTP/2 or upgrades (portcullis serves both protocols through hyper-util's `auto` "
        "connection): what a hyper-based proxy reaches here, sent the same request. nginx's RSS "
        "is its master's and worker's summed, so the code they share counts twice.",
        "",
        "| measure | portcullis, signed in | hyper floor | nginx | portcullis / floor "
        "| floor / nginx |",
        "|---|---|---|---|---|---|",
        f"| req/s median | {signed['rps']:,.0f} | {floor['rps']:,.0f} | {nginx['rps']:,.0f} "
        f"| {ratio(signed['rps'], floor['rps'])} | {ratio(floor['rps'], nginx['rps'])} |",
        f"| server CPU per request | {signed['cpu_us']:.1f} µs | {floor['cpu_us']:.1f} µs "
        f"| {nginx['cpu_us']:.1f} µs | {ratio(signed['cpu_us'], floor['cpu_us'])} "
        f"| {ratio(floor['cpu_us'], nginx['cpu_us'])} |",
        f"| p99 at {connections} connections | {us(signed['p99'])} | {us(floor['p99'])} "
        f"| {us(nginx['p99'])} | {ratio(signed['p99'], floor['p99'])} "
        f"| {ratio(floor['p99'], nginx['p99'])} |",
        f"| RSS with 256 keep-alive connections | {signed_rss_text} | {floor_rss_text} "
        f"| {nginx_rss_text} | {ratio(signed_rss, floor_rss)} | {ratio(floor_rss, nginx_rss)} |",
        "",
        "| target (issue #14, against the floor, this run) | measured | verdict |",
        "|---|---|---|",
        f"| signed-in throughput ≥ 0.97× the floor's | {ratio(signed['rps'], floor['rps'])} "
        f"| {verdict(signed['rps'] >= 0.97 * floor['rps'])} |",
        f"| server CPU per request ≤ 1.08× the floor's | {ratio(signed['cpu_us'], floor['cpu_us'])} "
        f"| {verdict(signed['cpu_us'] <= 1.08 * floor['cpu_us'])} |",
        f"| p99 ≤ 1.05× the floor's | {ratio(signed['p99'], floor['p99'])} "
        f"| {verdict(signed['p99'] <= 1.05 * floor['p99'])} |",
        f"| RSS with 256 keep-alive connections ≤ 20 MB | {signed_rss_text} "
        f"| {'**not measured**' if signed_rss is None else verdict(signed_rss <= RSS_LIMIT_KB)} |",
    ]


def read_shapes(path):
    """bench/shapes' rows, grouped by section in the order they came."""
    sections = {}
    if path and os.path.exists(path):
        with open(path) as f:
            for line in f:
                section, label, requests, duration_us, p50, p99, ticks, note = line.rstrip("\n").split("\t")
                sections.setdefault(section, []).append(
                    (label, int(requests), int(duration_us), p50, p99, int(ticks), note)
                )
    return sections


def render_shapes(sections, clk_tck):
    """One table per deployed shape: each row one run of DURATION seconds."""
    if not sections:
        return []
    lines = [
        "",
        "### Deployed shapes",
        "",
        "One run each, after the rounds above, on the same servers and cores (`bench/shapes/*.sh`).",
    ]
    for section, rows in sections.items():
        lines += [
            "",
            f"**{section}**",
            "",
            "| what | req/s | p50 | p99 | server CPU per request | notes |",
            "|---|---|---|---|---|---|",
        ]
        for label, requests, duration_us, p50, p99, ticks, note in rows:
            rps = requests / (duration_us / 1e6) if duration_us else 0
            cpu = f"{ticks * 1e6 / clk_tck / requests:.1f} µs" if requests and ticks >= 0 else "–"
            p50_cell = us(int(p50)) if p50.isdigit() else "–"
            p99_cell = us(int(p99)) if p99.isdigit() else "–"
            lines.append(f"| {label} | {rps:,.0f} | {p50_cell} | {p99_cell} | {cpu} | {note} |")
    return lines


def write(path, block):
    text = open(path).read() if os.path.exists(path) else ""
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        _, tail = rest.split(END, 1)
        text = f"{head}{BEGIN}\n{block}\n{END}{tail}"
    else:
        text = f"{text.rstrip()}\n\n{BEGIN}\n{block}\n{END}\n"
    with open(path, "w") as f:
        f.write(text)


def main():
    p = argparse.ArgumentParser()
    # --shapes-only: print the shapes' tables alone (a partial run writes nothing).
    p.add_argument("--shapes-only", action="store_true")
    p.add_argument("--shapes")
    p.add_argument("--clk-tck", type=int, required=True)
    whole_run = "--shapes-only" not in sys.argv
    for name in ["runs", "memory", "sign-ins", "command", "nginx-version", "wrk-version"]:
        p.add_argument(f"--{name}", required=whole_run)
    for name in ["connections", "duration", "rounds"]:
        p.add_argument(f"--{name}", type=int, required=whole_run)
    p.add_argument("--cookie-bytes", type=int)
    p.add_argument("--write")
    args = p.parse_args()
    if args.shapes_only:
        print("\n".join(render_shapes(read_shapes(args.shapes), args.clk_tck)))
        return
    summary = summarise(read_runs(args.runs), args.clk_tck)
    block = render(
        args,
        summary,
        read_memory(args.memory),
        read_sign_ins(args.sign_ins, args.clk_tck),
    )
    print(block)
    if args.write:
        write(args.write, block)
        print(f"\nwritten to {args.write}", file=sys.stderr)


if __name__ == "__main__":
    main()

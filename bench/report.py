"""Helpers for bench/run.sh: render the mock's nginx config, read /proc, build the report.

Subcommands (all print to stdout; run.sh calls them with `uv run python bench/report.py`):

    render-nginx   nginx.conf from bench/mock/nginx.conf.template and the fixed bodies
    free-port      an unused TCP port on 127.0.0.1
    versions       the Python version and the versions of some installed packages
    tree           the pids of a process tree (root first), with their command names
    tree-cpu       utime+stime, in clock ticks, summed over a process tree
    tree-rss       resident memory, in kB, per process and summed over a process tree
    snapshot       CPU ticks of the gateway and nginx trees and of the whole machine
    record         parse a wrk run's `BENCH_WRK {...}` line, with the CPU snapshots taken
                   around it, and append it to a JSONL file
    profile        where the CPU goes, from py-spy's collapsed ("raw") stacks
    table          the markdown report from the recorded runs
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import socket
import sys
import time
from collections import Counter
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import orjson

_WRK_LINE = re.compile(r"^BENCH_WRK (\{.*\})\s*$", re.MULTILINE)
_PLACEHOLDER = re.compile(r"@[A-Z_]+@")


# --------------------------------------------------------------------------- nginx config


def nginx_string(body: str) -> str:
    """``body`` as the inside of a single-quoted nginx string (``return 200 '...'``)."""
    if "$" in body:
        # nginx has no escape for `$` in a complex value; it would be read as a variable.
        raise SystemExit("mock bodies must not contain '$'")
    return (
        body.replace("\\", "\\\\")
        .replace("'", "\\'")
        .replace("\r", "\\r")
        .replace("\n", "\\n")
        .replace("\t", "\\t")
    )


_TOKEN_CHARS = 3000  # nginx rejects a config token over 4096 bytes


def nginx_return(name: str, body: str, indent: str = "\n            ") -> str:
    """``return 200 '<body>';``, or ``set`` parts joined by the return for a long body."""
    escaped = nginx_string(body)
    if len(escaped) <= _TOKEN_CHARS:
        return f"return 200 '{escaped}';"
    parts: list[str] = []
    start = 0
    while start < len(body):
        # Split the raw body so no escape sequence is cut; escaping at most doubles it.
        piece = body[start : start + _TOKEN_CHARS // 2]
        parts.append(nginx_string(piece))
        start += len(piece)
    sets = [f"set ${name}_{i} '{part}';" for i, part in enumerate(parts)]
    joined = "".join(f"${name}_{i}" for i in range(len(parts)))
    return indent.join([*sets, f'return 200 "{joined}";'])


def render_nginx(args: argparse.Namespace) -> None:
    template = Path(args.template).read_text()
    chat = Path(args.chat_body).read_text().rstrip("\n")
    stream = Path(args.stream_body).read_text()
    if not stream.endswith("\n\n"):
        raise SystemExit(f"{args.stream_body}: an SSE body must end with a blank line")
    user = f"user {args.user};" if args.user else "# (not root: no user directive)"
    values = {
        "@PREFIX@": str(Path(args.prefix).resolve()),
        "@PORT@": str(args.port),
        "@USER_DIRECTIVE@": user,
        "@CHAT_RETURN@": nginx_return("mock_chat", chat),
        "@STREAM_RETURN@": nginx_return("mock_stream", stream),
    }
    rendered = _PLACEHOLDER.sub(lambda m: values.get(m.group(0), m.group(0)), template)
    left = sorted(set(_PLACEHOLDER.findall(rendered)) - set(values.values()))
    if left:
        raise SystemExit(f"unknown placeholders in the template: {', '.join(left)}")
    Path(args.out).write_text(rendered)


def versions(args: argparse.Namespace) -> None:
    """``python: X; packages: a 1.0, b 2.0`` for the gateway's environment."""
    found = []
    for name in args.packages:
        try:
            found.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            found.append(f"{name} absent")
    print(f"python: {platform.python_version()}; packages: {', '.join(found)}")


def free_port(_: argparse.Namespace) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        print(sock.getsockname()[1])


# --------------------------------------------------------------------------- /proc


@dataclass(frozen=True, slots=True)
class ProcStat:
    pid: int
    ppid: int
    comm: str
    ticks: int  # utime + stime of every thread of the process
    rss_kb: int


def _read_stat(pid: int) -> ProcStat | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
        statm = Path(f"/proc/{pid}/statm").read_text().split()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # comm is in parentheses and may itself contain spaces or parentheses.
    head, _, rest = raw.rpartition(")")
    comm = head.partition("(")[2]
    fields = rest.split()  # fields[0] is field 3 (state)
    ppid = int(fields[1])
    utime, stime = int(fields[11]), int(fields[12])
    page_kb = os.sysconf("SC_PAGE_SIZE") // 1024
    return ProcStat(pid, ppid, comm, utime + stime, int(statm[1]) * page_kb)


def process_tree(root: int) -> list[ProcStat]:
    """``root`` and all its descendants, root first (breadth first)."""
    stats: dict[int, ProcStat] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            stat = _read_stat(int(entry))
            if stat is not None:
                stats[stat.pid] = stat
    if root not in stats:
        return []
    children: dict[int, list[int]] = {}
    for stat in stats.values():
        children.setdefault(stat.ppid, []).append(stat.pid)
    order = [root]
    for pid in order:
        order.extend(sorted(children.get(pid, [])))
    return [stats[pid] for pid in order]


def tree(args: argparse.Namespace) -> None:
    for stat in process_tree(args.pid):
        print(stat.pid, stat.ppid, stat.comm)


def tree_cpu(args: argparse.Namespace) -> None:
    print(sum(stat.ticks for stat in process_tree(args.pid)))


def tree_rss(args: argparse.Namespace) -> None:
    stats = process_tree(args.pid)
    total = sum(stat.rss_kb for stat in stats)
    parts = " + ".join(f"{stat.comm}[{stat.pid}] {stat.rss_kb / 1024:.1f}" for stat in stats)
    print(f"{total} {parts}")


# --------------------------------------------------------------------------- wrk results


def _cpu_line() -> list[int]:
    """``/proc/stat``'s aggregate line: user nice system idle iowait irq softirq steal ..."""
    with open("/proc/stat") as stat:
        return [int(x) for x in stat.readline().split()[1:]]


def snapshot(args: argparse.Namespace) -> None:
    """``gateway nginx busy steal`` in clock ticks (busy: user+nice+system, all CPUs), then
    the wall-clock time in ticks."""
    gateway = sum(s.ticks for s in process_tree(args.gateway)) if args.gateway else 0
    nginx = sum(s.ticks for s in process_tree(args.nginx)) if args.nginx else 0
    cpu = _cpu_line()
    wall = round(time.time() * os.sysconf("SC_CLK_TCK"))
    print(gateway, nginx, cpu[0] + cpu[1] + cpu[2], cpu[7] if len(cpu) > 7 else 0, wall)


def parse_wrk(text: str) -> dict[str, Any]:
    match = _WRK_LINE.search(text)
    if match is None:
        raise SystemExit("no BENCH_WRK line in the wrk output (did wrk fail to start?)")
    result: dict[str, Any] = orjson.loads(match.group(1))
    return result


def record(args: argparse.Namespace) -> None:
    wrk = parse_wrk(Path(args.wrk_output).read_text())
    hz = os.sysconf("SC_CLK_TCK")
    before = [int(x) for x in args.before.split()]
    after = [int(x) for x in args.after.split()]
    gateway, nginx, busy, steal, window = (b - a for a, b in zip(before, after, strict=True))
    wrk_user, wrk_sys = (float(x) for x in Path(args.wrk_time).read_text().split()[:2])
    # `window` is the wall time between the snapshots: ticks of one core.
    other = busy - gateway - nginx - (wrk_user + wrk_sys) * hz
    entry: dict[str, Any] = {
        "scenario": args.scenario,
        "conns": args.conns,
        "target": args.target,
        "wrk": wrk,
        "gateway_cpu_s": gateway / hz,
        "nginx_cpu_s": nginx / hz,
        "wrk_cpu_s": wrk_user + wrk_sys,
        # CPU used outside gateway, nginx and wrk (other processes, kernel threads), and the
        # hypervisor's steal: in % of one core over the run. Both should be near 0.
        "other_pct": max(0.0, 100 * other / window) if window else 0.0,
        "steal_pct": 100 * steal / window if window else 0.0,
    }
    if args.target != "direct" and wrk["requests"]:
        entry["cpu_us_per_req"] = gateway / hz * 1e6 / wrk["requests"]
    with Path(args.results).open("ab") as out:
        out.write(orjson.dumps(entry) + b"\n")
    errors = _errors(wrk)
    cpu = entry.get("cpu_us_per_req")
    print(
        f"  {args.target:<10} {args.scenario:<6} c={args.conns:<3} "
        f"{wrk['rps']:>9.0f} req/s  p50 {wrk['p50_us'] / 1000:.2f} ms  "
        f"p99 {wrk['p99_us'] / 1000:.2f} ms"
        + (f"  gateway {cpu:.0f} us/req" if cpu is not None else "")
        + f"  (other load {entry['other_pct']:.0f}% of a core)"
        + (f"  ERRORS {errors}" if errors else "")
    )


def _errors(wrk: dict[str, Any]) -> str:
    names = ("non_2xx", "err_connect", "err_read", "err_write", "err_timeout")
    return ", ".join(f"{name}={wrk[name]}" for name in names if wrk.get(name))


# --------------------------------------------------------------------------- py-spy

_SITE = re.compile(r"^.*/(?:site-packages|lib/python3\.\d+|src|bin)/")
_EVENT_LOOP = "Runner.run"


def _frame(frame: str) -> tuple[str, str, str]:
    """``fn (aiohttp/client.py:12)`` -> (``fn``, ``aiohttp/client.py``, package ``aiohttp``).

    py-spy already shortens paths relative to ``sys.path``; absolute ones are cut here.
    """
    name, sep, where = frame.partition(" (")
    if not sep:
        return frame, "", "?"
    path = _SITE.sub("", where.rstrip(")").rpartition(":")[0])
    if path == "<string>":
        return name, path, "generated code (dataclass __init__ etc.)"
    if path.startswith("<frozen "):
        path = path[len("<frozen ") : -1]
    package = path.split("/", 1)[0].removesuffix(".py")
    if package in sys.stdlib_module_names:
        package += " (stdlib)"
    return name, path, package


def profile(args: argparse.Namespace) -> None:
    """Where the CPU goes, from ``py-spy record --format raw`` (``a;b;c count`` per line)."""
    own: Counter[tuple[str, str]] = Counter()
    areas: Counter[str] = Counter()
    inclusive: Counter[tuple[str, str]] = Counter()
    total = 0
    for line in Path(args.collapsed).read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [
            _frame(f) for f in stack.split(";") if f and not f.startswith(("process ", "thread "))
        ]
        if not frames:
            continue
        total += count
        name, path, area = frames[-1]
        if name == _EVENT_LOOP:
            # No Python frame above the loop: uvloop's C code (polling, socket reads and
            # writes, httptools parsing, callback dispatch) is running.
            name, path, area = "event loop in C (uvloop/httptools, socket I/O)", "", "uvloop (C)"
        own[(name, path)] += count
        areas[area] += count
        for frame_name, frame_path, _ in set(frames):
            inclusive[(frame_name, frame_path)] += count
    if not total:
        print("(py-spy recorded no samples)")
        return
    print(
        f"{total} samples ({args.rate} Hz) of the busy gateway process; a sample is taken "
        "only while it runs (not while it waits in epoll).\n"
    )
    print(f"Top {args.top} functions by own time (all lines of a function together):\n")
    print("| # | self % | function | file |")
    print("| ---: | ---: | --- | --- |")
    for rank, ((name, path), count) in enumerate(own.most_common(args.top), 1):
        print(f"| {rank} | {100 * count / total:.1f} | `{name}` | {path} |")
    print(
        "\nOwn time by package (C code a Python function calls, e.g. yarl, multidict or a "
        "socket write, counts for that function):\n"
    )
    print("| package | self % |")
    print("| --- | ---: |")
    for area, count in areas.most_common(12):
        print(f"| {area} | {100 * count / total:.1f} |")
    print("\nInclusive time of the layers below the event loop (frame and everything it calls):\n")
    print("| total % | function | file |")
    print("| ---: | --- | --- |")
    shown = 0
    for (name, path), count in inclusive.most_common():
        if count >= 0.97 * total:
            continue  # the start-up chain every sample shares (click, uvicorn.run, ...)
        print(f"| {100 * count / total:.1f} | `{name}` | {path} |")
        shown += 1
        if shown >= args.top + 10:
            break


# --------------------------------------------------------------------------- report


def _ms(us: float) -> str:
    return f"{us / 1000:.2f}"


_NOISY_PCT = 10.0


def _background(runs: list[dict[str, Any]]) -> list[str]:
    """CPU used by processes outside the benchmark during each run (a shared machine)."""
    if not runs or "other_pct" not in runs[0]:
        return []
    worst = max(runs, key=lambda r: r["other_pct"])
    steal = max(r.get("steal_pct", 0.0) for r in runs)
    per_run = ", ".join(
        f"{r['target']}/{r['scenario']}/{r['conns']} {r['other_pct']:.0f}%" for r in runs
    )
    noisy = [r for r in runs if r["other_pct"] > _NOISY_PCT]
    lines = [
        "**Background load** (CPU of processes other than gateway, nginx and wrk, % of one "
        f"core, per run): {per_run}; max hypervisor steal {steal:.0f}%.",
    ]
    if noisy:
        lines.append(
            f"WARNING: {len(noisy)} run(s) shared the machine with other work (up to "
            f"{worst['other_pct']:.0f}% of a core in {worst['target']}/{worst['scenario']}/"
            f"{worst['conns']}): their numbers are pessimistic; re-run on an idle machine."
        )
    lines.append("")
    return lines


def table(args: argparse.Namespace) -> None:
    runs = [orjson.loads(line) for line in Path(args.results).read_bytes().splitlines() if line]
    by_key = {(r["scenario"], r["conns"], r["target"]): r for r in runs}
    lines = [
        "# Otari gateway load benchmark",
        "",
        f"wrk {args.duration} per run after a warm-up; mock upstream: nginx returning fixed "
        "bodies (bench/mock). Gateway: 1 worker pinned to core 0; nginx and wrk pinned "
        "to core 1.",
        "",
        "| scenario | conns | direct req/s | gateway req/s | ratio | direct p50/p99 ms "
        "| gateway p50/p99 ms | added p50 ms | gateway CPU µs/req |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    problems: list[str] = []
    for scenario, conns in sorted({(r["scenario"], r["conns"]) for r in runs}):
        direct = by_key.get((scenario, conns, "direct"))
        gateway = by_key.get((scenario, conns, "gateway"))
        if direct is None or gateway is None:
            continue
        d, g = direct["wrk"], gateway["wrk"]
        ratio = g["rps"] / d["rps"] if d["rps"] else 0.0
        cpu = gateway.get("cpu_us_per_req")
        cpu_text = f"{cpu:,.0f}" if cpu is not None else "n/a"
        lines.append(
            f"| {scenario} | {conns} | {d['rps']:,.0f} | {g['rps']:,.0f} | {ratio:.3f} "
            f"| {_ms(d['p50_us'])} / {_ms(d['p99_us'])} | {_ms(g['p50_us'])} / "
            f"{_ms(g['p99_us'])} | {_ms(g['p50_us'] - d['p50_us'])} | {cpu_text} |"
        )
    for run in runs:
        errors = _errors(run["wrk"])
        if errors:
            problems.append(f"{run['target']} {run['scenario']} c={run['conns']}: {errors}")
    lines.append("")
    if args.rss:
        lines.append(f"**Gateway RSS** after the runs above (process tree): {args.rss}")
        lines.append("")
    w2 = by_key.get(("chat", args.w2_conns, "gateway-w2"))
    w1 = by_key.get(("chat", args.w2_conns, "gateway"))
    if w2 is not None:
        g = w2["wrk"]
        scale = f" = {g['rps'] / w1['wrk']['rps']:.2f}x the 1-worker run" if w1 else ""
        cpu = w2.get("cpu_us_per_req")
        lines.append(
            f"**workers=2** (chat, {args.w2_conns} conns, gateway, wrk and nginx unpinned: "
            f"the 2 cores are then shared by 2 gateway workers, wrk and nginx): "
            f"{g['rps']:,.0f} req/s{scale}; p50/p99 {_ms(g['p50_us'])} / {_ms(g['p99_us'])} "
            f"ms"
            + (f"; gateway CPU {cpu:,.0f} µs/req" if cpu is not None else "")
            + (f"; RSS {args.rss_w2}" if args.rss_w2 else "")
        )
        lines.append("")
    lines.append("**Errors** (wrk: non-2xx, socket connect/read/write/timeout): ")
    lines.extend([f"- {p}" for p in problems] or ["- none"])
    lines.append("")
    lines.extend(_background(runs))
    if args.note:
        lines.append("**Checks**")
        lines.extend(f"- {note}" for note in args.note)
        lines.append("")
    lines.append("**Machine**")
    lines.extend(f"- {fact}" for fact in args.fact)
    lines.append("")
    if args.profile and Path(args.profile).is_file() and Path(args.profile).stat().st_size:
        lines.append(
            f"**Profile** (py-spy, gateway workers=1, chat, {args.w2_conns} conns; a separate "
            "run: sampling slows the gateway, so its req/s is not comparable"
            + (f", {args.profile_rps}" if args.profile_rps else "")
            + ")"
        )
        lines.append("")
        lines.append(Path(args.profile).read_text().rstrip())
        lines.append("")
    text = "\n".join(lines)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text)
    sys.stdout.write(text)


# --------------------------------------------------------------------------- CLI


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("render-nginx")
    p.add_argument("--template", required=True)
    p.add_argument("--chat-body", required=True)
    p.add_argument("--stream-body", required=True)
    p.add_argument("--prefix", required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--user", default="", help="worker user when nginx starts as root")
    p.add_argument("--out", required=True)
    p.set_defaults(func=render_nginx)

    sub.add_parser("free-port").set_defaults(func=free_port)
    p = sub.add_parser("versions")
    p.add_argument("packages", nargs="*")
    p.set_defaults(func=versions)
    for name, func in (("tree", tree), ("tree-cpu", tree_cpu), ("tree-rss", tree_rss)):
        p = sub.add_parser(name)
        p.add_argument("pid", type=int)
        p.set_defaults(func=func)

    p = sub.add_parser("record")
    p.add_argument("--results", required=True)
    p.add_argument("--wrk-output", required=True)
    p.add_argument("--scenario", required=True)
    p.add_argument("--conns", type=int, required=True)
    p.add_argument("--target", required=True)
    p.add_argument("--before", required=True, help="`snapshot` output before the run")
    p.add_argument("--after", required=True, help="`snapshot` output after the run")
    p.add_argument("--wrk-time", required=True, help="file with wrk's user and sys seconds")
    p.set_defaults(func=record)

    p = sub.add_parser("snapshot")
    p.add_argument("--gateway", type=int, default=0)
    p.add_argument("--nginx", type=int, default=0)
    p.set_defaults(func=snapshot)

    p = sub.add_parser("profile")
    p.add_argument("collapsed")
    p.add_argument("--top", type=int, default=10)
    p.add_argument("--rate", type=int, default=100)
    p.set_defaults(func=profile)

    p = sub.add_parser("table")
    p.add_argument("--results", required=True)
    p.add_argument("--duration", default="10s")
    p.add_argument("--rss", default="")
    p.add_argument("--rss-w2", default="")
    p.add_argument("--w2-conns", type=int, default=64)
    p.add_argument("--profile", default="")
    p.add_argument("--profile-rps", default="")
    p.add_argument("--note", action="append", default=[])
    p.add_argument("--fact", action="append", default=[])
    p.add_argument("--out", default="")
    p.set_defaults(func=table)

    args = parser.parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    main()

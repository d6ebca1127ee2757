#!/usr/bin/env python3
"""Turns the raw figures of tests/bench_side_by_side.rs into docs/benchmarks.json and the generated section of
docs/benchmarks.md (between <!-- side-by-side --> and <!-- /side-by-side -->).

Usage: side_by_side_report.py OUT_DIR META_JSON DOCS_DIR
OUT_DIR holds plugins.json, modes.json, veth.json (any may be missing) and strace/ traces; META_JSON is what
bench/side-by-side gathered about the machine and the versions.
"""

from __future__ import annotations

import glob
import json
import math
import os
import re
import sys

MUTATING = ("Create", "Attach", "Modify", "Assign", "Unassign", "Detach", "Delete")


def pct(values: list[float], p: float) -> float:
    """Nearest-rank percentile."""
    v = sorted(values)
    if not v:
        return float("nan")
    return v[max(0, math.ceil(p / 100 * len(v)) - 1)]


def ms(us: float) -> str:
    return "–" if us != us else f"{us / 1000:.1f}"


def stats(values: list[float]) -> dict:
    return {"n": len(values), "p50": pct(values, 50), "p90": pct(values, 90), "p99": pct(values, 99),
            "max": max(values) if values else None}


def ratio(a: float, b: float) -> str:
    return "–" if not b or a != a or b != b else f"{a / b:.2f}"


# ----------------------------------------------------------------------------------------------------------------
# The fewest EC2 calls between two shapes of a node.

def shape_map(shape: list) -> dict:
    return {s["device"]: (s["addresses"], s["prefixes"]) for s in shape}


def min_calls(a: dict, b: dict) -> dict:
    """Fewest mutating EC2 calls from shape a to shape b (device -> (addresses, prefixes)): an ENI that appears is
    CreateNetworkInterface (with its addresses or prefixes in the same call) + AttachNetworkInterface +
    ModifyNetworkInterfaceAttribute (DeleteOnTermination); one that goes is DetachNetworkInterface +
    DeleteNetworkInterface (its addresses go with it); one that stays and changes takes one Assign or Unassign per
    kind that changes (addresses and prefixes are separate fields of one Assign call, so both growing is one call)."""
    out = {"create": 0, "attach": 0, "modify": 0, "assign": 0, "unassign": 0, "detach": 0, "delete": 0}
    for dev, (addr, pfx) in b.items():
        if dev not in a:
            out["create"] += 1
            out["attach"] += 1
            out["modify"] += 1
            continue
        a_addr, a_pfx = a[dev]
        grow = addr > a_addr or pfx > a_pfx
        shrink = addr < a_addr or pfx < a_pfx
        out["assign"] += 1 if grow else 0
        out["unassign"] += 1 if shrink else 0
    for dev in a:
        if dev not in b:
            out["detach"] += 1
            out["delete"] += 1
    out["total"] = sum(out.values())
    return out


def mode_minimum(run: dict) -> dict:
    """The three legs' minimum, plus one CreateTags when the daemon tagged the primary ENI: it came untagged and
    both daemons leave it tagged (docs/compat.md C5), so the end state includes its tags and no call list reaching
    that state can skip the call (created ENIs get theirs inside CreateNetworkInterface)."""
    fresh = {0: (0, 0)}
    idle, busy, after = (shape_map(run[k]) for k in ("idle", "busy", "after"))
    legs = [min_calls(fresh, idle), min_calls(idle, busy), min_calls(busy, after)]
    tags = 1 if run.get("calls", {}).get("CreateTags") else 0
    return {"legs": legs, "primary_eni_tags": tags, "total": sum(x["total"] for x in legs) + tags}


def fmt_shape(shape: list) -> str:
    parts = []
    for s in shape:
        if s["prefixes"]:
            parts.append(f"{s['prefixes']}/28" + (f"+{s['addresses']}" if s["addresses"] else ""))
        else:
            parts.append(str(s["addresses"]))
    return "[" + ", ".join(parts) + "]"


def fmt_calls(calls: dict) -> str:
    short = {"CreateNetworkInterface": "Create", "AttachNetworkInterface": "Attach",
             "ModifyNetworkInterfaceAttribute": "Modify", "AssignPrivateIpAddresses": "Assign",
             "UnassignPrivateIpAddresses": "Unassign", "DetachNetworkInterface": "Detach",
             "DeleteNetworkInterface": "Delete", "DescribeNetworkInterfaces": "DescribeENIs",
             "DescribeInstances": "DescribeInstances", "DescribeInstanceTypes": "DescribeInstanceTypes",
             "DescribeSubnets": "DescribeSubnets", "CreateTags": "CreateTags"}
    return ", ".join(f"{short.get(k, k)} {v}" for k, v in sorted(calls.items()))


def mutating(calls: dict) -> int:
    return sum(v for k, v in calls.items() if k.startswith(MUTATING))


# ----------------------------------------------------------------------------------------------------------------
# strace of our plugin.

SYSCALL = re.compile(r"^(\d+\.\d+) (\w+)\((.*)\)\s+= (.*?) <(\d+\.\d+)>$")
START = ("execve", "brk", "mmap", "munmap", "mprotect", "arch_prctl", "set_tid_address", "rt_sigaction",
         "rt_sigprocmask", "prlimit64", "sigaltstack", "getrandom", "exit_group", "set_robust_list", "rseq",
         "madvise", "sched_getaffinity", "poll", "getpid", "gettid", "uname")


def category(name: str, args: str, ret: str) -> str:
    both = args + " " + ret
    if name == "setns":
        return "namespace switch (setns)"
    if "NETLINK" in both:
        return "netlink (kernel wiring)"
    if "UNIX" in both:
        return "ipamd socket (connect, request, wait for the answer)"
    if "pipe:" in both:
        return "stdin/stdout (config in, result out)"
    if name in START:
        return "process start and exit (exec, loader, memory)"
    if "/" in both:
        return "files (log file, /proc, /sys, netns path)"
    return "other syscalls"


def profile(trace_dir: str) -> dict | None:
    """Our plugin's ADDs under strace -f -ttt -T -yy (one file per process): time per kind of work."""
    runs = []
    for f in sorted(glob.glob(os.path.join(trace_dir, "aws-cni.*"))):
        text = open(f).read()
        if "RTM_NEWLINK" not in text:
            continue  # a DEL
        cats: dict[str, float] = {}
        counts: dict[str, int] = {}
        first = last = None
        for line in text.splitlines():
            m = SYSCALL.match(line)
            if not m:
                continue
            t, name, args, ret, dur = m.groups()
            t, dur = float(t), float(dur)
            first = t if first is None else first
            last = t + dur
            c = category(name, args, ret)
            cats[c] = cats.get(c, 0.0) + dur * 1e6
            counts[c] = counts.get(c, 0) + 1
        if first is None:
            continue
        wall = (last - first) * 1e6
        cats["between syscalls (user space and strace's own stops)"] = wall - sum(cats.values())
        runs.append({"wall_us": wall, "categories_us": cats, "syscalls": counts, "file": os.path.basename(f)})
    return {"adds": runs} if runs else None


# ----------------------------------------------------------------------------------------------------------------

def main() -> int:
    out_dir, meta_path, docs = sys.argv[1], sys.argv[2], sys.argv[3]
    meta = json.load(open(meta_path))
    raw = {"meta": meta}
    for part in ("plugins", "modes", "veth"):
        p = os.path.join(out_dir, f"{part}.json")
        if os.path.exists(p):
            raw[part] = json.load(open(p))
    prof = profile(os.path.join(out_dir, "strace"))
    if prof:
        raw["strace"] = prof
    md: list[str] = []
    w = md.append
    runs = "; ".join(f"{r['date']} ({r['parts']}; load average before/after {r['load_before']} / "
                     f"{r['load_after']}; knobs: {', '.join(f'{k}={v}' for k, v in sorted(r['knobs'].items())) or 'defaults'})"
                     for r in meta.get("runs", []))
    w(f"Generated by `bench/side-by-side`. Machine: {meta['machine']}, shared with other work. Versions: "
      f"{meta['versions']}. Runs: {runs}. {meta.get('label', '')}".rstrip())
    w("")
    summary: dict = {}
    pl = raw.get("plugins")
    if pl:
        seq = pl["sequential"]
        w(f"### CNI ADD and DEL, warm pool, sequential (N = {pl['n']} each, interleaved: pod i through ours, then "
          f"upstream, then ptp), ms")
        w("")
        w("| plugin (conflist) | ADD p50 | ADD p90 | ADD p99 | DEL p50 | DEL p90 | DEL p99 |")
        w("|---|---|---|---|---|---|---|")
        names = {"ours": "ours: aws-cni + portmap", "upstream": "upstream v1.23: aws-cni + egress-cni + portmap",
                 "ptp": "ptp + host-local"}
        st = {k: (stats(v["add_us"]), stats(v["del_us"])) for k, v in seq.items()}
        for k in ("ours", "upstream", "ptp"):
            if k not in st:
                continue
            a, d = st[k]
            w(f"| {names[k]} | {ms(a['p50'])} | {ms(a['p90'])} | {ms(a['p99'])} | {ms(d['p50'])} | {ms(d['p90'])} "
              f"| {ms(d['p99'])} |")
        prof_pl = pl.get("profile")
        if prof_pl:
            a, d = stats(prof_pl["alone_add_us"]), stats(prof_pl["alone_del_us"])
            w(f"| ours, aws-cni alone (no portmap; N = {a['n']}, after the run above) | {ms(a['p50'])} | "
              f"{ms(a['p90'])} | {ms(a['p99'])} | {ms(d['p50'])} | {ms(d['p90'])} | {ms(d['p99'])} |")
            summary["alone"] = {"add": a, "del": d}
            if prof_pl.get("alone_del_netns_gone_us"):
                g = stats(prof_pl["alone_del_netns_gone_us"])
                w(f"| ours, aws-cni alone, DEL after the runtime removed the namespace (N = {g['n']}) | | | | "
                  f"{ms(g['p50'])} | {ms(g['p90'])} | {ms(g['p99'])} |")
                summary["alone"]["del_netns_gone"] = g
            for who, v in prof_pl.get("version_us", {}).items():
                g = stats(v)
                w(f"| {who}: CNI VERSION through libcni (exec + config + answer: the floor of any call; N = {g['n']}) "
                  f"| {ms(g['p50'])} | {ms(g['p90'])} | {ms(g['p99'])} | | | |")
                summary.setdefault("version", {})[who] = g
        w("")
        if "ours" in st and "upstream" in st:
            w(f"Ratios of p50, ours / upstream: ADD {ratio(st['ours'][0]['p50'], st['upstream'][0]['p50'])}, "
              f"DEL {ratio(st['ours'][1]['p50'], st['upstream'][1]['p50'])}; ours / ptp: ADD "
              f"{ratio(st['ours'][0]['p50'], st['ptp'][0]['p50'])}, DEL {ratio(st['ours'][1]['p50'], st['ptp'][1]['p50'])}.")
            w("")
        summary["sequential"] = st
        w("### Bursts: k concurrent ADDs into one node (k libcni clients started first, then one ADD each at once)")
        w("")
        w("| k | plugin | wall ms | per-ADD p50 ms | per-ADD p99 ms |")
        w("|---|---|---|---|---|")
        summary["bursts"] = {}
        for k, per in sorted(pl["bursts"].items(), key=lambda kv: int(kv[0])):
            for who in ("ours", "upstream", "ptp"):
                if who in per:
                    b = per[who]
                    s = stats(b["add_us"])
                    summary["bursts"].setdefault(k, {})[who] = {"wall_us": b["wall_us"], **s}
                    w(f"| {k} | {who} | {ms(b['wall_us'])} | {ms(s['p50'])} | {ms(s['p99'])} |")
        w("")
        w("### Footprint")
        w("")
        sz = pl["sizes"]
        w("| binary | bytes |")
        w("|---|---|")
        for who, files in sz.items():
            if isinstance(files, dict):
                for f, n in files.items():
                    w(f"| {who}: {f} | {n:,} |")
            else:
                w(f"| {who} | {files:,} |")
        w("")
        w(f"Daemon memory (VmRSS KiB, Threads), on an m5.16xlarge node (max pods 250), `WARM_IP_TARGET="
          f"{pl['warm_ip_target']}`:")
        w("")
        w("| daemon | idle | " + " | ".join(f"{k} pods" for k in pl["footprint"]) + " | peak (VmHWM) |")
        w("|---|---|" + "---|" * len(pl["footprint"]) + "---|")
        for who in ("ours", "upstream"):
            cells = [f"{pl['idle'][who]['VmRSS']:,} ({pl['idle'][who]['Threads']} thr)"]
            cells += [f"{v[who]['VmRSS']:,} ({v[who]['Threads']} thr)" for v in pl["footprint"].values()]
            cells.append(f"{pl['peak'][who]['VmHWM']:,}")
            w(f"| {who} | " + " | ".join(cells) + " |")
        w("")
        summary["rss"] = {who: {"idle": pl["idle"][who]["VmRSS"],
                                **{k: v[who]["VmRSS"] for k, v in pl["footprint"].items()}}
                          for who in ("ours", "upstream")}
        w("Plugin peak RSS per ADD (ru_maxrss of the plugin process, GNU time as the wrapper; KiB):")
        w("")
        w("| plugin | ADDs | p50 | max |")
        w("|---|---|---|---|")
        for who, v in pl["plugin_maxrss_kib"].items():
            if v:
                w(f"| {who} ({'ptp' if who == 'ptp' else 'aws-cni'}) | {len(v)} | {pct(v, 50):,} | {max(v):,} |")
        w("")
    modes = raw.get("modes")
    if modes:
        w("### Start-up to ready (fresh m5.4xlarge, the warm mode's settings)")
        w("")
        w("| mode | daemon | wall to ready s | split | first pod served after start s |")
        w("|---|---|---|---|---|")
        for mode, m in modes.items():
            s = m["startup"]
            o = s["ours"]
            line = re.search(r"ready in .*?; steps", o.get("log", "")) or re.search(r"ready in [^;]*", o.get("log", ""))
            split = line.group(0).replace("; steps", "") if line else "?"
            w(f"| {mode} | ours | {o['wall_s']:.2f} | {split} | {o['first_pod_s']:.2f} |")
            u = s["upstream"]
            w(f"| {mode} | upstream | {u['wall_s']:.2f} | {u['ec2_calls']} EC2 calls took {u['ec2_s']:.2f} s; the "
              f"rest ({u['wall_s'] - u['ec2_s']:.2f} s) is own work, IMDS and the API server | "
              f"{u['first_pod_s']:.2f} |")
        w("")
        pods = next(iter(modes.values()))["pods"]
        w(f"### EC2 calls, 0 → {pods} → 0 pods on an m5.4xlarge (8 ENIs × 29 secondary addresses, max pods 110)")
        w("")
        w("Shapes are secondary addresses (or /28 prefixes) per attached ENI, by device index, idle → busy → after, "
          "as IMDS shows them. Calls are those of the daemon's own key in the sim's call log, from its start until "
          "the node has been quiet after the last DEL. The minimum is the fewest mutating calls that reach the same "
          "three shapes, plus the primary ENI's CreateTags when the daemon made it (see below).")
        w("")
        w("| mode | daemon | shapes | calls | mutating | minimum | mutating / minimum |")
        w("|---|---|---|---|---|---|---|")
        summary["modes"] = {}
        for mode, m in modes.items():
            for who in ("ours", "upstream"):
                r = m[who]
                mn = mode_minimum(r)
                r["minimum"] = mn
                total = sum(r["calls"].values())
                mut = mutating(r["calls"])
                summary["modes"].setdefault(mode, {})[who] = {"calls": total, "mutating": mut, "min": mn["total"]}
                w(f"| {mode} ({', '.join(m['settings'])}) | {who} | {fmt_shape(r['idle'])} → {fmt_shape(r['busy'])} "
                  f"→ {fmt_shape(r['after'])} | {total} ({fmt_calls(r['calls'])}) | {mut} | {mn['total']} | "
                  f"{ratio(mut, mn['total'])} |")
        w("")
        ch = modes.get("warm_eni", {})
        if "churn" in ch.get("ours", {}):
            w("Churn inside the warm pool (`WARM_ENI_TARGET=1`, one pod at a time, ADD then DEL):")
            w("")
            w("| daemon | pods added and deleted | seconds | EC2 calls |")
            w("|---|---|---|---|")
            for who in ("ours", "upstream"):
                c = ch[who]["churn"]
                n = sum(c["calls"].values())
                summary.setdefault("churn", {})[who] = {"calls": n, "mutating": mutating(c["calls"])}
                w(f"| {who} | {c['pods']} | {c['seconds']:.0f} | {n} {('(' + fmt_calls(c['calls']) + ')') if n else ''} |")
            w("")
            w("A read during the churn is the daemon's periodic check of EC2's view of its ENIs (once a minute when "
              "the pool is quiet), which runs with or without pods coming and going; the target counts the calls "
              "that change EC2.")
            w("")
    veth = raw.get("veth")
    if veth:
        w("### What DEL can do with the veth pair (kernel only, our netlink code, N = "
          f"{len(next(iter(veth.values()))['call_us'])} each)")
        w("")
        w("| choice | the call returns after, ms p50 / p90 | the host end is gone after, ms p50 / p90 |")
        w("|---|---|---|")
        label = {"host_side": "RTM_DELLINK of the host end (from the host namespace; ours, by ipamd after it has "
                              "answered the DEL)",
                 "pod_side": "RTM_DELLINK of eth0 inside the pod namespace (ours when ipamd does not take the pair; "
                             "every DEL before)",
                 "netns_teardown": "nothing; the runtime deletes the namespace (`ip netns del`, upstream's choice)"}
        summary["veth"] = {}
        for k, v in veth.items():
            c = stats(v["call_us"])
            g = stats(v["host_link_gone_us"]) if v["host_link_gone_us"] else None
            summary["veth"][k] = {"call": c, "gone": g}
            gone = f"{ms(g['p50'])} / {ms(g['p90'])}" if g else "same"
            w(f"| {label.get(k, k)} | {ms(c['p50'])} / {ms(c['p90'])} | {gone} |")
        w("")
    if prof:
        adds = prof["adds"]
        cats = {c for r in adds for c in r["categories_us"]}
        w(f"### Our plugin's ADD under `strace -f -ttt -T -yy` ({len(adds)} ADDs, aws-cni alone; strace slows "
          "every syscall several times, so the shares matter, not the sums)")
        w("")
        w("| where the time goes | µs p50 per ADD | syscalls per ADD |")
        w("|---|---|---|")
        walls = [r["wall_us"] for r in adds]
        for c in sorted(cats, key=lambda c: -pct([r["categories_us"].get(c, 0) for r in adds], 50)):
            n = pct([r["syscalls"].get(c, 0) for r in adds], 50)
            w(f"| {c} | {pct([r['categories_us'].get(c, 0) for r in adds], 50):.0f} | "
              f"{'' if c.startswith('between') else n} |")
        w(f"| whole process, first to last syscall | {pct(walls, 50):.0f} | |")
        w("")
    targets = []
    sq = summary.get("sequential")
    if sq and "upstream" in sq:
        for i, op in ((0, "ADD"), (1, "DEL")):
            r = sq["ours"][i]["p50"] / sq["upstream"][i]["p50"]
            targets.append((f"our {op} p50 ≤ 1/3 of upstream's", f"{ms(sq['ours'][i]['p50'])} vs "
                            f"{ms(sq['upstream'][i]['p50'])} ms: {r:.2f}", r <= 1 / 3))
    b100 = summary.get("bursts", {}).get("100", {}).get("ours")
    if b100:
        targets.append(("100 concurrent ADDs within 1 s", f"{ms(b100['wall_us'])} ms", b100["wall_us"] <= 1e6))
    rss = summary.get("rss")
    if rss:
        worst = max(rss["ours"][k] / rss["upstream"][k] for k in rss["ours"])
        targets.append(("daemon RSS ≤ 1/10 of upstream's", f"at most {worst:.3f} of upstream's (idle and every pod "
                        "count)", worst <= 0.1))
    if "churn" in summary:
        c = summary["churn"]
        targets.append(("0 EC2 calls for churn inside the warm pool",
                        f"ours {c['ours']['mutating']} mutating ({c['ours']['calls']} with reads), upstream "
                        f"{c['upstream']['mutating']} ({c['upstream']['calls']})", c["ours"]["mutating"] == 0))
    for mode, m in summary.get("modes", {}).items():
        o = m["ours"]
        r = o["mutating"] / o["min"] if o["min"] else float("inf")
        targets.append((f"{mode}: EC2 calls within 10 % of the fewest", f"ours {o['mutating']} mutating "
                        f"({o['calls']} with reads) vs minimum {o['min']}: {r:.2f}; upstream "
                        f"{m['upstream']['mutating']} ({m['upstream']['calls']})", r <= 1.1))
    if targets:
        tl = ["### Targets", "", "| target | measured | met |", "|---|---|---|"]
        tl += [f"| {t} | {v} | {'yes' if met else '**no**'} |" for t, v, met in targets]
        md[2:2] = tl + [""]
    summary["targets"] = [{"target": t, "measured": v, "met": met} for t, v, met in targets]
    raw["summary"] = summary
    with open(os.path.join(docs, "benchmarks.json"), "w") as f:
        json.dump(raw, f, indent=1)
        f.write("\n")
    path = os.path.join(docs, "benchmarks.md")
    text = open(path).read()
    begin, end = "<!-- side-by-side -->", "<!-- /side-by-side -->"
    block = begin + "\n" + "\n".join(md).rstrip() + "\n" + end
    if begin in text and end in text:
        text = text[: text.index(begin)] + block + text[text.index(end) + len(end):]
    else:
        text = text.rstrip() + "\n\n## Side by side: ours, upstream v1.23, ptp + host-local\n\n" + block + "\n"
    open(path, "w").write(text)
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(main())

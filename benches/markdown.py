"""Renders benches/run.sh's results.json as the Markdown tables the README carries.

    python3 benches/markdown.py target/bench/results.json
"""

import json
import sys

TARGETS = ["strata-s3", "strata-local", "tansu-s3", "tansu-memory", "kafka", "null-sink",
           "store-sink", "local-sink"]


def fmt(v, digits=0):
    if v is None:
        return "-"
    return f"{v:,.{digits}f}"


def main(path):
    doc = json.load(open(path))
    rows = doc["rows"]
    present = [t for t in TARGETS if any(r["target"] == t for r in rows)]
    keys = []
    for r in rows:
        if r["workload"] != "throughput":
            continue
        k = (r["records"], r["record_bytes"], r["partitions"], r["acks"])
        if k not in keys:
            keys.append(k)
    by = {(r["target"], r["workload"], r["records"], r["record_bytes"], r["partitions"], r["acks"]): r
          for r in rows}

    def table(title, cell):
        """One row per throughput workload, one column per target; cell(row or None)."""
        print(title + "\n")
        print("| records × bytes | parts | acks | " + " | ".join(present) + " |")
        print("|---|---|---|" + "---|" * len(present))
        for (n, s, p, a) in keys:
            cells = [cell(by.get((t, "throughput", n, s, p, a))) for t in present]
            print(f"| {n:,} × {s} | {p} | {a} | " + " | ".join(cells) + " |")
        print()

    repeat = doc["settings"].get("repeat", 1)
    runs = f", median of {repeat} runs" if repeat > 1 else ""
    for side, field in (("produce", "produce_msgs_per_s"), ("consume", "consume_msgs_per_s")):
        table(f"**{side}, msg/s** (MB/s = msg/s × record bytes / 10⁶{runs})",
              lambda r, field=field: fmt((r or {}).get(field)))

    def resources(r):
        if not r:
            return "-"
        cpu = r["broker_cpu_produce_s"] + r["broker_cpu_consume_s"]
        puts = r["store_puts_per_s"]
        return (f"{cpu:.1f} / {r['broker_peak_rss_mib']:.0f}"
                + (f" / {puts:.0f}" if puts is not None else ""))

    table("**broker CPU seconds (produce + consume) / peak RSS MiB / store PUTs per s while "
          "producing**", resources)

    def cores(r):
        if not r or r.get("produce_client_cpu_s") is None or not r.get("produce_msgs_per_s"):
            return "-"
        secs = r["records"] / r["produce_msgs_per_s"]
        used = (r["broker_cpu_produce_s"] + (r.get("produce_store_cpu_s") or 0.0)
                + r["produce_client_cpu_s"])
        return f"{used / secs:.2f}"

    table("**cores busy while producing** (CPU seconds of broker + store + client and proxy, "
          "over the produce's seconds; the machine has 2)", cores)

    lat = [r for r in rows if r["workload"] == "e2e-latency"]
    if lat:
        rate = doc["settings"]["latency_rate"]
        print(f"**end-to-end latency at {rate:,} records/s** (100 B, 1 partition, acks=all, "
              f"linger.ms={doc['settings'].get('latency_linger_ms', 0)}), ms\n")
        print("| target | e2e p50 | e2e p99 | e2e p99.9 | ack p50 | ack p99 | ack p99.9 | store PUT p99 |")
        print("|---|---|---|---|---|---|---|---|")
        for r in lat:
            print(f"| {r['target']} | {fmt(r['p50_ms'], 1)} | {fmt(r['p99_ms'], 1)} | "
                  f"{fmt(r['p999_ms'], 1)} | {fmt(r['ack_p50_ms'], 1)} | {fmt(r['ack_p99_ms'], 1)} | "
                  f"{fmt(r['ack_p999_ms'], 1)} | {fmt(r['store_put_p99_ms'], 1)} |")
        print()
    for r in rows:
        if r["workload"] == "cold-replay":
            print(f"**cold replay** of {r['records']:,} × {r['record_bytes']} B from s3s-fs after a "
                  f"restart with the cache deleted: {fmt(r['consume_mb_per_s'], 1)} MB/s "
                  f"({fmt(r['store_gets_per_s'])} GETs/s); the same objects read by ranged GETs "
                  f"(8 MiB, 8 in flight): {fmt(r['raw_get_mb_per_s'], 1)} MB/s.")
            if r.get("client_cpu_s") is not None and r.get("raw_secs"):
                secs = r["records"] * r["record_bytes"] / 1e6 / r["consume_mb_per_s"]
                used = r["broker_cpu_consume_s"] + r["store_cpu_s"] + r["client_cpu_s"]
                raw = r["raw_store_cpu_s"] + r["raw_client_cpu_s"]
                print(f"CPU seconds during the replay: broker {r['broker_cpu_consume_s']:.1f}, store "
                      f"{r['store_cpu_s']:.1f}, client and proxy {r['client_cpu_s']:.1f} "
                      f"({used / secs:.2f} cores); during the raw GETs: store "
                      f"{r['raw_store_cpu_s']:.1f}, reader and proxy {r['raw_client_cpu_s']:.1f} "
                      f"({raw / r['raw_secs']:.2f} cores).")
            rounds = r.get("cold_ratio_rounds") or []
            if len(rounds) > 1:
                print(f"The figures are the round with the median ratio of {len(rounds)} rounds "
                      f"(ratios {', '.join(f'{x:.2f}' for x in rounds)}).")
            print()
    checks = doc.get("checks", [])
    if checks:
        passed = sum(1 for c in checks if c["pass"])
        unreachable = sum(1 for c in checks if not c["pass"] and not c.get("reachable", True))
        print(f"Targets: {passed} of {len(checks)} checks pass; of the misses, {unreachable} "
              f"could not pass in this run even at a sink's rate (the null sink's, or the store "
              f"sink's for strata-s3 and the local sink's for strata-local; marked below):\n")
        for c in checks:
            if not c["pass"]:
                op = ">=" if c["at_least"] else "<="
                note = ""
                if not c.get("reachable", True):
                    sink = c.get("ceiling_from") or "null-sink"
                    note = f"; unreachable: {sink} / peer = {c['ceiling']:.2f}"
                print(f"- {c['check']}: {c['value']:.2f} (target {op} {c['limit']:.2f}{note})")
        print()


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "target/bench/results.json")

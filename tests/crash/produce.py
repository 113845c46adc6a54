#!/usr/bin/env python3
"""Produce an NDJSON corpus to a Kafka topic (librdkafka mock cluster).

--lines-per-message N groups N consecutive lines into one message (NDJSON);
N=1 sends one event per message, which makes consumption slow enough to be
interrupted mid-way. Messages are keyed round-robin so they spread evenly over
the partitions (the mock cluster drops a partition's oldest data past ~5 MiB).
--seconds S spreads the messages evenly over about S seconds instead of
sending them as fast as possible, so a consumer reading them is mid-stream
for that long (tests/crash/run.sh kills the daemon meanwhile).
Exits non-zero unless every message is delivered. Prints a JSON summary.
"""
import argparse
import json
import sys
import time

from confluent_kafka import Producer


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--brokers", required=True)
    ap.add_argument("--topic", required=True)
    ap.add_argument("--input", required=True)
    ap.add_argument("--lines-per-message", type=int, default=1)
    ap.add_argument("--partitions", type=int, default=32)
    ap.add_argument("--seconds", type=float, default=0.0)
    a = ap.parse_args()
    # The number of messages, for the pace of --seconds.
    with open(a.input, "rb") as f:
        total_lines = sum(1 for _ in f)
    total = max(1, -(-total_lines // a.lines_per_message))

    p = Producer({
        "bootstrap.servers": a.brokers,
        "linger.ms": 20,
        "batch.num.messages": 2000,
        "queue.buffering.max.messages": 500000,
        "queue.buffering.max.kbytes": 1048576,
        "compression.type": "none",
        "acks": "all",
        "message.timeout.ms": 60000,
    })
    errors = []
    delivered = [0]
    per_part = [0] * a.partitions

    def cb(err, msg):
        if err is not None:
            errors.append(str(err))
        else:
            delivered[0] += 1
            per_part[msg.partition()] += len(msg.value())

    t0 = time.time()
    sent = lines = 0
    group = []

    def send(value):
        nonlocal sent
        part = sent % a.partitions
        while True:
            try:
                p.produce(a.topic, value=value, partition=part, on_delivery=cb)
                break
            except BufferError:
                p.poll(0.05)
        sent += 1
        if a.seconds > 0 and sent % 50 == 0:
            # Message `sent` is due at t0 + seconds * sent / total; poll
            # returns early on a delivery report, hence the loop.
            due = t0 + a.seconds * sent / total
            p.poll(0)
            while (ahead := due - time.time()) > 0:
                p.poll(ahead)
        elif sent % 1000 == 0:
            p.poll(0)

    with open(a.input, "rb") as f:
        for raw in f:
            line = raw.rstrip(b"\n")
            lines += 1
            group.append(line)
            if len(group) >= a.lines_per_message:
                send(b"\n".join(group) + b"\n")
                group = []
    if group:
        send(b"\n".join(group) + b"\n")
    left = p.flush(120)
    dt = time.time() - t0
    summary = {"lines": lines, "messages": sent, "delivered": delivered[0],
               "errors": len(errors), "seconds": round(dt, 2),
               "max_partition_bytes": max(per_part)}
    json.dump(summary, sys.stdout)
    print()
    if errors or left or delivered[0] != sent:
        print("produce failed: %s (left %d)" % (errors[:5], left), file=sys.stderr)
        sys.exit(1)
    if max(per_part) > 4_500_000:
        print("a partition holds %d bytes: the mock cluster may drop data" % max(per_part),
              file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()

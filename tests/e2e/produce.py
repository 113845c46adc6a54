#!/usr/bin/env python3
"""Produce a corpus file to a Kafka topic, one message per record batch.

The corpus (NDJSON) is split into messages of --lines-per-message consecutive
lines each (one message may hold several NDJSON lines). A line that starts
with "[" (a JSON array, i.e. a batch of its own) travels alone in its own
message, so the JSON-array encoding of SPEC section 2 is exercised too.

tansu 0.6.0's memory storage skips the rest of a record batch when a fetch
starts inside it, so every message is sent as its own batch: linger.ms=0,
batch.num.messages=1 and a flush after each produce. Exits non-zero when any
message is not delivered.
"""
import argparse
import json
import sys

from confluent_kafka import KafkaException, Producer


def messages(path, per_message):
    """Yield (key, value) pairs, value being bytes of one or more lines."""
    group = []
    with open(path, "rb") as f:
        for raw in f:
            line = raw.rstrip(b"\n")
            if not line.strip():
                continue
            if line.lstrip().startswith(b"["):
                if group:
                    yield group
                yield [line]
                group = []
                continue
            group.append(line)
            if len(group) >= per_message:
                yield group
                group = []
    if group:
        yield group


def connector_of(line):
    """The connector of an NDJSON line or of a JSON array's first event;
    "-" when there is none to read (the line is rejected wherever it lands)."""
    try:
        v = json.loads(line)
    except ValueError:
        return "-"
    if isinstance(v, list):
        v = v[0] if v else None
    c = v.get("connector") if isinstance(v, dict) else None
    return c if isinstance(c, str) else "-"


def keyed_messages(path, per_message):
    """Yield (key, lines): the lines of each connector, in file order, in
    messages of at most per_message lines keyed by that connector."""
    groups = {}
    with open(path, "rb") as f:
        for raw in f:
            line = raw.rstrip(b"\n")
            if not line.strip():
                continue
            key = connector_of(line)
            if line.lstrip().startswith(b"["):
                yield key, [line]
                continue
            g = groups.setdefault(key, [])
            g.append(line)
            if len(g) >= per_message:
                yield key, g
                groups[key] = []
    for key, g in groups.items():
        if g:
            yield key, g


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--brokers", required=True, help="HOST:PORT[,HOST:PORT]")
    ap.add_argument("--topic", required=True)
    ap.add_argument("--input", required=True, help="corpus file (NDJSON)")
    ap.add_argument("--lines-per-message", type=int, default=50)
    ap.add_argument("--key-by-connector", action="store_true",
                    help="key each message by its lines' connector (kafka.input_keyed_by_connector)")
    ap.add_argument("--timeout", type=float, default=30.0, help="seconds per flush")
    args = ap.parse_args()

    producer = Producer({
        "bootstrap.servers": args.brokers,
        "broker.address.family": "v4",
        "linger.ms": 0,
        "batch.num.messages": 1,
        "acks": "all",
        # tansu does not implement the idempotent producer.
        "enable.idempotence": False,
        "message.timeout.ms": int(args.timeout * 1000),
    })

    errors = []
    delivered = [0]

    def on_delivery(err, msg):
        if err is not None:
            errors.append(f"partition {msg.partition()}: {err}")
        else:
            delivered[0] += 1

    sent = lines = 0
    if args.key_by_connector:
        source = ((k.encode(), g) for k, g in keyed_messages(args.input, args.lines_per_message))
    else:
        # Keys that spread messages over the partitions.
        source = ((f"m{i}".encode(), g)
                  for i, g in enumerate(messages(args.input, args.lines_per_message)))
    for i, (key, group) in enumerate(source):
        value = b"\n".join(group) + b"\n"
        while True:
            try:
                producer.produce(args.topic, value=value, key=key, on_delivery=on_delivery)
                break
            except BufferError:
                producer.poll(0.1)
        sent += 1
        lines += len(group)
        # One message per batch: wait until this one is acknowledged.
        remaining = producer.flush(args.timeout)
        if remaining:
            errors.append(f"message {i}: not delivered within {args.timeout}s")
            break
        if errors:
            break

    remaining = producer.flush(args.timeout)
    if remaining:
        errors.append(f"{remaining} message(s) still queued after flush")
    if errors:
        for e in errors:
            print(f"produce.py: delivery error: {e}", file=sys.stderr)
        sys.exit(1)
    if delivered[0] != sent:
        print(f"produce.py: {delivered[0]} of {sent} messages delivered", file=sys.stderr)
        sys.exit(1)
    print(f"produce.py: {sent} messages ({lines} lines) delivered to {args.topic}")


if __name__ == "__main__":
    try:
        main()
    except KafkaException as e:
        print(f"produce.py: {e}", file=sys.stderr)
        sys.exit(1)

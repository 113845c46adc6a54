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


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--brokers", required=True, help="HOST:PORT[,HOST:PORT]")
    ap.add_argument("--topic", required=True)
    ap.add_argument("--input", required=True, help="corpus file (NDJSON)")
    ap.add_argument("--lines-per-message", type=int, default=50)
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
    for i, group in enumerate(messages(args.input, args.lines_per_message)):
        value = b"\n".join(group) + b"\n"
        key = f"m{i}".encode()  # spreads messages over the partitions
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

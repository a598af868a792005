"""A librdkafka client (confluent-kafka) configured only from an issued Secret.

The interop tests run it as a service team would: the Secret's
librdkafka.properties (key=value lines, written by the operator) is the
whole client configuration; the script adds only what a program decides for
itself (where a new consumer starts, how long to wait).

Usage:
  rdkafka_client.py produce PROPS TOPIC N     writes N records "rdkafka-<i>"
  rdkafka_client.py consume PROPS TOPIC N     reads in the Secret's group until it
                                              has read N records "rdkafka-<i>"

It prints one JSON object on stdout and exits:
  0 done; 3 refused by the broker's ACLs; 4 refused credentials; 1 otherwise.
"""

import json
import sys
import time

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer

EXIT_AUTHORIZATION = 3
EXIT_AUTHENTICATION = 4

AUTHORIZATION_CODES = {
    KafkaError.TOPIC_AUTHORIZATION_FAILED,
    KafkaError.GROUP_AUTHORIZATION_FAILED,
    KafkaError.CLUSTER_AUTHORIZATION_FAILED,
    KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
}
AUTHENTICATION_CODES = {
    KafkaError._AUTHENTICATION,
    KafkaError.SASL_AUTHENTICATION_FAILED,
}

TIMEOUT_S = 30


def read_properties(path):
    """Reads key=value lines; values escape line breaks as \\n (PEM)."""
    config = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.rstrip("\n")
            if not line or line.startswith("#"):
                continue
            key, sep, value = line.partition("=")
            if not sep:
                raise ValueError(f"{path}: not a key=value line: {line!r}")
            config[key.strip()] = value.replace("\\n", "\n").replace("\\r", "\r")
    return config


def distinct(errors, limit=5):
    """The first few distinct error texts: librdkafka repeats them."""
    out = []
    for e in errors:
        if e.str() not in out:
            out.append(e.str())
    return out[:limit]


def finish(result, code):
    print(json.dumps(result))
    sys.exit(code)


def refused(err, what):
    """Exits with the refusal's kind when err is one, else returns."""
    if err is None:
        return
    result = {"ok": False, "what": what, "error": err.name(), "message": err.str()}
    if err.code() in AUTHORIZATION_CODES:
        finish(result, EXIT_AUTHORIZATION)
    if err.code() in AUTHENTICATION_CODES:
        finish(result, EXIT_AUTHENTICATION)
    if err.fatal():
        finish(result, 1)


def produce(config, topic, n):
    errors = []
    config = dict(config, **{"error_cb": errors.append, "message.timeout.ms": TIMEOUT_S * 1000})
    producer = Producer(config)
    delivered = []

    def on_delivery(err, msg):
        if err is not None:
            errors.append(err)
        else:
            delivered.append(msg.offset())

    for i in range(n):
        producer.produce(topic, value=f"rdkafka-{i}".encode(), on_delivery=on_delivery)
    deadline = time.monotonic() + TIMEOUT_S
    while len(delivered) + len(errors) < n and time.monotonic() < deadline:
        producer.poll(0.2)
        for err in errors:
            refused(err, "produce")
    producer.flush(5)
    for err in errors:
        refused(err, "produce")
    if len(delivered) != n:
        finish({"ok": False, "what": "produce", "delivered": len(delivered),
                "errors": distinct(errors)}, 1)
    finish({"ok": True, "what": "produce", "delivered": len(delivered)}, 0)


def consume(config, topic, n):
    errors = []
    config = dict(config, **{"error_cb": errors.append, "auto.offset.reset": "earliest"})
    consumer = Consumer(config)
    consumer.subscribe([topic])
    values = []
    ours = 0  # the group may hold other clients' records too
    deadline = time.monotonic() + TIMEOUT_S
    try:
        while ours < n and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            for err in errors:
                refused(err, "consume")
            if msg is None:
                continue
            if msg.error():
                refused(msg.error(), "consume")
                continue
            value = msg.value().decode()
            values.append(value)
            if value.startswith("rdkafka-"):
                ours += 1
    finally:
        try:
            consumer.close()
        except KafkaException:
            pass
    if ours < n:
        finish({"ok": False, "what": "consume", "values": values,
                "errors": distinct(errors)}, 1)
    finish({"ok": True, "what": "consume", "values": values}, 0)


def main(argv):
    if len(argv) != 5 or argv[1] not in ("produce", "consume"):
        print(__doc__, file=sys.stderr)
        return 2
    _, command, props, topic, n = argv
    config = read_properties(props)
    if command == "produce":
        produce(config, topic, int(n))
    else:
        consume(config, topic, int(n))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

#!/usr/bin/env python3
"""A real SMTP server for the tests (aiosmtpd, from PyPI in a throwaway venv made by
tests/real-tools.sh). Every message it accepts is parsed by Python's own `email`
package and written to OUT_DIR as one JSON file: the SMTP envelope, the decoded From,
To, Subject and Message-ID headers, the content type and the decoded text body. The
test reads those, so what it checks is what a mail client would show.

    python smtp_sink.py HOST PORT OUT_DIR
"""
import email
import email.policy
import json
import os
import signal
import sys
import threading

from aiosmtpd.controller import Controller


class Sink:
    def __init__(self, out):
        self.out = out
        self.n = 0

    async def handle_DATA(self, server, session, envelope):
        msg = email.message_from_bytes(envelope.original_content or envelope.content,
                                       policy=email.policy.default)
        body = msg.get_body(preferencelist=("plain",))
        self.n += 1
        record = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "from": str(msg["From"]),
            "to": str(msg["To"]),
            "subject": str(msg["Subject"]),
            "message_id": str(msg["Message-ID"]),
            "content_type": msg.get_content_type(),
            "body": body.get_content() if body is not None else None,
        }
        tmp = os.path.join(self.out, f".{self.n:04d}.json")
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(record, f)
        os.rename(tmp, os.path.join(self.out, f"{self.n:04d}.json"))
        return "250 2.0.0 accepted by the driftwatch test sink"


def main():
    host, port, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    os.makedirs(out, exist_ok=True)
    controller = Controller(Sink(out), hostname=host, port=port)
    controller.start()
    print("ready", flush=True)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    done.wait()
    controller.stop()


if __name__ == "__main__":
    main()
